"""Tiny data sets in every format the template reads, made by the tests themselves; the tools run as a user runs them."""
import functools
import io
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from support import startup, verbose  # noqa: E402  (imports nothing heavy)

startup.setup()  # as every tool does first: a quiet console, the CPU allocator, the Keras backend's requirements

REAL_DATA_DIR = os.environ.get("REAL_DATA_DIR")
needs_real_data = pytest.mark.skipif(not REAL_DATA_DIR or not os.path.isdir(REAL_DATA_DIR),
                                     reason="REAL_DATA_DIR not set")


def exit_code(main, args):
    """A command-line tool's main() run in this process: its exit code (0 when it returns)."""
    try:
        main(args)
    except SystemExit as stop:
        return stop.code
    return 0


def user_environment(loud=False):
    """The environment a user runs a tool in: without the test run's own log-level settings."""
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", verbose.VARIABLE)}
    return {**env, verbose.VARIABLE: "1"} if loud else env


@functools.cache
def help_of(tool, command=None):
    """`python <tool>.py [command] --help` as a user runs it, once per test run: several tests read each tool's
    help, and a tool that imports TensorFlow pays its start-up."""
    return subprocess.run([sys.executable, f"{tool}.py", *([command] if command else []), "--help"], cwd=ROOT,
                          env=user_environment(), capture_output=True, text=True, timeout=300)


def run_cli(main, args, capsys):
    """main() in this process: (exit code, stdout, stderr)."""
    code = exit_code(main, args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def drawing(rng, label, side=28):
    """A uint8 drawing whose class shows in where the strokes are (so tiny models can learn it)."""
    image = np.zeros((side, side), dtype=np.uint8)
    band = side // 4
    row = (label * band) % (side - band)
    image[row:row + band, :] = rng.integers(150, 256, size=(band, side))
    return image


def png_bytes(array, fmt="PNG"):
    buffer = io.BytesIO()
    Image.fromarray(array.squeeze() if array.ndim == 3 and array.shape[2] == 1 else array).save(buffer, fmt)
    return buffer.getvalue()


def write_npy(folder, counts, prefix="", flat=True, seed=0):
    """QuickDraw-style <class>.npy files, N×784 (flat) or N×28×28 uint8."""
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    for label, (name, count) in enumerate(counts.items()):
        rows = np.stack([drawing(rng, label) for _ in range(count)])
        np.save(os.path.join(folder, f"{prefix}{name}.npy"), rows.reshape(count, -1) if flat else rows)
    return folder


def write_tfrecord(path, features_per_record):
    import tensorflow as tf

    def feature(value):
        if isinstance(value, bytes):
            return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))

    with tf.io.TFRecordWriter(path) as writer:
        for features in features_per_record:
            example = tf.train.Example(features=tf.train.Features(
                feature={key: feature(value) for key, value in features.items()}))
            writer.write(example.SerializeToString())
    return path


def quickdraw_records(count, classes=3, seed=0, with_labels=True):
    rng = np.random.default_rng(seed)
    records = []
    for n in range(count):
        label = n % classes
        record = {"image": png_bytes(255 - drawing(rng, label))}
        record.update({"label": label} if with_labels else {"image_id": f"id{n:04d}".encode()})
        records.append(record)
    return records


@pytest.fixture
def npy_dir(tmp_path):
    return write_npy(str(tmp_path / "npy"), {"apple": 30, "bicycle": 40, "cat": 50})


@pytest.fixture
def image_tree(tmp_path):
    """Class subfolders of PNGs (grey) and JPEGs (colour)."""
    rng = np.random.default_rng(1)
    root = tmp_path / "tree"
    for label, name in enumerate(["cats", "dogs"]):
        (root / name).mkdir(parents=True)
        for n in range(6):
            colour = np.stack([drawing(rng, label, 32)] * 3, axis=2)
            Image.fromarray(colour).save(root / name / f"{n}.jpg")
    return str(root)


@pytest.fixture
def kaggle_dir(tmp_path):
    """Kaggle's flat layout: cat.N.jpg, dog.N.jpg of different sizes."""
    rng = np.random.default_rng(2)
    root = tmp_path / "kaggle"
    root.mkdir()
    for label, name in enumerate(["cat", "dog"]):
        for n in range(5):
            image = rng.integers(0, 256, size=(30 + n, 40, 3), dtype=np.uint8)
            Image.fromarray(image).save(root / f"{name}.{n}.jpg")
    return str(root)
