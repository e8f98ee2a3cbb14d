"""MobileNet v1 for photos (e.g. cats vs dogs at 224x224): the classic Edge TPU backbone.

Pick it when images are larger than drawings and you want the fastest model that compiles entirely for
the Edge TPU: it is only 3x3 depthwise + 1x1 convolutions with ReLU6. `alpha` trades accuracy for
size and speed (0.25, 0.5, 0.75, 1.0). `weights="imagenet"` starts from Keras' ImageNet features
(3 channels; Keras downloads them once into ~/.keras/models/), a path starts from a local weights file,
and None (the default) trains from scratch.
"""

import keras

from models.pretrained_head import backbone, classifier, spec


def construct(input_shape, num_classes, alpha=1.0, weights=None, dropout=0.2, bn_momentum=0.9):
    """Build MobileNet v1 on raw 0-255 pixels, with a pooled softmax head for `num_classes`."""
    base = backbone(keras.applications.MobileNet, input_shape, alpha, weights, bn_momentum)
    return classifier(base, input_shape, num_classes, dropout, name="mobilenet_v1")


SPEC = spec(construct, alphas=(0.25, 0.5, 0.75, 1.0), test_alpha=0.25)
