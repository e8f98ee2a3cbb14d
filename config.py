"""Every setting declared once (SETTINGS), the typed run configuration made from them (RunConfig), the model, loss
and optimizer registries, and a run's config.json.

Add a model: write models/<name>.py with construct(input_shape, num_classes, **kwargs) and its SPEC (see
models/__init__.py), and add its name to MODELS. Add a loss: a keras.losses.Loss in loss.py and one line in LOSSES.
Add a setting: one Setting below; its flag in every tool it names, --help, RunConfig's attribute, config.json,
tune.py's search (when it declares a `space`) and the upgrade of older run folders (`before`) follow from it.

    run = config.RunConfig(data=["photos/"], model="efficientnet_lite", num_epochs=8)   # checked here, at once
    run.batch_size                                                                       # 128, the declared default
"""
import argparse
import copy
import dataclasses
import datetime
import difflib
import importlib
import json
import os
import platform
import sys
from dataclasses import dataclass
from typing import Any, Callable, Collection, Optional

import models
from reader import FORMATS
from support import class_weight, curation, distribute, doodles, folders, storage
from support.errors import (UserError, comma_list, image_size, integer, json_object, non_negative_float,
                            non_negative_int, positive_float, positive_int, ratio, text)

# name -> the ModelSpec that models/<name>.py declares; --help lists them in this order.
MODELS = models.registry([
    "quickdraw_cnn",
    "mobilenet_v1",
    "mobilenet_v2",
    "efficientnet_lite",
    "photo_cnn",
    "logistic",
])

# name -> the class, as module.Class: imported when a run compiles its model, so that --help needs no Keras.
LOSSES = {
    "crossentropy": "keras.losses.SparseCategoricalCrossentropy",
    "label_smoothing": "loss.LabelSmoothingCrossentropy",
    "focal": "loss.FocalLoss",
}

OPTIMIZERS = {
    "adam": "keras.optimizers.Adam",
    "sgd": "keras.optimizers.SGD",
    "rmsprop": "keras.optimizers.RMSprop",
}

SCHEDULES = ("cosine", "constant")  # cosine: decays to 0 over the run, which steadies the last epochs
JITTER_KINDS = ("affine", "crops")  # datagen.augmenter's
DTYPE_POLICIES = ("float32", "mixed_float16")

SAMPLE_DATA = doodles.FOLDER
AS_DEFAULT = object()  # Setting.before of a setting whose default is what runs from before it trained with


@dataclass(frozen=True)
class Setting:
    """One setting, declared once: its flag (--name) in the tools that take it, its value type, default and help.
    The --help of those tools, RunConfig (what a run records in config.json), tune.py's search and the upgrade of an
    older run folder all come from here."""

    name: str
    default: Any
    help: str
    type: Optional[Callable] = None  # takes a flag's text or a value (support/errors.py); None: a bool flag
    choices: Optional[Collection] = None  # a registry (dict) stays live: a model registered later is a choice
    nargs: Optional[str] = None  # "+": a list of values of `type`
    metavar: Optional[str] = None
    shown: Optional[str] = None  # how --help names the default, where the value itself says little
    tools: tuple = ("train",)  # the commands that take it as a flag (tune.py passes train.py's on)
    recorded: bool = True  # an attribute of RunConfig, kept in a run's config.json
    required: bool = False  # a config.json without it is incomplete (what rebuilds the run)
    space: Optional[dict] = None  # tune.py's range or choices for it; a setting without one is never searched
    before: Any = AS_DEFAULT  # the value a run folder from before the setting existed trained with

    def value_before(self):
        return self.default if self.before is AS_DEFAULT else self.before

    def flag_help(self):
        return f"{self.help} (default: {self.shown or self.default})"

    def check(self, value):
        """`value` (a flag's text, from config.json or from Python) in the form the setting holds; a wrong one is a
        UserError that names the setting."""
        try:
            return self.checked(value)
        except (argparse.ArgumentTypeError, TypeError, ValueError) as error:
            raise UserError(f"{self.name}: {error}") from error

    def checked(self, value):
        if value is None:
            if self.default is None:
                return None
            raise ValueError(f"must be given (default: {self.shown or self.default})")
        if self.type is None:
            if not isinstance(value, bool):
                raise ValueError(f"must be true or false, got {value!r}")
            return value
        if self.nargs:
            items = [value] if isinstance(value, str) else value
            if not isinstance(items, (list, tuple)) or not items:
                raise ValueError(f"must be a non-empty list, got {value!r}")
            return [self.one_value(item) for item in items]
        return self.one_value(value)

    def one_value(self, value):
        value = self.type(value)
        if self.choices is not None and value not in self.choices:
            raise ValueError(f"must be one of {', '.join(map(str, self.choices))}, got {value!r}")
        return value


