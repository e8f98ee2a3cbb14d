"""Run and deploy folders away from the local disk. TensorFlow's in-memory ram:// filesystem stands in for
gs://: it takes the same tf.io.gfile calls, and no test needs a bucket or the network."""
import csv
import io
import json
import os
import uuid

import pytest
import tensorflow as tf

import deploy
import evaluate
import predict
import train
from conftest import exit_code, run_cli, write_npy
from support import folders, storage
from support.errors import UserError

gfile = tf.io.gfile


def remote(name):
    """A fresh ram:// path (the filesystem lives as long as the test process)."""
    return f"ram://{uuid.uuid4().hex}/{name}"


def read_csv(path):
    return list(csv.DictReader(io.StringIO(storage.read_text(path))))


@pytest.fixture(scope="module")
def remote_run(tmp_path_factory):
    """A run trained for 2 epochs and resumed for a third, into ram://; (run URL, data folder, working folder, what
    the run folder held then: later tests write their evaluations into it)."""
    workdir = tmp_path_factory.mktemp("storage")
    data = write_npy(str(workdir / "npy"), {"apple": 60, "bicycle": 60, "cat": 60})
    run = remote("run")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(workdir)  # anything written locally by mistake would land here
        assert exit_code(train.main, ["--data", data, "--save_to", run, "--num_epochs", "2", "--batch_size", "8",
                                      "--keep_checkpoints", "1"]) == 0
        assert exit_code(train.main, ["--save_to", run, "--resume", "--num_epochs", "3"]) == 0
    return run, data, workdir, sorted(gfile.listdir(run))


def test_training_and_resume_fill_a_remote_run_folder(remote_run):
    run, _, workdir, written = remote_run
    assert written == ["backup", "best.keras", "checkpoints", "config.json", "curves.png",
                                          "history.csv", "logs"]
    assert [int(row["epoch"]) for row in read_csv(f"{run}/history.csv")] == [0, 1, 2]
    assert gfile.listdir(f"{run}/checkpoints") == ["epoch_003.keras"]
    assert json.loads(storage.read_text(f"{run}/backup/state.json"))["epochs_done"] == 3
    assert gfile.glob(f"{run}/logs/train/events.out.tfevents.*")
    assert os.listdir(workdir) == ["npy"]


def test_deploy_evaluate_and_predict_read_and_write_remote_folders(remote_run, tmp_path, monkeypatch):
    run, data, _, _ = remote_run
    monkeypatch.chdir(tmp_path)
    out = remote("deploy")
    assert exit_code(deploy.main, ["--read_from", run, "--save_to", out, "--calibration_samples", "30"]) == 0
    assert sorted(gfile.listdir(out)) == ["deploy_report.json", "labels.txt", "model.h5", "model.tflite", "saved_model"]
    report = json.loads(storage.read_text(f"{out}/deploy_report.json"))
    assert report["run"] == run
    for name, artifact in report["artifacts"].items():
        assert artifact["bytes"] == storage.size(f"{out}/{name}") and artifact["accuracy"] > 0.5, name
    # A second SavedModel version goes beside the first, in the remote folder.
    assert exit_code(deploy.main, ["--read_from", run, "--save_to", out, "--formats", "saved_model",
                                   "--saved_model_version", "2"]) == 0
    assert sorted(gfile.listdir(f"{out}/saved_model")) == ["1", "2"]
    assert gfile.exists(f"{out}/saved_model/2/saved_model.pb") and gfile.exists(f"{out}/saved_model/1/variables")
    assert sorted(json.loads(storage.read_text(f"{out}/deploy_report.json"))["saved_model"]) == ["1", "2"]

    assert exit_code(evaluate.main, ["--read_from", run, "--model_file", f"{out}/model.h5"]) == 0
    metrics = json.loads(storage.read_text(f"{run}/evaluation/model_h5/metrics.json"))
    assert metrics["top1"] == pytest.approx(report["artifacts"]["model.h5"]["accuracy"], abs=0.02)
    assert storage.size(f"{run}/evaluation/model_h5/confusion_matrix.png") > 1000

    predictions = remote("predictions.csv")
    assert exit_code(predict.main, ["--model_file", f"{out}/model.tflite", "--data", data,
                                    "--output_file", predictions]) == 0
    rows = read_csv(predictions)
    assert len(rows) == 180 and {row["name"] for row in rows} <= {"apple", "bicycle", "cat"}  # from labels.txt
    assert sum(row["name"] == row["id"].split("/")[0] for row in rows) > 0.5 * len(rows)
    assert os.listdir(tmp_path) == []


def test_an_unreachable_save_to_is_one_line_and_writes_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    data = write_npy(str(tmp_path / "npy"), {"a": 10, "b": 10})
    code, out, err = run_cli(train.main, ["--data", data, "--save_to", "nosuch://bucket/run"], capsys)
    assert code == 2 and err.strip().count("\n") == 0
    assert err.startswith("error: cannot use nosuch://bucket/run") and "nosuch" in err
    assert sorted(os.listdir(tmp_path)) == ["npy"]


def test_write_replaces_whole_files_and_leaves_no_temporary_behind(tmp_path):
    folder = remote("folder")
    storage.write(f"{folder}/a.json", "{}")
    storage.write(f"{folder}/a.json", b"[1]")
    assert storage.read_text(f"{folder}/a.json") == "[1]" and storage.listdir(folder) == ["a.json"]
    (tmp_path / "taken" / "inside").mkdir(parents=True)
    with pytest.raises(UserError, match="taken"):
        storage.write(str(tmp_path / "taken"), "x")  # a folder cannot be replaced by a file
    assert sorted(os.listdir(tmp_path)) == ["taken"] and os.listdir(tmp_path / "taken") == ["inside"]


def test_a_remote_folder_is_replaced_only_by_a_block_that_succeeds():
    target = remote("deploy")
    storage.write(f"{target}/labels.txt", "old\n")
    with pytest.raises(RuntimeError):
        with folders.building(target, last="deploy_report.json") as folder:
            os.makedirs(os.path.join(folder, "sub"))
            with open(os.path.join(folder, "sub", "log.txt"), "w") as f:
                f.write("compiler output")
            raise RuntimeError("compile failed")
    assert storage.read_text(f"{target}/labels.txt") == "old\n" and not storage.exists(f"{target}/sub")
    assert not os.path.exists(folder)
    with folders.building(target, last="deploy_report.json") as folder:
        for name in ("deploy_report.json", "model.tflite"):
            with open(os.path.join(folder, name), "w") as f:
                f.write(name)
    assert sorted(storage.listdir(target)) == ["deploy_report.json", "model.tflite"]
    assert storage.read_text(f"{target}/model.tflite") == "model.tflite"


def test_local_paths_pass_through_unchanged(tmp_path):
    path = str(tmp_path / "model.h5")
    with storage.local_file(path) as local:
        assert local == path
    assert storage.absolute("gs://bucket/run") == "gs://bucket/run"
    assert storage.absolute("run") == os.path.join(os.getcwd(), "run")


def test_a_csv_that_fails_to_format_leaves_no_file_and_no_temporary(tmp_path):

    class Unprintable:
        def __str__(self):
            raise RuntimeError("disk full")

    path = str(tmp_path / "predictions.csv")
    with pytest.raises(RuntimeError):
        storage.write_csv(path, [["id"], ["a"], [Unprintable()]])
    assert os.listdir(tmp_path) == []
