"""edgetpu.py: the checks on a converted model (op table, op versions, on-chip memory), and the compiler run (against
a fake edgetpu_compiler)."""
import os
import stat

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from support import edgetpu  # noqa: E402
from support import edgetpu_compiler  # noqa: E402
from support import edgetpu_limits  # noqa: E402
from support.errors import UserError  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:Statistics for quantized inputs:UserWarning")  # TF, uint8 input


def tiny_model(activation="relu", batch_size=1, groups=1, hidden=0):
    """16x16x1 -> Rescaling -> Conv2D(4) -> GlobalAveragePooling2D -> Dense(3, softmax), built the deploy way.

    groups: a second, grouped Conv2D (CONV_2D version 6 in the int8 model); hidden: Flatten and a Dense of that many
    units instead of the pooling (3136 inputs: 2700 units hold 8.47 million int8 weights, over the 8 MiB cache)."""
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 16, 1), batch_size=batch_size)
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv2D(16 if hidden else 4, 3, activation=activation)(x)
    if groups > 1:
        x = keras.layers.Conv2D(4, 3, groups=groups, activation=activation)(x)
    if hidden:
        x = keras.layers.Dense(hidden, activation=activation)(keras.layers.Flatten()(x))
    else:
        x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(3, activation="softmax")(x)
    return keras.Model(inputs, outputs)


