"""--overwrite replaces only what the template wrote, and only once the new folder is whole; nothing is half-written."""
import json
import os
import subprocess
import sys

import keras
import pytest

import deploy
import serve
import train
from conftest import ROOT, exit_code, write_npy
from support import folders
from support.errors import UserError

TINY_RUN = ["--model", "logistic", "--num_epochs", "1", "--batch_size", "16", "--keep_checkpoints", "1"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny trained run and its deploy folder (h5 only: deploying is not what is tested here)."""
    root = tmp_path_factory.mktemp("folders")
    data = write_npy(str(root / "npy"), {"apple": 40, "bicycle": 40})
    run = str(root / "run")
    assert exit_code(train.main, ["--data", data, "--save_to", run, *TINY_RUN]) == 0
    out = str(root / "deploy")
    assert exit_code(deploy.main, ["--read_from", run, "--save_to", out, "--formats", "h5"]) == 0
    return data, run, out


def tree(folder):
    """Every file under `folder` with its bytes."""
    found = {}
    for here, _, names in os.walk(folder):
        for name in names:
            with open(os.path.join(here, name), "rb") as f:
                found[os.path.relpath(os.path.join(here, name), folder)] = f.read()
    return found


def copy_of(folder, target):
    for relative, data in tree(folder).items():
        os.makedirs(os.path.dirname(os.path.join(target, relative)), exist_ok=True)
        with open(os.path.join(target, relative), "wb") as f:
            f.write(data)
    return str(target)


def one_error_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def test_strangers_are_what_the_tool_does_not_write(trained, tmp_path):
    run = copy_of(trained[1], tmp_path / "run")
    assert folders.strangers(folders.RUN, run) == []
    for leftover in ("best.partial.keras", "history.csv.tmp"):  # an interrupted write's temporary file is ours
        open(os.path.join(run, leftover), "w").close()
    os.makedirs(os.path.join(run, "evaluation", "best_keras"))
    open(os.path.join(run, "evaluation", "best_keras", "metrics.json"), "w").close()
    assert folders.strangers(folders.RUN, run) == []
    open(os.path.join(run, "logs", "notes.txt"), "w").close()
    os.makedirs(os.path.join(run, "thesis"))
    os.symlink(os.path.join(run, "thesis"), os.path.join(run, "checkpoints", "epoch_999.keras"))
    assert folders.strangers(folders.RUN, run) == ["checkpoints/epoch_999.keras/", "logs/notes.txt", "thesis/"]
    assert folders.strangers(folders.DEPLOY, trained[2]) == []


@pytest.mark.parametrize("stranger", ["notes.txt", os.path.join("logs", "train", "mine.csv")])
def test_overwrite_refuses_a_run_folder_holding_a_file_of_the_users(trained, tmp_path, capsys, stranger):
    data, run, _ = trained
    mine = copy_of(run, tmp_path / "mine")
    os.makedirs(os.path.dirname(os.path.join(mine, stranger)), exist_ok=True)
    with open(os.path.join(mine, stranger), "w") as f:
        f.write("mine")
    before = tree(mine)
    assert exit_code(train.main, ["--data", data, "--save_to", mine, *TINY_RUN, "--overwrite"]) == 2
    line = one_error_line(capsys)
    assert f"train.py did not write {stranger}" in line and "choose another --save_to" in line
    assert tree(mine) == before and sorted(os.listdir(tmp_path)) == ["mine"]


def test_overwrite_refuses_a_folder_with_a_config_json_that_is_a_project(trained, tmp_path, capsys):
    project = tmp_path / "myproject"
    (project / "src").mkdir(parents=True)
    (project / "config.json").write_text("{}")
    (project / "src" / "main.py").write_text("print('mine')")
    before = tree(project)
    assert exit_code(train.main, ["--data", trained[0], "--save_to", str(project), *TINY_RUN, "--overwrite"]) == 2
    assert "did not write src/" in one_error_line(capsys) and tree(project) == before


def test_overwrite_refuses_a_deploy_folder_holding_a_file_of_the_users(trained, tmp_path, capsys):
    _, run, out = trained
    data_set = copy_of(out, tmp_path / "data_set")  # a labels.txt and the user's files beside it
    (tmp_path / "data_set" / "images.tfrecord").write_bytes(b"records")
    before = tree(data_set)
    assert exit_code(deploy.main, ["--read_from", run, "--save_to", data_set, "--formats", "h5", "--overwrite"]) == 2
    assert "deploy.py did not write images.tfrecord" in one_error_line(capsys)
    assert tree(data_set) == before and sorted(os.listdir(tmp_path)) == ["data_set"]


def test_an_interrupted_run_leaves_the_folder_it_would_replace_as_it_was(trained, tmp_path):
    data, run, _ = trained
    old = copy_of(run, tmp_path / "run")
    before = tree(old)

    class Interrupt(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            raise KeyboardInterrupt  # Ctrl-C in the first epoch

    args = train.parse_args(["--data", data, "--save_to", old, *TINY_RUN, "--overwrite", "--seed", "5"])
    with pytest.raises(KeyboardInterrupt):
        train.run(train.settings_from(args), overwrite=True, extra_callbacks=[Interrupt()])
    assert tree(old) == before and sorted(os.listdir(tmp_path)) == ["run"]


KILLED_IN_FIRST_EPOCH = """
import os, signal, sys
sys.path.insert(0, sys.argv[1])
import keras, train

class Die(keras.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
        os.kill(os.getpid(), signal.SIGKILL)

args = train.parse_args(sys.argv[2:])
train.run(train.settings_from(args), overwrite=True, extra_callbacks=[Die()])
"""


def test_a_run_killed_in_its_first_epoch_after_overwrite_leaves_the_previous_run_loadable(trained, tmp_path):
    data, run, _ = trained
    old = copy_of(run, tmp_path / "run")
    before = tree(old)
    args = ["--data", data, "--save_to", old, *TINY_RUN, "--overwrite", "--seed", "5"]
    killed = subprocess.run([sys.executable, "-c", KILLED_IN_FIRST_EPOCH, ROOT, *args], cwd=tmp_path,
                            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"), capture_output=True, timeout=300)
    assert killed.returncode == -9, killed.stderr.decode()[-2000:]
    assert tree(old) == before
    assert keras.saving.load_model(os.path.join(old, folders.BEST_MODEL)).output_shape == (None, 2)
    assert os.path.isdir(tmp_path / ".run.incoming")  # what the killed run wrote, beside the old folder
    assert exit_code(train.main, args) == 0  # the next run replaces both
    assert sorted(os.listdir(tmp_path)) == ["run"] and json.load(open(os.path.join(old, "config.json")))["seed"] == 5


KILLED_SAVING_THE_BEST_MODEL = """
import os, signal, sys
sys.path.insert(0, sys.argv[1])
import keras, train

def half_a_save(model, path, *args, **kwargs):
    with open(path, "wb") as f:
        f.write(b"PK\\x03\\x04 half of a model")
    os.kill(os.getpid(), signal.SIGKILL)

keras.Model.save = half_a_save
train.main(sys.argv[2:])
"""


def test_a_kill_while_best_keras_is_saved_leaves_the_previous_one_and_resume_goes_on(trained, tmp_path):
    run = copy_of(trained[1], tmp_path / "run")
    history = os.path.join(run, folders.HISTORY)
    with open(history) as f:
        rows = f.read().splitlines()
    column = rows[0].split(",").index("val_accuracy")
    cells = rows[1].split(",")
    cells[column] = "0.0"  # so that the next epoch is the best so far, and best.keras is saved again
    with open(history, "w") as f:
        f.write("\n".join([rows[0], ",".join(cells)]) + "\n")
    best = os.path.join(run, folders.BEST_MODEL)
    with open(best, "rb") as f:
        previous = f.read()
    args = ["--save_to", run, "--resume", "--num_epochs", "3"]
    killed = subprocess.run([sys.executable, "-c", KILLED_SAVING_THE_BEST_MODEL, ROOT, *args], cwd=tmp_path,
                            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"), capture_output=True, timeout=300)
    assert killed.returncode == -9, killed.stderr.decode()[-2000:]
    with open(best, "rb") as f:
        assert f.read() == previous
    assert keras.saving.load_model(best).output_shape == (None, 2)
    assert exit_code(train.main, args) == 0
    with open(history) as f:
        assert len(f.read().splitlines()) == 1 + 3
    assert keras.saving.load_model(best).output_shape == (None, 2)
    assert folders.strangers(folders.RUN, run) == []


def test_an_interrupted_deploy_leaves_the_deploy_folder_it_would_replace_as_it_was(trained, tmp_path, monkeypatch):
    _, run, out = trained
    old = copy_of(out, tmp_path / "deploy")
    before = tree(old)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(deploy, "to_int8_tflite", interrupted)
    with pytest.raises(KeyboardInterrupt):
        deploy.main(["--read_from", run, "--save_to", old, "--formats", "h5,tflite", "--overwrite"])
    assert tree(old) == before and sorted(os.listdir(tmp_path)) == ["deploy"]


def test_a_deploy_folder_without_its_report_is_named_incomplete(trained, tmp_path, capsys):
    _, run, out = trained
    partial = copy_of(out, tmp_path / "partial")
    os.remove(os.path.join(partial, folders.REPORT))
    with pytest.raises(UserError, match="incomplete deploy folder: no deploy_report.json"):
        serve.chosen_model(partial, None)
    assert exit_code(deploy.main, ["--read_from", run, "--save_to", partial, "--formats", "saved_model",
                                   "--saved_model_version", "2"]) == 2
    assert "incomplete deploy folder" in one_error_line(capsys)
