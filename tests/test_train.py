import csv
import json
import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

import callbacks
import config
import train
from callbacks import KeepLastCheckpoints
from conftest import ROOT, exit_code, quickdraw_records, write_npy, write_tfrecord
from support import folders
from support.errors import UserError



def small_flags(name):
    """train.py flags for a registered model at the test size its SPEC declares."""
    size = config.MODELS[name].test_size
    return ["--model", name, "--input_size", ",".join(map(str, size["input_size"])),
            "--model_kwargs", json.dumps(size.get("kwargs", {}))]


def history(run_dir):
    with open(os.path.join(run_dir, "history.csv")) as f:
        return list(csv.DictReader(f))


@pytest.fixture
def tiny_npy(tmp_path):
    return write_npy(str(tmp_path / "npy"), {"apple": 40, "bicycle": 40, "cat": 40})


@pytest.mark.parametrize("name", list(config.MODELS))
def test_every_registered_model_trains_an_epoch_and_fills_its_run_folder(name, tiny_npy, tmp_path):
    run_dir = str(tmp_path / name)
    # 120 drawings, 16 a batch: a last partial batch of odd size, which is what crashes oneDNN's kernel (onednn.py)
    code = exit_code(train.main, ["--data", tiny_npy, "--save_to", run_dir, *small_flags(name),
                                  "--num_epochs", "1", "--batch_size", "16"])
    assert code == 0
    for part in ("config.json", "best.keras", "history.csv", "checkpoints/epoch_001.keras",
                 "backup/state.json", "logs"):
        assert os.path.exists(os.path.join(run_dir, part)), (name, part)
    assert len(history(run_dir)) == 1
    model = keras.saving.load_model(os.path.join(run_dir, "best.keras"), compile=False)
    spec = config.MODELS[name]
    assert config.read(run_dir).channels == spec.channels  # the model's own, as no --channels was given
    shape = (2, *spec.test_size["input_size"], spec.channels)
    assert model.predict(np.zeros(shape, np.float32), verbose=0).shape == (2, 3)


def test_training_learns_above_chance_and_reports_one_summary_line(tiny_npy, tmp_path, capsys):
    run_dir = str(tmp_path / "run")
    assert exit_code(train.main, ["--data", tiny_npy, "--save_to", run_dir, "--model", "logistic", "--num_epochs", "8",
                      "--batch_size", "8", "--learning_rate", "0.01"]) == 0
    best = max(float(row["val_accuracy"]) for row in history(run_dir))
    assert best > 0.8  # three classes: chance is 0.33
    out, err = capsys.readouterr()
    summary = out.strip().splitlines()[-1]
    assert summary.startswith(f"best val_accuracy {best:.4f}") and f"8 epochs run; run folder: {run_dir}" in summary
    assert "learned nothing" not in out + err


def test_a_run_that_learns_nothing_ends_with_a_warning_not_an_error(tmp_path, capsys):
    blank = tmp_path / "blank"  # two classes of identical empty drawings: nothing to tell them apart
    blank.mkdir()
    for name in ("apple", "bicycle"):
        np.save(blank / f"{name}.npy", np.zeros((40, 784), np.uint8))
    run_dir = str(tmp_path / "run")
    assert exit_code(train.main, ["--data", str(blank), "--save_to", run_dir, "--model", "logistic",
                                  "--num_epochs", "2", "--batch_size", "16"]) == 0
    warning = [line for line in capsys.readouterr().err.splitlines() if "learned nothing" in line]
    assert len(warning) == 1 and warning[0].startswith("warning: this run learned nothing: ")
    assert "commonest class" in warning[0] and "Likely causes" in warning[0]
    assert os.path.isfile(os.path.join(run_dir, "best.keras"))  # the run itself is kept


def test_config_json_holds_what_rebuilds_the_run(tiny_npy, tmp_path):
    run_dir = str(tmp_path / "run")
    exit_code(train.main, ["--data", tiny_npy, "--save_to", run_dir, "--model", "logistic", "--num_epochs", "1",
               "--classes", "cat,apple", "--seed", "7", "--jitter", "--loss", "focal", "--optimizer", "sgd"])
    settings = config.read(run_dir)
    assert settings.class_names == ["cat", "apple"] and settings.seed == 7 and settings.jitter is True
    assert settings.data == [os.path.abspath(tiny_npy)] and settings.data_format == "quickdraw_npy"
    assert settings.loss == "focal" and settings.optimizer == "sgd" and settings.input_size == [28, 28]
    assert {settings.versions["backend"], "keras", "numpy"} <= set(settings.versions) and settings.started
    rebuilt = config.build_model(settings)
    assert rebuilt.output_shape == (None, 2)


