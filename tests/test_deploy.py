import json
import os
import stat

import numpy as np
import pytest

import config
import deploy
import train
from conftest import exit_code, write_npy
from datagen import ImageGenerator
from reader import DataReader
from support import edgetpu, edgetpu_limits, tflite_metadata



@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A tiny trained run of the default model."""
    root = tmp_path_factory.mktemp("deploy")
    data = write_npy(str(root / "npy"), {"apple": 60, "bicycle": 60, "cat": 60})
    run = str(root / "run")
    assert exit_code(train.main, ["--data", data, "--save_to", run, "--num_epochs", "3", "--batch_size", "8"]) == 0
    return run


@pytest.mark.parametrize("name", list(config.MODELS))
def test_every_registered_model_converts_to_a_full_int8_edgetpu_ready_model(name, tmp_path):
    spec = config.MODELS[name]
    model = spec.test_model(4)
    shape = (*spec.test_size["input_size"], spec.channels)
    images = DataReader(write_npy(str(tmp_path / "npy"), {"a": 20, "b": 20}))
    calibration = ImageGenerator(images, shape[:2], shape[2], limit=16)
    path = tmp_path / "model.tflite"
    path.write_bytes(deploy.to_int8_tflite(model, calibration))
    check = edgetpu.inspect_tflite(str(path))
    assert check.problems == [], check.problems
    assert check.input["shape"] == [1, *shape] and check.input["dtype"] == "uint8"
    assert check.output["shape"] == [1, 4] and check.output["dtype"] == "uint8"
    assert check.first_unsupported is None and not check.float_tensors


def test_deploy_writes_every_artifact_and_a_report_that_proves_them(run_dir, tmp_path, capsys):
    out = str(tmp_path / "deploy")
    assert exit_code(deploy.main, ["--read_from", run_dir, "--save_to", out, "--calibration_samples", "50"]) == 0
    assert sorted(os.listdir(out)) == ["deploy_report.json", "labels.txt", "model.h5", "model.tflite", "saved_model"]
    assert open(os.path.join(out, "labels.txt")).read().split() == ["apple", "bicycle", "cat"]
    report = json.load(open(os.path.join(out, "deploy_report.json")))
    h5, tflite = report["artifacts"]["model.h5"], report["artifacts"]["model.tflite"]
    assert h5["bytes"] == os.path.getsize(os.path.join(out, "model.h5"))
    assert tflite["bytes"] < 0.3 * h5["bytes"]
    assert abs(tflite["accuracy"] - h5["accuracy"]) <= 0.05 and h5["accuracy"] > 0.5
    assert tflite["latency_ms"] > 0 and report["calibration_samples"] == 50
    assert report["tflite_check"]["problems"] == []
    assert "not found" in report["edgetpu_compiler"]["skipped"] and "apt" in report["edgetpu_compiler"]["skipped"]
    printed = capsys.readouterr().out
    assert "model.tflite" in printed and "edgetpu_compiler not found" in printed
    # The model describes itself: its name, input and class names are inside it, and the report says so.
    metadata = tflite_metadata.read(open(os.path.join(out, "model.tflite"), "rb").read())
    assert metadata["class_names"] == ["apple", "bicycle", "cat"] and metadata["name"] == "run"
    assert metadata["input"]["color_space"] == "GRAYSCALE" and metadata["input"]["range"] == [0.0, 255.0]
    assert metadata["version"] == json.load(open(os.path.join(run_dir, "config.json")))["started"]
    assert report["metadata"]["classes"] == 3 and report["metadata"]["description"] == metadata["description"]
    assert report["metadata"]["mediapipe_image_classifier"].startswith("refuses it (it takes only 3- or 4-channel")
    assert "  metadata  name, input (28x28 GRAYSCALE, 0-255) and 3 class names inside model.tflite" in printed
    # The SavedModel of a 1-channel model: the drawings' PNG files answered as predict.py answers their pixels.
    agreement = report["saved_model"]["1"]["agreement"]
    assert agreement["images"] == report["validation"]["items"] and agreement["top1_agreement"] == 1.0
    assert agreement["max_probability_gap"] <= 0.02 and "  SavedModel saved_model/1: " in printed
    # The Edge TPU's limits beyond its op table: op versions its toolchain parses, parameters its cache holds.
    check = report["tflite_check"]
    assert check["min_runtime_version"] == "1.14.0" and check["version_problems"] == []
    assert {"CONV_2D": 3, "FULLY_CONNECTED": 4, "QUANTIZE": 1}.items() <= \
        {row["op"]: row["version"] for row in check["op_versions"]}.items()
    assert "  ops       min_runtime_version 1.14.0; QUANTIZE v1, CONV_2D v3, " in printed
    assert ": all within TensorFlow 2.5's registry (what edgetpu_compiler 16 and libedgetpu parse)" in printed
    memory = check["parameter_memory"]
    assert 0 < memory["bytes"] < tflite["bytes"] and memory["streamed_bytes"] == 0
    assert (f"  on-chip   parameters {memory['bytes'] / 2 ** 20:.2f} MiB ({memory['bytes']:,} bytes of constant "
            f"buffers), {memory['bytes'] / 2 ** 23:.0%} of the Edge TPU's 8 MiB on-chip cache\n") in printed


def test_strict_makes_an_op_version_the_edgetpu_toolchain_cannot_parse_fatal(run_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(edgetpu_limits.TF25_MAX_VERSIONS, "CONV_2D", 2)  # as if the model's CONV_2D v3 were too new
    out = str(tmp_path / "deploy")
    assert exit_code(deploy.main, ["--read_from", run_dir, "--save_to", out, "--formats", "tflite",
                                   "--calibration_samples", "20", "--eval_samples", "20"]) == 0
    printed = capsys.readouterr()
    assert "warning: model.tflite: CONV_2D version 3 is newer than TensorFlow 2.5's (up to 2)" in printed.out
    assert "  Edge TPU  fails: CONV_2D version 3 is newer than TensorFlow 2.5's (up to 2)" in printed.out
    assert ", CONV_2D v3 (TensorFlow 2.5: up to v2), " in printed.out
    assert exit_code(deploy.main, ["--read_from", run_dir, "--save_to", out, "--formats", "tflite", "--overwrite",
                                   "--calibration_samples", "20", "--eval_samples", "20", "--strict"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: model.tflite would not run fully on the Edge TPU: CONV_2D "
                                               "version 3 is newer than TensorFlow 2.5's (up to 2)"), err


def fake_compiler(folder, body):
    path = folder / "edgetpu_compiler"
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return str(path)


GOOD_COMPILER = """
echo "$@" > "$(dirname "$0")/args.txt"
while [ $# -gt 1 ]; do case "$1" in --out_dir) out="$2"; shift 2;; *) shift;; esac; done
stem=$(basename "$1" .tflite)
cp "$1" "$out/${stem}_edgetpu.tflite"
echo "Edge TPU Compiler version 16.0.384591198"
echo "Number of operations that will run on Edge TPU: 14"
echo "Number of operations that will run on CPU: 1"
"""


def test_deploy_runs_an_installed_compiler_and_reads_its_result(run_dir, tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake_compiler(bin_dir, GOOD_COMPILER)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    out = str(tmp_path / "deploy")
    assert exit_code(deploy.main, ["--read_from", run_dir, "--save_to", out, "--formats", "tflite,edgetpu",
                                   "--min_runtime_version", "13", "--strict"]) == 0
    args = (bin_dir / "args.txt").read_text().split()
    written = str(tmp_path / ".deploy.incoming")  # the folder is written beside its place, then renamed into it
    assert args == ["--out_dir", written, "--show_operations", "--min_runtime_version", "13",
                    os.path.join(written, "model.tflite")]
    compiled = json.load(open(os.path.join(out, "deploy_report.json")))["edgetpu_compiler"]
    assert compiled["ok"] is True and compiled["ops_on_edgetpu"] == 14 and compiled["ops_on_cpu"] == 1
    assert compiled["version"] == "16.0.384591198"
    compiled_model = open(os.path.join(out, "model_edgetpu.tflite"), "rb").read()
    assert tflite_metadata.class_names(compiled_model) == ["apple", "bicycle", "cat"]  # written again after compiling
    assert os.path.isfile(os.path.join(out, "model_edgetpu.log"))
    assert not os.path.exists(os.path.join(out, "model.h5"))


@pytest.mark.parametrize("body, reason", [
    ("echo 'Internal compiler error'; exit 1\n", "exited with code 1"),
    ("echo 'Invalid model: model.tflite'; echo 'Model not quantized'\n", "Invalid model"),
    ("exit 0\n", "wrote no model_edgetpu.tflite"),
])
def test_a_failing_compiler_is_a_failure_and_keeps_the_artifacts(run_dir, tmp_path, capsys, body, reason):
    compiler = fake_compiler(tmp_path, body)
    out = str(tmp_path / "deploy")
    assert exit_code(deploy.main, ["--read_from", run_dir, "--save_to", out, "--edgetpu_compiler", compiler]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: Edge TPU compile failed") and reason in err[0]
    assert {"model.h5", "model.tflite", "model_edgetpu.log", "deploy_report.json"} <= set(os.listdir(out))
    assert json.load(open(os.path.join(out, "deploy_report.json")))["edgetpu_compiler"]["ok"] is False


def test_bad_inputs_are_one_line_errors_that_write_nothing(run_dir, tmp_path, capsys):
    out = tmp_path / "deploy"
    empty_run = tmp_path / "empty_run"
    empty_run.mkdir()
    untrained = tmp_path / "untrained"
    untrained.mkdir()
    config.save(str(untrained), config.read(run_dir))
    cases = [
        (["--read_from", str(empty_run)], "is not a run folder"),
        (["--read_from", str(untrained)], "best.keras is missing"),
        (["--read_from", run_dir, "--formats", "onnx"], "unknown format 'onnx'; choose from: h5, tflite, edgetpu, saved_model"),
        (["--read_from", run_dir, "--strict"], "edgetpu_compiler not found and --strict is set"),
        (["--read_from", run_dir, "--edgetpu_compiler", str(tmp_path / "nope")], "nope"),
        (["--read_from", run_dir, "--calibration_samples", "0"], "must be a positive integer"),
    ]
    for args, message in cases:
        assert exit_code(deploy.main, [*args, "--save_to", str(out)]) == 2, args
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], (args, err)
        assert not out.exists()


def test_existing_save_to_needs_overwrite_and_must_be_a_deploy_folder(run_dir, tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "keep.txt").write_text("x")
    for flags in ([], ["--overwrite"]):
        assert exit_code(deploy.main, ["--read_from", run_dir, "--save_to", str(mine), *flags]) == 2
    assert os.listdir(mine) == ["keep.txt"]
    out = str(tmp_path / "deploy")
    args = ["--read_from", run_dir, "--save_to", out, "--formats", "h5", "--eval_samples", "10"]
    assert exit_code(deploy.main, args) == 0
    assert exit_code(deploy.main, args) == 2
    assert exit_code(deploy.main, [*args, "--overwrite"]) == 0
    report = json.load(open(os.path.join(out, "deploy_report.json")))
    assert report["validation"]["items"] == 10 and list(report["artifacts"]) == ["model.h5"]
    assert np.isclose(report["artifacts"]["model.h5"]["accuracy"] * 10, round(report["artifacts"]["model.h5"]["accuracy"] * 10))
