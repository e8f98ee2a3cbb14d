"""Run and deploy folders: the files the template writes in each, how a tool tells one, and how one is replaced.

train.py and deploy.py delete with --overwrite, so they delete only what the template could have written: a folder
may be replaced when it is empty, or holds its kind's marker and nothing but the names its kind declares below.
Anything else in it is a stranger (a file of the user's, a link, a folder of the wrong name): it is named in one
`error:` line and nothing is deleted.

A new folder is written under a hidden name beside its place (`.NAME.incoming`) and renamed into place only once it
is whole: a run folder after its first finished epoch (from then on --resume continues it there), a deploy folder
after its report. The old folder is removed only then, so a run or deploy that fails, is interrupted or killed
before leaves it as it was. An object store (gs://) cannot rename a folder: there the old folder is removed when
writing starts and the new one is written in place.
"""
import contextlib
import fnmatch
import os
import shutil
import tempfile
from dataclasses import dataclass

from support import storage
from support.errors import UserError, first_of
from support.labels import LABELS

FILE = None  # an entry that is a file; a dict is a folder and what may be in it

# A run folder (train.py --save_to).
CONFIG = "config.json"
BEST_MODEL = "best.keras"
HISTORY = "history.csv"
CURVES = "curves.png"
CHECKPOINTS = "checkpoints"
BACKUP = "backup"
BACKUP_STATE = "state.json"
LOGS = "logs"
EVALUATION = "evaluation"  # evaluate.py's default output, one folder per model file
METRICS, MATRIX_CSV, MATRIX_PNG = "metrics.json", "confusion_matrix.csv", "confusion_matrix.png"

# A deploy folder (deploy.py --save_to).
REPORT = "deploy_report.json"  # written last: a deploy folder without it is incomplete
KERAS_H5 = "model.h5"
INT8_MODEL = "model.tflite"
EDGETPU_MODEL, EDGETPU_LOG = "model_edgetpu.tflite", "model_edgetpu.log"  # edgetpu_compiler's names for model.tflite
SAVED_MODEL = "saved_model"  # SAVED_MODEL/<version>/

# What an interrupted write leaves: storage's temporary file names, and a staged or replaced folder (below).
TEMPORARY = ("*.tmp", "*.partial", "*.partial.*", ".*.incoming", ".*.replaced")
EVENTS = {"events.out.tfevents.*": FILE}  # TensorBoard's event files


@dataclass(frozen=True)
class Kind:
    """A kind of folder the template writes: which tool, the files that mark one, and everything it may hold."""

    name: str
    tool: str
    markers: tuple
    entries: dict


RUN = Kind("run folder", "train.py", (CONFIG,), {
    CONFIG: FILE, BEST_MODEL: FILE, HISTORY: FILE, CURVES: FILE,
    CHECKPOINTS: {"epoch_*.keras": FILE},
    BACKUP: {BACKUP_STATE: FILE, "epoch_*.weights.h5": FILE},
    LOGS: {"train": EVENTS, "validation": EVENTS},
    EVALUATION: {"*": {METRICS: FILE, MATRIX_CSV: FILE, MATRIX_PNG: FILE}},
})
DEPLOY = Kind("deploy folder", "deploy.py", (REPORT, LABELS), {
    LABELS: FILE, REPORT: FILE, KERAS_H5: FILE, INT8_MODEL: FILE, EDGETPU_MODEL: FILE, EDGETPU_LOG: FILE,
    SAVED_MODEL: {"[0-9]*": {"saved_model.pb": FILE, "fingerprint.pb": FILE, "variables": {"variables.*": FILE},
                             "assets": {LABELS: FILE}}},
})


def holds(folder, name):
    return storage.isfile(os.path.join(folder, name))


def is_run_folder(folder):
    return holds(folder, CONFIG)


def is_deploy_folder(folder):
    return not is_run_folder(folder) and any(holds(folder, marker) for marker in DEPLOY.markers)


def check_complete_deploy_folder(folder):
    """A deploy folder is whole once its report is there (deploy.py writes it last)."""
    if not holds(folder, REPORT):
        raise UserError(f"{folder} is an incomplete deploy folder: no {REPORT}, which deploy.py writes last; deploy "
                        f"the run again (with --overwrite)")