def convert(model, int8=True):
    """Full-int8 conversion as in TRAPS.md (uint8 in/out), or a plain float conversion."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if int8:
        rng = np.random.default_rng(0)

        def representative():
            for _ in range(16):
                yield [rng.uniform(0, 255, (1, 16, 16, 1)).astype(np.float32)]

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.uint8
        converter.inference_output_type = tf.uint8
    return converter.convert()


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """The converted models the checks must tell apart, written once for the module."""
    folder = tmp_path_factory.mktemp("tflite")
    cases = {
        "good": (tiny_model(), True),
        "elu": (tiny_model(activation="elu"), True),
        "dynamic": (tiny_model(batch_size=None), True),
        "float": (tiny_model(), False),
        "grouped": (tiny_model(groups=2), True),
        "big": (tiny_model(hidden=2700), True),
    }
    paths = {}
    for name, (model, int8) in cases.items():
        paths[name] = folder / f"{name}.tflite"
        paths[name].write_bytes(convert(model, int8))
    return paths


def test_good_model_has_no_problems(models):
    report = edgetpu.inspect_tflite(models["good"])
    assert report.problems == [] and report.ok
    assert report.first_unsupported is None
    assert report.float_tensors == []
    assert all(op.edgetpu for op in report.ops)
    assert [op.index for op in report.ops] == list(range(len(report.ops)))
    assert {"CONV_2D", "MEAN", "FULLY_CONNECTED", "SOFTMAX"} <= {op.op for op in report.ops}
    assert "DELEGATE" not in {op.op for op in report.ops}
    for io in (report.input, report.output):
        assert io["dtype"] == "uint8"
        assert io["scale"] > 0
    assert report.input["shape"] == [1, 16, 16, 1]
    assert report.input["shape_signature"] == [1, 16, 16, 1]
    assert report.output["shape"] == [1, 3]
    # What the template's int8 classifiers convert to: runtime 1.14 ops, all parsed by the Edge TPU toolchain.
    assert report.min_runtime_version == "1.14.0" and report.version_problems == []
    versions = {"QUANTIZE": 1, "CONV_2D": 3, "MEAN": 2, "FULLY_CONNECTED": 4, "SOFTMAX": 2}
    assert {row.op: row.version for row in report.op_versions} == versions
    assert all(row.version <= row.tf25_max for row in report.op_versions)
    assert [op.version for op in report.ops] == [versions[op.op] for op in report.ops]
    assert sum(row.count for row in report.op_versions) == len(report.ops)
    memory = report.parameter_memory
    assert 36 + 12 <= memory.bytes < 200  # the int8 kernels (4x3x3, 4x3) and a few small constants
    assert memory.cache_bytes == 8 * 2 ** 20 and memory.streamed_bytes == 0


def test_a_grouped_convolution_is_an_op_version_the_edgetpu_toolchain_cannot_parse(models):
    report = edgetpu.inspect_tflite(models["grouped"])
    conv = next(row for row in report.op_versions if row.op == "CONV_2D")
    assert conv == edgetpu_limits.OpVersion("CONV_2D", 6, 2, 5)  # one version for every CONV_2D
    assert report.min_runtime_version == "2.9.0"
    assert report.version_problems == [
        "CONV_2D version 6 is newer than TensorFlow 2.5's (up to 5), the registry edgetpu_compiler 16 and libedgetpu "
        "parse: the compile fails (\"Didn't find op for builtin opcode 'CONV_2D' version '6'\")"]
    assert report.problems == report.version_problems and not report.ok
    assert report.first_unsupported is None  # the op table alone would have passed it


def test_parameters_over_the_on_chip_cache_say_how_much_would_stream(models):
    memory = edgetpu.inspect_tflite(models["big"]).parameter_memory
    kernels = 16 * 3 * 3 + 3136 * 2700 + 2700 * 3  # int8, one byte each
    assert kernels <= memory.bytes <= kernels + 4 * (16 + 2700 + 3) + 64  # int32 biases, a shape constant
    assert memory.streamed_bytes == memory.bytes - 8 * 2 ** 20 > 0
    assert memory.share == round(memory.bytes / (8 * 2 ** 20), 4) > 1


def test_the_tf25_table_agrees_with_what_the_edgetpu_toolchain_is_known_to_parse():
    assert edgetpu.EDGETPU_OPS <= set(edgetpu_limits.TF25_MAX_VERSIONS)
    fails = {"CONV_2D": 6, "TRANSPOSE_CONV": 4, "QUANTIZE": 3, "EXP": 2}  # google-coral/edgetpu #631, #845, #879
    assert all(edgetpu_limits.TF25_MAX_VERSIONS[op] < version for op, version in fails.items())
    compiles = {"CONV_2D": 3, "DEPTHWISE_CONV_2D": 3, "FULLY_CONNECTED": 4, "QUANTIZE": 1}  # runtime 1.14 models
    assert all(edgetpu_limits.TF25_MAX_VERSIONS[op] >= version for op, version in compiles.items())


def test_an_op_outside_the_table_is_caught_by_the_models_min_runtime_version():
    gelu = [edgetpu_limits.OpVersion("GELU", 1, 1, None)]  # TensorFlow 2.9's
    assert edgetpu_limits.version_problems(gelu, "2.9.0") == [
        "min_runtime_version 2.9.0 is newer than TensorFlow 2.5, whose registry edgetpu_compiler 16 and libedgetpu "
        "parse: an op version it needs is unknown to them"]
    assert edgetpu_limits.version_problems(gelu, "2.5.0") == edgetpu_limits.version_problems(gelu, None) == []
    assert edgetpu_limits.newer("2.10.0", "2.5.0") and not edgetpu_limits.newer("1.14.0", "2.5.0")


def test_elu_is_a_float_island(models):
    report = edgetpu.inspect_tflite(models["elu"])
    first = report.first_unsupported
    assert first.op == "DEQUANTIZE"
    ops = [op.op for op in report.ops]
    assert "ELU" in ops and not report.ops[ops.index("ELU")].edgetpu
    assert report.float_tensors
    text = "\n".join(report.problems)
    assert f"first op the Edge TPU cannot run: DEQUANTIZE (op #{first.index})" in text
    assert "float island" in text and "ELU" in text
    assert not report.ok


def test_dynamic_batch_is_reported(models):
    report = edgetpu.inspect_tflite(models["dynamic"])
    assert report.input["shape_signature"][0] == -1
    assert any("input batch is not a static 1" in p for p in report.problems)
    assert report.first_unsupported is None  # the ops are fine; the batch is what the compiler rejects


def test_float_conversion_is_reported(models):
    report = edgetpu.inspect_tflite(models["float"])
    assert report.input["dtype"] == "float32" and report.output["dtype"] == "float32"
    assert any(p.startswith("input dtype is float32, not uint8") for p in report.problems)
    assert any(p.startswith("output dtype is float32, not uint8") for p in report.problems)
    assert {t["dtype"] for t in report.float_tensors} == {"float32"}
    assert report.first_unsupported.index == 0


def test_not_a_tflite_file_is_a_user_error(tmp_path):
    bad = tmp_path / "notes.tflite"
    bad.write_text("not a model")
    with pytest.raises(UserError, match="notes.tflite is not a TFLite model"):
        edgetpu.inspect_tflite(bad)
    with pytest.raises(UserError, match="no such TFLite model file"):
        edgetpu.inspect_tflite(tmp_path / "missing.tflite")


def test_op_table_uses_interpreter_names():
    assert {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "MEAN", "SOFTMAX", "QUANTIZE"} <= edgetpu.EDGETPU_OPS
    assert not {"DEQUANTIZE", "ELU", "LEAKY_RELU", "HARD_SWISH", "GELU", "TILE", "GATHER"} & edgetpu.EDGETPU_OPS


# --- the compiler -------------------------------------------------------------------------------------------

# What edgetpu_compiler 16 prints when part of a model stays on the CPU (format from real runs quoted in
# google-coral/edgetpu issues #342/#490 and users' READMEs).
PARTIAL_STDOUT = """Edge TPU Compiler version 16.0.384591198
Started a compilation timeout timer of 180 seconds.

