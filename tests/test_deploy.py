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
    assert check["problems"] == [], check["problems"]
    assert check["input"]["shape"] == [1, *shape] and check["input"]["dtype"] == "uint8"
    assert check["output"]["shape"] == [1, 4] and check["output"]["dtype"] == "uint8"
    assert check["first_unsupported"] is None and not check["float_tensors"]


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


def test_the_summary_compares_int8_with_float_and_names_the_first_op_off_the_edge_tpu():
    elu = {"index": 3, "op": "ELU", "edgetpu": False, "why": "not in the Edge TPU op table", "float": True}
    report = {"validation": {"items": 200},
              "artifacts": {"model.h5": {"bytes": 4000, "accuracy": 0.9, "latency_ms": 2.0},
                            "model.tflite": {"bytes": 1000, "accuracy": 0.885, "latency_ms": 0.5}},
              "tflite_check": {"ops": [{"op": "CONV_2D"}] * 3 + [elu], "first_unsupported": elu,
                               "problems": ["first op the Edge TPU cannot run: ELU"], "version_problems": [],
                               "min_runtime_version": "1.14.0",
                               "op_versions": [{"op": "CONV_2D", "version": 3, "count": 3, "tf25_max": 5},
                                               {"op": "ELU", "version": 1, "count": 1, "tf25_max": 1}],
                               "parameter_memory": {"bytes": 900, "cache_bytes": 8 * 2 ** 20, "share": 0.0001,
                                                    "streamed_bytes": 0}},
              "edgetpu_compiler": {"ok": True, "ops_on_edgetpu": 3, "ops_on_cpu": 2},
              "metadata": {"classes": 2, "input": {"width": 96, "height": 64, "color_space": "RGB"},
                           "mediapipe_image_classifier": "names its classes (category_name, from the packed labels.txt)"}}
    assert deploy.summary_lines(report) == [
        "summary, on 200 validation images:",
        "  size      model.tflite is 25% of model.h5 (1,000 vs 4,000 bytes)",
        "  accuracy  int8 88.5% vs float 90.0% (-1.5 points)",
        "  speed     int8 0.500 ms vs float 2.000 ms per image: 4.0x faster",
        "  Edge TPU  not all ops mapped: op #3 ELU is the first the Edge TPU cannot run (not in the Edge TPU op "
        "table); it and all after it run on the CPU; compiled: 3 ops on the Edge TPU, 2 on the CPU",
        "  ops       min_runtime_version 1.14.0; CONV_2D v3, ELU v1: all within TensorFlow 2.5's registry (what "
        "edgetpu_compiler 16 and libedgetpu parse)",
        "  on-chip   parameters 0.00 MiB (900 bytes of constant buffers), 0% of the Edge TPU's 8 MiB on-chip cache",
        "  metadata  name, input (96x64 RGB, 0-255) and 2 class names inside model.tflite; MediaPipe's "
        "ImageClassifier names its classes (category_name, from the packed labels.txt)",
    ]
    report["tflite_check"].update(first_unsupported=None, problems=[], ops=[{"op": "CONV_2D"}] * 4)
    report["artifacts"]["model.tflite"]["latency_ms"] = 4.0
    report["edgetpu_compiler"] = {"ok": None, "skipped": "edgetpu_compiler not found; ..."}
    assert deploy.summary_lines(report)[3:5] == [
        "  speed     int8 4.000 ms vs float 2.000 ms per image: 2.0x slower",
        "  Edge TPU  all 4 ops mapped; edgetpu_compiler not found, so not compiled (deploy_report.json says how to "
        "install it)",
    ]
    # An op version newer than the toolchain's fails the whole compile; parameters over the cache stream.
    too_new = "CONV_2D version 6 is newer than TensorFlow 2.5's (up to 5), ..."
    report["tflite_check"].update(version_problems=[too_new], problems=[too_new], min_runtime_version="2.9.0",
                                  op_versions=[{"op": "CONV_2D", "version": 6, "count": 4, "tf25_max": 5}],
                                  parameter_memory={"bytes": 12 * 2 ** 20, "cache_bytes": 8 * 2 ** 20, "share": 1.5,
                                                    "streamed_bytes": 4 * 2 ** 20})
    assert deploy.summary_lines(report)[4:7] == [
        f"  Edge TPU  fails: {too_new}; edgetpu_compiler not found, so not compiled (deploy_report.json says how to "
        "install it)",
        "  ops       min_runtime_version 2.9.0; CONV_2D v6 (TensorFlow 2.5: up to v5): newer than TensorFlow 2.5's "
        "registry (what edgetpu_compiler 16 and libedgetpu parse)",
        "  on-chip   parameters 12.00 MiB (12,582,912 bytes of constant buffers), 150% of the Edge TPU's 8 MiB on-chip "
        "cache: about 4.00 MiB would stream from the host every inference, which slows inference",
    ]