def strangers(kind, folder):
    """What `folder` holds that `kind`'s tool does not write, as paths relative to it (links are strangers too)."""
    found = []

    def walk(path, entries, relative):
        for name in sorted(storage.listdir(path)):
            name = name.rstrip("/")  # some filesystems list a folder as "name/"
            inner, shown = os.path.join(path, name), os.path.join(relative, name)
            pattern = next((p for p in entries if fnmatch.fnmatchcase(name, p)), None)
            is_folder = storage.isdir(inner)
            if pattern is None and any(fnmatch.fnmatchcase(name, t) for t in TEMPORARY):
                continue
            if pattern is None or os.path.islink(inner) or is_folder != isinstance(entries[pattern], dict):
                found.append(shown + ("/" if is_folder else ""))
            elif is_folder:
                walk(inner, entries[pattern], shown)

    walk(folder, kind.entries, "")
    return found


def check_replaceable(kind, folder):
    """Refuse, before anything is written, to replace a folder that holds anything `kind`'s tool did not write."""
    if not storage.exists(folder):
        return
    if not storage.isdir(folder):
        raise UserError(f"refusing to overwrite {folder}: it is a file, not a {kind.name}")
    if storage.listdir(folder) and not any(holds(folder, marker) for marker in kind.markers):
        raise UserError(f"refusing to overwrite {folder}: it is not a {kind.name} (no {' or '.join(kind.markers)}); "
                        f"choose another --save_to")
    odd = strangers(kind, folder)
    if odd:
        raise UserError(f"refusing to overwrite {folder}: {kind.tool} did not write {first_of(odd, 3)}; move "
                        f"{'it' if len(odd) == 1 else 'them'} out of the folder, or choose another --save_to")


def beside(folder, label):
    """A hidden name next to `folder`: where its replacement is written, or the old one waits to be removed."""
    parent, name = os.path.split(os.path.normpath(folder))
    return os.path.join(parent, f".{name}.{label}")


class Destination:
    """Where a tool writes a folder: `path` (a hidden staging folder) until publish(), then `final`. Writers read
    `path` at every write, so the same writer goes on writing after the folder is published."""

    def __init__(self, final, path=None):
        self.final = final
        self.path = path or final

    @classmethod
    def new(cls, final):
        """A folder to write at `final` (checked replaceable): staged beside it, or in place on an object store."""
        if storage.is_url(final):
            storage.rmtree(final)  # an object store has no folder rename: the old folder goes now
            storage.makedirs(final)
            return cls(final)
        staging = beside(final, "incoming")
        shutil.rmtree(staging, ignore_errors=True)  # a staging folder that a killed run left
        os.makedirs(staging)
        return cls(final, staging)

    @property
    def published(self):
        return self.path == self.final

    def publish(self):
        """Rename the staged folder into place and only then remove the old one."""
        if self.published:
            return
        replaced = beside(self.final, "replaced")
        shutil.rmtree(replaced, ignore_errors=True)
        if os.path.exists(self.final):
            os.rename(self.final, replaced)
        os.rename(self.path, self.final)
        shutil.rmtree(replaced, ignore_errors=True)
        self.path = self.final

    def discard(self):
        """Remove what was staged, for a write that failed before it was whole; the old folder stays."""
        if not self.published:
            shutil.rmtree(self.path, ignore_errors=True)


@contextlib.contextmanager
def building(final, last=None):
    """A local folder to write a whole folder in, which becomes `final` when the block ends without an error and is
    discarded otherwise: staged and renamed into place on a local disk; on an object store, uploaded with the file
    `last` after every other one, so a reader never finds it beside an incomplete folder."""
    if storage.is_url(final):
        with tempfile.TemporaryDirectory() as local:
            yield local
            storage.rmtree(final)
            storage.upload(local, final, last=last)
        return
    destination = Destination.new(final)
    try:
        yield destination.path
    except BaseException:
        destination.discard()
        raise
    destination.publish()