Model compiled successfully in 312 ms.

Input model: model.tflite
Input size: 3.20KiB
Output model: out/model_edgetpu.tflite
Output size: 21.36KiB
On-chip memory used for caching model parameters: 1.25KiB
On-chip memory remaining for caching model parameters: 8.06MiB
Off-chip memory used for streaming uncached model parameters: 0.00B
Number of Edge TPU subgraphs: 1
Total number of operations: 9
Operation log: out/model_edgetpu.log

Model successfully compiled but not all operations are supported by the Edge TPU. A percentage of the model \
will instead run on the CPU, which is slower. If possible, consider updating your model to use only operations \
supported by the Edge TPU. For details, visit g.co/coral/model-reqs.
Number of operations that will run on Edge TPU: 2
Number of operations that will run on CPU: 7

Operator                       Count      Status

QUANTIZE                       1          Mapped to Edge TPU
CONV_2D                        1          Mapped to Edge TPU
DEQUANTIZE                     1          Operation is working on an unsupported data type
ELU                            1          Operation not supported
QUANTIZE                       2          More than one subgraph is not supported
MEAN                           1          More than one subgraph is not supported
FULLY_CONNECTED                1          More than one subgraph is not supported
SOFTMAX                        1          More than one subgraph is not supported
Compilation child process completed within timeout period.
Compilation succeeded!
"""

# A fully mapped model: no "Number of operations that will run" lines, only the table (--show_operations).
FULL_STDOUT = """Edge TPU Compiler version 16.0.384591198
Started a compilation timeout timer of 180 seconds.

Model compiled successfully in 201 ms.

Input model: model.tflite
Number of Edge TPU subgraphs: 1
Total number of operations: 6
Operation log: out/model_edgetpu.log

Operator                       Count      Status

QUANTIZE                       2          Mapped to Edge TPU
CONV_2D                        1          Mapped to Edge TPU
MEAN                           1          Mapped to Edge TPU
FULLY_CONNECTED                1          Mapped to Edge TPU
SOFTMAX                        1          Mapped to Edge TPU
Compilation child process completed within timeout period.
Compilation succeeded!
"""

INVALID_STDOUT = """Edge TPU Compiler version 16.0.384591198
Invalid model: model.tflite
Model not quantized
"""

FAKE_COMPILER = r"""#!/bin/sh
here="$(dirname "$0")"
if [ "$1" = "--version" ]; then echo "Edge TPU Compiler version 16.0.384591198"; exit 0; fi
printf '%s\n' "$@" > "$here/argv.txt"
out_dir=.
model=
while [ $# -gt 0 ]; do
  case "$1" in
    --out_dir|-o) out_dir="$2"; shift 2 ;;
    --min_runtime_version|-m) shift 2 ;;
    -*) shift ;;
    *) model="$1"; shift ;;
  esac
done
stem="$(basename "$model" .tflite)"
if [ -n "$FAKE_SLEEP" ]; then exec sleep "$FAKE_SLEEP"; fi
cat "$here/stdout.txt"
echo "fake stderr line" >&2
if [ "${FAKE_WRITE_OUTPUT:-1}" = 1 ]; then
  cp "$model" "$out_dir/${stem}_edgetpu.tflite"
  printf 'Edge TPU Compiler version 16.0.384591198\nInput: %s\nOutput: %s\n' \
    "$model" "$out_dir/${stem}_edgetpu.tflite" > "$out_dir/${stem}_edgetpu.log"
fi
exit "${FAKE_EXIT:-0}"
"""


@pytest.fixture
def fake_compiler(tmp_path, monkeypatch):
    """A fake `edgetpu_compiler` first on PATH; returns a function that sets what it prints."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "edgetpu_compiler"
    script.write_text(FAKE_COMPILER)
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    for name in ("FAKE_EXIT", "FAKE_WRITE_OUTPUT", "FAKE_SLEEP"):
        monkeypatch.delenv(name, raising=False)

    def prints(text):
        (bin_dir / "stdout.txt").write_text(text)
        return bin_dir

    prints(PARTIAL_STDOUT)
    return prints


@pytest.fixture
def model_file(tmp_path):
    """The compiler never reads the model here, so any bytes do."""
    path = tmp_path / "model.tflite"
    path.write_bytes(b"TFL3 fake model bytes")
    return path


