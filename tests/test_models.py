"""Every registered model keeps the model contract (DESIGN.md) at its declared test size, on 1 and 3 channels: raw
0-255 pixels in, softmax out, a declared head that trains, Edge TPU friendly, saved and reloaded as .keras without
loss; the MobileNets load a local weights file exactly and keep BatchNorm statistics that catch up on small data sets.

Models run eagerly here: tracing a MobileNet training graph costs tens of seconds on a small CPU,
while one eager step takes about one.
"""
import keras
import numpy as np
import pytest

import config
import train
from models import mobilenet_v1, mobilenet_v2

NUM_CLASSES = 5
CASES = [(name, channels) for name in config.MODELS for channels in (1, 3)]
MOBILENETS = [mobilenet_v1, mobilenet_v2]

# What the Edge TPU runs (shared/docs/TRAPS.md). Anything else must be added here deliberately, after
# checking that it converts to a supported int8 op.
ALLOWED_ACTIVATIONS = {"linear", "relu", "relu6", "softmax"}
ALLOWED_LAYERS = {
    "InputLayer", "Rescaling", "Conv2D", "DepthwiseConv2D", "SeparableConv2D", "BatchNormalization", "ReLU",
    "Activation", "MaxPooling2D", "AveragePooling2D", "GlobalAveragePooling2D", "GlobalMaxPooling2D",
    "ZeroPadding2D", "Flatten", "Reshape", "Dropout", "Dense", "Add", "Multiply", "Concatenate", "Softmax",
    "Functional",
}


def pixels(shape, batch=4, seed=0):
    """Random raw pixel values, as the readers deliver them: float32 in 0-255."""
    return np.random.default_rng(seed).uniform(0, 255, size=(batch, *shape)).astype("float32")


def all_layers(model):
    """Every layer, including those inside nested models such as a MobileNet base."""
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from all_layers(layer)


def edgetpu_problems(model):
    """Names of layers the Edge TPU cannot run (or that would leave a float island in the int8 model)."""
    problems = []
    for layer in all_layers(model):
        kind = type(layer).__name__
        if kind not in ALLOWED_LAYERS:
            problems.append(f"{layer.name}: layer {kind}")
        activation = getattr(layer, "activation", None)
        if activation is not None:
            name = getattr(activation, "__name__", str(activation))
            if name not in ALLOWED_ACTIVATIONS:
                problems.append(f"{layer.name}: activation {name}")
        if kind == "ReLU":
            config = layer.get_config()
            if config["negative_slope"] or config["threshold"] or config["max_value"] not in (None, 6.0):
                problems.append(f"{layer.name}: ReLU {config}")
    return problems


# Built once per case and shared by the tests below (building a MobileNet takes seconds); no test
# depends on the weights being untrained.
@pytest.fixture(scope="module", params=CASES, ids=[f"{name}-{channels}ch" for name, channels in CASES])
def case(request):
    name, channels = request.param
    keras.utils.set_random_seed(0)
    spec = config.MODELS[name]
    return spec.test_model(NUM_CLASSES, channels), (*spec.test_size["input_size"], channels), spec


def test_softmax_output_from_raw_pixels(case):
    model, shape, _ = case
    assert tuple(model.input.shape[1:]) == tuple(shape)
    # The model normalises itself, so the int8 model can take uint8 pixels directly.
    assert isinstance(model.layers[1], keras.layers.Rescaling)
    probabilities = keras.ops.convert_to_numpy(model(pixels(shape), training=False))
    assert probabilities.shape == (4, NUM_CLASSES)
    assert np.all(np.isfinite(probabilities)) and np.all(probabilities >= 0)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)


def head_weights(model, spec):
    return [keras.ops.convert_to_numpy(w) for name in spec.head for w in model.get_layer(name).weights]


def test_the_declared_head_ends_the_model_and_holds_weights(case):
    model, _, spec = case
    names = [layer.name for layer in model.layers]
    assert all(name in names for name in spec.head), (spec.head, names[-4:])
    assert model.layers[-1].name in spec.head and head_weights(model, spec)


def test_one_training_step_changes_weights(case):
    model, shape, spec = case
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy", run_eagerly=True)
    before = [w.copy() for w in model.get_weights()]
    head_before = head_weights(model, spec)
    loss = model.train_on_batch(pixels(shape), np.array([0, 1, 2, 3]))
    assert np.isfinite(loss)
    changed = [not np.array_equal(a, b) for a, b in zip(before, model.get_weights())]
    assert any(changed)
    # The classifier itself must have learned something, not just BatchNorm statistics.
    assert not all(np.array_equal(a, b) for a, b in zip(head_before, head_weights(model, spec)))


