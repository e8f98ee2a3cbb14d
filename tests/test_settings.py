"""Each setting is declared once (config.SETTINGS): every tool's --help shows the declared default, RunConfig is made
from the declarations and checks every value, tune.py searches what declares a space, and a run folder from before a
setting is read, and resumed, with the value it had."""
import dataclasses
import json
import re

import pytest

import config
import train
from conftest import exit_code, help_of, write_npy
from support import folders
from support.errors import UserError

TOOLS = sorted({tool for setting in config.SETTINGS for tool in setting.tools})
HELP_OF = {"plots": "jitter"}  # plots.py's shared flags are its jitter command's


def flag_help(help_text, name):
    """The help of --name in a --help text, joined onto one line."""
    block = re.search(rf"^  --{name}\b.*?(?=^  -|\Z)", help_text, flags=re.M | re.S)
    assert block, f"--{name} is not in the help"
    return " ".join(block.group(0).split())


@pytest.mark.parametrize("tool", TOOLS)
def test_every_tool_shows_each_declared_default_in_its_help(tool):
    done = help_of(tool, HELP_OF.get(tool))
    assert done.returncode == 0, done.stderr
    declared = [s for s in config.SETTINGS if tool in s.tools]
    assert declared
    for setting in declared:  # one declaration: a flag that several tools share has the same default in each
        shown = " ".join(f"(default: {setting.shown or setting.default})".split())
        assert flag_help(done.stdout, setting.name).endswith(shown), setting.name


def test_the_declaration_is_what_train_tune_and_config_json_use():
    trained = {s.name for s in config.SETTINGS if "train" in s.tools}
    assert set(vars(train.parse_args([]))) >= trained
    assert all(value is None for name, value in vars(train.parse_args([])).items() if name in trained)
    assert set(config.SEARCHABLE) <= trained and "data" not in config.SEARCHABLE
    assert not set(config.NEVER_SEARCHED) & set(config.SEARCHABLE)
    assert [field.name for field in dataclasses.fields(config.RunConfig)] == [s.name for s in config.RECORDED]
    assert not [s.name for s in config.SETTINGS if not s.recorded and "train" in s.tools]  # a run records its flags


@pytest.mark.parametrize("values, message", [
    ({"batchsize": 64}, r"unknown setting 'batchsize' \(did you mean batch_size\?\)"),
    ({"batch_size": "many"}, "batch_size: must be an integer, got 'many'"),
    ({"batch_size": 0}, "batch_size: must be a positive integer, got 0"),
    ({"learning_rate": True}, "learning_rate: must be a number, got True"),
    ({"jitter": "yes"}, "jitter: must be true or false, got 'yes'"),
    ({"model": "resnet_9000"}, "model: must be one of quickdraw_cnn"),
    ({"input_size": [224]}, "input_size: must be H,W"),
    ({"data": []}, "data: must be a non-empty list"),
    ({"freeze_epochs": 3, "num_epochs": 2}, "--freeze_epochs 3 is more than --num_epochs 2"),
])
def test_a_misspelled_or_mistyped_setting_from_python_is_one_error_that_names_it(values, message):
    with pytest.raises(UserError, match=message):
        config.RunConfig(**values)


def test_a_configuration_is_typed_frozen_and_fills_in_what_the_model_declares():
    settings = config.RunConfig(model="efficientnet_lite", model_kwargs={"variant": "lite1"}, batch_size="16",
                                input_size="200,180", data="photos")
    assert (settings.batch_size, settings.input_size, settings.data) == (16, [200, 180], ["photos"])
    assert config.RunConfig(model="efficientnet_lite", model_kwargs={"variant": "lite1"}).input_size == [240, 240]
    assert config.RunConfig().channels == 1 and config.RunConfig(model="mobilenet_v2").channels == 3
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.batch_size = 8
    assert settings.replace(batch_size=8).batch_size == 8 and settings.batch_size == 16


def test_a_misspelled_or_mistyped_flag_is_one_error_line_and_writes_nothing(tmp_path, capsys):
    for flags in (["--batchsize", "8"], ["--batch_size", "many"], ["--jitter", "yes"]):
        assert exit_code(train.main, ["--save_to", str(tmp_path / "run"), *flags]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: "), err
    assert not (tmp_path / "run").exists()


def test_a_run_folder_from_before_head_lr_factor_reads_as_it_trained_and_resumes(tmp_path, capsys):
    data = write_npy(str(tmp_path / "npy"), {"a": 30, "b": 30})
    run_dir = tmp_path / "run"
    assert exit_code(train.main, ["--data", data, "--save_to", str(run_dir), "--model", "quickdraw_cnn",
                                  "--model_kwargs", '{"filters": [4, 8], "dense_units": 8}', "--freeze_epochs", "1",
                                  "--num_epochs", "2", "--batch_size", "16"]) == 0
    old = json.loads((run_dir / folders.CONFIG).read_text())
    for newer in ("head_lr_factor", "lr_schedule", "cache_mb", "class_weight", "distribute", "dtype_policy",
                  "unfrozen_head_lr_factor", "train_batchnorm", "time_budget", "jitter_kind", "epoch_seconds"):
        del old[newer]  # as train.py wrote config.json before these settings existed
    (run_dir / folders.CONFIG).write_text(json.dumps(old))
    capsys.readouterr()
    settings = config.read(str(run_dir))
    assert (settings.head_lr_factor, settings.lr_schedule, settings.cache_mb) == (1.0, "constant", 0)
    assert (settings.class_weight, settings.distribute, settings.dtype_policy) == (None, "none", "float32")
    # the head at the base's rate once unfrozen, BatchNorm as the model declares, --num_epochs, affine jitter
    assert (settings.unfrozen_head_lr_factor, settings.train_batchnorm, settings.time_budget) == (1.0, None, None)
    assert (settings.jitter_kind, settings.epoch_seconds) == ("affine", None)
    note = capsys.readouterr().err
    assert note.count("\n") == 1 and "head_lr_factor 1.0" in note and "lr_schedule constant" in note
    head_rate = float(train.make_optimizer(settings, steps_per_epoch=4).learning_rate)  # constant: no schedule
    assert head_rate == pytest.approx(settings.learning_rate)  # the old run's head trained at the rate itself
    assert exit_code(train.main, ["--save_to", str(run_dir), "--resume", "--num_epochs", "3"]) == 0
    assert len((run_dir / "history.csv").read_text().strip().splitlines()) == 1 + 3
    assert "head_lr_factor" not in json.loads((run_dir / folders.CONFIG).read_text())  # a resume rewrites nothing


def test_train_run_leaves_the_settings_it_is_given_as_they_are(tmp_path):
    data = write_npy(str(tmp_path / "npy"), {"a": 20, "b": 20})
    settings = train.settings_from(train.parse_args(["--data", data, "--save_to", str(tmp_path / "run"), "--model",
                                                     "logistic", "--num_epochs", "1"]))
    given = settings.record()
    train.run(settings)
    assert settings.record() == given and settings.class_names is None
    assert config.read(str(tmp_path / "run")).class_names == ["a", "b"]
