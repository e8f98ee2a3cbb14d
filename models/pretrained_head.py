"""What the models built on a Keras application (MobileNet v1/v2) share: the base with its weights, and the head.

A new model on another Keras application backbone needs only its own construct() calling the first two, and spec().
"""
import os
import re

import keras
from keras import layers

from models import ModelSpec

HEAD = "classifier"  # the output layer's name: what --freeze_epochs trains first (each model's SPEC.head)
# What Keras' get_file raises when a download fails; its URL names the file it wanted.
FETCH_FAILURE = re.compile(r"URL fetch failure on (\S+?):? ")


def checked_weights(weights):
    """None, "imagenet" (Keras downloads and caches the file) or an existing local weights file."""
    if weights in (None, "imagenet"):
        return weights
    if not os.path.isfile(weights):
        raise ValueError(f"weights file not found: {weights!r} (pass 'imagenet', an existing local file or None)")
    return str(weights)


def downloaded(application, **arguments):
    """application(**arguments), a Keras application; a failed weights download becomes one ValueError naming the
    file and where to put it by hand (build_model reports ValueErrors as one `error:` line)."""
    try:
        return application(**arguments)
    except Exception as error:
        failed = FETCH_FAILURE.search(str(error))
        if not failed:
            raise
        name = os.path.basename(failed.group(1))
        raise ValueError(f"cannot download the ImageNet weights {name} ({error}): put {name} into ~/.keras/models/ "
                         f"($KERAS_HOME/models/ when KERAS_HOME is set), or pass the path of a local weights file as "
                         f"weights") from error


def backbone(application, input_shape, alpha, weights, bn_momentum):
    """The application without its top, on `weights`, with BatchNorm momentum `bn_momentum`.

    Keras builds MobileNet v2's BatchNorm with momentum 0.999 (v1: 0.99): with tens of steps per epoch the
    moving statistics never catch up, and validation predicts one class. 0.9 catches up within an epoch."""
    base = downloaded(application, input_shape=tuple(input_shape), alpha=alpha, include_top=False,
                      weights=checked_weights(weights))
    for layer in base.layers:
        if isinstance(layer, layers.BatchNormalization):
            layer.momentum = float(bn_momentum)
    return base


def classifier(base, input_shape, num_classes, dropout, name):
    """Raw 0-255 pixels -> [-1, 1] (what MobileNets were designed and pretrained for) -> base -> softmax."""
    inputs = keras.Input(shape=input_shape)
    x = layers.Rescaling(1.0 / 127.5, offset=-1.0)(inputs)
    x = base(x)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(dropout)(x)
    # float32 even under mixed precision: the softmax and the loss need its range.
    outputs = layers.Dense(num_classes, activation="softmax", dtype="float32", name=HEAD)(x)
    return keras.Model(inputs, outputs, name=name)


def spec(construct, alphas, test_alpha):
    """The declaration of a model on a Keras application: 224x224 RGB, the pooled head, its widths searched."""
    return ModelSpec(
        construct, input_size=(224, 224), channels=3, head=(HEAD,),
        test_size={"input_size": (32, 32), "kwargs": {"alpha": test_alpha}},
        space={"learning_rate": {"type": "float", "low": 0.0001, "high": 0.003, "log": True},
               "batch_size": {"type": "categorical", "choices": [16, 32, 64]},
               "model_kwargs.dropout": {"type": "float", "low": 0.1, "high": 0.5},
               "model_kwargs.alpha": {"type": "categorical", "choices": list(alphas)}},
        batchnorm_fine_tunes=False)
