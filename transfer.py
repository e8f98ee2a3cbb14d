"""Transfer learning between runs: --from_ckpt loads what matches, --freeze_epochs trains the new head first.

A model trained on other classes (or on the same ones) shares every layer but its output layer with the new
model. Layers are matched by name and weight shapes; Keras names them the same in every fresh process, so a
run's best.keras fits a new run of the same model whatever its class count, and only the head starts anew.

Freezing follows the standard Keras fine-tuning recipe: first only the head (the layers the model's SPEC names)
trains on top of the frozen base (every other layer with weights), whose BatchNorm layers then run in inference
mode, at `head_lr_factor` times the learning rate, so the random head cannot wreck the pretrained features; then
everything trains (BatchNorm if --train_batchnorm or else the SPEC says so) with a fresh optimizer at
`unfreeze_lr_factor` times it, the head at `unfrozen_head_lr_factor` times the base's rate (HeadRate).

While the base is frozen, its output for an un-jittered image is the same every epoch, and computing it is nearly
all the cost of an epoch on a CPU. So the frozen epochs compute it once per image and train the head alone on
those features, in the same batches and order, with the run's callbacks acting on the whole model (history,
checkpoints, the backup --resume needs); --jitter applies from the first unfrozen epoch on, where the base can
learn from it (a head on frozen features gains little from jittered copies, and each would cost a pass of the
base). A Dropout before the head is not applied to the cached features (it runs only in the uncached path).
"""
import functools

import keras
import numpy as np
from tqdm import tqdm

from support import folders, inference
from support.errors import UserError
from support.layers import weighted_layers


def shapes(layer):
    return [tuple(weight.shape) for weight in layer.weights]


def source_model(path):
    """The model --from_ckpt names: a run folder's best.keras, or a .keras / .h5 model file."""
    if folders.is_run_folder(path):
        path = inference.model_in(path)
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
        raise UserError(f"cannot load weights from {path} into {model.name}: {error}") from error


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


def head_and_base(model, head):
    """(head, base): the layers named in `head` (the model's SPEC.head: a chain of layers that ends the model),
    and every other layer with weights (a nested model, such as a MobileNet's backbone, counts as one). What
    --freeze_epochs trains first, and freezes."""
    names = [layer.name for layer in model.layers]
    if list(head) != names[len(names) - len(head):]:
        raise UserError(f"--freeze_epochs: {model.name} declares the head {', '.join(head)}, but its last layers "
                        f"are {', '.join(names[-len(head) - 1:])}; SPEC.head names the layers that end the model, "
                        f"in order, as its construct() names them")
    return ([layer for layer in model.layers if layer.name in head],
            [layer for layer in model.layers if layer.name not in head and layer.weights])


def freeze_base(model, head):
    trained, frozen = head_and_base(model, head)
    if not any(layer.weights for layer in trained):
        raise UserError(f"--freeze_epochs: the head of {model.name} ({', '.join(head)}) has no weights, so nothing "
                        f"would train while the base is frozen; name its Dense layer in SPEC.head")
    if not frozen:
        raise UserError(f"--freeze_epochs: {model.name} has no layers with weights outside its head "
                        f"({', '.join(head)}), so there is no base to freeze; train it without --freeze_epochs")
    for layer in frozen:
        layer.trainable = False


def unfreeze_base(model, head, batchnorm_trains):
    """After the frozen epochs every base layer trains; BatchNormalization too, unless its pretrained statistics are
    to be kept (then it stays in inference mode)."""
    for layer in head_and_base(model, head)[1]:
        layer.trainable = True
        if batchnorm_trains:
            continue
        for inner in (weighted_layers(layer) if isinstance(layer, keras.Model) else [layer]):
            if isinstance(inner, keras.layers.BatchNormalization):
                inner.trainable = False


def frozen_at(freeze_epochs, epochs_done):
    """Whether the model that continues after `epochs_done` epochs starts with its base frozen. A run resumed
    exactly at the switch restores the frozen state it saved; UnfreezeBase then switches as the epoch begins."""
    return freeze_epochs > 0 and epochs_done <= freeze_epochs


class UnfreezeBase(keras.callbacks.Callback):
    """At epoch `freeze_epochs`: make the base trainable (its BatchNorm too if `batchnorm_trains`) and train on with
    `optimizer` (the lower rate).

    A fresh optimizer, because the frozen phase's holds state only for the head; it is built over every
    variable now, so the backup of every later epoch has the same shape and --resume restores it."""

    def __init__(self, freeze_epochs, optimizer, head, batchnorm_trains):
        super().__init__()
        self.freeze_epochs, self.optimizer = freeze_epochs, optimizer
        self.head, self.batchnorm_trains = head, batchnorm_trains

    def on_epoch_begin(self, epoch, logs=None):
        if epoch != self.freeze_epochs:
            return
        unfreeze_base(self.model, self.head, self.batchnorm_trains)
        optimizer = self.optimizer
        if isinstance(self.model.optimizer, keras.optimizers.LossScaleOptimizer):  # as compile() wraps it
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        optimizer.build(self.model.trainable_variables)
        self.model.optimizer = optimizer
        self.model.make_train_function(force=True)  # the compiled step still updates only the head
        kept = "" if self.batchnorm_trains else " but BatchNorm"
        print(f"epoch {epoch + 1}: base unfrozen; every layer{kept} trains from here at the lower learning rate")