def test_edgetpu_friendly(case):
    model, _, _ = case
    assert edgetpu_problems(model) == []
    assert model.layers[-1].activation.__name__ == "softmax"


def test_edgetpu_check_catches_unsupported_layers():
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(2, 3, activation="elu")(inputs)
    x = keras.layers.Conv2D(2, 3, activation="hard_swish")(x)
    x = keras.layers.LeakyReLU()(x)
    x = keras.layers.UpSampling2D()(x)
    x = keras.layers.Lambda(lambda t: t * 2)(x)
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(2, activation="gelu")(x)
    problems = " ".join(edgetpu_problems(keras.Model(inputs, outputs)))
    # Keras names hard_swish "hard_silu".
    for bad in ["activation elu", "activation hard_silu", "layer LeakyReLU", "layer UpSampling2D", "layer Lambda",
                "activation gelu"]:
        assert bad in problems


def test_save_and_reload_keep_predictions(case, tmp_path):
    model, shape, _ = case
    path = str(tmp_path / "model.keras")
    model.save(path)
    reloaded = keras.saving.load_model(path)
    x = pixels(shape, seed=1)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(reloaded(x, training=False)),
                               keras.ops.convert_to_numpy(model(x, training=False)), atol=1e-6)


@pytest.mark.parametrize("module", MOBILENETS, ids=lambda m: m.__name__)
def test_mobilenet_refuses_a_missing_weights_file(module, tmp_path):
    with pytest.raises(ValueError, match="weights file not found: .*missing.h5.*'imagenet', an existing local file"):
        module.construct((32, 32, 3), NUM_CLASSES, alpha=0.25, weights=str(tmp_path / "missing.h5"))


def base_of(model):
    return next(layer for layer in model.layers if isinstance(layer, keras.Model))


# .weights.h5 is what Keras 3 saves; .h5 is the legacy format of Keras' own *_no_top.h5 ImageNet files.
@pytest.mark.parametrize("file_name", ["base.weights.h5", "base.h5"])
@pytest.mark.parametrize("module", MOBILENETS, ids=lambda m: m.__name__)
def test_mobilenet_loads_local_weights_file(module, file_name, tmp_path):
    keras.utils.set_random_seed(1)
    donor = base_of(module.construct((32, 32, 3), NUM_CLASSES, alpha=0.25))
    path = str(tmp_path / file_name)
    donor.save_weights(path) if file_name.endswith(".weights.h5") else donor.save(path)
    keras.utils.set_random_seed(2)
    model = module.construct((32, 32, 3), NUM_CLASSES, alpha=0.25, weights=path)
    loaded = base_of(model).get_weights()
    assert len(loaded) == len(donor.get_weights())
    for mine, theirs in zip(loaded, donor.get_weights()):
        np.testing.assert_array_equal(mine, theirs)


def batch_norms(model):
    return [layer for layer in all_layers(model) if isinstance(layer, keras.layers.BatchNormalization)]


@pytest.mark.parametrize("module", MOBILENETS, ids=lambda m: m.__name__)
def test_mobilenet_batchnorm_momentum_is_set_kept_and_used(module, tmp_path):
    model = module.construct((32, 32, 3), NUM_CLASSES, alpha=0.25)
    assert batch_norms(model) and {layer.momentum for layer in batch_norms(model)} == {0.9}  # Keras: 0.999 / 0.99
    model.save(str(tmp_path / "model.keras"))
    reloaded = keras.saving.load_model(str(tmp_path / "model.keras"))
    assert {layer.momentum for layer in batch_norms(reloaded)} == {0.9}

    base = base_of(module.construct((32, 32, 3), NUM_CLASSES, alpha=0.25, bn_momentum=0.5))
    first = batch_norms(base)[0]
    x = np.random.default_rng(0).uniform(-1, 1, size=(4, 32, 32, 3)).astype("float32")
    batch_mean = keras.ops.convert_to_numpy(keras.Model(base.input, first.input)(x)).mean(axis=(0, 1, 2))
    before = keras.ops.convert_to_numpy(first.moving_mean)
    base(x, training=True)
    # One training step moves the statistics (1 - momentum) of the way to the batch's.
    np.testing.assert_allclose(keras.ops.convert_to_numpy(first.moving_mean), 0.5 * before + 0.5 * batch_mean,
                               rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", list(config.MODELS))
def test_train_summary_prints_the_model_at_its_default_input_and_trains_nothing(name, capsys, tmp_path):
    train.main(["--model", name, "--summary", "--save_to", str(tmp_path / "run")])
    assert not (tmp_path / "run").exists()
    out = capsys.readouterr().out
    spec = config.MODELS[name]
    assert "Total params" in out and f"(None, {', '.join(map(str, (*spec.input_size, spec.channels)))})" in out
