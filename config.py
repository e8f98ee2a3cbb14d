"""Defaults, the model/loss/optimizer registries, and a run's config.json.

Add a model: write models/<name>.py with construct(input_shape, num_classes, **kwargs) and its SPEC (see
models/__init__.py), and add its name to MODELS. Add a loss: a keras.losses.Loss in loss.py and one line in LOSSES.
"""
import datetime
import json
import os
import platform

import keras
import numpy as np

import loss
import models
from support import doodles, storage
from support.errors import UserError

# name -> the ModelSpec that models/<name>.py declares; --help lists them in this order.
MODELS = models.registry([
    "quickdraw_cnn",
    "mobilenet_v1",
    "mobilenet_v2",
    "efficientnet_lite",
    "photo_cnn",
    "logistic",
])

LOSSES = {
    "crossentropy": keras.losses.SparseCategoricalCrossentropy,
    "label_smoothing": loss.LabelSmoothingCrossentropy,
    "focal": loss.FocalLoss,
}

OPTIMIZERS = {
    "adam": keras.optimizers.Adam,
    "sgd": keras.optimizers.SGD,
    "rmsprop": keras.optimizers.RMSprop,
}

SCHEDULES = ("cosine", "constant")  # cosine: decays to 0 over the run, which steadies the last epochs

SAMPLE_DATA = doodles.FOLDER

DEFAULTS = {
    "data": [SAMPLE_DATA],
    "data_format": "auto",
    "val_data": None,
    "train_ratio": 0.8,
    "max_per_class": None,
    "classes": None,
    "save_to": "progress/run",
    "model": "quickdraw_cnn",
    "model_kwargs": {},
    "input_size": None,  # None: the model's own (its SPEC)
    "channels": None,
    "num_epochs": 10,
    "batch_size": 128,
    "learning_rate": 1e-3,
    "lr_schedule": "cosine",
    "weight_decay": 0.0,
    "from_ckpt": None,
    "freeze_epochs": 0,
    "head_lr_factor": 10.0,  # a new head on a frozen base takes larger steps than a whole model
    "unfreeze_lr_factor": 1.0,  # few drawings of new classes: 0.1 keeps the base too still (README table)
    "optimizer": "adam",
    "loss": "crossentropy",
    "class_weight": None,  # every item weighs the same; "balanced" or {class name: weight} (class_weight.py)
    "jitter": False,
    "early_stopping": 0,
    "keep_checkpoints": 3,
    "seed": 0,
    "workers": 1,
    "use_multiprocessing": False,
    "mixed_precision": False,
    "distribute": "none",
    "cache_mb": 1024,
}

CONFIG_FILE = "config.json"
REQUIRED = ("model", "model_kwargs", "input_size", "channels", "class_names", "data", "data_format",
            "seed", "train_ratio", "loss", "optimizer", "learning_rate", "num_epochs", "batch_size")


def versions():
    import tensorflow as tf
    return {"python": platform.python_version(), "tensorflow": tf.__version__, "keras": keras.__version__,
            "numpy": np.__version__, "backend": keras.backend.backend()}


def save(run_dir, settings):
    """Write config.json: the settings plus library versions and the start time."""
    record = dict(settings, versions=versions(),
                  started=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))
    storage.write(os.path.join(run_dir, CONFIG_FILE), json.dumps(record, indent=2))
    return record


def read(run_dir):
    """The settings of a run folder; a missing, malformed or unknown-model config.json is a UserError."""
    path = os.path.join(run_dir, CONFIG_FILE)
    if not storage.isfile(path):
        raise UserError(f"{run_dir} is not a run folder: no {CONFIG_FILE} in it")
    try:
        settings = json.loads(storage.read_text(path))
    except ValueError as error:
        raise UserError(f"cannot read {path}: {error}") from error
    missing = [key for key in REQUIRED if not isinstance(settings, dict) or key not in settings]
    if missing:
        raise UserError(f"{path} is incomplete: missing {', '.join(missing)}")
    if settings["model"] not in MODELS:
        raise UserError(f"{path} names model '{settings['model']}', which is not registered; "
                        f"registered: {', '.join(MODELS)}")
    return settings


def build_model(settings):
    """The run's model, constructed from its settings (model name, kwargs, input size, classes)."""
    shape = (*settings["input_size"], settings["channels"])
    try:
        return MODELS[settings["model"]].construct(shape, len(settings["class_names"]), **settings["model_kwargs"])
    except (ValueError, TypeError) as error:
        raise UserError(f"cannot build {settings['model']} for input {shape}: {error}") from error