# --- the head's own rate while the base trains ---------------------------------------------------------------

def head_paths(model, head):
    """The paths of the head's trainable variables (what HeadRate scales)."""
    return [variable.path for layer in head_and_base(model, head)[0] for variable in layer.trainable_weights]


class HeadRate:
    """Mixed into a Keras optimizer: the variables named in `head_paths` update at `head_factor` times the learning
    rate, every other at the rate. Keras 3 optimizers have no parameter groups; update_step is where one applies the
    rate to one variable. (Decoupled weight decay stays at the rate itself.)"""

    def __init__(self, *args, head_paths=(), head_factor=1.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.head_paths, self.head_factor = list(head_paths), float(head_factor)
        self.head_indices = frozenset()

    def build(self, variables):
        super().build(variables)
        self.head_indices = frozenset(index for index, variable in enumerate(variables)
                                      if variable.path in self.head_paths)

    def update_step(self, gradient, variable, learning_rate):
        if self._get_variable_index(variable) in self.head_indices:
            learning_rate = learning_rate * self.head_factor
        return super().update_step(gradient, variable, learning_rate)

    def get_config(self):
        return {**super().get_config(), "head_paths": self.head_paths, "head_factor": self.head_factor}


@functools.cache
def with_head_rate(optimizer_class):
    """`optimizer_class` (Adam, SGD, RMSprop, ...) with HeadRate mixed in; registered, so a saved model's compile
    configuration names a class Keras knows."""
    name = f"HeadRate{optimizer_class.__name__}"
    return keras.saving.register_keras_serializable(package="template", name=name)(
        type(name, (HeadRate, optimizer_class), {}))


# --- the frozen epochs on cached features ------------------------------------------------------------------

def head_on_cached_features(freeze_epochs, epochs_done, num_processes):
    """Whether the frozen epochs still to run can train the head on features computed once: this process holds all
    the data (jitter waits for the unfrozen epochs)."""
    return epochs_done < freeze_epochs and num_processes == 1


class CachedFeatures(keras.utils.PyDataset):
    """The batches of a BatchGenerator with each item's features from the frozen base (computed here, once) in place
    of its image: the same items in the same order every epoch (its `epoch` is the generator's). The images prepared
    on the way stay in the generator's own cache, for the unfrozen epochs."""

    def __init__(self, feature_model, batches):
        super().__init__()
        self.batches, self.features = batches, {}
        for start in tqdm(range(0, len(batches.indices), batches.batch_size), unit="batch", disable=None,
                          desc=f"features of the frozen base ({batches.mode})"):
            chosen = batches.indices[start:start + batches.batch_size]
            self.features.update(zip(chosen, np.asarray(feature_model.predict_on_batch(batches.prepared(chosen)))))

    def __len__(self):
        return len(self.batches)

    def __getitem__(self, index):
        chosen = self.batches.chosen(index)
        return np.stack([self.features[i] for i in chosen]), self.batches.labels[chosen].astype(np.int32)


def fit_head_on_features(model, head, train_gen, val_gen, epochs_done, freeze_epochs, num_epochs, run_callbacks,
                         class_weights=None):
    """Train the head for the frozen epochs from `epochs_done` on, as model.fit would (same optimizer, batches,
    callbacks and class weights), but on features computed once; returns the epochs done."""
    first = model.get_layer(head[0])
    feature_model = keras.Model(model.inputs, first.input)  # before the head model adds nodes to the head layers
    train_features, val_features = CachedFeatures(feature_model, train_gen), CachedFeatures(feature_model, val_gen)
    inputs = keras.Input(shape=first.input.shape[1:])
    outputs = inputs
    for name in head:
        outputs = model.get_layer(name)(outputs)
    trainer = keras.Model(inputs, outputs)  # shares the head's layers, so the model learns what it learns
    trainer.compile(optimizer=model.optimizer, loss=model.loss, metrics=["accuracy"])
    hooks = keras.callbacks.CallbackList(run_callbacks, model=model)
    hooks.on_train_begin()
    logs = {}
    for epoch in range(epochs_done, freeze_epochs):
        hooks.on_epoch_begin(epoch)  # the run's EpochSeed sets the generators' epoch: their order, and the features'
        history = trainer.fit(train_features, validation_data=val_features, epochs=1, shuffle=False, verbose=0,
                              class_weight=class_weights)
        logs = {key: float(values[-1]) for key, values in history.history.items()}
        print(f"Epoch {epoch + 1}/{num_epochs} (head alone, on features cached from the frozen base): "
              + " - ".join(f"{key}: {value:.4f}" for key, value in sorted(logs.items())), flush=True)
        hooks.on_epoch_end(epoch, logs)
        if model.stop_training:  # early stopping, or tune.py's pruner
            break
    hooks.on_train_end(logs)
    return epoch + 1
