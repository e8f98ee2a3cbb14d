"""ImageNet weights when the download fails, --from_ckpt across class counts, and --freeze_epochs with --resume.

Every run here clears Keras' session first, so its layers get the names a fresh `python train.py` gives them
(Keras numbers unnamed layers per process): that is what matching layers by name relies on.
"""
import os
import urllib.error
import urllib.request

import keras
import numpy as np
import pytest

import callbacks
import config
import datagen
import train
import transfer
from conftest import exit_code, write_npy
from models import logistic, quickdraw_cnn
from support.layers import weighted_layers

TINY_CNN = ["--model", "quickdraw_cnn", "--model_kwargs", '{"filters": [4, 8], "dense_units": 8}']


def train_run(args):
    keras.backend.clear_session()
    return exit_code(train.main, args)


def one_line_error(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def weights_of(layers):
    return [keras.ops.convert_to_numpy(weight) for layer in layers for weight in layer.weights]


def same(first, second):
    return len(first) == len(second) and all(np.array_equal(a, b) for a, b in zip(first, second))


def load(path):
    return keras.saving.load_model(path, compile=False)


def base_of(model, name="quickdraw_cnn"):
    return transfer.head_and_base(model, config.MODELS[name].head)[1]


def batch_norms(model):
    return [layer for layer in weighted_layers(model) if isinstance(layer, keras.layers.BatchNormalization)]


@pytest.fixture
def five_classes(tmp_path):
    return write_npy(str(tmp_path / "five"), {name: 24 for name in ["a", "b", "c", "d", "e"]})


@pytest.fixture
def two_classes(tmp_path):
    return write_npy(str(tmp_path / "two"), {"f": 24, "g": 24}, seed=1)


@pytest.fixture
def pretrained(five_classes, tmp_path):
    """A finished one-epoch run of the tiny CNN on five classes."""
    run_dir = str(tmp_path / "pretrained")
    assert train_run(["--data", five_classes, "--save_to", run_dir, *TINY_CNN, "--num_epochs", "1",
                      "--batch_size", "16"]) == 0
    return run_dir


@pytest.mark.parametrize("model, wanted", [
    ("mobilenet_v2", "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.5_160_no_top.h5"),
    ("mobilenet_v1", "mobilenet_5_0_160_tf_no_top.h5"),
])
def test_imagenet_download_failure_names_the_file_in_one_line_and_writes_nothing(
        model, wanted, two_classes, tmp_path, capsys, monkeypatch):
    keras_home = tmp_path / "keras_home"
    monkeypatch.setattr(keras.src.backend.config, "_KERAS_DIR", str(keras_home))  # no cached file to find

    def offline(*args, **kwargs):
        raise urllib.error.URLError("network is unreachable")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    run_dir = tmp_path / "run"
    code = train_run(["--data", two_classes, "--save_to", str(run_dir), "--model", model, "--input_size", "160,160",
                      "--channels", "3", "--model_kwargs", '{"alpha": 0.5, "weights": "imagenet"}'])
    error = one_line_error(capsys)
    assert code == 2 and f"put {wanted} into ~/.keras/models/" in error and "network is unreachable" in error
    assert not run_dir.exists()
    assert [files for _, _, files in os.walk(keras_home)] == [[]] * len(list(os.walk(keras_home)))


def test_partial_load_copies_matching_layers_and_names_the_skipped_head(tmp_path, capsys):
    keras.backend.clear_session()
    source = quickdraw_cnn.construct((28, 28, 1), 5)
    source.save(str(tmp_path / "five.keras"))
    keras.backend.clear_session()
    model = quickdraw_cnn.construct((28, 28, 1), 2)
    transfer.load_checkpoint(model, str(tmp_path / "five.keras"))
    out = capsys.readouterr().out
    assert "loaded 11 of 12 layers" in out and "not loaded: classifier (weights [(128, 5), (5,)] there, " \
                                               "[(128, 2), (2,)] here)" in out
    assert same(weights_of(source.layers[:-1]), weights_of(model.layers[:-1]))


def test_frozen_epochs_keep_the_base_and_later_epochs_train_it(pretrained, two_classes, tmp_path, capsys):
    run_dir = str(tmp_path / "fine_tuned")
    assert train_run(["--data", two_classes, "--save_to", run_dir, *TINY_CNN, "--from_ckpt", pretrained,
                      "--freeze_epochs", "1", "--num_epochs", "2", "--batch_size", "16", "--keep_checkpoints", "2"]) == 0
    out = capsys.readouterr().out
    assert "not loaded: classifier (weights [(8, 5), (5,)] there, [(8, 2), (2,)] here)" in out
    assert "epoch 2: base unfrozen" in out
    source = load(os.path.join(pretrained, "best.keras"))
    epoch_1, epoch_2 = (load(os.path.join(run_dir, "checkpoints", f"epoch_00{n}.keras")) for n in (1, 2))
    # Frozen: every base weight, BatchNorm statistics included, is the pretrained one; only the head learned.
    assert same(weights_of(base_of(epoch_1)), weights_of(base_of(source)))
    assert not same(weights_of(epoch_1.layers[-1:]), weights_of(epoch_2.layers[-1:]))
    # Unfrozen: every base layer trains, BatchNorm too (quickdraw_cnn's SPEC: batchnorm_fine_tunes).
    for before, after in zip(base_of(epoch_1), base_of(epoch_2)):
        assert not same(weights_of([before]), weights_of([after])), before.name
    settings = config.read(run_dir)
    assert settings.from_ckpt == pretrained and settings.freeze_epochs == 1
    assert settings.unfreeze_lr_factor == config.NAMED["unfreeze_lr_factor"].default


def test_a_mobilenet_base_freezes_whole_with_its_batchnorm(two_classes, tmp_path):
    run_dir = str(tmp_path / "mobilenet")
    assert train_run(["--data", two_classes, "--save_to", run_dir, "--model", "mobilenet_v2", "--input_size", "32,32",
                      "--model_kwargs", '{"alpha": 0.35}', "--freeze_epochs", "1", "--num_epochs", "2",
                      "--batch_size", "16", "--keep_checkpoints", "2"]) == 0
    keras.backend.clear_session()
    keras.utils.set_random_seed(0)  # train.py's seed: the initial model again
    initial = config.build_model(config.read(run_dir))
    epoch_1, epoch_2 = (load(os.path.join(run_dir, "checkpoints", f"epoch_00{n}.keras")) for n in (1, 2))
    assert same(weights_of(base_of(epoch_1, "mobilenet_v2")), weights_of(base_of(initial, "mobilenet_v2")))
    assert not same(weights_of(base_of(epoch_1, "mobilenet_v2")), weights_of(base_of(epoch_2, "mobilenet_v2")))
    # inside the nested backbone too: an ImageNet backbone keeps its statistics
    assert batch_norms(epoch_1) and same(weights_of(batch_norms(epoch_1)), weights_of(batch_norms(epoch_2)))


class Interrupted(Exception):
    pass


# No dropout: its random masks are not part of the backup, and the two runs must compute the same.
RESUMED = {"quickdraw_cnn": ["--model", "quickdraw_cnn", "--model_kwargs",
                             '{"filters": [4, 8], "dense_units": 8, "dropout": 0}', "--from_ckpt", "PRETRAINED"],
           # an ImageNet backbone's declaration: its BatchNorm stays in inference mode once unfrozen
           "efficientnet_lite": ["--model", "efficientnet_lite", "--input_size", "32,32",
                                 "--model_kwargs", '{"variant": "tiny", "dropout": 0}']}


@pytest.mark.parametrize("model, stop_after", [("quickdraw_cnn", 1), ("quickdraw_cnn", 2), ("efficientnet_lite", 1)],
                         ids=["at_the_switch", "after_it", "efficientnet_at_the_switch"])
def test_resume_across_the_unfreeze_finishes_each_epoch_once_as_if_uninterrupted(
        model, stop_after, pretrained, two_classes, tmp_path, capsys, monkeypatch):
    args = ["--data", two_classes, *[pretrained if f == "PRETRAINED" else f for f in RESUMED[model]],
            "--freeze_epochs", "1", "--num_epochs", "3", "--batch_size", "16"]
    whole = str(tmp_path / "whole")
    assert train_run([*args, "--save_to", whole]) == 0

    run_dir = str(tmp_path / "interrupted")
    backup = callbacks.Backup.on_epoch_end

    def backup_then_die(self, epoch, logs=None):
        backup(self, epoch, logs)
        if epoch + 1 == stop_after:
            raise Interrupted

    monkeypatch.setattr(callbacks.Backup, "on_epoch_end", backup_then_die)
    with pytest.raises(Interrupted):
        train_run([*args, "--save_to", run_dir])
    monkeypatch.setattr(callbacks.Backup, "on_epoch_end", backup)
    capsys.readouterr()
    assert train_run(["--save_to", run_dir, "--resume"]) == 0
    out = capsys.readouterr().out
    assert [int(row["epoch"]) for row in callbacks.read_history(run_dir)] == [0, 1, 2]
    assert out.count("Epoch ") == 3 - stop_after and out.count("base unfrozen") == (stop_after == 1)
    resumed = load(os.path.join(run_dir, "checkpoints", "epoch_003.keras"))
    finished = load(os.path.join(whole, "checkpoints", "epoch_003.keras"))
    # A lost or misplaced optimizer state shows as differences around 1e-4 after one more epoch.
    for mine, theirs in zip(weights_of(resumed.layers), weights_of(finished.layers)):
        np.testing.assert_allclose(mine, theirs, rtol=0, atol=1e-6)


@pytest.mark.parametrize("flags, message", [
    (["--freeze_epochs", "3", "--num_epochs", "2"], "--freeze_epochs 3 is more than --num_epochs 2"),
    (["--model", "logistic", "--freeze_epochs", "1"], "logistic has no layers with weights outside its head (classifier)"),
    (["--from_ckpt", "LOGISTIC"], "no layer matches quickdraw_cnn by name and weight shapes (its layers with weights: classifier)"),
    (["--from_ckpt", "NOT_A_RUN"], "expected a run folder, a .keras or .h5 model, or a .weights.h5 file"),
    (["--from_ckpt", "MISSING"], "no such model file"),
    (["--unfreeze_lr_factor", "2"], "--unfreeze_lr_factor: must be in (0, 1]"),
    (["--unfrozen_head_lr_factor", "0"], "--unfrozen_head_lr_factor: must be a positive number"),
    (["--train_batchnorm"], "--train_batchnorm says what BatchNorm does once --freeze_epochs unfreeze the base"),
])
def test_bad_transfer_flags_give_one_line_exit_2_and_write_nothing(flags, message, two_classes, tmp_path, capsys):
    logistic.construct((28, 28, 1), 3).save(str(tmp_path / "logistic.keras"))
    (tmp_path / "not_a_run").mkdir()
    paths = {"LOGISTIC": str(tmp_path / "logistic.keras"), "NOT_A_RUN": str(tmp_path / "not_a_run"),
             "MISSING": str(tmp_path / "missing.keras")}
    run_dir = tmp_path / "run"
    code = train_run(["--data", two_classes, "--save_to", str(run_dir), *[paths.get(f, f) for f in flags]])
    assert code == 2 and message in one_line_error(capsys)
    assert not run_dir.exists()


def test_with_jitter_the_frozen_epochs_run_on_cached_features_and_jitter_starts_after_them(pretrained, two_classes,
                                                                                          tmp_path, capsys,
                                                                                          monkeypatch):
    jittered, cached_until = [], []  # whether each batch served was jittered; how many were served when caching ended
    getitem, fit_head = datagen.BatchGenerator.__getitem__, transfer.fit_head_on_features
    monkeypatch.setattr(datagen.BatchGenerator, "__getitem__",
                        lambda self, index: jittered.append(self.augmenter is not None) or getitem(self, index))
    monkeypatch.setattr(transfer, "fit_head_on_features",
                        lambda *a, **k: [fit_head(*a, **k), cached_until.append(len(jittered))][0])
    assert train_run(["--data", two_classes, "--model", "quickdraw_cnn", "--model_kwargs",
                      '{"filters": [4, 8], "dense_units": 8}', "--from_ckpt", pretrained, "--freeze_epochs", "2",
                      "--num_epochs", "3", "--batch_size", "8", "--jitter", "--save_to", str(tmp_path / "run")]) == 0
    assert capsys.readouterr().out.count("(head alone, on features cached from the frozen base)") == 2
    assert not any(jittered[:cached_until[0]]) and any(jittered[cached_until[0]:])


def test_frozen_epochs_on_cached_features_train_the_same_head_as_on_images(pretrained, two_classes, tmp_path,
                                                                              capsys, monkeypatch):
    # No dropout: the cached path feeds the head features without it (transfer.py), the image path with it.
    args = ["--data", two_classes, "--model", "quickdraw_cnn", "--model_kwargs",
            '{"filters": [4, 8], "dense_units": 8, "dropout": 0}', "--from_ckpt", pretrained, "--freeze_epochs", "3",
            "--num_epochs", "3", "--batch_size", "8", "--keep_checkpoints", "3"]
    computed = []
    cached_features = transfer.CachedFeatures
    monkeypatch.setattr(transfer, "CachedFeatures", lambda *a: computed.append(a[1].mode) or cached_features(*a))
    assert train_run([*args, "--save_to", str(tmp_path / "cached")]) == 0
    out = capsys.readouterr().out
    assert computed == ["train", "val"] and out.count("(head alone, on features cached from the frozen base)") == 3
    monkeypatch.setattr(transfer, "head_on_cached_features", lambda *a: False)
    assert train_run([*args, "--save_to", str(tmp_path / "images")]) == 0
    assert "features cached" not in capsys.readouterr().out
    for epoch in (1, 3):
        cached, images = (load(os.path.join(tmp_path, kind, "checkpoints", f"epoch_00{epoch}.keras"))
                          for kind in ("cached", "images"))
        for mine, theirs in zip(weights_of(cached.layers), weights_of(images.layers)):
            np.testing.assert_allclose(mine, theirs, rtol=0, atol=1e-5)
    cached_rows, image_rows = (callbacks.read_history(str(tmp_path / kind)) for kind in ("cached", "images"))
    assert [list(row) for row in cached_rows] == [list(row) for row in image_rows]
    for mine, theirs in zip(cached_rows, image_rows):
        assert float(mine["val_accuracy"]) == pytest.approx(float(theirs["val_accuracy"]), abs=1e-6)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_while_the_base_trains_the_head_moves_at_its_factor_times_the_rate(optimizer, tmp_path):
    keras.backend.clear_session()
    settings = config.RunConfig(model="quickdraw_cnn", model_kwargs={"filters": [4, 8], "dense_units": 8},
                                class_names=["a", "b"], freeze_epochs=1, num_epochs=3, optimizer=optimizer,
                                lr_schedule="constant", unfrozen_head_lr_factor=10)
    model = train.compiled_model(settings, steps_per_epoch=4)
    head, base = transfer.head_and_base(model, config.MODELS["quickdraw_cnn"].head)
    transfer.unfreeze_base(model, config.MODELS["quickdraw_cnn"].head, batchnorm_trains=True)
    unfrozen = train.make_optimizer(settings, steps_per_epoch=4, unfrozen=True, model=model)
    before = {variable.path: keras.ops.convert_to_numpy(variable) for variable in model.trainable_variables}
    # One step on gradients of ones: SGD moves each weight by its rate, Adam's first step too (m / sqrt(v) = 1).
    unfrozen.apply([keras.ops.ones_like(variable) for variable in model.trainable_variables], model.trainable_variables)
    rate = settings.learning_rate * settings.unfreeze_lr_factor
    for layers, wanted in ((head, 10 * rate), (base, rate)):
        for variable in (variable for layer in layers for variable in layer.trainable_weights):
            moved = before[variable.path] - keras.ops.convert_to_numpy(variable)
            np.testing.assert_allclose(moved, wanted, rtol=1e-3, err_msg=variable.path)
    # The frozen epochs' optimizer trains the head alone, at its own rate: no factor there.
    assert not isinstance(train.make_optimizer(settings, steps_per_epoch=4, model=model), transfer.HeadRate)
    model.compile(optimizer=unfrozen, loss="sparse_categorical_crossentropy")  # as a run resumed past the unfreeze
    model.save(str(tmp_path / "model.keras"))  # a saved model names the optimizer, which loads back as it was
    loaded = keras.saving.load_model(str(tmp_path / "model.keras")).optimizer
    assert isinstance(loaded, transfer.HeadRate) and loaded.head_factor == 10
    assert loaded.head_paths == [variable.path for layer in head for variable in layer.trainable_weights]


@pytest.mark.parametrize("model, flag", [("efficientnet_lite", "--train_batchnorm"),
                                         ("quickdraw_cnn", "--no-train_batchnorm")])
def test_train_batchnorm_overrides_what_the_model_declares_once_the_base_is_unfrozen(model, flag, two_classes,
                                                                                     tmp_path):
    run_dir = str(tmp_path / "run")
    flags = {"efficientnet_lite": ["--model_kwargs", '{"variant": "tiny"}', "--input_size", "32,32"],
             "quickdraw_cnn": TINY_CNN[2:]}[model]
    assert train_run(["--data", two_classes, "--save_to", run_dir, "--model", model, *flags, "--freeze_epochs", "1",
                      "--num_epochs", "2", "--batch_size", "16", "--keep_checkpoints", "2", flag]) == 0
    epoch_1, epoch_2 = (load(os.path.join(run_dir, "checkpoints", f"epoch_00{n}.keras")) for n in (1, 2))
    kept = same(weights_of(batch_norms(epoch_1)), weights_of(batch_norms(epoch_2)))
    assert batch_norms(epoch_1) and kept == (flag == "--no-train_batchnorm")
    assert config.read(run_dir).train_batchnorm == (flag == "--train_batchnorm")
