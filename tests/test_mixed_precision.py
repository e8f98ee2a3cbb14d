import json
import os

import keras
import pytest

import config
import deploy
import train
from conftest import exit_code, write_npy


@pytest.fixture
def tiny_npy(tmp_path):
    return write_npy(str(tmp_path / "npy"), {"apple": 60, "bicycle": 60, "cat": 60})


def test_mixed_precision_without_a_gpu_says_so_and_trains_in_float32(tiny_npy, tmp_path, capsys):
    run_dir = str(tmp_path / "run")
    assert exit_code(train.main, ["--data", tiny_npy, "--save_to", run_dir, "--model", "logistic",
                                  "--num_epochs", "1", "--mixed_precision"]) == 0
    assert "none is visible: this run trains in float32" in capsys.readouterr().out
    assert config.read(run_dir).dtype_policy == "float32"


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="deploy converts with TensorFlow")
def test_a_mixed_precision_run_deploys_to_a_full_int8_model(tiny_npy, tmp_path, monkeypatch):
    monkeypatch.setattr(train, "gpu_available", lambda: True)  # float16 also runs on this CPU, slowly
    run_dir, out = str(tmp_path / "run"), str(tmp_path / "deploy")
    try:
        assert exit_code(train.main, ["--data", tiny_npy, "--save_to", run_dir, "--num_epochs", "3",
                                      "--batch_size", "8", "--mixed_precision"]) == 0
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert config.read(run_dir).dtype_policy == "mixed_float16"
    trained = keras.saving.load_model(os.path.join(run_dir, "best.keras"), compile=False)
    assert trained.layers[2].dtype_policy.name == "mixed_float16"
    assert trained.layers[-1].dtype_policy.name == "float32" and trained.output.dtype == "float32"
    assert exit_code(deploy.main, ["--read_from", run_dir, "--save_to", out, "--formats", "h5,tflite"]) == 0
    report = json.load(open(os.path.join(out, "deploy_report.json")))
    assert report["tflite_check"]["problems"] == []
    keras_accuracy, int8_accuracy = (report["artifacts"][name]["accuracy"] for name in ("model.h5", "model.tflite"))
    assert keras_accuracy > 0.6 and abs(keras_accuracy - int8_accuracy) <= 0.05
