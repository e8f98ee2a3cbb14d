"""deploy_report.py: the summary deploy.py prints, and deploy_report.json written and read back as it was."""
import json

import pytest

from support.deploy_report import CompileSkipped, Report
from support.edgetpu import TfliteCheck
from support.edgetpu_compiler import CompileResult

CONV = {"op": "CONV_2D", "version": 3, "edgetpu": True, "why": None, "float": False}
ELU = {"index": 3, "op": "ELU", "version": 1, "edgetpu": False, "why": "not in the Edge TPU op table", "float": True}


def every_format():
    """deploy_report.json of a deploy of every format, of a model with an ELU the Edge TPU cannot run."""
    return {
        "run": "/runs/elu", "model": "photo_cnn",
        "validation": {"items": 200, "source": "split", "eval_samples": 1000, "seed": 7},
        "calibration_samples": 300,
        "artifacts": {"model.h5": {"bytes": 4000, "accuracy": 0.9, "latency_ms": 2.0, "kind": "keras"},
                      "model.tflite": {"bytes": 1000, "accuracy": 0.885, "latency_ms": 0.5, "kind": "tflite"},
                      "model_edgetpu.tflite": {"bytes": 1100, "metadata": True}},
        "saved_model": {"1": {"path": "/deploy/elu/saved_model/1", "run": "/runs/elu", "bytes": 9000,
                              "agreement": {"images": 200, "top1_agreement": 0.995, "max_probability_gap": 0.01234,
                                            "mean_probability_gap": 0.001, "with": "the Keras model"},
                              "differences": ["an EXIF orientation is not applied"]}},
        "metadata": {"name": "elu", "version": "2026-12-04 10:00", "description": "photo_cnn image classifier",
                     "min_parser_version": "1.0.0", "input": {"width": 96, "height": 64, "color_space": "RGB"},
                     "output": {"name": "probabilities"}, "classes": 2,
                     "mediapipe_image_classifier": "names its classes (category_name, from the packed labels.txt)"},
        "tflite_check": {"path": "/deploy/.elu.incoming/model.tflite", "input": None, "output": None,
                         "ops": [{"index": i, **CONV} for i in range(3)] + [ELU], "first_unsupported": ELU,
                         "float_tensors": [{"index": 9, "name": "elu", "dtype": "float32"}],
                         "min_runtime_version": "1.14.0",
                         "op_versions": [{"op": "CONV_2D", "version": 3, "count": 3, "tf25_max": 5},
                                         {"op": "ELU", "version": 1, "count": 1, "tf25_max": 1}],
                         "version_problems": [],
                         "parameter_memory": {"bytes": 900, "cache_bytes": 8 * 2 ** 20, "share": 0.0001,
                                              "streamed_bytes": 0},
                         "problems": ["first op the Edge TPU cannot run: ELU"], "ok": False},
        "edgetpu_compiler": {"ok": True, "reason": None, "returncode": 0, "version": "16.0.384591198",
                             "output_path": "/deploy/elu/model_edgetpu.tflite",
                             "log_path": "/deploy/elu/model_edgetpu.log", "ops_on_edgetpu": 3, "ops_on_cpu": 2,
                             "operations": [{"op": "ELU", "count": 1, "status": "Operation not supported"}],
                             "seconds": 0.25},
    }


def float_only():
    """deploy_report.json of --formats h5,saved_model by an older deploy.py, which did not list the differences."""
    record = {key: every_format()[key] for key in ("run", "model", "validation", "calibration_samples",
                                                   "artifacts", "saved_model")}
    record["artifacts"] = {"model.h5": record["artifacts"]["model.h5"]}
    del record["saved_model"]["1"]["differences"]
    return record


