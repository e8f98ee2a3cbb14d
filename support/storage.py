"""Run and deploy folders on any filesystem TensorFlow can reach: local paths, and gs:// where it is available.

Cloud training writes its runs to a bucket, so every read and write of a run or deploy folder goes through
tf.io.gfile, here. Data sources stay local: QuickDraw files are memory-mapped and TFRecords are read by offset.
Tools that only take local files (h5py for a full-model .h5, edgetpu_compiler) get a local copy or a local
working folder that is uploaded when they are done.
"""
import contextlib
import csv
import functools
import io
import os
import tempfile

import tensorflow as tf

from support.errors import UserError, first_line

gfile = tf.io.gfile


def reported(function):
    """gfile's errors as one-line UserErrors: an unknown scheme, a missing bucket or a denied permission is
    the user's path to fix."""

    @functools.wraps(function)
    def wrapper(path, *args, **kwargs):
        try:
            return function(path, *args, **kwargs)
        except tf.errors.OpError as error:
            raise UserError(f"cannot use {path}: {first_line(error)}") from error

    return wrapper


def is_url(path):
    return "://" in str(path)


def absolute(path):
    """The path as it reads from anywhere: local paths made absolute, URLs as they are."""
    return str(path) if is_url(path) else os.path.abspath(path)


exists, isdir, listdir, makedirs, remove = map(reported, (gfile.exists, gfile.isdir, gfile.listdir, gfile.makedirs,
                                                     gfile.remove))


@reported
def isfile(path):
    return gfile.exists(path) and not gfile.isdir(path)


@reported
def rmtree(path):
    if gfile.exists(path):
        gfile.rmtree(path)


@reported
def size(path):
    return gfile.stat(path).length


@reported
def read_text(path):
    with gfile.GFile(path, "r") as f:
        return f.read()


@reported
def read_bytes(path):
    with gfile.GFile(path, "rb") as f:
        return f.read()


@reported
def write(path, data):
    """Write text or bytes whole, through a temporary name: a reader, or a crash, never sees half a file.
    Its folder is made first if missing."""
    temporary = f"{path}.tmp"
    if os.path.dirname(path):
        gfile.makedirs(os.path.dirname(path))
    try:
        with gfile.GFile(temporary, "wb" if isinstance(data, bytes) else "w") as f:
            f.write(data)
        gfile.rename(temporary, path, overwrite=True)
    except BaseException:
        if gfile.exists(temporary):
            gfile.remove(temporary)
        raise


def write_csv(path, rows):
    """Rows of cells, the header first, as one CSV file written whole."""
    text = io.StringIO()
    csv.writer(text).writerows(rows)
    write(path, text.getvalue())


@contextlib.contextmanager
def local_file(path):
    """A local path with the file's content: the path itself, or a temporary copy of a remote file."""
    if not is_url(path):
        yield path
        return
    with tempfile.TemporaryDirectory() as folder:
        local = os.path.join(folder, os.path.basename(path))
        fetch(path, local)
        yield local


@contextlib.contextmanager
def local_folder(path):
    """A local folder to write `path`'s files in: the folder itself, or a temporary one uploaded to the
    remote `path` when the block ends (also when it fails, so what was written can be looked at)."""
    if not is_url(path):
        makedirs(path)
        yield path
        return
    with tempfile.TemporaryDirectory() as folder:
        try:
            yield folder
        finally:
            upload(folder, path)


def upload(folder, url):
    """Copy a local folder's tree to `url`."""
    url = url.rstrip("/")
    for root, _, names in os.walk(folder):
        relative = os.path.relpath(root, folder)
        target = url if relative == "." else f"{url}/{relative.replace(os.sep, '/')}"
        makedirs(target)
        for name in names:
            put(f"{target}/{name}", os.path.join(root, name))


@reported
def put(url, local_path):
    gfile.copy(local_path, url, overwrite=True)


@reported
def fetch(url, local_path):
    gfile.copy(url, local_path, overwrite=True)
