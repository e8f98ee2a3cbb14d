"""Transfer learning between runs: --from_ckpt loads what matches, --freeze_epochs trains the new head first.

A model trained on other classes (or on the same ones) shares every layer but its output layer with the new
model. Layers are matched by name and weight shapes; Keras names them the same in every fresh process, so a
run's best.keras fits a new run of the same model whatever its class count, and only the head starts anew.

Freezing follows the standard Keras fine-tuning recipe: first only the output layer trains on top of the
frozen base (every other layer with weights), whose BatchNorm layers then run in inference mode, so the random
head cannot wreck the pretrained features; then everything trains, with a fresh optimizer at
`unfreeze_lr_factor` times the learning rate, small steps that refine the features rather than replace them.
"""
import os

import keras

import config
import inference
import storage
from callbacks import BEST_MODEL
from errors import UserError


def weighted_layers(model):
    """The layers that hold weights, looking inside nested models (a MobileNet's base)."""
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from weighted_layers(layer)
        elif layer.weights:
            yield layer


def shapes(layer):
    return [tuple(weight.shape) for weight in layer.weights]


def source_model(path):
    """The model --from_ckpt names: a run folder's best.keras, or a .keras / .h5 model file."""
    if storage.isfile(os.path.join(path, config.CONFIG_FILE)):
        path = os.path.join(path, BEST_MODEL)
    elif not path.endswith(inference.KERAS_SUFFIXES):
        raise UserError(f"--from_ckpt {path}: expected a run folder, a .keras or .h5 model, or a .weights.h5 file")
    return inference.load_classifier(path).model


def load_checkpoint(model, path):
    """--from_ckpt: a .weights.h5 file loads whole (it has no layer names, so the architecture must be the
    same); a run folder or a model file loads every layer that matches."""
    if not path.endswith(".weights.h5"):
        return load_matching(model, source_model(path), path)
    try:
        model.load_weights(path)
    except Exception as error:
        raise UserError(f"cannot load weights from {path} into {model.name}: {error}") from None


def load_matching(model, source, path):
    """Copy into `model` every layer of `source` with the same name and weight shapes, and say which layers
    were not loaded (normally the output layer, sized for other classes). None matching: UserError."""
    theirs = {layer.name: layer for layer in weighted_layers(source)}
    loaded, skipped = [], []
    for layer in weighted_layers(model):
        match = theirs.get(layer.name)
        if match is None:
            skipped.append(f"{layer.name} (not in it)")
        elif shapes(match) != shapes(layer):
            skipped.append(f"{layer.name} (weights {shapes(match)} there, {shapes(layer)} here)")
        else:
            layer.set_weights(match.get_weights())
            loaded.append(layer.name)
    if not loaded:
        names = list(theirs)
        raise UserError(f"--from_ckpt {path}: no layer matches {model.name} by name and weight shapes (its layers "
                        f"with weights: {', '.join(names[:4])}{', ...' if len(names) > 4 else ''}); start from a "
                        f"run of the same model")
    print(f"--from_ckpt: loaded {len(loaded)} of {len(loaded) + len(skipped)} layers from {path}"
          + (f"; not loaded: {', '.join(skipped)}" if skipped else ""))


def base_layers(model):
    """What --freeze_epochs freezes: every layer with weights except the output layer (the head)."""
    return [layer for layer in model.layers[:-1] if layer.weights]


def freeze_base(model):
    base = base_layers(model)
    if not base:
        raise UserError(f"--freeze_epochs: {model.name} has no layers with weights before its output layer, "
                        f"so there is no base to freeze; train it without --freeze_epochs")
    for layer in base:
        layer.trainable = False


def frozen_at(settings, epochs_done):
    """Whether the model that continues after `epochs_done` epochs starts with its base frozen. A run resumed
    exactly at the switch restores the frozen state it saved; UnfreezeBase then switches as the epoch begins."""
    freeze_epochs = settings.get("freeze_epochs", 0)
    return freeze_epochs > 0 and epochs_done <= freeze_epochs


class UnfreezeBase(keras.callbacks.Callback):
    """At epoch `freeze_epochs`: make the base trainable and train on with `optimizer` (the lower rate).

    A fresh optimizer, because the frozen phase's holds state only for the head; it is built over every
    variable now, so the backup of every later epoch has the same shape and --resume restores it."""

    def __init__(self, freeze_epochs, optimizer):
        super().__init__()
        self.freeze_epochs, self.optimizer = freeze_epochs, optimizer

    def on_epoch_begin(self, epoch, logs=None):
        if epoch != self.freeze_epochs:
            return
        for layer in base_layers(self.model):
            layer.trainable = True
        optimizer = self.optimizer
        if isinstance(self.model.optimizer, keras.optimizers.LossScaleOptimizer):  # as compile() wraps it
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        optimizer.build(self.model.trainable_variables)
        self.model.optimizer = optimizer
        self.model.make_train_function(force=True)  # the compiled step still updates only the head
        print(f"epoch {epoch + 1}: base unfrozen; every layer trains from here at the lower learning rate")
