"""The callbacks every training run gets: what fills the run folder and what makes --resume work.

Each writes whole files (support.storage) into `folder.path`, read at every write: a new run folder is written under
a hidden name and published after its first finished epoch (support.folders.Destination), and the same callbacks go
on writing there. The file names are support.folders'."""
import csv
import io
import json
import os
import re

import keras

from support import storage, tensorboard_events
from support.folders import BACKUP, BACKUP_STATE, BEST_MODEL, CHECKPOINTS, HISTORY, LOGS


class EpochSeed(keras.callbacks.Callback):
    """Tells the generators which epoch starts, so shuffling and jitter follow (seed, epoch, batch)."""

    def __init__(self, generators):
        super().__init__()
        self.generators = generators

    def on_epoch_begin(self, epoch, logs=None):
        for generator in self.generators:
            generator.epoch = epoch


def read_history(run_dir):
    """The rows of run_dir/history.csv ({column: text}), or [] before the first finished epoch."""
    path = os.path.join(run_dir, HISTORY)
    return list(csv.DictReader(io.StringIO(storage.read_text(path)))) if storage.isfile(path) else []


def write_history(run_dir, rows):
    columns = list(rows[0]) if rows else []
    table = [[row.get(key, "NA") for key in columns] for row in rows]
    storage.write_csv(os.path.join(run_dir, HISTORY), [columns, *table])


class RunWriter(keras.callbacks.Callback):
    """A callback that writes into the run folder `folder.path` (a support.folders.Destination)."""

    def __init__(self, folder):
        super().__init__()
        self.folder = folder

    def inside(self, *names):
        return os.path.join(self.folder.path, *names)


class HistoryLog(RunWriter):
    """history.csv: one row per epoch, epoch counted from 0, then the logged metrics in name order.

    Keras' CSVLogger keeps the file open for appending, which object stores (gs://) cannot do and which
    leaves a torn last line after a crash; here the whole small file is rewritten after each epoch."""

    def on_train_begin(self, logs=None):
        self.rows = read_history(self.folder.path)

    def on_epoch_end(self, epoch, logs=None):
        self.rows.append({"epoch": epoch, **{key: float(logs[key]) for key in sorted(logs or {})}})
        write_history(self.folder.path, self.rows)


class EpochLogs(RunWriter):
    """logs/: each epoch's metrics for TensorBoard (`tensorboard --logdir progress`)."""

    def on_epoch_end(self, epoch, logs=None):
        tensorboard_events.write_epoch(self.inside(LOGS), epoch, logs or {})


def epoch_rank(logs):
    """How good an epoch's model is, to compare with `<`: its val_accuracy, and among equal accuracies the lower
    val_loss (None without a validation accuracy). On a small or easy validation set many epochs reach the same
    accuracy (often all of it), and the first of them, trained at a still high rate, is seldom the best model."""
    accuracy, loss = logs.get("val_accuracy"), logs.get("val_loss")
    if accuracy in (None, ""):
        return None
    return float(accuracy), -float(loss if loss not in (None, "") else "inf")


class BestModel(RunWriter):
    """best.keras: the model of the best epoch so far by epoch_rank (better than `best_so_far`, a resumed run's),
    saved whole.

    Keras' ModelCheckpoint writes the file in place: a kill during the save would leave a truncated best model that
    a resumed run, whose later epochs are not better, never rewrites."""

    def __init__(self, folder, best_so_far=None):
        super().__init__(folder)
        self.best = best_so_far

    def on_epoch_end(self, epoch, logs=None):
        rank = epoch_rank(logs or {})
        if rank is not None and (self.best is None or rank > self.best):
            self.best = rank
            storage.save_model(self.model, self.inside(BEST_MODEL))


class KeepLastCheckpoints(RunWriter):
    """Saves `epoch_NNN.keras` after every epoch and deletes the oldest beyond the newest `keep`."""

    PATTERN = re.compile(r"epoch_(\d+)\.keras$")

    def __init__(self, folder, keep):
        super().__init__(folder)
        self.keep = keep

    def saved(self):
        """Checkpoint files, oldest epoch first (by the number in the name, not by file time)."""
        found = [(int(m.group(1)), name) for name in storage.listdir(self.inside(CHECKPOINTS))
                 if (m := self.PATTERN.match(name))]
        return [self.inside(CHECKPOINTS, name) for _, name in sorted(found)]

    def on_epoch_end(self, epoch, logs=None):
        storage.save_model(self.model, self.inside(CHECKPOINTS, f"epoch_{epoch + 1:03d}.keras"))
        for old in self.saved()[:-self.keep]:
            storage.remove(old)


class Backup(RunWriter):
    """Crash-safe training state for --resume: weights with optimizer state, and the epochs done.

    Keras' BackupAndRestore rewrites its files in place, so a kill -9 during a write leaves a backup that
    cannot be read. Here each epoch's weights go to a new file, and state.json, replaced atomically once
    they are whole, names them: whenever the process dies, the state of the last finished epoch survives.
    With the first epoch's state written, a new run folder is whole: it is published (renamed into place)."""

    def on_epoch_end(self, epoch, logs=None):
        storage.makedirs(self.inside(BACKUP))
        weights = f"epoch_{epoch + 1:03d}.weights.h5"
        self.model.save_weights(self.inside(BACKUP, weights))
        state = {"epochs_done": epoch + 1, "weights": weights}
        storage.write(self.inside(BACKUP, BACKUP_STATE), json.dumps(state))
        for old in storage.listdir(self.inside(BACKUP)):
            if old.endswith(".weights.h5") and old != weights:
                storage.remove(self.inside(BACKUP, old))
        self.folder.publish()


def read_backup(run_dir):
    """The backup state of a run ({"epochs_done", "weights"}), or None before the first finished epoch."""
    path = os.path.join(run_dir, BACKUP, BACKUP_STATE)
    return json.loads(storage.read_text(path)) if storage.isfile(path) else None


def epochs_done(run_dir):
    """How many epochs the run's backup holds: 0 before the first finished one."""
    state = read_backup(run_dir)
    return state["epochs_done"] if state else 0


def restore(model, run_dir):
    """Load the backed-up weights and optimizer state into a compiled model; returns the epochs done."""
    state = read_backup(run_dir)
    if state is None:
        return 0
    model.optimizer.build(model.trainable_variables)  # its variables must exist to receive the saved ones
    model.load_weights(os.path.join(run_dir, BACKUP, state["weights"]))
    return state["epochs_done"]


def get(folder, generators=(), keep_checkpoints=3, early_stopping=0, best_so_far=None):
    """The run's callbacks, writing into `folder` (a support.folders.Destination), in the order they must act at
    the end of an epoch.

    The backup comes last: it marks an epoch done, and publishes a new run folder, only once its history row and
    models are written. `best_so_far` (on resume) keeps best.keras from being replaced by a worse epoch."""
    callbacks = [EpochSeed(generators), keras.callbacks.TerminateOnNaN(), HistoryLog(folder), EpochLogs(folder),
                 BestModel(folder, best_so_far)]
    if keep_checkpoints > 0:
        callbacks.append(KeepLastCheckpoints(folder, keep_checkpoints))
    if early_stopping > 0:
        callbacks.append(keras.callbacks.EarlyStopping(monitor="val_accuracy", mode="max", patience=early_stopping))
    return callbacks + [Backup(folder)]