def test_the_summary_compares_int8_with_float_and_names_the_first_op_off_the_edge_tpu():
    record = every_format()
    assert Report.from_record(record).summary_lines() == [
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
        "  SavedModel saved_model/1: 9,000 bytes (model.h5 4,000); given the image files, top-1 as predict.py's on "
        "99.5% of 200, probabilities at most 0.0123 apart",
    ]
    record["tflite_check"].update(first_unsupported=None, problems=[], ops=[{"index": i, **CONV} for i in range(4)])
    record["artifacts"]["model.tflite"]["latency_ms"] = 4.0
    record["edgetpu_compiler"] = {"ok": None, "skipped": "edgetpu_compiler not found; ..."}
    assert Report.from_record(record).summary_lines()[3:5] == [
        "  speed     int8 4.000 ms vs float 2.000 ms per image: 2.0x slower",
        "  Edge TPU  all 4 ops mapped; edgetpu_compiler not found, so not compiled (deploy_report.json says how to "
        "install it)",
    ]
    # An op version newer than the toolchain's fails the whole compile; parameters over the cache stream.
    too_new = "CONV_2D version 6 is newer than TensorFlow 2.5's (up to 5), ..."
    record["tflite_check"].update(version_problems=[too_new], problems=[too_new], min_runtime_version="2.9.0",
                                  op_versions=[{"op": "CONV_2D", "version": 6, "count": 4, "tf25_max": 5}],
                                  parameter_memory={"bytes": 12 * 2 ** 20, "cache_bytes": 8 * 2 ** 20, "share": 1.5,
                                                    "streamed_bytes": 4 * 2 ** 20})
    assert Report.from_record(record).summary_lines()[4:7] == [
        f"  Edge TPU  fails: {too_new}; edgetpu_compiler not found, so not compiled (deploy_report.json says how to "
        "install it)",
        "  ops       min_runtime_version 2.9.0; CONV_2D v6 (TensorFlow 2.5: up to v5): newer than TensorFlow 2.5's "
        "registry (what edgetpu_compiler 16 and libedgetpu parse)",
        "  on-chip   parameters 12.00 MiB (12,582,912 bytes of constant buffers), 150% of the Edge TPU's 8 MiB on-chip "
        "cache: about 4.00 MiB would stream from the host every inference, which slows inference",
    ]
    record["edgetpu_compiler"] = {**every_format()["edgetpu_compiler"], "ok": False, "ops_on_cpu": None}
    assert Report.from_record(record).summary_lines()[4].endswith("; the compile failed")
    assert Report.from_record(float_only()).summary_lines() == [
        "summary, on 200 validation images:",
        "  model.h5: 4,000 bytes, accuracy 90.0%, 2.000 ms per image; no int8 model (--formats)",
        "  SavedModel saved_model/1: 9,000 bytes (model.h5 4,000); given the image files, top-1 as predict.py's on "
        "99.5% of 200, probabilities at most 0.0123 apart",
    ]


@pytest.mark.parametrize("made", [every_format, float_only])
def test_a_report_reads_back_typed_and_writes_the_same_json(made, tmp_path):
    with open(tmp_path / "deploy_report.json", "w") as f:
        json.dump(made(), f)
    report = Report.read(str(tmp_path))
    report.write(str(tmp_path))
    with open(tmp_path / "deploy_report.json") as f:
        assert json.dumps(json.load(f)) == json.dumps(made())  # every key and value, in their order
    if made is every_format:
        assert isinstance(report.tflite_check, TfliteCheck) and report.tflite_check.first_unsupported.op == "ELU"
        assert isinstance(report.edgetpu_compiler, CompileResult) and report.edgetpu_compiler.ops_on_cpu == 2
    else:  # what a deploy did not make, or an older deploy.py did not record, stays out
        assert report.metadata is report.tflite_check is report.saved_model["1"].differences is None
    skipped = {"ok": None, "skipped": "edgetpu_compiler not found; ..."}
    assert Report.from_record({**every_format(), "edgetpu_compiler": skipped}).record()["edgetpu_compiler"] == skipped
    assert isinstance(Report.from_record({**every_format(), "edgetpu_compiler": skipped}).edgetpu_compiler,
                      CompileSkipped)


@pytest.mark.parametrize("text", ["{not json", json.dumps({"run": "/runs/elu"}),
                                  json.dumps({**float_only(), "artifacts": {"model.h5": {"bytes": 1}}})])
def test_a_file_that_is_not_a_report_is_a_one_line_value_error(text, tmp_path):
    (tmp_path / "deploy_report.json").write_text(text)
    with pytest.raises(ValueError) as raised:
        Report.read(str(tmp_path))
    assert "\n" not in str(raised.value)
