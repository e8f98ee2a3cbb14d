"""Logistic regression: the starter kit's baseline, one softmax layer on the raw pixels.

Pick it to check that the data pipeline works end to end (it trains in seconds) and as the number any
real model must beat. It also compiles for the Edge TPU (a single fully connected layer).
"""
import keras
from keras import layers

from models import ModelSpec


def construct(input_shape, num_classes):
    """Build the baseline; inputs are raw 0-255 pixels like every other model."""
    inputs = keras.Input(shape=input_shape)
    x = layers.Rescaling(1.0 / 255)(inputs)
    x = layers.Flatten()(x)
    # float32 even under mixed precision: the softmax and the loss need its range.
    outputs = layers.Dense(num_classes, activation="softmax", dtype="float32", name="classifier")(x)
    return keras.Model(inputs, outputs, name="logistic")


SPEC = ModelSpec(construct, input_size=(28, 28), channels=1, head=("classifier",),
                 test_size={"input_size": (28, 28)},
                 space={"learning_rate": {"type": "float", "low": 0.0001, "high": 0.01, "log": True}})