def test_config_read_round_trips_and_rejects_bad_files(tmp_path):
    settings = config.RunConfig(class_names=["a", "b"])
    saved = config.save(str(tmp_path), settings)
    assert config.read(str(tmp_path)) == saved and saved.replace(versions={}, started="") == settings
    with pytest.raises(UserError, match="not a run folder"):
        config.read(str(tmp_path / "nowhere"))
    for text, message in [
            ("{not json", "cannot read"),
            (json.dumps({"model": "logistic"}), "incomplete: missing"),
            (json.dumps(dict(saved.record(), model="resnet_9000")),
             r"cannot read .*config.json: model: must be one of quickdraw_cnn, .*, got 'resnet_9000'"),
            (json.dumps(dict(saved.record(), batchsize=64)), r"unknown setting 'batchsize' \(did you mean batch_size\?\)"),
            (json.dumps(dict(saved.record(), batch_size="many")), "batch_size: must be an integer, got 'many'")]:
        (tmp_path / "config.json").write_text(text)
        with pytest.raises(UserError, match=message):
            config.read(str(tmp_path))


def test_keep_last_checkpoints_deletes_the_oldest_by_epoch_number(tmp_path):
    keeper = KeepLastCheckpoints(folders.Destination(str(tmp_path)), keep=2)
    keeper.set_model(keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)]))
    for epoch in (997, 998, 999, 1000, 1001):  # epoch_1000 sorts before epoch_998 as text
        keeper.on_epoch_end(epoch)
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["epoch_1001.keras", "epoch_1002.keras"]


def test_best_keras_holds_the_best_accuracy_and_of_equal_ones_the_lowest_loss(tmp_path):
    """On an easy validation set several epochs reach the same accuracy; the first of them is not kept for that."""
    best = callbacks.BestModel(folders.Destination(str(tmp_path)))
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1, use_bias=False)])
    best.set_model(model)
    for epoch, (accuracy, loss) in enumerate([(0.9, 0.3), (1.0, 0.5), (1.0, 0.2), (1.0, 0.4), (0.95, 0.1)]):
        model.layers[0].kernel.assign([[float(epoch)]])
        best.on_epoch_end(epoch, {"val_accuracy": accuracy, "val_loss": loss})
    kept = keras.saving.load_model(str(tmp_path / folders.BEST_MODEL))
    assert float(kept.layers[0].kernel.numpy()[0, 0]) == 2.0  # epoch 2: accuracy 1.0 at the lowest loss
    history = [{"epoch": "0", "val_accuracy": "1.0", "val_loss": "0.2"}, {"epoch": "1", "val_accuracy": "1.0",
                                                                         "val_loss": "0.1"}]
    assert max(history, key=callbacks.epoch_rank)["epoch"] == "1"  # what a resumed run and the report take


@pytest.mark.parametrize("flags, message", [
    (["--model", "resnet_9000"], "invalid choice: 'resnet_9000' (choose from 'quickdraw_cnn'"),
    (["--input_size", "224"], "--input_size: must be H,W"),
    (["--input_size", "0,28"], "--input_size: must be H,W with positive sizes"),
    (["--batch_size", "0"], "--batch_size: must be a positive integer"),
    (["--num_epochs", "-3"], "--num_epochs: must be a positive integer"),
    (["--data", "/no/such/folder"], "data path not found: /no/such/folder"),
    (["--loss", "hinge"], "invalid choice: 'hinge' (choose from 'crossentropy'"),
    (["--train_ratio", "1.5"], r"--train_ratio: must be in (0, 1]"),
    (["--model", "mobilenet_v2", "--input_size", "8,8"], "cannot build mobilenet_v2"),
])
def test_bad_flags_give_one_line_exit_2_and_write_nothing(tiny_npy, tmp_path, capsys, flags, message):
    run_dir = tmp_path / "run"
    data = [] if "--data" in flags else ["--data", tiny_npy]
    assert exit_code(train.main, [*data, "--save_to", str(run_dir), *flags]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    assert not run_dir.exists()


def test_existing_folder_is_refused_unless_it_is_a_run_and_overwrite_is_given(tiny_npy, tmp_path, capsys):
    keep = tmp_path / "precious"
    keep.mkdir()
    (keep / "notes.txt").write_text("mine")
    for flags in ([], ["--overwrite"]):
        assert exit_code(train.main, ["--data", tiny_npy, "--save_to", str(keep), *flags]) == 2
        assert (keep / "notes.txt").read_text() == "mine" and os.listdir(keep) == ["notes.txt"]
    assert "already exists; pass --overwrite" in capsys.readouterr().err
    run_dir = str(tmp_path / "run")
    base = ["--data", tiny_npy, "--save_to", run_dir, "--model", "logistic", "--num_epochs", "1"]
    assert exit_code(train.main, base) == 0
    assert exit_code(train.main, base) == 2
    assert exit_code(train.main, [*base, "--overwrite", "--seed", "3"]) == 0
    assert config.read(run_dir).seed == 3 and len(history(run_dir)) == 1


def test_separate_validation_source(tmp_path):
    train_file = write_tfrecord(str(tmp_path / "train.tfrecord"), quickdraw_records(30))
    val_file = write_tfrecord(str(tmp_path / "valid.tfrecord"), quickdraw_records(12, seed=1))
    run_dir = str(tmp_path / "run")
    assert exit_code(train.main, ["--data", train_file, "--val_data", val_file, "--save_to", run_dir, "--model", "logistic",
                      "--num_epochs", "1", "--batch_size", "6"]) == 0
    settings = config.read(run_dir)
    assert settings.val_data == [val_file] and settings.data_format == "tfrecord"


def cli(args, cwd=ROOT, **kwargs):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "train.py", *args], cwd=cwd, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kwargs)


