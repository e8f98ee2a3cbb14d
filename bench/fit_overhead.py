"""What feeding Keras from a BatchGenerator costs, and whether jitter keeps up with training.

    .venv/bin/python bench/fit_overhead.py                    # synthetic drawings and photos, ~2 minutes
    REAL_DATA_DIR=../shared/data .venv/bin/python bench/fit_overhead.py   # photos from cats_vs_dogs/train

1. One model (quickdraw_cnn, 28×28×1, 10 classes), the same training items, batch 128: the time of one epoch
   fed by `BatchGenerator` (no jitter) against one fed from in-memory arrays (`model.fit(x, y)`). The two
   alternate for a few rounds; the ratio of their medians is the figure (goal ≤ 1.10), and the median of the
   per-round ratios ("paired") is shown beside it, as it is less sensitive to a noisy machine.
2. Jitter on: images/s of the jitter pipeline (`BatchGenerator(jitter=True)[i]`, loading included) against the
   model's training images/s, for 28×28 drawings (quickdraw_cnn) and 224×224×3 photos (mobilenet_v2, alpha
   0.35). Above 1, jitter is not the bottleneck (with one worker; `--workers` in train.py adds more).
"""
import argparse
import os
import shutil
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import keras  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

import config  # noqa: E402
from datagen import BatchGenerator  # noqa: E402
from support.images import prepare  # noqa: E402
from reader import DataReader  # noqa: E402
from support import doodles  # noqa: E402


class EpochTimes(keras.callbacks.Callback):
    """Seconds of each epoch, from Keras' own epoch boundaries (fit's setup is not counted)."""

    def __init__(self):
        super().__init__()
        self.seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self.start)


def compiled(name, shape, classes, **kwargs):
    model = config.MODELS[name](shape, classes, **kwargs)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=keras.losses.SparseCategoricalCrossentropy(),
                  metrics=["accuracy"])
    return model


def epoch_seconds(model, data, **fit_kwargs):
    """Seconds of one epoch of model.fit on `data` (a generator, or (x, y) arrays)."""
    timer = EpochTimes()
    inputs = dict(x=data) if isinstance(data, keras.utils.PyDataset) else dict(x=data[0], y=data[1])
    model.fit(**inputs, epochs=1, verbose=0, callbacks=[timer], **fit_kwargs)
    return timer.seconds[0]


def in_memory(generator):
    """Every item of a generator's split, loaded and prepared as its batches are: (float32 x, int32 y)."""
    reader = generator.reader
    x = np.stack([prepare(reader.load(i), generator.input_size, generator.channels) for i in generator.indices])
    return x.astype(np.float32), reader.labels[generator.indices].astype(np.int32)


def pipeline_rate(generator, batches, repeats=3):
    """Median images/s of generator[i] over `repeats` passes of its first `batches` batches."""
    count = min(batches, len(generator))
    images = sum(len(generator[i][1]) for i in range(count))
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        for i in range(count):
            generator[i]
        rates.append(images / (time.perf_counter() - start))
    return float(np.median(rates))


def training_rate(model, x, y, batch_size, repeats):
    """Median training images/s of the model on in-memory arrays, after one warm-up epoch."""
    epoch_seconds(model, (x, y), batch_size=batch_size)
    times = [epoch_seconds(model, (x, y), batch_size=batch_size) for _ in range(repeats)]
    return len(x) / float(np.median(times))


def write_photos(folder, per_class, seed=0):
    """Synthetic 'photos': smooth random colour fields at a few camera-like sizes, as Kaggle-style JPEGs."""
    rng = np.random.default_rng(seed)
    os.makedirs(folder)
    for name in ("cat", "dog"):
        for n in range(per_class):
            coarse = rng.integers(0, 256, size=(6, 8, 3), dtype=np.uint8)
            size = [(500, 375), (320, 240), (400, 300)][n % 3]
            Image.fromarray(coarse).resize(size, Image.BICUBIC).save(os.path.join(folder, f"{name}.{n}.jpg"),
                                                                     quality=90)
    return folder


