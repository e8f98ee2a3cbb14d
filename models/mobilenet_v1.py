"""MobileNet v1 for photos (e.g. cats vs dogs at 224x224): the classic Edge TPU backbone.

Pick it when images are larger than drawings and you want the fastest model that compiles entirely for
the Edge TPU: it is only 3x3 depthwise + 1x1 convolutions with ReLU6. `alpha` trades accuracy for
size and speed (0.25, 0.5, 0.75, 1.0). There is no internet here, so ImageNet weights are never
downloaded: pass a local weights file (for example Keras' `mobilenet_1_0_224_tf_no_top.h5`) to start
from pretrained features; otherwise the network is trained from scratch.
"""

import keras

try:
    from models.pretrained_head import classifier, local_weights
except ModuleNotFoundError:  # run as a script, `python models/mobilenet_xx.py`: models/ itself is on the path
    from pretrained_head import classifier, local_weights

WEIGHTS_EXAMPLE = "mobilenet_1_0_224_tf_no_top.h5"


def construct(input_shape, num_classes, alpha=1.0, weights=None, dropout=0.2):
    """Build MobileNet v1 on raw 0-255 pixels, with a pooled softmax head for `num_classes`."""
    base = keras.applications.MobileNet(input_shape=tuple(input_shape), alpha=alpha, include_top=False,
                                  weights=local_weights(weights, WEIGHTS_EXAMPLE))
    return classifier(base, input_shape, num_classes, dropout, name="mobilenet_v1")


if __name__ == "__main__":
    construct((224, 224, 3), 2).summary()
