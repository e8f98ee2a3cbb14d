"""One process of a multi-process training job, for tests: runs train.main and records what it trained on.

    python tests/distributed_worker.py OUT.npz TRAIN_FLAGS...

Writes OUT.npz with the final weights (flattened) and the ids of the training items this process loaded.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

import datagen  # noqa: E402
import train  # noqa: E402

seen = set()
load_batch = datagen.BatchGenerator.__getitem__


def recording(generator, index):
    if generator.mode == "train":
        chosen = generator.order()[index * generator.batch_size:(index + 1) * generator.batch_size]
        seen.update(generator.reader.ids[i] for i in chosen)
    return load_batch(generator, index)


datagen.BatchGenerator.__getitem__ = recording
model = train.main(sys.argv[2:])
np.savez(sys.argv[1], weights=np.concatenate([np.ravel(w) for w in model.get_weights()]),
         seen=np.array(sorted(seen)))