def drawings(args, work):
    """Part 1 and the drawing half of part 2; returns (ratio generator/arrays, jitter/training ratio)."""
    folder = os.path.join(work, "doodles")
    doodles.write(folder, per_class=args.per_class)
    reader = DataReader(folder)
    plain = BatchGenerator(reader, "train", batch_size=args.batch_size)
    x, y = in_memory(plain)
    model = compiled("quickdraw_cnn", (28, 28, 1), len(reader.class_names))
    print(f"quickdraw_cnn, {len(x)} training drawings 28×28×1, {len(reader.class_names)} classes, "
          f"batch {args.batch_size}, {len(plain)} batches/epoch")

    epoch_seconds(model, plain)  # warm-up: traces the train step for each feed
    epoch_seconds(model, (x, y), batch_size=args.batch_size)
    fed = {"BatchGenerator": [], "numpy arrays": []}
    for round_ in range(args.rounds):
        plain.epoch = round_  # a new shuffle each round, as EpochSeed does in training
        fed["BatchGenerator"].append(epoch_seconds(model, plain))
        fed["numpy arrays"].append(epoch_seconds(model, (x, y), batch_size=args.batch_size))
    print(f"\n{'epoch fed by':<18}{'median s':>10}{'min s':>9}{'max s':>9}   (each of {args.rounds} rounds)")
    for name, times in fed.items():
        print(f"{name:<18}{np.median(times):>10.3f}{min(times):>9.3f}{max(times):>9.3f}   "
              + " ".join(f"{t:.2f}" for t in times))
    ratio = float(np.median(fed["BatchGenerator"]) / np.median(fed["numpy arrays"]))
    per_round = [g / a for g, a in zip(fed["BatchGenerator"], fed["numpy arrays"])]
    print(f"generator / arrays: {ratio:.3f} (ratio of medians); per round: "
          + " ".join(f"{r:.2f}" for r in per_round) + f" (median {np.median(per_round):.3f})")

    train_rate = len(x) / float(np.median(fed["numpy arrays"]))
    jittered = BatchGenerator(reader, "train", batch_size=args.batch_size, jitter=True)
    rates = {"load only": pipeline_rate(plain, args.pipeline_batches),
             "load + jitter": pipeline_rate(jittered, args.pipeline_batches)}
    return (ratio, float(np.median(per_round))), rates, train_rate


def photos(args, work):
    """The photo half of part 2: mobilenet_v2 (alpha 0.35) at 224×224×3."""
    real = os.environ.get("REAL_DATA_DIR")
    if real:
        folder = os.path.join(real, "cats_vs_dogs", "train")
    else:
        folder = write_photos(os.path.join(work, "photos"), args.photos // 2)
    reader = DataReader(folder)
    common = dict(batch_size=args.photo_batch_size, input_size=(224, 224), channels=3)
    plain = BatchGenerator(reader, "train", **common)
    jittered = BatchGenerator(reader, "train", jitter=True, **common)
    source = f"REAL_DATA_DIR {folder}" if real else "synthetic JPEGs"
    print(f"\nmobilenet_v2 alpha 0.35, photos 224×224×3 from {source} ({len(reader)} items), "
          f"batch {args.photo_batch_size}")
    rates = {"load only": pipeline_rate(plain, args.photo_batches),
             "load + jitter": pipeline_rate(jittered, args.photo_batches)}
    x = np.concatenate([plain[i][0] for i in range(min(2, len(plain)))])
    y = np.concatenate([plain[i][1] for i in range(min(2, len(plain)))])
    model = compiled("mobilenet_v2", (224, 224, 3), len(reader.class_names), alpha=0.35)
    train_rate = training_rate(model, x, y, args.photo_batch_size, min(args.rounds, 3))
    return rates, train_rate


def print_rates(title, rates, train_rate):
    print(f"{title:<30}{'images/s':>10}{'÷ training':>12}")
    for name, rate in rates.items():
        print(f"{'  ' + name:<30}{rate:>10.0f}{rate / train_rate:>12.2f}")
    print(f"{'  model training':<30}{train_rate:>10.0f}{1.0:>12.2f}")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--per_class", type=int, default=300, help="synthetic drawings per class (default: %(default)s)")
    p.add_argument("--batch_size", type=int, default=128, help="drawing batch size (default: %(default)s)")
    p.add_argument("--rounds", type=int, default=5, help="alternating epochs of each feed (default: %(default)s)")
    p.add_argument("--pipeline_batches", type=int, default=20,
                   help="drawing batches per pipeline-rate pass (default: %(default)s)")
    p.add_argument("--photos", type=int, default=96, help="synthetic photos when REAL_DATA_DIR is unset "
                                                         "(default: %(default)s)")
    p.add_argument("--photo_batch_size", type=int, default=32, help="photo batch size (default: %(default)s)")
    p.add_argument("--photo_batches", type=int, default=3,
                   help="photo batches per pipeline-rate pass (default: %(default)s)")
    args = p.parse_args()
    work = tempfile.mkdtemp(prefix="fit_overhead_")
    try:
        ratio, drawing_rates, drawing_train = drawings(args, work)
        photo_rates, photo_train = photos(args, work)
    finally:
        shutil.rmtree(work)
    print()
    print_rates("drawings 28×28×1, quickdraw_cnn", drawing_rates, drawing_train)
    print_rates("photos 224×224×3, mobilenet_v2", photo_rates, photo_train)
    drawing_jitter = drawing_rates["load + jitter"] / drawing_train
    photo_jitter = photo_rates["load + jitter"] / photo_train
    print(f"fit_overhead: generator/arrays epoch {ratio[0]:.3f}, paired {ratio[1]:.3f} (goal ≤ 1.10); "
          f"jitter/training drawings "
          f"{drawing_jitter:.2f}, photos {photo_jitter:.2f} (goal > 1)")


if __name__ == "__main__":
    main()
