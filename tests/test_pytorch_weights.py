"""The weights reader is bounded by the file it reads: a tiny crafted file is refused with one `cannot read` line, in
well under a second and without allocating much, whatever size it claims. Each hostile file is written here, pickle
opcodes by hand, and read in a fresh process that reports its own time and peak memory (and could not take the
machine with it: its address space is capped).
"""
import json
import os
import pickle
import re
import struct
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT
from support import pytorch_weights
from test_efficientnet_lite import build_error, global_op, header, value_ops

READ_IN_A_FRESH_PROCESS = """
import json, resource, sys
from support import pytorch_weights
size = int(open("/proc/self/status").read().split("VmSize:")[1].split()[0]) * 1024
resource.setrlimit(resource.RLIMIT_AS, (size + 2**30, resource.RLIM_INFINITY))  # a regression fails, not the machine
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    pytorch_weights.read_state_dict(sys.argv[1])
    message = None
except ValueError as error:
    message = str(error)
print(json.dumps({"message": message,
                  "peak_mb": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024}))
"""


def one_tensor(size, stride, numel, values=None):
    """A legacy file whose one tensor, "weight", has `size` and `stride` over a float storage of `numel` elements;
    the storage's data is `values` (none at all when the file claims more than a test should write)."""
    storage = (b"(" + value_ops("storage") + global_op("torch", "FloatStorage") + value_ops("0") + value_ops("cpu")
               + value_ops(numel) + b"NtQ")
    state = (b"\x80\x02}" + value_ops("weight") + global_op("torch._utils", "_rebuild_tensor_v2") + b"(" + storage
             + value_ops(0) + value_ops(tuple(size)) + value_ops(tuple(stride)) + b"\x89}tRs.")
    data = b"" if values is None else struct.pack("<q", numel) + np.asarray(values, "<f4").tobytes()
    return header() + state + pickle.dumps(["0"], protocol=2) + data


def persistent_id(structure):
    """A legacy file whose state_dict pickle hands `structure` (pickle opcodes) to the reader as a persistent id."""
    return header() + b"\x80\x02" + structure + b"Q."


def shared_lists(levels):
    """A list of two references to a list of two references to ...: 2**levels items when expanded, in a few bytes
    per level (each level memoized, then fetched twice)."""
    ops = b"]q\x00"
    for level in range(levels):
        ops += b"(h" + bytes([level]) + b"h" + bytes([level]) + b"lq" + bytes([level + 1])
    return ops


HOSTILE = {
    # A stride of 0 repeats one element: 4 TiB, or 16 GB, from a one-element storage.
    "stride 0, 2**40 elements": (one_tensor((2**40,), (0,), 1, [0]), "does not fit in its storage of 1 elements"),
    "stride 0, 2**32 elements": (one_tensor((2**32,), (0,), 1, [0]), "does not fit in its storage of 1 elements"),
    # Non-zero strides that overlap: 2**32 elements inside a storage of 33.
    "overlapping strides": (one_tensor((2,) * 32, (1,) * 32, 33, np.zeros(33)), "does not fit in its storage of 33"),
    # 20000 dimensions: multiplying out their sizes alone would take seconds.
    "20000 dimensions": (one_tensor((2**62,) * 20_000, (1,) * 20_000, 1), "20000 dimensions, more than NumPy's 64"),
    "storage of 2**60 elements": (one_tensor((1,), (1,), 2**60), "storage '0' claims 1152921504606846976 elements, "
                                                                 "more than the file's"),
    "shared lists 40 deep": (persistent_id(shared_lists(40)), "refers a second time to a list, tuple, dict or object"),
    "lists 10000 deep": (persistent_id(b"]" * 10_000 + b"a" * 9_999), "nests deeper than 32 levels"),
    # BUILD on a global the unpickler admits would set attributes on the reader's own function, for good.
    "a global changed": (header() + b"\x80\x02" + global_op("torch._utils", "_rebuild_tensor_v2")
                         + value_ops((None, {"__defaults__": (True,)})) + b"b.", "applies BUILD to a global"),
    "bytes of 2**50": (b"\x80\x02\x8e" + struct.pack("<Q", 2**50) + b".",
                       r"truncated or damaged \(expected 1125899906842624 bytes in a bytes8, but only 1 remain\)"),
    "frame of 2**50": (b"\x80\x04\x95" + struct.pack("<Q", 2**50) + b"N.",
                       "declares a frame of 1125899906842624 bytes"),
    "memo slot 2**32 - 1": (b"\x80\x02Nr\xff\xff\xff\xff.", "writes memo slot 4294967295 where the next free one is 0"),
}


@pytest.mark.parametrize("name", HOSTILE)
def test_a_tiny_hostile_file_is_refused_without_allocating_or_hanging(tmp_path, name):
    content, message = HOSTILE[name]
    path = tmp_path / "hostile.pth"
    path.write_bytes(content)
    assert len(content) < 2**18
    child = subprocess.run([sys.executable, "-c", READ_IN_A_FRESH_PROCESS, str(path)], cwd=ROOT,
                           capture_output=True, text=True, timeout=120)  # a hang fails, however slow the machine
    assert child.returncode == 0, child.stderr
    result = json.loads(child.stdout)
    assert result["message"] is not None and "\n" not in result["message"]
    assert result["message"].startswith(f"cannot read {path}: ")
    assert re.search(message, result["message"]), result["message"]
    assert result["peak_mb"] < 100, result


@pytest.mark.parametrize("name", ["stride 0, 2**40 elements", "shared lists 40 deep", "bytes of 2**50"])
def test_train_with_a_hostile_weights_file_is_one_error_line(tmp_path, capsys, name):
    (tmp_path / "files").mkdir()
    path = tmp_path / "files" / "hostile.pth"
    path.write_bytes(HOSTILE[name][0])
    assert f"cannot read {path}: " in build_error(tmp_path, capsys, {"weights": str(path)})


def test_a_stride_0_along_a_single_element_and_a_channels_last_layout_are_read(tmp_path):
    path = tmp_path / "fine.pth"
    path.write_bytes(one_tensor((3, 1, 2), (2, 0, 1), 6, np.arange(6)))
    np.testing.assert_array_equal(pytorch_weights.read_state_dict(str(path))["weight"],
                                  np.arange(6).reshape(3, 1, 2))
    path.write_bytes(one_tensor((2, 3), (1, 2), 6, np.arange(6)))  # stored column by column
    np.testing.assert_array_equal(pytorch_weights.read_state_dict(str(path))["weight"],
                                  np.arange(6).reshape(3, 2).T)
    assert os.listdir(tmp_path) == ["fine.pth"]
