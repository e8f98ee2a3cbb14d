"""Stable 64-bit hashes of item ids: the same on every machine and run, so that a split by hash (datagen) is too."""
import hashlib

import numpy as np


def stable_hash(text):
    """A 64-bit hash of a string that is the same on every machine and Python run (unlike hash())."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")


def mix64(values):
    """splitmix64 finaliser over a uint64 array: spreads nearby integers over the whole 64-bit range."""
    with np.errstate(over="ignore"):  # wrapping multiplication is the point
        z = np.asarray(values, dtype=np.uint64) + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))
