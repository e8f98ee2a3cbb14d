"""The MobileNets normalise raw pixels inside themselves exactly as Keras' own preprocess_input does, so Keras'
ImageNet weights (what a user with internet starts from) see the inputs they were trained on.

Compared on one set of random backbone weights: the template's model on raw 0-255 pixels against Keras' own
application (include_top=False) on preprocess_input's pixels, then the same pooling and the same Dense weights.
"""
import keras
import numpy as np
import pytest

from models import mobilenet_v1, mobilenet_v2

SHAPE = (96, 96, 3)
CASES = [(mobilenet_v2, keras.applications.MobileNetV2, keras.applications.mobilenet_v2.preprocess_input, 0.35),
         (mobilenet_v1, keras.applications.MobileNet, keras.applications.mobilenet.preprocess_input, 0.25)]


def reference_probabilities(backbone, classifier, images):
    """Keras' own recipe: backbone, global average pooling, softmax of the classifier's Dense."""
    features = keras.ops.convert_to_numpy(keras.layers.GlobalAveragePooling2D()(backbone(images, training=False)))
    kernel, bias = classifier.get_weights()
    return keras.ops.convert_to_numpy(keras.ops.softmax(features @ kernel + bias))


@pytest.mark.parametrize("module, application, preprocess_input, alpha", CASES, ids=["mobilenet_v2", "mobilenet_v1"])
def test_the_template_model_computes_what_keras_preprocessing_and_its_application_compute(
        module, application, preprocess_input, alpha):
    keras.utils.set_random_seed(0)
    model = module.construct(SHAPE, 4, alpha=alpha, bn_momentum=0.0)  # one training pass sets the statistics
    base = next(layer for layer in model.layers if isinstance(layer, keras.Model))
    rng = np.random.default_rng(0)
    # Images of differing colour and brightness, and BatchNorm statistics of their own, so that each image's
    # features differ and a wrong input offset or scale would show.
    pixels = np.clip(rng.uniform(0, 255, (4, 1, 1, 3)) + rng.normal(0, 40, (4, *SHAPE)), 0, 255).astype("float32")
    base(preprocess_input(pixels.copy()), training=True)
    classifier = model.get_layer("classifier")
    classifier.set_weights([rng.normal(0, 0.5, w.shape).astype("float32") for w in classifier.get_weights()])
    reference = application(input_shape=SHAPE, alpha=alpha, include_top=False, weights=None)
    reference.set_weights(base.get_weights())

    ours = keras.ops.convert_to_numpy(model(pixels, training=False))
    keras_way = reference_probabilities(reference, classifier, preprocess_input(pixels.copy()))
    np.testing.assert_allclose(ours, keras_way, atol=1e-4)  # measured: 1e-6 (v2), 1e-5 (v1)
    # The comparison can tell normalisations apart: [0, 1] inputs (a common mistake) give other probabilities.
    wrong = reference_probabilities(reference, classifier, pixels / 255.0)
    assert np.abs(wrong - keras_way).max() > 0.05
