"""The callbacks every training run gets: what fills the run folder and what makes --resume work."""
import csv
import io
import json
import os
import re

import keras

from support import storage

BEST_MODEL = "best.keras"
HISTORY = "history.csv"
BACKUP = "backup"
CHECKPOINTS = "checkpoints"
LOGS = "logs"


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


class HistoryLog(keras.callbacks.Callback):
    """history.csv: one row per epoch, epoch counted from 0, then the logged metrics in name order.

    Keras' CSVLogger keeps the file open for appending, which object stores (gs://) cannot do and which
    leaves a torn last line after a crash; here the whole small file is rewritten after each epoch."""

    def __init__(self, run_dir):
        super().__init__()
        self.run_dir = run_dir

    def on_train_begin(self, logs=None):
        self.rows = read_history(self.run_dir)

    def on_epoch_end(self, epoch, logs=None):
        self.rows.append({"epoch": epoch, **{key: float(logs[key]) for key in sorted(logs or {})}})
        write_history(self.run_dir, self.rows)


class KeepLastCheckpoints(keras.callbacks.Callback):
    """Saves `epoch_NNN.keras` after every epoch and deletes the oldest beyond the newest `keep`."""

    PATTERN = re.compile(r"epoch_(\d+)\.keras$")

    def __init__(self, folder, keep):
        super().__init__()
        self.folder, self.keep = folder, keep

    def saved(self):
        """Checkpoint files, oldest epoch first (by the number in the name, not by file time)."""
        found = [(int(m.group(1)), name) for name in storage.listdir(self.folder)
                 if (m := self.PATTERN.match(name))]
        return [os.path.join(self.folder, name) for _, name in sorted(found)]

    def on_epoch_end(self, epoch, logs=None):
        storage.makedirs(self.folder)
        self.model.save(os.path.join(self.folder, f"epoch_{epoch + 1:03d}.keras"))
        for old in self.saved()[:-self.keep]:
            storage.remove(old)


class Backup(keras.callbacks.Callback):
    """Crash-safe training state for --resume: weights with optimizer state, and the epochs done.

    Keras' BackupAndRestore rewrites its files in place, so a kill -9 during a write leaves a backup that
    cannot be read. Here each epoch's weights go to a new file, and state.json, replaced atomically once
    they are whole, names them: whenever the process dies, the state of the last finished epoch survives."""

    STATE = "state.json"

    def __init__(self, folder):
        super().__init__()
        self.folder = folder

    def on_epoch_end(self, epoch, logs=None):
        storage.makedirs(self.folder)
        weights = f"epoch_{epoch + 1:03d}.weights.h5"
        self.model.save_weights(os.path.join(self.folder, weights))
        state = {"epochs_done": epoch + 1, "weights": weights}
        storage.write(os.path.join(self.folder, self.STATE), json.dumps(state))
        for old in storage.listdir(self.folder):
            if old.endswith(".weights.h5") and old != weights:
                storage.remove(os.path.join(self.folder, old))


def read_backup(run_dir):
    """The backup state of a run ({"epochs_done", "weights"}), or None before the first finished epoch."""
    path = os.path.join(run_dir, BACKUP, Backup.STATE)
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


def get(run_dir, generators=(), keep_checkpoints=3, early_stopping=0, best_so_far=None):
    """The run's callbacks, in the order they must act at the end of an epoch.

    The backup comes last: it marks an epoch done only once its history row and checkpoints are written.
    `best_so_far` (on resume) keeps best.keras from being replaced by a worse epoch."""
    callbacks = [
        EpochSeed(generators),
        keras.callbacks.TerminateOnNaN(),
        HistoryLog(run_dir),
        keras.callbacks.ModelCheckpoint(os.path.join(run_dir, BEST_MODEL), monitor="val_accuracy", mode="max",
                                        save_best_only=True, initial_value_threshold=best_so_far),
        keras.callbacks.TensorBoard(os.path.join(run_dir, LOGS)),
    ]
    if keep_checkpoints > 0:
        callbacks.append(KeepLastCheckpoints(os.path.join(run_dir, CHECKPOINTS), keep_checkpoints))
    if early_stopping > 0:
        callbacks.append(keras.callbacks.EarlyStopping(monitor="val_accuracy", mode="max", patience=early_stopping))
    callbacks.append(Backup(os.path.join(run_dir, BACKUP)))
    return callbacks
