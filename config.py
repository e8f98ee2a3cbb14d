"""The model/loss/optimizer registries, every setting declared once (SETTINGS), and a run's config.json.

Add a model: write models/<name>.py with construct(input_shape, num_classes, **kwargs) and its SPEC (see
models/__init__.py), and add its name to MODELS. Add a loss: a keras.losses.Loss in loss.py and one line in LOSSES.
Add a setting: one Setting below; train.py's flag, its --help, config.json and tune.py's search follow from it
(and `before` gives the value that run folders from before it trained with).
"""
import argparse
import copy
import datetime
import json
import os
import platform
import sys
from dataclasses import dataclass
from typing import Any, Callable, Collection, Optional

import keras
import numpy as np

import loss
import models
from reader import FORMATS
from support import class_weight, curation, distribute, doodles, storage
from support.errors import (UserError, comma_list, image_size, json_object, non_negative_float, non_negative_int,
                            positive_float, positive_int, ratio)

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
DATA_TOOLS = ("train", "doctor")  # the tools that read --data and split it as training does
CONFIG_FILE = "config.json"
AS_DEFAULT = object()  # Setting.before of a setting whose default is what runs from before it trained with


@dataclass(frozen=True)
class Setting:
    """One setting, declared once: its flag (--name), type, default, help and the tools that take it. The --help
    of those tools, train.py's defaults, config.json (what a run records), tune.py's search and the upgrade of an
    older run folder all come from here."""

    name: str
    default: Any
    help: str
    type: Optional[Callable] = None  # argparse's type; a bool default makes --name/--no-name
    choices: Optional[Collection] = None  # a registry (dict) stays live: a model registered later is a choice
    nargs: Optional[str] = None
    metavar: Optional[str] = None
    shown: Optional[str] = None  # how --help names the default, where the value itself says little
    tools: tuple = ("train",)  # the commands that take it as a flag (tune.py passes train.py's on)
    recorded: bool = True  # kept in a run's config.json
    required: bool = False  # a config.json without it is incomplete (what rebuilds the run)
    searchable: bool = True  # tune.py may search it
    before: Any = AS_DEFAULT  # the value a run folder from before the setting existed trained with

    def value_before(self):
        return self.default if self.before is AS_DEFAULT else self.before

    def flag_help(self):
        return f"{self.help} (default: {self.shown or self.default})"


# Every setting of a run (config.json), and the flags several tools share, in --help's order.
SETTINGS = (
    Setting("data", [SAMPLE_DATA], "data sources: folders, files or globs", nargs="+", searchable=False,
            shown=f"synthetic doodles in {SAMPLE_DATA}, written on first use", required=True, tools=DATA_TOOLS),
    Setting("data_format", "auto", "format of --data", choices=("auto", *FORMATS), searchable=False,
            required=True, tools=DATA_TOOLS),
    Setting("val_data", None, "a separate validation source; replaces the split of --data", nargs="+",
            searchable=False, shown="the split of --data", tools=DATA_TOOLS),
    Setting("train_ratio", 0.8, "share of --data that trains", type=ratio, required=True, tools=DATA_TOOLS),
    Setting("max_per_class", None, "cap on items per class", type=positive_int, shown="all", tools=DATA_TOOLS),
    Setting("classes", None, "comma-separated classes to use", type=comma_list, searchable=False, shown="all",
            tools=DATA_TOOLS),
    Setting("exclude", None, "leave these items out of training and validation: doctor.py's label_issues.csv or "
            "duplicates.csv (their path column), or a file of paths or ids, one a line", type=curation.read_exclude,
            metavar="FILE", searchable=False, shown="none", tools=DATA_TOOLS),
    Setting("split_groups", None, "keep copies on one side of the split: doctor.py's duplicates.csv (each "
            "connected set of copies splits as one item)", type=curation.read_groups, metavar="DUPLICATES_CSV",
            searchable=False, shown="none", tools=DATA_TOOLS),
    Setting("save_to", "progress/run", "run folder to write", searchable=False),
    Setting("model", "quickdraw_cnn", "model to train, with its default input: " + ", ".join(
        f"{name} {'x'.join(map(str, spec.input_size))}x{spec.channels}"
        + (f" ({spec.size_note()} with --model_kwargs)" if spec.size_note() else "")
        for name, spec in MODELS.items()), choices=MODELS, searchable=False, required=True),
    Setting("model_kwargs", {}, "extra model arguments as JSON, e.g. '{\"alpha\": 0.5}'", type=json_object,
            searchable=False, shown="none", required=True),
    Setting("input_size", None, "model input H,W", type=image_size, shown="the model's own, listed at --model",
            required=True),
    Setting("channels", None, "input channels", type=int, choices=(1, 3), shown="the model's own", required=True),
    Setting("num_epochs", 10, "epochs to train", type=positive_int, required=True),
    Setting("batch_size", 128, "batch size", type=positive_int, required=True),
    Setting("learning_rate", 1e-3, "learning rate", type=positive_float, required=True),
    Setting("lr_schedule", "cosine", "learning rate over the run; cosine decays to 0, which steadies the last "
            "epochs", choices=SCHEDULES, before="constant"),
    Setting("weight_decay", 0.0, "decoupled weight decay per step, times the learning rate; 0 = none",
            type=non_negative_float),
    Setting("from_ckpt", None, "start from a run folder's best.keras or a .keras/.h5 model: every layer whose name "
            "and weight shapes match (so another class count is fine); or a .weights.h5 of the same model",
            type=storage.absolute, searchable=False, shown="none"),
    Setting("freeze_epochs", 0, "train only the model's head for this many epochs, at --head_lr_factor times the "
            "learning rate, on the frozen base's features computed once (--jitter starts after them), then every "
            "layer at --unfreeze_lr_factor times it", type=non_negative_int),
    # A new head on a frozen base takes larger steps than a whole model; runs from before this setting did not.
    Setting("head_lr_factor", 10.0, "learning rate factor of the frozen epochs", type=positive_float, before=1.0),
    # Few drawings of new classes: 0.1 keeps the base too still (README: "Transfer learning").
    Setting("unfreeze_lr_factor", 1.0, "learning rate factor once the base is unfrozen", type=ratio),
    Setting("optimizer", "adam", "optimizer", choices=OPTIMIZERS, required=True),
    Setting("loss", "crossentropy", "loss", choices=LOSSES, required=True),
    Setting("class_weight", None, "weight each training item's loss by its class: 'balanced' (the inverse of the "
            "class's share of the training items) or a JSON object of class name: weight, e.g. '{\"cat\": 2.0}' "
            "(the classes it leaves out weigh 1)", type=class_weight.parse, metavar="balanced|JSON",
            shown="every item weighs the same"),
    Setting("jitter", False, "imgaug augmentation of training images (after any --freeze_epochs)"),
    Setting("early_stopping", 0, "patience in epochs, 0 = off", type=non_negative_int),
    Setting("keep_checkpoints", 3, "how many per-epoch checkpoints to keep", type=non_negative_int),
    Setting("seed", 0, "seed of the split, shuffling and jitter", type=int, required=True, tools=DATA_TOOLS),
    Setting("workers", 1, "parallel batch loaders", type=positive_int),
    Setting("cache_mb", 1024, "memory for prepared images, per split; 0 = decode every epoch",
            type=non_negative_int, before=0),
    Setting("use_multiprocessing", False, "load batches in processes rather than threads"),
    Setting("mixed_precision", False, "float16 compute with float32 weights; speeds up GPUs only"),
    Setting("distribute", "none", "data_parallel: replicate over all devices of all processes (JAX backend; see "
            "README)", choices=distribute.STRATEGIES, searchable=False),
    # What a run records of itself, not a flag.
    Setting("class_names", None, "the classes, in the order of the model's outputs", tools=(), required=True),
    Setting("dtype_policy", "float32", "the Keras dtype policy the run trained in", tools=()),
    Setting("num_processes", 1, "processes that trained the run together", tools=()),
    Setting("versions", {}, "the versions of Python, TensorFlow, Keras and NumPy it trained with", tools=()),
    Setting("started", "", "when it started (UTC, ISO 8601)", tools=()),
    # Flags of other tools, shared.
    Setting("eval_samples", 1000, "how many of the run's validation images (a seeded sample, the same in deploy.py "
            "and evaluate.py) are scored; evaluate.py --data scores all its items unless this is given",
            type=positive_int, tools=("deploy", "evaluate"), recorded=False),
)
RECORDED = tuple(s for s in SETTINGS if s.recorded)
DEFAULTS = {s.name: s.default for s in SETTINGS}
TRAINING = {s.name: s.default for s in SETTINGS if "train" in s.tools}  # what train.py's flags set
SEARCHABLE = tuple(s.name for s in SETTINGS if s.searchable and "train" in s.tools)