# Every setting of a run (RunConfig, config.json), and the flags several tools share, in --help's order.
SETTINGS = (
    Setting("data", [SAMPLE_DATA], "data sources: folders, files or globs", type=text, nargs="+",
            tools=("train", "plots", "doctor"), shown=f"synthetic doodles in {SAMPLE_DATA}, written on first use",
            required=True),
    Setting("data_format", "auto", "format of --data", type=text, choices=("auto", *FORMATS),
            tools=("train", "plots", "evaluate", "predict", "doctor"), required=True),
    Setting("val_data", None, "a separate validation source; replaces the split of --data", type=text, nargs="+",
            tools=("train", "doctor"), shown="the split of --data"),
    Setting("train_ratio", 0.8, "share of --data that trains", type=ratio, tools=("train", "doctor"), required=True),
    Setting("max_per_class", None, "cap on items per class", type=positive_int, tools=("train", "doctor"),
            shown="all"),
    Setting("classes", None, "comma-separated classes to use", type=comma_list, tools=("train", "doctor"),
            shown="all"),
    Setting("exclude", None, "leave these items out of training and validation: doctor.py's label_issues.csv or "
            "duplicates.csv (their path column), or a file of paths or ids, one a line", type=curation.excluded,
            metavar="FILE", tools=("train", "doctor"), shown="none"),
    Setting("split_groups", None, "keep copies on one side of the split: doctor.py's duplicates.csv (each "
            "connected group of copies splits as one item)", type=curation.groups, metavar="DUPLICATES_CSV",
            tools=("train", "doctor"), shown="none"),
    Setting("save_to", "progress/run", "run folder to write", type=text),
    Setting("model", "quickdraw_cnn", "model to train (train.py --model NAME --summary shows it, at its default "
            "input)", type=text, choices=MODELS, required=True),
    Setting("model_kwargs", {}, "extra model arguments as JSON, e.g. '{\"alpha\": 0.5}'", type=json_object,
            shown="none", required=True),
    Setting("input_size", None, "model input H,W", type=image_size, shown="the model's own, listed at --model",
            tools=("train", "plots"), required=True),
    Setting("channels", None, "input channels", type=integer, choices=(1, 3), shown="the model's own",
            tools=("train", "plots"), required=True),
    Setting("num_epochs", 10, "epochs to train", type=positive_int, required=True),
    Setting("batch_size", 128, "batch size", type=positive_int, tools=("train", "predict"), required=True,
            space={"type": "categorical", "choices": [64, 128, 256]}),
    Setting("learning_rate", 1e-3, "learning rate", type=positive_float, required=True,
            space={"type": "float", "low": 0.0003, "high": 0.003, "log": True}),
    Setting("lr_schedule", "cosine", "learning rate over the run; cosine decays to 0, which steadies the last "
            "epochs", type=text, choices=SCHEDULES, before="constant"),
    Setting("weight_decay", 0.0, "decoupled weight decay per step, times the learning rate; 0 = none",
            type=non_negative_float),
    Setting("from_ckpt", None, "start from a run folder's best.keras or a .keras/.h5 model: every layer whose name "
            "and weight shapes match (so another class count is fine); or a .weights.h5 of the same model",
            type=storage.absolute, shown="none"),
    Setting("freeze_epochs", 0, "train only the model's head for this many epochs, at --head_lr_factor times the "
            "learning rate, on the frozen base's features computed once (--jitter starts after them), then every "
            "layer at --unfreeze_lr_factor times it", type=non_negative_int),
    # A new head on a frozen base takes larger steps than a whole model; runs from before this setting did not.
    Setting("head_lr_factor", 10.0, "learning rate factor of the frozen epochs", type=positive_float, before=1.0),
    # Few drawings of new classes: 0.1 keeps the base too still (README: "Transfer learning").
    Setting("unfreeze_lr_factor", 1.0, "learning rate factor once the base is unfrozen", type=ratio),
    Setting("unfrozen_head_lr_factor", 1.0, "while the base trains (after any --freeze_epochs), the head's learning "
            "rate as a multiple of the base's; 1 = the same rate", type=positive_float),
    Setting("train_batchnorm", None, "whether BatchNorm layers train once the base does (their statistics and "
            "scales follow the new images)", shown="as the model declares: efficientnet_lite and the MobileNets keep "
            "their ImageNet statistics, the others train them"),
    Setting("time_budget", None, "minutes the training may take: the first epoch that trains the base is timed (the "
            "cosine schedule warms the rate up in it), then as many more follow as fit in the budget (at most "
            "--num_epochs in all), and the cosine decays over them", type=positive_float,
            shown="none: --num_epochs epochs"),
    Setting("optimizer", "adam", "optimizer", type=text, choices=OPTIMIZERS, required=True),
    Setting("loss", "crossentropy", "loss", type=text, choices=LOSSES, required=True),
    Setting("class_weight", None, "weight each training item's loss by its class: 'balanced' (the inverse of the "
            "class's share of the training items) or a JSON object of class name: weight, e.g. '{\"cat\": 2.0}' "
            "(the classes it leaves out weigh 1)", type=class_weight.parse, metavar="balanced|JSON",
            shown="every item weighs the same"),
    Setting("jitter", False, "imgaug augmentation of training images (after any --freeze_epochs)",
            space={"type": "categorical", "choices": [False, True]}),
    Setting("jitter_kind", "affine", "what --jitter does: affine (flips, scale, shifts, rotation and shear; on "
            "photos also light, blur and noise) or crops (random-resized crops, each 0.6 to 1 of the area at aspect "
            "3/4 to 4/3, and flips: ImageNet fine-tuning's own)", type=text, choices=JITTER_KINDS,
            tools=("train", "plots")),
    Setting("early_stopping", 0, "patience in epochs, 0 = off", type=non_negative_int),
    Setting("keep_checkpoints", 3, "how many per-epoch checkpoints to keep", type=non_negative_int),
    Setting("seed", 0, "seed of the split, shuffling and jitter", type=integer, tools=("train", "plots", "doctor"),
            required=True),
    Setting("workers", 1, "parallel batch loaders", type=positive_int),
    Setting("cache_mb", 1024, "memory for prepared images, per split; 0 = decode every epoch",
            type=non_negative_int, before=0),
    Setting("use_multiprocessing", False, "load batches in processes rather than threads"),
    Setting("mixed_precision", False, "float16 compute with float32 weights; speeds up GPUs only"),
    Setting("distribute", "none", "data_parallel: replicate over all devices of all processes (JAX backend; see "
            "README)", type=text, choices=distribute.STRATEGIES),
    # What a run records of itself, not a flag.
    Setting("class_names", None, "the classes, in the order of the model's outputs", type=text, nargs="+", tools=(),
            required=True),
    Setting("dtype_policy", "float32", "the Keras dtype policy the run trained in", type=text,
            choices=DTYPE_POLICIES, tools=()),
    Setting("num_processes", 1, "processes that trained the run together", type=positive_int, tools=()),
    Setting("versions", {}, "the versions of Python, Keras, NumPy and the backend it trained with", type=json_object,
            tools=()),
    Setting("started", "", "when it started (UTC, ISO 8601)", type=text, tools=()),
    Setting("epoch_seconds", None, "the measured cost of an epoch of the whole model, by which --time_budget sized "
            "the run (num_epochs is what it decided)", type=positive_float, tools=()),
    # Flags of other tools, shared.
    Setting("eval_samples", 1000, "how many of the run's validation images (a seeded sample, the same in deploy.py "
            "and evaluate.py) are scored; evaluate.py --data scores all its items unless this is given",
            type=positive_int, tools=("deploy", "evaluate"), recorded=False),
)
NAMED = {s.name: s for s in SETTINGS}
RECORDED = tuple(s for s in SETTINGS if s.recorded)
NEVER_SEARCHED = ("seed", "train_ratio", "workers", "cache_mb", "keep_checkpoints")  # tests/test_settings.py holds it
SEARCHABLE = tuple(s.name for s in SETTINGS if s.space is not None)


