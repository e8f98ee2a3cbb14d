"""The custom losses give the textbook values, accept (N,) and (N, 1) labels, and survive a .keras round trip."""
import keras
import numpy as np
import pytest

import loss

# Two samples, three classes; softmax-like rows.
PROBS = np.array([[0.7, 0.2, 0.1],
                  [0.1, 0.1, 0.8]], dtype="float32")
LABELS = np.array([0, 1])


def value(loss_fn, labels=LABELS, probs=PROBS):
    return float(keras.ops.convert_to_numpy(loss_fn(labels, probs)))


def per_sample(loss_cls, **kwargs):
    return keras.ops.convert_to_numpy(loss_cls(reduction=None, **kwargs)(LABELS, PROBS))


def test_no_argument_constructors_give_the_documented_defaults():
    assert loss.LabelSmoothingCrossentropy().smoothing == 0.1
    focal = loss.FocalLoss()
    assert focal.gamma == 2.0 and focal.alpha is None


def test_label_smoothing_zero_is_sparse_crossentropy():
    expected = np.mean([-np.log(0.7), -np.log(0.1)])
    assert value(loss.LabelSmoothingCrossentropy(smoothing=0.0)) == pytest.approx(expected, rel=1e-5)
    assert value(keras.losses.SparseCategoricalCrossentropy()) == pytest.approx(expected, rel=1e-5)


def test_label_smoothing_by_hand():
    # smoothing 0.3 over 3 classes: the true class gets 0.7 + 0.1 = 0.8, the others 0.1 each.
    target = np.array([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1]])
    expected = -(target * np.log(PROBS)).sum(axis=1)
    np.testing.assert_allclose(per_sample(loss.LabelSmoothingCrossentropy, smoothing=0.3), expected, rtol=1e-5)
    # Uniform predictions cost log(K) whatever the smoothing.
    uniform = np.full((2, 4), 0.25, dtype="float32")
    assert value(loss.LabelSmoothingCrossentropy(0.2), probs=uniform) == pytest.approx(np.log(4), rel=1e-5)
    # Same as Keras' one-hot crossentropy with label_smoothing.
    keras_value = value(keras.losses.CategoricalCrossentropy(label_smoothing=0.3), labels=np.eye(3)[LABELS])
    assert value(loss.LabelSmoothingCrossentropy(0.3)) == pytest.approx(keras_value, rel=1e-5)


def test_focal_gamma_zero_is_sparse_crossentropy():
    expected = np.mean([-np.log(0.7), -np.log(0.1)])
    assert value(loss.FocalLoss(gamma=0.0)) == pytest.approx(expected, rel=1e-5)


def test_focal_by_hand():
    # p_t = 0.7 and 0.1: -(1 - p_t)^2 log p_t.
    expected = [-(0.3 ** 2) * np.log(0.7), -(0.9 ** 2) * np.log(0.1)]
    np.testing.assert_allclose(per_sample(loss.FocalLoss), expected, rtol=1e-5)
    # p_t = 0.5, gamma 2: 0.25 * log 2.
    half = np.array([[0.5, 0.5]], dtype="float32")
    assert value(loss.FocalLoss(), labels=np.array([1]), probs=half) == pytest.approx(0.25 * np.log(2), rel=1e-5)
    # alpha: one number scales everything; a list weights each sample by its true class.
    np.testing.assert_allclose(per_sample(loss.FocalLoss, alpha=0.25), 0.25 * np.array(expected), rtol=1e-5)
    np.testing.assert_allclose(per_sample(loss.FocalLoss, alpha=[2.0, 3.0, 5.0]),
                               [2.0 * expected[0], 3.0 * expected[1]], rtol=1e-5)
    # Same as Keras' one-hot focal crossentropy (alpha=1 there means no weighting).
    keras_value = value(keras.losses.CategoricalFocalCrossentropy(alpha=1.0, gamma=2.0), labels=np.eye(3)[LABELS])
    assert value(loss.FocalLoss()) == pytest.approx(keras_value, rel=1e-5)


def test_confident_mistake_is_finite():
    certain_wrong = np.array([[1.0, 0.0]], dtype="float32")
    for loss_fn in [loss.LabelSmoothingCrossentropy(), loss.FocalLoss()]:
        assert np.isfinite(value(loss_fn, labels=np.array([1]), probs=certain_wrong))


@pytest.mark.parametrize("loss_fn", [loss.LabelSmoothingCrossentropy(), loss.FocalLoss(alpha=[1.0, 2.0, 3.0])],
                         ids=["label_smoothing", "focal"])
def test_label_shapes_n_and_n1_agree(loss_fn):
    flat = value(loss_fn, labels=LABELS)
    assert value(loss_fn, labels=LABELS.reshape(-1, 1)) == pytest.approx(flat, rel=1e-6)
    assert value(loss_fn, labels=LABELS.astype("float32").reshape(-1, 1)) == pytest.approx(flat, rel=1e-6)


@pytest.mark.parametrize("bad", [lambda: loss.LabelSmoothingCrossentropy(smoothing=1.0),
                                 lambda: loss.LabelSmoothingCrossentropy(smoothing=-0.1),
                                 lambda: loss.FocalLoss(gamma=-1.0)])
def test_bad_parameters_are_rejected(bad):
    with pytest.raises(ValueError):
        bad()


@pytest.mark.parametrize("loss_fn", [loss.LabelSmoothingCrossentropy(smoothing=0.2),
                                     loss.FocalLoss(gamma=1.5, alpha=0.5),
                                     loss.FocalLoss(alpha=[1.0, 2.0, 3.0])],
                         ids=["label_smoothing", "focal-scalar-alpha", "focal-class-alpha"])
def test_config_round_trip(loss_fn):
    config = loss_fn.get_config()
    copy = type(loss_fn).from_config(config)
    assert copy.get_config() == config
    assert value(copy) == pytest.approx(value(loss_fn), rel=1e-6)
    # Through Keras' registry, which is what loading a .keras file uses.
    restored = keras.losses.deserialize(keras.losses.serialize(loss_fn))
    assert type(restored) is type(loss_fn) and restored.get_config() == config


@pytest.mark.parametrize("loss_fn", [loss.LabelSmoothingCrossentropy(smoothing=0.2), loss.FocalLoss(gamma=1.5)],
                         ids=["label_smoothing", "focal"])
def test_compiled_model_saves_and_reloads(loss_fn, tmp_path):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(inputs))
    model.compile(optimizer="adam", loss=loss_fn, run_eagerly=True)
    x = np.random.default_rng(0).normal(size=(8, 4)).astype("float32")
    y = np.arange(8) % 3
    model.train_on_batch(x, y)
    path = str(tmp_path / "model.keras")
    model.save(path)
    reloaded = keras.saving.load_model(path)
    assert type(reloaded.loss) is type(loss_fn)
    assert reloaded.loss.get_config() == loss_fn.get_config()
    np.testing.assert_allclose(reloaded.evaluate(x, y, verbose=0), model.evaluate(x, y, verbose=0), rtol=1e-5)
