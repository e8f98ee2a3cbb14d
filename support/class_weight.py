"""--class_weight: how much each class's training items weigh in the loss, for folders where some classes have far
fewer items than others.

Unweighted, a model trained on 400 photos of one class and 40 of another learns that the rare class is rarely the
answer, and its recall suffers. "balanced" weights each class by the inverse of its share of the training items,
n / (k * n_c) as scikit-learn's "balanced" does, so every class counts as much in the loss as if all had the same
number of items; a JSON object gives classes their weights by name (the classes it leaves out keep 1). The weights go
to Keras' model.fit(class_weight=...), which multiplies each training item's loss (and its part in the training
accuracy) by its class's weight; validation is never weighted, so val_accuracy stays the share of right answers.
"""
import argparse
import json
import math

import numpy as np

from support.errors import UserError, first_of

BALANCED = "balanced"
FORMS = f"'{BALANCED}' or a JSON object of class name: positive weight, e.g. '{{\"cat\": 2.0, \"dog\": 1.0}}'"


def parse(given):
    """--class_weight's value: "balanced", or {class name: weight} from a JSON object (or a dict)."""
    if given == BALANCED:
        return given
    value = given
    if isinstance(given, str):
        try:
            value = json.loads(given)
        except ValueError:
            value = None
    if not isinstance(value, dict) or not value or not all(is_weight(weight) for weight in value.values()):
        raise argparse.ArgumentTypeError(f"must be {FORMS}; got {given!r}")
    return {name: float(weight) for name, weight in value.items()}


def is_weight(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value < math.inf


def per_class(setting, class_names, labels):
    """{class index: weight} for model.fit, from the run's class_weight setting (None: no weighting) and the labels
    of its training items. A class without training items gets no weight: there is nothing of it to weigh."""
    if setting is None:
        return None
    if setting == BALANCED:
        counts = np.bincount(labels, minlength=len(class_names))
        present = np.flatnonzero(counts)
        return {int(c): float(len(labels) / (len(present) * counts[c])) for c in present}
    unknown = [name for name in setting if name not in class_names]
    if unknown:
        raise UserError(f"--class_weight names {first_of(unknown, 10)}, which the data has no class of; its classes: "
                        f"{first_of(list(class_names), 20)}")
    return {c: setting.get(name, 1.0) for c, name in enumerate(class_names)}


def describe(weights, class_names):
    """One line: 'apple 0.667, bicycle 0.667, cat 4'."""
    return ", ".join(f"{class_names[c]} {weight:.3g}" for c, weight in weights.items())