class Checked:
    """What RunConfig is besides its attributes: every value checked, and model-given ones filled in, when it is made;
    an unknown name refused before that."""

    def __new__(cls, *args, **values):
        if args:
            raise TypeError("RunConfig takes its settings by name: RunConfig(data=[...], num_epochs=...)")
        unknown = sorted(set(values) - {s.name for s in RECORDED})
        if unknown:
            names = [s.name for s in RECORDED]
            guesses = {name: difflib.get_close_matches(name, names, n=1) for name in unknown}
            raise UserError("unknown setting " + ", ".join(f"'{name}'" + (f" (did you mean {guesses[name][0]}?)"
                                                                           if guesses[name] else "")
                                                           for name in unknown)
                            + f"; settings: {', '.join(names)}")
        return super().__new__(cls)

    def __post_init__(self):
        for s in RECORDED:
            object.__setattr__(self, s.name, s.check(copy.deepcopy(getattr(self, s.name))))
        spec = MODELS[self.model]
        if self.input_size is None:
            object.__setattr__(self, "input_size", list(spec.default_input_size(self.model_kwargs)))
        if self.channels is None:
            object.__setattr__(self, "channels", spec.channels)
        if self.freeze_epochs > self.num_epochs:
            raise UserError(f"--freeze_epochs {self.freeze_epochs} is more than --num_epochs {self.num_epochs}: "
                            f"freeze at most as many epochs as the run trains")
        if self.train_batchnorm is not None and not self.freeze_epochs:
            raise UserError("--train_batchnorm says what BatchNorm does once --freeze_epochs unfreeze the base; "
                            "without them every layer trains from the start")
        if self.time_budget is not None and self.num_epochs < self.freeze_epochs + 2:
            raise UserError(f"--time_budget times the first epoch of the whole model and needs room for one more: "
                            f"--num_epochs (the most it may train) at least --freeze_epochs + 2, got "
                            f"{self.num_epochs}")

    def replace(self, **changes):
        """A copy with `changes`, checked as a new configuration is."""
        return dataclasses.replace(self, **changes)

    def record(self):
        """What config.json holds: every setting by name."""
        return dataclasses.asdict(self)


