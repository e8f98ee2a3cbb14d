"""--time_budget: the first epoch of the whole model is timed, the epochs that fit follow, the cosine ends with them,
and config.json records the decision, which --resume keeps."""
import json
import os

import keras
import numpy as np
import pytest

import callbacks
import config
import time_budget
import train
from conftest import exit_code, write_npy
from support import folders

TINY_CNN = ["--model", "quickdraw_cnn", "--model_kwargs", '{"filters": [4, 8], "dense_units": 8, "dropout": 0}']


def test_an_epoch_costs_what_the_timed_one_took_and_the_budget_leaves_room_for_tracing_and_the_report():
    settings = config.RunConfig(freeze_epochs=2, num_epochs=60, time_budget=10)
    timed = time_budget.EpochClock()
    # 4 training steps of 2 s, the first 10 s longer (tracing, and the data pipeline starting); 3 validation steps of
    # 1 s, the first 5 s longer; the epoch ends 3 s after its validation (the files written): 29.5 s in all.
    timed.began, timed.steps, timed.validation_began = 0.0, [12.0, 14.0, 16.0, 18.0], 18.5
    timed.validation_steps, timed.ended = [24.5, 25.5, 26.5], 29.5
    assert timed.costs() == (29.5, 10.0, 3.0)
    decided = time_budget.decide(settings, timed, elapsed=100.0, done=3)
    # 600 s less 100 elapsed, 10 of tracing the new schedule's step and 3 of the report's validation: 487 s
    assert decided.epoch_seconds == 29.5 and decided.num_epochs == 3 + int(487 // 29.5)
    assert time_budget.decide(settings.replace(time_budget=100), timed, 100.0, 3).num_epochs == 60  # --num_epochs caps
    assert time_budget.decide(settings.replace(time_budget=1), timed, 100.0, 3).num_epochs == 4  # one more at least
    assert "16 more epochs follow (19 in all" in time_budget.describe(decided, 3)


@pytest.fixture
def two_classes(tmp_path):
    return write_npy(str(tmp_path / "two"), {"f": 24, "g": 24}, seed=1)


def test_a_budgeted_run_records_its_decision_and_its_cosine_ends_with_its_last_step(two_classes, tmp_path, capsys):
    run_dir = str(tmp_path / "run")
    keras.backend.clear_session()
    model = train.main(["--data", two_classes, "--save_to", run_dir, *TINY_CNN, "--freeze_epochs", "1",
                        "--num_epochs", "5", "--batch_size", "16", "--time_budget", "30"])
    settings = config.read(run_dir)
    assert settings.epoch_seconds > 0 and settings.num_epochs == 5  # 30 minutes: all that --num_epochs allows
    assert "--time_budget 30 min: an epoch takes" in capsys.readouterr().out
    assert [int(row["epoch"]) for row in callbacks.read_history(run_dir)] == [0, 1, 2, 3, 4]
    steps = 3  # 38 training drawings, 16 a batch
    assert int(model.optimizer.iterations) == 4 * steps  # a fresh optimizer at the unfreeze
    assert float(model.optimizer.learning_rate) == pytest.approx(0, abs=1e-12)
    schedule = train.learning_rate(settings, steps, unfrozen=True)  # what a resumed run builds
    peak = settings.learning_rate * settings.unfreeze_lr_factor
    assert [float(schedule(step)) for step in (0, steps)] == pytest.approx([0, peak])  # the timed epoch warms up


class Interrupted(Exception):
    pass


def test_a_resumed_run_keeps_the_decision_and_trains_as_if_uninterrupted(two_classes, tmp_path, monkeypatch, capsys):
    args = ["--data", two_classes, *TINY_CNN, "--freeze_epochs", "1", "--num_epochs", "8", "--batch_size", "16",
            "--time_budget", "15"]
    # Epochs of 300 s: two more fit in what is left of 15 minutes.
    monkeypatch.setattr(time_budget.EpochClock, "costs", lambda self: (300.0, 0.0, 0.0))
    whole = str(tmp_path / "whole")
    keras.backend.clear_session()
    assert exit_code(train.main, [*args, "--save_to", whole]) == 0
    assert config.read(whole).num_epochs == 4

    run_dir = str(tmp_path / "interrupted")
    backup = callbacks.Backup.on_epoch_end

    def backup_then_die(self, epoch, logs=None):
        backup(self, epoch, logs)
        if epoch + 1 == 3:  # after the decision
            raise Interrupted

    monkeypatch.setattr(callbacks.Backup, "on_epoch_end", backup_then_die)
    keras.backend.clear_session()
    with pytest.raises(Interrupted):
        train.main([*args, "--save_to", run_dir])
    monkeypatch.setattr(callbacks.Backup, "on_epoch_end", backup)
    monkeypatch.setattr(time_budget.EpochClock, "costs", lambda self: (0.001, 0.0, 0.0))  # would decide 8 now
    with open(os.path.join(run_dir, folders.CONFIG)) as f:
        assert json.load(f)["num_epochs"] == 4
    capsys.readouterr()
    keras.backend.clear_session()
    assert exit_code(train.main, ["--save_to", run_dir, "--resume"]) == 0
    assert "--time_budget" not in capsys.readouterr().out
    assert [int(row["epoch"]) for row in callbacks.read_history(run_dir)] == [0, 1, 2, 3]
    resumed, finished = (keras.saving.load_model(os.path.join(folder, "checkpoints", "epoch_004.keras"), compile=False)
                         for folder in (run_dir, whole))
    for mine, theirs in zip(resumed.get_weights(), finished.get_weights()):
        np.testing.assert_allclose(mine, theirs, rtol=0, atol=1e-6)


@pytest.mark.parametrize("flags, message", [
    (["--time_budget", "0"], "--time_budget: must be a positive number"),
    (["--time_budget", "5", "--freeze_epochs", "2", "--num_epochs", "3"],
     "--num_epochs (the most it may train) at least --freeze_epochs + 2, got 3"),
])
def test_a_budget_without_room_is_one_error_line_and_writes_nothing(flags, message, two_classes, tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert exit_code(train.main, ["--data", two_classes, "--save_to", str(run_dir), *TINY_CNN, *flags]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not run_dir.exists()
