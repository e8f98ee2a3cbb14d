"""Each item's features for doctor.py: what its label probe and near-twin search compare.

A feature model has a `name`, an `input_size` and `channels` (images are prepared by images.prepare exactly as
training prepares them), `cached`, and turns a batch of prepared images into rows. Photos get doctor.py's pretrained
one, cached in one .npz file per model and input (its name says which) beside the report, each row keyed by a hash
of the item's bytes, so an unchanged file is never computed twice, a changed one is, and copies share a row.
Drawings (1 channel) get their pixels at 28×28 (PixelFeatures), as cheap to compute as to read back: not cached.
"""
import hashlib
import io
import os
import zipfile

import numpy as np
from tqdm import tqdm

from support import storage
from support.images import prepare

BATCH = 32


def content_hash(data):
    """32 hex digits naming some content: the same bytes, the same hash, on every machine."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


class PixelFeatures:
    """The prepared pixels themselves: `model(images)` -> (N, H·W·C) float32."""

    cached = False

    def __init__(self, input_size=(28, 28), channels=1):
        self.input_size, self.channels = tuple(input_size), channels
        self.name = f"pixels-{input_size[0]}x{input_size[1]}x{channels}"

    def __call__(self, images):
        return images.reshape(len(images), -1).astype(np.float32)


def cache_file(folder, feature_model):
    return os.path.join(folder, f"features-{feature_model.name}.npz")


def read_cache(path):
    """{content hash: feature row} from a cache file; an unreadable or missing one is an empty cache."""
    if not storage.exists(path):
        return {}
    try:
        with np.load(io.BytesIO(storage.read_bytes(path)), allow_pickle=False) as saved:
            return dict(zip(saved["hashes"].tolist(), saved["features"]))
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return {}


def write_cache(path, rows):
    buffer = io.BytesIO()
    hashes = list(rows)
    np.savez(buffer, hashes=np.array(hashes, dtype="U32"), features=np.stack([rows[h] for h in hashes]))
    storage.write(path, buffer.getvalue())


def features_of(items, hashes, load, feature_model, folder):
    """(N, D) features of `items` (whatever `load(item)` -> uint8 H×W×C takes), keyed by `hashes` (one each):
    from the cache in `folder`, the rest computed in batches and added to it. Returns (features, computed count).
    The cache keeps only these items' rows, so it never grows past the data."""
    path = cache_file(folder, feature_model)
    cached = read_cache(path) if feature_model.cached else {}
    missing = list(dict.fromkeys(h for h in hashes if h not in cached))
    first_item = {}
    for item, h in zip(items, hashes):
        first_item.setdefault(h, item)
    for start in tqdm(range(0, len(missing), BATCH), desc=f"features ({feature_model.name})", unit="batch",
                      disable=None):
        chosen = missing[start:start + BATCH]
        images = np.stack([prepare(load(first_item[h]), feature_model.input_size, feature_model.channels)
                           for h in chosen])
        cached.update(zip(chosen, feature_model(images)))
    rows = {h: cached[h] for h in dict.fromkeys(hashes)}
    if feature_model.cached and (missing or len(rows) != len(cached)):
        write_cache(path, rows)
    return np.stack([rows[h] for h in hashes]) if hashes else np.zeros((0, 0), np.float32), len(missing)
