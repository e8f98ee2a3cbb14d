"""MobileNet v2 for photos (e.g. cats vs dogs at 224x224): more accurate than v1 for similar latency.

Pick it as the default for photos: inverted residual blocks (1x1 expand, 3x3 depthwise, 1x1 project,
residual add) with ReLU6 all run on the Edge TPU. `alpha` scales the width (0.35, 0.5, 0.75, 1.0, 1.3,
1.4). `weights="imagenet"` starts from Keras' ImageNet features (3 channels; Keras downloads them once
into ~/.keras/models/), a path starts from a local weights file, and None (the default) trains from scratch.
"""

import keras

from models.pretrained_head import backbone, classifier, spec


def construct(input_shape, num_classes, alpha=1.0, weights=None, dropout=0.2, bn_momentum=0.9):
    """Build MobileNet v2 on raw 0-255 pixels, with a pooled softmax head for `num_classes`."""
    base = backbone(keras.applications.MobileNetV2, input_shape, alpha, weights, bn_momentum)
    return classifier(base, input_shape, num_classes, dropout, name="mobilenet_v2")


SPEC = spec(construct, alphas=(0.35, 0.5, 0.75, 1.0), test_alpha=0.35)
