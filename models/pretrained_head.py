"""What the models built on a Keras application (MobileNet v1/v2) share: local weights only, and the head.

A new model on another Keras application backbone needs only its own construct() calling these two.
"""
import os

import keras
from keras import layers


def local_weights(weights, example):
    """None or an existing local file; Keras would otherwise try to download ImageNet weights and fail here."""
    if weights is None:
        return None
    if str(weights).lower() == "imagenet":
        raise ValueError(f"weights='imagenet' needs a download, and this template never downloads anything: "
                         f"pass the path of a local weights file (e.g. {example}) or None")
    if not os.path.isfile(weights):
        raise ValueError(f"weights file not found: {weights!r} (pass an existing local file or None)")
    return str(weights)


def classifier(base, input_shape, num_classes, dropout, name):
    """Raw 0-255 pixels -> [-1, 1] (what MobileNets were designed and pretrained for) -> base -> softmax."""
    inputs = keras.Input(shape=input_shape)
    x = layers.Rescaling(1.0 / 127.5, offset=-1.0)(inputs)
    x = base(x)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(dropout)(x)
    # float32 even under mixed precision: the softmax and the loss need its range.
    outputs = layers.Dense(num_classes, activation="softmax", dtype="float32")(x)
    return keras.Model(inputs, outputs, name=name)
