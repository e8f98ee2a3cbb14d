"""imgaug on NumPy 2: imgaug 0.4 (its last release) reads NumPy names that NumPy 2 removed (np.sctypes, np.complex).

augmenters() restores those names on the numpy module, only where they are missing, and then imports imgaug: the one
place that changes NumPy, called where an augmenter is first built (datagen.default_augmenter), never on import.
"""
import numpy as np


def augmenters():
    """imgaug.augmenters, imported after the names it needs are back on NumPy."""
    if not hasattr(np, "sctypes"):
        np.sctypes = {"int": [np.int8, np.int16, np.int32, np.int64],
                      "uint": [np.uint8, np.uint16, np.uint32, np.uint64],
                      "float": [np.float16, np.float32, np.float64],
                      "complex": [np.complex64, np.complex128],
                      "others": [bool, object, bytes, str, np.void]}
    if not hasattr(np, "complex"):
        np.complex = complex
    import imgaug.augmenters as iaa
    return iaa
