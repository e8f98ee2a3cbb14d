"""Default model for photos trained from scratch (e.g. cats vs dogs): a small Xception-style residual CNN.

Pick it for colour photos when you have a few thousand images and no pretrained weights. Depthwise-
separable convolutions see as far as plain 3x3 ones for a fraction of the compute, which buys more
epochs on a CPU; residual shortcuts and BatchNorm keep it trainable from scratch; global average pooling
and dropout keep the head small, which matters more than depth when there is little data. Every layer
maps to an Edge TPU op (conv, depthwise conv, add, ReLU, max pool, mean, fully connected, softmax), and
BatchNorm folds into the convolutions in the int8 model.
"""
import keras
from keras import layers

from models import ModelSpec


def batch_norm(x, momentum):
    # Momentum 0.9 (Keras: 0.99): the statistics used at validation time catch up within the few dozen
    # steps of an epoch on a small photo set, so validation accuracy means something from epoch one.
    return layers.BatchNormalization(momentum=momentum)(x)


def residual_block(x, filters, momentum):
    """Two separable 3x3 convolutions, then halve the resolution; a subsampled 1x1 shortcut around both."""
    # Every other pixel, then a 1x1 convolution: the same as a 1x1 convolution of stride 2, which crashes
    # TensorFlow's oneDNN kernel on narrow inputs on some CPUs (onednn.py).
    subsampled = layers.MaxPooling2D(1, strides=2)(x)
    shortcut = batch_norm(layers.Conv2D(filters, 1, use_bias=False)(subsampled), momentum)
    x = layers.SeparableConv2D(filters, 3, padding="same", use_bias=False)(x)  # no bias: BatchNorm has one
    x = layers.ReLU()(batch_norm(x, momentum))
    x = layers.SeparableConv2D(filters, 3, padding="same", use_bias=False)(x)
    x = batch_norm(x, momentum)
    x = layers.MaxPooling2D(3, strides=2, padding="same")(x)
    return layers.ReLU()(layers.Add()([x, shortcut]))


def construct(input_shape, num_classes, stem=32, filters=(64, 128, 256, 512), dropout=0.5, bn_momentum=0.9):
    """Build the CNN: a strided 3x3 stem of `stem` filters, then one residual block per entry of `filters`.

    Inputs are raw 0-255 pixels, so the int8 model takes uint8 images directly."""
    inputs = keras.Input(shape=input_shape)
    x = layers.Rescaling(1.0 / 255)(inputs)
    x = layers.Conv2D(stem, 3, strides=2, padding="same", use_bias=False)(x)
    x = layers.ReLU()(batch_norm(x, bn_momentum))
    for block_filters in filters:
        x = residual_block(x, block_filters, bn_momentum)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(dropout)(x)
    # float32 even under mixed precision: the softmax and the loss need its range.
    outputs = layers.Dense(num_classes, activation="softmax", dtype="float32", name="classifier")(x)
    return keras.Model(inputs, outputs, name="photo_cnn")


SPEC = ModelSpec(
    construct, input_size=(96, 96), channels=3, head=("classifier",),
    test_size={"input_size": (32, 32), "kwargs": {"stem": 8, "filters": (8, 16)}},
    space={"learning_rate": {"type": "float", "low": 0.0003, "high": 0.003, "log": True},
           "batch_size": {"type": "categorical", "choices": [16, 32, 64]},
           "model_kwargs.dropout": {"type": "float", "low": 0.2, "high": 0.6},
           "model_kwargs.filters": {"type": "categorical", "choices": [[32, 64, 128, 256], [64, 128, 256, 512]]}})
