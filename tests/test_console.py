"""What a user sees: train.py and deploy.py print their own lines, not TensorFlow's, LiteRT's or absl's."""
import importlib.util
import logging
import os
import re
import subprocess
import sys
import warnings

import pytest

from support import console, verbose
from conftest import ROOT, help_of, user_environment, write_npy

# The library lines a user should not see (issue: "a quiet console"), by where they come from.
NOISE = {
    "TensorFlow C++ info/warning": r"^[IW]\d{4} \S+\s+\d+ \S+:\d+\]",
    "oneDNN": r"oneDNN custom operations are on",
    "cpu_feature_guard": r"cpu_feature_guard|To enable the following instructions",
    "SavedModel reader": r"Reading SavedModel|SavedModel load for tags",
    "MLIR passes": r"MLIR V1 optimization pass|MLIR crash reproducer",
    "arithmetic ops estimate": r"Estimated count of arithmetic ops",
    "absl before InitializeLog": r"All log messages before absl::InitializeLog\(\)",
    "Keras HDF5 legacy": r"You are saving your model as an HDF5 file",
    "quantized input statistics": r"Statistics for quantized inputs were expected",
    "converter flags": r"fully_quantize: \d+, inference_type: \d+",
    "LiteRT XNNPACK": r"Created TensorFlow Lite XNNPACK delegate",
}
SUMMARY = [
    r"^summary, on \d+ validation images:$",
    r"^  size      model\.tflite is \d+% of model\.h5 \([\d,]+ vs [\d,]+ bytes\)$",
    r"^  accuracy  int8 [\d.]+% vs float [\d.]+% \([+-][\d.]+ points\)$",
    r"^  speed     int8 [\d.]+ ms vs float [\d.]+ ms per image: [\d.]+x (faster|slower)$",
    r"^  Edge TPU  all \d+ ops mapped; edgetpu_compiler not found, so not compiled",
    r"^  ops       min_runtime_version 1\.14\.0; QUANTIZE v1, .*: all within TensorFlow 2\.5's registry",
    r"^  on-chip   parameters [\d.]+ MiB \([\d,]+ bytes of constant buffers\), \d+% of the Edge TPU's 8 MiB",
    r"^  metadata  name, input \(28x28 GRAYSCALE, 0-255\) and 3 class names inside model\.tflite; MediaPipe's "
    r"ImageClassifier refuses it",
    r"^  SavedModel saved_model/1: [\d,]+ bytes \(model\.h5 [\d,]+\); given the image files, top-1 as predict\.py's "
    r"on [\d.]+% of \d+, probabilities at most [\d.]+ apart$",
]


def noise_in(lines):
    return {name: line for line in lines for name, pattern in NOISE.items() if re.search(pattern, line)}


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    return write_npy(str(tmp_path_factory.mktemp("console") / "npy"), {"apple": 30, "bicycle": 30, "cat": 30})


def train_and_deploy(data, folder, loud):
    """train.py then deploy.py as a user runs them: their output lines, stdout and stderr in order."""
    env = user_environment(loud)
    commands = [["train.py", "--data", data, "--save_to", str(folder / "run"), "--num_epochs", "1", "--batch_size", "8"],
                ["deploy.py", "--read_from", str(folder / "run"), "--save_to", str(folder / "deploy"),
                 "--calibration_samples", "10", "--eval_samples", "20"]]
    lines = []
    for command in commands:
        done = subprocess.run([sys.executable, *command], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, timeout=1800)
        assert done.returncode == 0, done.stdout
        lines += done.stdout.splitlines()
    return lines


def test_train_and_deploy_print_their_own_lines_and_no_library_noise(tiny_data, tmp_path):
    lines = train_and_deploy(tiny_data, tmp_path, loud=False)
    assert noise_in(lines) == {}
    assert any(re.match(r"^\d+/\d+ - .* - accuracy: [\d.]+ - loss: ", line) for line in lines)  # Keras' epoch line
    assert any(line.startswith("best val_accuracy") for line in lines)
    summary = lines[lines.index(next(line for line in lines if line.startswith("summary, on "))):]
    for pattern, line in zip(SUMMARY, summary):
        assert re.search(pattern, line), (pattern, line)
    assert summary[len(SUMMARY)] == f"deploy folder: {tmp_path / 'deploy'}"