RunConfig = dataclasses.make_dataclass(
    "RunConfig", [(s.name, Any, dataclasses.field(default_factory=lambda s=s: copy.deepcopy(s.default)))
                  for s in RECORDED], bases=(Checked,), frozen=True)
RunConfig.__doc__ = ("A run's settings, typed and frozen: one attribute per recorded Setting of config.SETTINGS "
                     "(run.batch_size, run.model, ...), each checked when the configuration is made.")


def add_flags(parser, tool):
    """The declared settings `tool` takes, as flags. A flag not given is None, so that the tool can tell it from
    one given (train.py fills in the default, or a resumed run's own value)."""
    for s in SETTINGS:
        if tool not in s.tools:
            continue
        if s.type is None:
            parser.add_argument(f"--{s.name}", action=argparse.BooleanOptionalAction, help=s.flag_help())
        else:
            parser.add_argument(f"--{s.name}", type=s.type, choices=s.choices, nargs=s.nargs, metavar=s.metavar,
                                help=s.flag_help())


def given(args, tool):
    """The settings of `tool` that its command line gave (flags not given are left out)."""
    return {s.name: getattr(args, s.name) for s in SETTINGS if tool in s.tools and getattr(args, s.name) is not None}


def given_or_default(args, name):
    """A shared flag's value: as given, or as declared."""
    value = getattr(args, name)
    return NAMED[name].default if value is None else value


def named(path):
    """The class a registry names as module.Class (LOSSES, OPTIMIZERS)."""
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def versions():
    """Python's, Keras', NumPy's and the backend's versions (the backend is already imported: Keras loads it)."""
    import keras
    import numpy as np

    backend = keras.backend.backend()
    return {"python": platform.python_version(), "keras": keras.__version__, "numpy": np.__version__,
            "backend": backend, backend: getattr(sys.modules.get(backend), "__version__", "unknown")}


def save(run_dir, run):
    """Write config.json: the run's settings, with library versions and the start time; returns what it wrote."""
    recorded = run.replace(versions=versions(),
                           started=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))
    write(run_dir, recorded)
    return recorded


def write(run_dir, run):
    """Write config.json as `run` is: at the start, or with what the run decided on the way (--time_budget)."""
    storage.write(os.path.join(run_dir, folders.CONFIG), json.dumps(run.record(), indent=2))


def read(run_dir):
    """The RunConfig of a run folder, upgraded: a setting newer than the run gets the value the run trained with,
    said in one line. A missing, malformed, incomplete or wrong config.json is a UserError."""
    path = os.path.join(run_dir, folders.CONFIG)
    if not folders.is_run_folder(run_dir):
        raise UserError(f"{run_dir} is not a run folder: no {folders.CONFIG} in it")
    try:
        values = json.loads(storage.read_text(path))
    except ValueError as error:
        raise UserError(f"cannot read {path}: {error}") from error
    if not isinstance(values, dict):
        raise UserError(f"cannot read {path}: not a JSON object")
    absent = [s for s in RECORDED if s.name not in values]
    missing = [s.name for s in absent if s.required]
    if missing:
        raise UserError(f"{path} is incomplete: missing {', '.join(missing)}")
    if absent:
        print(f"note: {run_dir} is from before {', '.join(s.name for s in absent)}; read as the values it trained "
              f"with: {', '.join(f'{s.name} {s.value_before()}' for s in absent)}", file=sys.stderr)
    try:
        return RunConfig(**values, **{s.name: copy.deepcopy(s.value_before()) for s in absent})
    except UserError as error:
        raise UserError(f"cannot read {path}: {error}") from error


def build_model(run):
    """The run's model, constructed from its settings (model name, kwargs, input size, classes)."""
    shape = (*run.input_size, run.channels)
    try:
        return MODELS[run.model].construct(shape, len(run.class_names), **run.model_kwargs)
    except (ValueError, TypeError) as error:
        raise UserError(f"cannot build {run.model} for input {shape}: {error}") from error
