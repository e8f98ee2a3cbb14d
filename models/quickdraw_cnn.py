"""Default model for 28x28 QuickDraw drawings: a small VGG-style CNN that trains in minutes on a CPU.

Pick it for small grayscale inputs (drawings, digits, icons) when you train from scratch. Stacked 3x3
convolutions see whole strokes before each pooling step, and BatchNorm makes it converge in a few
epochs. Every layer maps to an Edge TPU op (conv, ReLU, max pool, mean, fully connected, softmax);
BatchNorm folds into the convolutions when the model is converted to int8.
Copy this file as the starting point for your own model.
"""
import keras
from keras import layers

from models import ModelSpec


def conv_block(x, filters, convs):
    """3x3 convolutions + BatchNorm + ReLU, then halve the resolution."""
    for _ in range(convs):
        # No bias: the BatchNorm that follows has its own.
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
        # momentum 0.9 (Keras: 0.99): the statistics used at validation time catch up within an epoch,
        # so early validation accuracy is not garbage.
        x = layers.BatchNormalization(momentum=0.9)(x)
        x = layers.ReLU()(x)
    return layers.MaxPooling2D()(x)


def construct(input_shape, num_classes, filters=(32, 64, 128), dense_units=128, dropout=0.3):
    """Build the CNN; inputs are raw 0-255 pixels so the int8 model can take uint8 images directly."""
    inputs = keras.Input(shape=input_shape)
    x = layers.Rescaling(1.0 / 255)(inputs)
    for stage, stage_filters in enumerate(filters):
        # One convolution at full resolution finds stroke edges; a second one there costs about a third
        # more compute for no clear gain.
        x = conv_block(x, stage_filters, convs=1 if stage == 0 else 2)
    # Global pooling keeps the head small and lets the same weights run at other input sizes.
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(dropout)(x)
    if dense_units:
        x = layers.Dense(dense_units, activation="relu")(x)
        x = layers.Dropout(dropout)(x)
    # float32 even under mixed precision: the softmax and the loss need its range.
    outputs = layers.Dense(num_classes, activation="softmax", dtype="float32", name="classifier")(x)
    return keras.Model(inputs, outputs, name="quickdraw_cnn")


SPEC = ModelSpec(
    construct, input_size=(28, 28), channels=1, head=("classifier",),
    test_size={"input_size": (28, 28), "kwargs": {"filters": (8, 16), "dense_units": 16}},
    space={"model_kwargs.dropout": {"type": "float", "low": 0.1, "high": 0.5},
           "model_kwargs.filters": {"type": "categorical", "choices": [[16, 32, 64], [32, 64, 128], [48, 96, 192]]}})