# Messages of the kinds console.py hides, made by the test itself: whether a library prints its own depends on what
# ran before in the process and on its version, so a test cannot count on seeing one.
MADE_UP_CHATTER = f"""
import os, sys, warnings
sys.path.insert(0, {ROOT!r})
from support import console
from absl import logging as absl_logging
console.quiet()
warnings.warn(console.HARMLESS_WARNINGS[0])
absl_logging.get_absl_logger().warning(console.HARMLESS_LOG_MESSAGES[0] + " This file format is legacy.")
with console.captured_output():
    os.write(2, b"C++ chatter of a library\\n")
warnings.warn("a warning that matters")
print("the tool's own line")
"""


def test_the_verbose_variable_brings_every_hidden_line_back():
    shown = {}
    for loud in (False, True):
        done = subprocess.run([sys.executable, "-c", MADE_UP_CHATTER], env=user_environment(loud), cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)
        assert done.returncode == 0, done.stdout
        shown[loud] = done.stdout
    hidden = [console.HARMLESS_WARNINGS[0], console.HARMLESS_LOG_MESSAGES[0], "C++ chatter of a library"]
    for always in ("a warning that matters", "the tool's own line"):
        assert always in shown[False] and always in shown[True]
    assert [line for line in hidden if line in shown[False]] == []
    assert [line for line in hidden if line not in shown[True]] == []


def test_every_tool_names_the_verbose_variable_in_its_help():
    optional = [tool for tool, needs in (("tune", "optuna"), ("serve", "uvicorn"))
                if importlib.util.find_spec(needs)]  # their optional requirements files are installed
    for tool in ("train", "deploy", "evaluate", "predict", "plots", *optional):
        done = help_of(tool)
        assert done.returncode == 0 and f"{verbose.VARIABLE}=1" in done.stdout, tool
        assert noise_in(done.stderr.splitlines()) == {}, tool


def test_captured_output_shows_what_the_block_wrote_only_when_it_fails(capfd, monkeypatch):
    monkeypatch.setattr(verbose, "ON", False)
    with console.captured_output():
        os.write(2, b"C++ chatter\n")  # past sys.stderr, as TensorFlow's C++ code writes
        print("Python chatter")
    assert capfd.readouterr() == ("", "")
    with pytest.raises(RuntimeError, match="conversion failed"):
        with console.captured_output():
            os.write(2, b"converter: the op that broke\n")
            print("converter's Python line")
            raise RuntimeError("conversion failed")
    shown = capfd.readouterr()
    assert "converter: the op that broke" in shown.err and "converter's Python line" in shown.err
    print("after")
    assert capfd.readouterr().out == "after\n"  # stdout is back where it was


def test_only_the_known_harmless_messages_are_silenced(caplog):
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        console.silence_harmless_messages()
        for message in console.HARMLESS_WARNINGS:
            warnings.warn(message)
            warnings.warn(message + " And then something else went wrong.")
    assert [str(w.message) for w in shown] == [m + " And then something else went wrong."
                                               for m in console.HARMLESS_WARNINGS]
    absl_logger = logging.getLogger("absl")
    with caplog.at_level(logging.WARNING, logger="absl"):
        absl_logger.warning(console.HARMLESS_LOG_MESSAGES[0] + " This file format is considered legacy.")
        absl_logger.warning("You are saving your model to a folder that is full.")
    assert [record.getMessage() for record in caplog.records] == ["You are saving your model to a folder that is full."]


def test_a_logger_made_inside_the_block_writes_to_stderr_after_it(capfd, monkeypatch):
    # TensorFlow's logger makes its handler when TensorFlow is imported, inside the block, on the held stream.
    monkeypatch.setattr(verbose, "ON", False)
    logger = logging.getLogger("made_inside_the_block")
    monkeypatch.setattr(logger, "propagate", False)
    with console.captured_output():
        handler = logging.StreamHandler(sys.stderr)
        logger.addHandler(handler)
    try:
        logger.warning("a library's later warning")
    finally:
        logger.removeHandler(handler)
    assert capfd.readouterr().err == "a library's later warning\n"
