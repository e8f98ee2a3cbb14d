"""Run and deploy folders on any filesystem TensorFlow can reach: local paths, and gs:// where it is available.

Cloud training writes its runs to a bucket, so every read and write of a run or deploy folder goes through here.
Local paths use the operating system directly; a URL goes through tf.io.gfile, and only then is TensorFlow
imported (a run on local data with the JAX backend never imports it). Data sources stay local: QuickDraw files are
memory-mapped and TFRecords are read by offset. Tools that only take local files (h5py for a full-model .h5,
edgetpu_compiler) get a local copy or a local working folder that is uploaded when they are done.

Whole files are written under a temporary name and renamed into place (write, save_model): a reader, or a crash,
never sees half a file.
"""
import contextlib
import csv
import functools
import io
import os
import shutil
import tempfile
from types import SimpleNamespace

from support.errors import UserError, first_line, text

# The part of tf.io.gfile the template uses, for local paths.
LOCAL = SimpleNamespace(
    exists=os.path.exists, isdir=os.path.isdir, listdir=os.listdir, remove=os.remove, rmtree=shutil.rmtree,
    makedirs=lambda path: os.makedirs(path, exist_ok=True), GFile=open, size=os.path.getsize,
    rename=lambda source, target, overwrite=False: os.replace(source, target),
    copy=lambda source, target, overwrite=False: shutil.copyfile(source, target),
)


def is_url(path):
    return "://" in str(path)


def files(path):
    """tf.io.gfile for a URL, the operating system for a local path."""
    if not is_url(path):
        return LOCAL
    import tensorflow as tf  # only here: a remote folder (gs://, ram://) needs TensorFlow's filesystems
    return SimpleNamespace(exists=tf.io.gfile.exists, isdir=tf.io.gfile.isdir, listdir=tf.io.gfile.listdir,
                           remove=tf.io.gfile.remove, rmtree=tf.io.gfile.rmtree, makedirs=tf.io.gfile.makedirs,
                           GFile=tf.io.gfile.GFile, size=lambda p: tf.io.gfile.stat(p).length,
                           rename=tf.io.gfile.rename, copy=tf.io.gfile.copy)


def reported(function):
    """Filesystem errors as one-line UserErrors: a missing folder, an unknown scheme, a missing bucket or a denied
    permission is the user's path to fix."""

    @functools.wraps(function)
    def wrapper(path, *args, **kwargs):
        try:
            return function(path, *args, **kwargs)
        except OSError as error:
            raise UserError(f"cannot use {path}: {error.strerror or first_line(error)}") from error
        except Exception as error:
            if type(error).__module__.startswith("tensorflow"):  # tf.errors.OpError, for a URL
                raise UserError(f"cannot use {path}: {first_line(error)}") from error
            raise

    return wrapper


def absolute(path):
    """The path as it reads from anywhere: local paths made absolute, URLs as they are."""
    path = text(path)
    return path if is_url(path) else os.path.abspath(path)


@reported
def exists(path):
    return files(path).exists(path)


@reported
def isdir(path):
    return files(path).isdir(path)


@reported
def isfile(path):
    return files(path).exists(path) and not files(path).isdir(path)


@reported
def listdir(path):
    return files(path).listdir(path)


@reported
def makedirs(path):
    files(path).makedirs(path)


@reported
def remove(path):
    files(path).remove(path)


@reported
def rmtree(path):
    if files(path).exists(path):
        files(path).rmtree(path)


@reported
def size(path):
    return files(path).size(path)


@reported
def read_text(path):
    with files(path).GFile(path, "r") as f:
        return f.read()


@reported
def read_bytes(path):
    with files(path).GFile(path, "rb") as f:
        return f.read()


def partial_name(path):
    """The temporary name a file is written under before it is renamed into place: `best.partial.keras` for
    `best.keras` (Keras chooses the format by the suffix, so it stays last)."""
    stem, suffix = os.path.splitext(path)
    return f"{stem}.partial{suffix}"


@reported
def written_whole(path, write):
    """Call write(temporary path), then rename the file into place; a failure removes the temporary file."""
    fs = files(path)
    if os.path.dirname(path):
        fs.makedirs(os.path.dirname(path))
    temporary = partial_name(path)
    try:
        write(temporary)
        fs.rename(temporary, path, overwrite=True)
    except BaseException:
        if fs.exists(temporary):
            fs.remove(temporary)
        raise


def write(path, data):
    """Write text or bytes whole, its folder made first if missing."""
    def to(temporary):
        with files(path).GFile(temporary, "wb" if isinstance(data, bytes) else "w") as f:
            f.write(data)
    written_whole(path, to)


def save_model(model, path):
    """model.save, whole: a kill during the save leaves the previous file as it was."""
    written_whole(path, model.save)


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


def upload(folder, url, last=None):
    """Copy a local folder's tree to `url`; the file named `last`, if any, after every other one."""
    url = url.rstrip("/")
    pending = []
    for root, _, names in os.walk(folder):
        relative = os.path.relpath(root, folder)
        target = url if relative == "." else f"{url}/{relative.replace(os.sep, '/')}"
        makedirs(target)
        pending += [(f"{target}/{name}", os.path.join(root, name)) for name in names]
    for destination, source in sorted(pending, key=lambda pair: os.path.basename(pair[1]) == last):
        put(destination, source)


@reported
def put(url, local_path):
    files(url).copy(local_path, url, overwrite=True)


@reported
def fetch(url, local_path):
    files(url).copy(url, local_path, overwrite=True)