def add_flags(parser, tool):
    """The declared settings `tool` takes, as flags. A flag not given is None, so that the tool can tell it from
    one given (train.py fills in the default, or a resumed run's own value)."""
    for s in SETTINGS:
        if tool not in s.tools:
            continue
        if isinstance(s.default, bool):
            parser.add_argument(f"--{s.name}", action=argparse.BooleanOptionalAction, help=s.flag_help())
        else:
            parser.add_argument(f"--{s.name}", type=s.type, choices=s.choices, nargs=s.nargs, metavar=s.metavar,
                                help=s.flag_help())


def given_or_default(args, name):
    """A shared flag's value: as given, or as declared."""
    value = getattr(args, name)
    return DEFAULTS[name] if value is None else value


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


def is_run_folder(folder):
    return storage.isfile(os.path.join(folder, CONFIG_FILE))


def read(run_dir):
    """The settings of a run folder, upgraded: a setting newer than the run gets the value the run trained with,
    said in one line. A missing, malformed, incomplete or unknown-model config.json is a UserError."""
    path = os.path.join(run_dir, CONFIG_FILE)
    if not is_run_folder(run_dir):
        raise UserError(f"{run_dir} is not a run folder: no {CONFIG_FILE} in it")
    try:
        settings = json.loads(storage.read_text(path))
    except ValueError as error:
        raise UserError(f"cannot read {path}: {error}") from error
    if not isinstance(settings, dict):
        raise UserError(f"cannot read {path}: not a JSON object")
    absent = [s for s in RECORDED if s.name not in settings]
    missing = [s.name for s in absent if s.required]
    if missing:
        raise UserError(f"{path} is incomplete: missing {', '.join(missing)}")
    if settings["model"] not in MODELS:
        raise UserError(f"{path} names model '{settings['model']}', which is not registered; "
                        f"registered: {', '.join(MODELS)}")
    if absent:
        print(f"note: {run_dir} is from before {', '.join(s.name for s in absent)}; read as the values it trained "
              f"with: {', '.join(f'{s.name} {s.value_before()}' for s in absent)}", file=sys.stderr)
    return {**settings, **{s.name: copy.deepcopy(s.value_before()) for s in absent}}


def build_model(settings):
    """The run's model, constructed from its settings (model name, kwargs, input size, classes)."""
    shape = (*settings["input_size"], settings["channels"])
    try:
        return MODELS[settings["model"]].construct(shape, len(settings["class_names"]), **settings["model_kwargs"])
    except (ValueError, TypeError) as error:
        raise UserError(f"cannot build {settings['model']} for input {shape}: {error}") from error
