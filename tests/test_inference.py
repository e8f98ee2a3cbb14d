"""inference.py: Keras and int8 TFLite classifiers answer the same way, and bad input is a UserError."""
import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import deploy  # noqa: E402
from support import inference  # noqa: E402
from support.errors import UserError  # noqa: E402

pytestmark = [
    # Library noise, not ours: the TF converter on uint8 input, and Keras' model.save under NumPy 2.
    pytest.mark.filterwarnings("ignore:Statistics for quantized inputs:UserWarning"),
    pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy:DeprecationWarning"),
]


def images(n, seed):
    """0-255 float32 images of varied brightness, so the tiny model's classes differ between images."""
    rng = np.random.default_rng(seed)
    pixels = rng.uniform(0, 255, (n, 16, 16, 1)) * rng.uniform(0, 1, (n, 1, 1, 1))
    return pixels.astype(np.float32)


def tiny_model():
    """16x16x1 -> Rescaling -> Conv2D(4) -> GlobalAveragePooling2D -> Dense(3, softmax), batch 1.

    Weights are set by hand so the class follows the image's brightness (dark / medium / bright): with random
    weights a model this small gives every image the same class, and argmax agreement would prove nothing.
    """
    import keras

    inputs = keras.Input((16, 16, 1), batch_size=1)
    x = keras.layers.Rescaling(1 / 255)(inputs)
    conv = keras.layers.Conv2D(4, 3, activation="relu")
    x = keras.layers.GlobalAveragePooling2D()(conv(x))
    dense = keras.layers.Dense(3, activation="softmax")
    outputs = dense(x)
    conv.set_weights([np.full((3, 3, 1, 4), 1 / 9, np.float32), np.zeros(4, np.float32)])
    kernel = np.zeros((4, 3), np.float32)
    kernel[0] = [0, 40, 80]  # logits 0, 40b - 4, 80b - 16: class boundaries at brightness 0.1 and 0.3
    dense.set_weights([kernel, np.array([0, -4, -16], np.float32)])
    return keras.Model(inputs, outputs)


class Calibration:
    """What deploy.to_int8_tflite calibrates on: images like the test's, one at a time."""

    def representative_dataset(self):
        for image in images(64, seed=123):
            yield [image[None]]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """One tiny model saved as .keras, .h5 and int8 .tflite."""
    folder = tmp_path_factory.mktemp("models")
    model = tiny_model()
    paths = {"keras": folder / "model.keras", "h5": folder / "model.h5", "tflite": folder / "model.tflite"}
    model.save(paths["keras"])
    model.save(paths["h5"])
    paths["tflite"].write_bytes(deploy.to_int8_tflite(model, Calibration()))
    return paths


def test_kinds_and_shapes(saved):
    for key, kind in (("keras", "keras"), ("h5", "keras"), ("tflite", "tflite")):
        classifier = inference.load_classifier(saved[key])
        assert classifier.kind == kind
        assert classifier.input_shape == (16, 16, 1)
        assert classifier.num_classes == 3


def test_tflite_matches_keras(saved):
    batch = images(40, seed=7)
    keras_probs = inference.load_classifier(saved["keras"]).predict(batch)
    tflite_probs = inference.load_classifier(saved["tflite"]).predict(batch)
    for probs in (keras_probs, tflite_probs):
        assert probs.shape == (40, 3) and probs.dtype == np.float32
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=0.02)
    assert len(set(keras_probs.argmax(1))) > 1  # the comparison means something only if classes differ
    assert np.mean(keras_probs.argmax(1) == tflite_probs.argmax(1)) >= 0.95
    assert np.abs(keras_probs - tflite_probs).max() < 0.05


def test_h5_matches_keras(saved):
    batch = images(5, seed=3)
    np.testing.assert_allclose(inference.load_classifier(saved["h5"]).predict(batch),
                               inference.load_classifier(saved["keras"]).predict(batch), atol=1e-5)


def test_wrong_image_shape_is_a_user_error(saved):
    for key in ("keras", "tflite"):
        classifier = inference.load_classifier(saved[key])
        with pytest.raises(UserError, match=r"\(N, 16, 16, 1\)"):
            classifier.predict(np.zeros((2, 28, 28, 1), np.float32))
        with pytest.raises(UserError):
            classifier.predict(np.zeros((16, 16, 1), np.float32))


def test_bad_files_are_user_errors(tmp_path):
    with pytest.raises(UserError, match=r"unknown model file type 'model\.onnx'.*\.keras.*\.tflite"):
        inference.load_classifier(tmp_path / "model.onnx")
    with pytest.raises(UserError, match="no such model file"):
        inference.load_classifier(tmp_path / "missing.keras")
    for name in ("junk.tflite", "junk.keras", "junk.h5"):
        (tmp_path / name).write_text("not a model")
        with pytest.raises(UserError, match=rf"cannot load .*{name}") as caught:
            inference.load_classifier(tmp_path / name)
        assert "\n" not in str(caught.value)


def test_latency_ms(saved):
    image = images(1, seed=0)[0]
    for key in ("keras", "tflite"):
        ms = inference.latency_ms(inference.load_classifier(saved[key]), image, repeats=5, warmup=1)
        assert isinstance(ms, float) and ms > 0
