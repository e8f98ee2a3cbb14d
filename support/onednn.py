"""A guard against a TensorFlow oneDNN crash that no exception reports: refuse the layer shape before training.

On an AMD EPYC with AVX-512 (BF16, VNNI), TensorFlow 2.21's oneDNN filter-gradient kernel corrupts the heap for a
1×1 convolution of stride 2 with fewer than 16 input channels and at most 16 filters, whenever a training batch
has an odd size (a last partial batch is enough): the process dies with `double free or corruption` or a
segmentation fault, usually before Python sees any error. Measured there (see README, "Troubleshooting"): 16 or
more input channels, 17 or more filters, stride 1 or 3, or TF_ENABLE_ONEDNN_OPTS=0 train; so does subsampling
first and then a 1×1 convolution of stride 1, which computes exactly the same (photo_cnn's shortcut does that).
Switching oneDNN off costs about half the training speed there, so train.py refuses only the shape, and only
where the kernel runs: the TensorFlow backend, oneDNN on, an AVX-512 CPU.
"""
import os

import keras

from support.errors import UserError
from support.layers import weighted_layers

SWITCH = "TF_ENABLE_ONEDNN_OPTS"


def onednn_on():
    """TensorFlow's oneDNN CPU kernels run unless TF_ENABLE_ONEDNN_OPTS says 0 or false."""
    return keras.backend.backend() == "tensorflow" and os.environ.get(SWITCH, "1").lower() not in ("0", "false")


def avx512_cpu(cpuinfo="/proc/cpuinfo"):
    try:
        with open(cpuinfo) as f:
            return any(line.startswith("flags") and " avx512f" in line for line in f)
    except OSError:  # not Linux: the crash has been seen only there
        return False


def crashing_convolutions(model):
    """The Conv2D layers (nested models included) of the shape that crashes the kernel."""
    for layer in weighted_layers(model):
        if type(layer) is keras.layers.Conv2D and tuple(layer.strides) == (2, 2):
            height, width, channels, filters = layer.kernel.shape
            if (height, width) == (1, 1) and channels < 16 and filters <= 16:
                yield layer


def check(model):
    """UserError naming the first crashing layer and the ways around it, where the crash would happen."""
    if not (onednn_on() and avx512_cpu()):
        return
    layer = next(crashing_convolutions(model), None)
    if layer is not None:
        raise UserError(
            f"{model.name}'s layer {layer.name} (1x1 convolution, stride 2, {layer.kernel.shape[2]} -> "
            f"{layer.filters} channels) crashes TensorFlow's oneDNN kernel on this AVX-512 CPU; give it 16 or more "
            f"input channels or more than 16 filters, or subsample first (MaxPooling2D(1, strides=2)) and use stride "
            f"1, or set {SWITCH}=0 (training about half as fast)")