def test_resume_after_kill_9_finishes_only_the_missing_epochs(tmp_path):
    data = write_npy(str(tmp_path / "npy"), {"a": 400, "b": 400, "c": 400})
    run_dir = str(tmp_path / "run")
    args = ["--data", data, "--save_to", run_dir, "--model", "logistic", "--num_epochs", "6", "--batch_size", "4",
            "--keep_checkpoints", "1"]
    process = cli(args)
    deadline = time.time() + 120
    while time.time() < deadline and process.poll() is None:
        if os.path.exists(os.path.join(run_dir, "history.csv")) and len(history(run_dir)) >= 2:
            break
        time.sleep(0.05)
    assert process.poll() is None, "training ended before it could be killed: " + process.stdout.read()
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    done = callbacks.read_backup(run_dir)["epochs_done"]
    before = history(run_dir)[:done]
    assert 1 <= done < 6

    resumed = cli(["--save_to", run_dir, "--resume"])
    output, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, output
    after = history(run_dir)
    assert [int(row["epoch"]) for row in after] == list(range(6))
    assert after[:done] == before  # finished epochs are kept, not retrained
    assert len([line for line in output.splitlines() if line.startswith("Epoch ")]) == 6 - done
    assert callbacks.read_backup(run_dir)["epochs_done"] == 6
    assert os.listdir(os.path.join(run_dir, "checkpoints")) == ["epoch_006.keras"]


def test_cli_help_lists_models_and_losses_and_bad_flag_exits_2(tmp_path):
    helped = cli(["--help"])
    text, _ = helped.communicate(timeout=120)
    assert helped.returncode == 0
    assert all(name in text for name in [*config.MODELS, *config.LOSSES])
    bad = cli(["--batch_size", "zero", "--save_to", str(tmp_path / "run")])
    out, _ = bad.communicate(timeout=120)
    assert bad.returncode == 2 and out.strip().splitlines()[-1].startswith("error: argument --batch_size")
    assert not (tmp_path / "run").exists()


def test_backup_restores_weights_and_optimizer_state(tmp_path):
    def compiled():
        model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, activation="softmax")])
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        return model

    x, y = np.random.default_rng(0).normal(size=(32, 3)), np.arange(32) % 2
    trained = compiled()
    backup = callbacks.Backup(folders.Destination(str(tmp_path)))
    trained.fit(x, y, epochs=2, batch_size=8, verbose=0, callbacks=[backup])
    fresh = compiled()
    assert callbacks.restore(fresh, str(tmp_path)) == 2
    assert int(fresh.optimizer.iterations) == int(trained.optimizer.iterations) == 8
    for mine, theirs in zip(fresh.optimizer.variables, trained.optimizer.variables):
        assert np.allclose(np.asarray(mine), np.asarray(theirs))
    assert sorted(os.listdir(tmp_path / "backup")) == ["epoch_002.weights.h5", "state.json"]


def test_a_model_with_one_answer_for_everything_is_flagged_even_with_a_good_best_epoch(tiny_npy):
    from datagen import BatchGenerator
    from models import logistic
    from reader import DataReader
    model = logistic.construct((28, 28, 1), 3)
    kernel, _ = model.layers[-1].get_weights()
    model.layers[-1].set_weights([np.zeros_like(kernel), np.array([0.0, 5.0, 0.0], np.float32)])
    val_gen = BatchGenerator(DataReader(tiny_npy), "val", batch_size=16)
    assert train.nothing_learned(model, val_gen, 0.9) == \
        "the final model answers 'bicycle' for every validation item"
    assert train.nothing_learned(model, val_gen, 0.9, single_process=False) is None
