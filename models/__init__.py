"""Model files: each declares SPEC = ModelSpec(...) beside its construct(); config.MODELS lists them by name.

The declaration is everything the rest of the template needs from a model: train.py's default input, the head
that --freeze_epochs trains first, a size small enough for the tests, and what tune.py searches. Beyond
config.py's list and default, the template's code names no model, and the tests that hold for every model
(tests/test_models.py, the one-epoch training and int8 checks) read the registry, so adding one is a file here
plus its name in config.py. Tests of one model's own behaviour (EfficientNet-Lite's weights, MobileNet's
preprocessing) name it.
"""
import collections.abc
import importlib
from dataclasses import dataclass, field
from typing import Callable


@dataclass(frozen=True)
class ModelSpec:
    """What a model declares; construct(input_shape, num_classes, **kwargs) -> keras.Model on raw 0-255 pixels."""

    construct: Callable
    input_size: tuple  # (H, W) when --input_size is not given
    channels: int  # 1 or 3, when --channels is not given
    head: tuple  # names of the layers --freeze_epochs trains first; every other layer with weights is the base
    test_size: dict  # {"input_size": (H, W), "kwargs": {...}}: the model small enough to train in a test
    space: dict = field(default_factory=dict)  # tune.py entries added to (or replacing) tune.py's derived space
    # Whether BatchNorm trains once --freeze_epochs unfreezes the base. No for a backbone pretrained on ImageNet: its
    # statistics are worth more than what a few dozen batches would replace them with (Keras' fine-tuning guide);
    # yes for a small model pretrained on a few classes, whose features must move (README: "Transfer learning").
    batchnorm_fine_tunes: bool = True
    # {argument: {value: (H, W)}}: the input a value of one of construct()'s arguments is made for, when --input_size
    # is not given (EfficientNet-Lite1 was designed and pretrained at 240x240, Lite2 at 260x260); other values: input_size.
    input_sizes: dict = field(default_factory=dict)

    def __post_init__(self):
        problems = []
        if not callable(self.construct):
            problems.append("construct must be the model's construct function")
        if not is_size(self.input_size):
            problems.append(f"input_size must be (H, W), got {self.input_size!r}")
        if self.channels not in (1, 3):
            problems.append(f"channels must be 1 or 3, got {self.channels!r}")
        if isinstance(self.head, str) or not self.head or not all(isinstance(n, str) for n in self.head):
            problems.append(f"head must be a tuple of layer names, got {self.head!r}")
        if not isinstance(self.test_size, dict) or "input_size" not in self.test_size:
            problems.append(f"test_size must be a dict with input_size (and kwargs), got {self.test_size!r}")
        if not isinstance(self.input_sizes, dict) or not all(
                isinstance(sizes, dict) and all(is_size(size) for size in sizes.values())
                for sizes in self.input_sizes.values()):
            problems.append(f"input_sizes must be {{argument: {{value: (H, W)}}}}, got {self.input_sizes!r}")
        if problems:
            raise TypeError(f"ModelSpec of {getattr(self.construct, '__module__', '?')}: {'; '.join(problems)}")

    def default_input_size(self, kwargs):
        """(H, W) for a model built with `kwargs` when no input size is given: what input_sizes declares for one of
        them, else input_size."""
        for argument, sizes in self.input_sizes.items():
            for value, size in sizes.items():
                if argument in kwargs and kwargs[argument] == value:  # ==, not `in`: a JSON value may be a list
                    return tuple(size)
        return tuple(self.input_size)

    def test_model(self, num_classes, channels=None):
        """The model at its test size, for `channels` (default: its own)."""
        shape = (*self.test_size["input_size"], channels or self.channels)
        return self.construct(shape, num_classes, **self.test_size.get("kwargs", {}))


def is_size(size):
    return isinstance(size, (tuple, list)) and len(size) == 2 and all(isinstance(d, int) and d > 0 for d in size)


class Registry(collections.abc.MutableMapping):
    """{name: the SPEC of models/<name>.py}, each model file imported when its model is first asked for, so that the
    names alone (--help, a flag's choices) need no Keras. A file without a SPEC is a TypeError that says what to add;
    a name can be added (a test registers one)."""

    def __init__(self, names):
        self.specs = dict.fromkeys(names)

    def __getitem__(self, name):
        if self.specs[name] is None:
            spec = getattr(importlib.import_module(f"models.{name}"), "SPEC", None)
            if not isinstance(spec, ModelSpec):
                raise TypeError(f"models/{name}.py has no SPEC: declare SPEC = ModelSpec(construct, input_size, "
                                f"channels, head, test_size) beside construct() (see models/quickdraw_cnn.py)")
            self.specs[name] = spec
        return self.specs[name]

    def __setitem__(self, name, spec):
        self.specs[name] = spec

    def __delitem__(self, name):
        del self.specs[name]

    def __iter__(self):
        return iter(self.specs)

    def __len__(self):
        return len(self.specs)


def registry(names):
    return Registry(names)