def test_compile_passes_flags_and_parses_counts(fake_compiler, model_file, tmp_path):
    bin_dir = fake_compiler(PARTIAL_STDOUT)
    compiler = edgetpu_compiler.find_compiler()
    assert compiler == str(bin_dir / "edgetpu_compiler")
    out_dir = tmp_path / "deploy"
    result = edgetpu_compiler.compile_for_edgetpu(model_file, out_dir, compiler, min_runtime_version=13)

    argv = (bin_dir / "argv.txt").read_text().splitlines()
    assert argv == ["--out_dir", str(out_dir), "--show_operations", "--min_runtime_version", "13", str(model_file)]
    assert result.ok and result.reason is None and result.returncode == 0
    assert result.version == "16.0.384591198"
    assert result.ops_on_edgetpu == 2 and result.ops_on_cpu == 7
    assert result.output_path == str(out_dir / "model_edgetpu.tflite")
    assert result.log_path == str(out_dir / "model_edgetpu.log")
    assert {"op": "ELU", "count": 1, "status": "Operation not supported"} in result.operations
    log = (out_dir / "model_edgetpu.log").read_text()
    assert log.startswith("Edge TPU Compiler version")  # the compiler's own log is kept...
    assert "Number of operations that will run on CPU: 7" in log and "fake stderr line" in log  # ...plus its output


def test_compile_fully_mapped_counts_from_table(fake_compiler, model_file, tmp_path):
    bin_dir = fake_compiler(FULL_STDOUT)
    result = edgetpu_compiler.compile_for_edgetpu(model_file, tmp_path / "out", edgetpu_compiler.find_compiler())
    assert "--min_runtime_version" not in (bin_dir / "argv.txt").read_text()
    assert result.ok
    assert result.ops_on_edgetpu == 6 and result.ops_on_cpu == 0


def test_compile_nonzero_exit_fails(fake_compiler, model_file, tmp_path, monkeypatch):
    fake_compiler("Internal compiler error. Aborting!\n")
    monkeypatch.setenv("FAKE_EXIT", "3")
    result = edgetpu_compiler.compile_for_edgetpu(model_file, tmp_path / "out", edgetpu_compiler.find_compiler())
    assert not result.ok and result.returncode == 3
    assert "code 3" in result.reason and "\n" not in result.reason
    assert result.output_path is None
    assert os.path.isfile(result.log_path)  # kept for diagnosis


def test_compile_without_output_file_fails(fake_compiler, model_file, tmp_path, monkeypatch):
    fake_compiler(FULL_STDOUT)
    monkeypatch.setenv("FAKE_WRITE_OUTPUT", "0")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    (out_dir / "model_edgetpu.tflite").write_bytes(b"stale from an earlier run")
    result = edgetpu_compiler.compile_for_edgetpu(model_file, out_dir, edgetpu_compiler.find_compiler())
    assert not result.ok and result.returncode == 0
    assert "wrote no model_edgetpu.tflite" in result.reason
    assert os.path.isfile(result.log_path)  # written from the compiler's output when it wrote none


def test_compile_invalid_model_fails_despite_exit_0(fake_compiler, model_file, tmp_path):
    fake_compiler(INVALID_STDOUT)
    result = edgetpu_compiler.compile_for_edgetpu(model_file, tmp_path / "out", edgetpu_compiler.find_compiler())
    assert not result.ok and result.returncode == 0
    assert "Invalid model" in result.reason and "Model not quantized" in result.reason
    assert "\n" not in result.reason


def test_compile_timeout_fails(fake_compiler, model_file, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_SLEEP", "10")
    result = edgetpu_compiler.compile_for_edgetpu(model_file, tmp_path / "out", edgetpu_compiler.find_compiler(), timeout_s=1)
    assert not result.ok and "did not finish within 1 s" in result.reason


def test_compiler_version(fake_compiler):
    assert edgetpu_compiler.compiler_version(edgetpu_compiler.find_compiler()) == "16.0.384591198"


def test_find_compiler_none_on_path(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert edgetpu_compiler.find_compiler() is None
    assert "coral-edgetpu-stable" in edgetpu_compiler.INSTALL_HINT and "edgetpu-compiler" in edgetpu_compiler.INSTALL_HINT


def test_find_compiler_explicit_path(tmp_path):
    with pytest.raises(UserError, match="edgetpu compiler not found"):
        edgetpu_compiler.find_compiler(tmp_path / "nowhere" / "edgetpu_compiler")
    not_executable = tmp_path / "edgetpu_compiler"
    not_executable.write_text("#!/bin/sh\n")
    not_executable.chmod(0o644)
    with pytest.raises(UserError, match="not executable"):
        edgetpu_compiler.find_compiler(not_executable)
    not_executable.chmod(0o755)
    assert edgetpu_compiler.find_compiler(not_executable) == str(not_executable)


def test_parse_compiler_output_without_counts():
    assert edgetpu_compiler.parse_compiler_output("Edge TPU Compiler version 16.0.384591198\n") == (None, None, [])
