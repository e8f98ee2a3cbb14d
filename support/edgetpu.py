"""Everything about the Coral Edge TPU: checking a converted .tflite, and running `edgetpu_compiler`.

Two questions matter before a model goes to a Coral device, and this module answers both without the device:
- Will it map to the Edge TPU at all? `inspect_tflite` reads the converted model with the LiteRT interpreter and
  reports what the compiler would object to: non-uint8 input/output, a batch that is not a static 1, float
  tensors (a DEQUANTIZE -> float op -> QUANTIZE island converts without any error), and the first op outside
  Coral's op table, from where on the compiler leaves the whole rest of the graph to the CPU; and, through
  edgetpu_limits.py, each op's version against what the toolchain parses, and the parameters against the on-chip
  cache.
- Did the real compiler accept it? `compile_for_edgetpu` runs `edgetpu_compiler` (x86-64 Debian only, so it is
  optional), keeps its output, and counts a compile as good only when the exit code, the output file and the
  text all say so: the compiler's exit code is not documented.

Both answer in frozen dataclasses of plain values (TfliteCheck, CompileResult), the one place their shape is written:
deploy_report.json holds them as their fields, and support/deploy_report.py reads them back.
"""
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from support import edgetpu_limits
from support.errors import UserError, first_line

# Ops the Edge TPU runs, as TFLite builtin op names (what `Interpreter._get_ops_details()` reports).
# Source: Coral's "TensorFlow models on the Edge TPU", table "Supported operations",
# https://coral.ai/docs/edgetpu/models-intro/#supported-operations (compiler 16 / runtime 14 era). Checked against
# two copies of that table: Axis' ARTPEC-7 (an Edge TPU) list, Add..ResizeBilinear,
# https://developer.axis.com/computer-vision/on-device/system-on-chip/artpec-7/supported-ops/ , and the 2019
# table as copied in github.com/dgist-datalab/Datalab_Intern (Edge_TPU/convert_model_for_Edge_TPU.md), which
# has the tail ResizeNearestNeighbor..Tanh. Rsqrt, Sum, SquaredDifference, Transpose and TransposeConv are
# from the current Coral page as remembered, not re-read here; none of them occurs in our classifiers.
# Per-op limits the table states are not all checked here (e.g. "no fused activation" on pooling,
# "reduction along x/y only" on MEAN); the compiler has the last word.
# Not in the table, so not run on the Edge TPU: DEQUANTIZE (a float island), ELU, LEAKY_RELU, HARD_SWISH,
# GELU, TILE (Keras 3 nearest UpSampling2D), GATHER, BATCH_MATMUL, and every float op.
EDGETPU_OPS = frozenset({
    "ADD", "AVERAGE_POOL_2D", "CONCATENATION", "CONV_2D", "DEPTHWISE_CONV_2D", "EXPAND_DIMS",
    "FULLY_CONNECTED", "L2_NORMALIZATION", "LOGISTIC", "LSTM", "UNIDIRECTIONAL_SEQUENCE_LSTM", "MAXIMUM",
    "MAX_POOL_2D", "MEAN", "MINIMUM", "MUL", "PACK", "PAD", "PRELU", "QUANTIZE", "REDUCE_MAX", "REDUCE_MIN",
    "RELU", "RELU6", "RELU_N1_TO_1", "RESHAPE", "RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR", "RSQRT",
    "SLICE", "SOFTMAX", "SPACE_TO_DEPTH", "SPLIT", "SQUEEZE", "STRIDED_SLICE", "SUB", "SUM",
    "SQUARED_DIFFERENCE", "TANH", "TRANSPOSE", "TRANSPOSE_CONV",
})

# Coral's table: "Softmax: Supports only 1-D input tensor with a max of 16,000 elements."
SOFTMAX_MAX_ELEMENTS = 16000

FLOAT_DTYPES = ("float32", "float16", "float64")

# Coral's install steps for x86-64 Debian/Ubuntu, https://coral.ai/docs/edgetpu/compiler/ (apt repository and
# package name as given there).
INSTALL_HINT = (
    "edgetpu_compiler is not installed; on x86-64 Debian/Ubuntu add Coral's apt repository "
    "(curl https://packages.cloud.google.com/apt/doc/apt-key.gpg | sudo apt-key add -; "
    "echo 'deb https://packages.cloud.google.com/apt coral-edgetpu-stable main' | "
    "sudo tee /etc/apt/sources.list.d/coral-edgetpu.list), then "
    "sudo apt-get update && sudo apt-get install edgetpu-compiler (https://coral.ai/docs/edgetpu/compiler/)"
)


# ---------------------------------------------------------------------------------------------------------------
# Checking a converted model


@dataclass(frozen=True)
class OpRow:
    """One op of the model, in execution order: its version, whether the Edge TPU runs it, why not (None when it
    does), and whether it touches float tensors (the ops of a float island)."""

    index: int
    op: str
    version: int
    edgetpu: bool
    why: str | None
    float: bool


@dataclass(frozen=True)
class TfliteCheck:
    """What inspect_tflite finds in a converted model; `problems` is one line each (empty when the model should map
    fully), and what a new check finds goes there too (README: "Make it your own")."""

    path: str
    input: dict | None  # name, shape, shape_signature, dtype, scale, zero_point
    output: dict | None
    ops: list[OpRow]
    first_unsupported: OpRow | None  # the first op the Edge TPU cannot run: it and everything after run on the CPU
    float_tensors: list[dict]  # index, name, dtype
    min_runtime_version: str | None  # the rest from edgetpu_limits.check
    op_versions: list[edgetpu_limits.OpVersion]
    version_problems: list[str]
    parameter_memory: edgetpu_limits.ParameterMemory
    problems: list[str]
    ok: bool


def load_interpreter(path):
    """A LiteRT interpreter for `path` without the default XNNPACK delegate.

    Without the delegate the op list is the model's own ops (with it, allocate_tensors appends a DELEGATE node),
    which is what the Edge TPU compiler sees. A file that is not a TFLite model is the user's mistake: UserError.
    """
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    path = Path(path)
    if not path.is_file():
        raise UserError(f"no such TFLite model file: {path}")
    try:
        return Interpreter(
            model_path=str(path),
            experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
        )
    except (ValueError, RuntimeError) as error:
        raise UserError(f"{path} is not a TFLite model ({first_line(error)})") from error


def _dtype_name(dtype):
    return np.dtype(dtype).name


def _io_details(detail):
    """The parts of an input/output tensor the Edge TPU cares about, as plain Python."""
    scale, zero_point = detail["quantization"]
    return {
        "name": detail["name"],
        "shape": [int(d) for d in detail["shape"]],
        "shape_signature": [int(d) for d in detail.get("shape_signature", detail["shape"])],
        "dtype": _dtype_name(detail["dtype"]),
        "scale": float(scale),
        "zero_point": int(zero_point),
    }


def _softmax_problem(op, tensors):
    """Why a SOFTMAX would not map (not 1-D, or over 16000 classes), or None.

    The leading batch dimension of 1 does not count: a [1, N] softmax is the 1-D case.
    """
    shape = tensors[int(op["inputs"][0])]["shape"]
    dims = [int(d) for d in shape]
    if len([d for d in dims if d != 1]) > 1:
        return f"SOFTMAX input {dims} is not 1-D"
    if int(np.prod(dims)) > SOFTMAX_MAX_ELEMENTS:
        return f"SOFTMAX over {int(np.prod(dims))} elements (the Edge TPU takes at most {SOFTMAX_MAX_ELEMENTS})"
    return None


def _op_row(op, tensors, version):
    """One row of the op table (OpRow)."""
    name = op["op_name"]
    floats = sorted({_dtype_name(t) for t in list(op["operand_types"]) + list(op["result_types"])}
                    & set(FLOAT_DTYPES))
    if name not in EDGETPU_OPS:
        why = "not in the Edge TPU op table"
    elif floats:
        why = f"works on {'/'.join(floats)} tensors"
    elif name == "SOFTMAX":
        why = _softmax_problem(op, tensors)
    else:
        why = None
    return OpRow(int(op["index"]), name, version, why is None, why, bool(floats))


def _io_problems(kind, io):
    """Problems with one input or output: not uint8, or a batch that is not a static 1."""
    problems = []
    if io["dtype"] != "uint8":
        problems.append(f"{kind} dtype is {io['dtype']}, not uint8 (convert with inference_{kind}_type=tf.uint8)")
    signature = io["shape_signature"]
    if -1 in signature or not signature or signature[0] != 1:
        problems.append(
            f"{kind} batch is not a static 1 (shape signature {signature}); rebuild the model on "
            f"keras.Input(shape, batch_size=1) before converting")
    return problems


def inspect_tflite(path):
    """Check a converted .tflite against what the Edge TPU compiler needs, without the compiler: a TfliteCheck, whose
    problems include edgetpu_limits' version problems."""
    interpreter = load_interpreter(path)
    model = edgetpu_limits.read_model(path)
    versions = edgetpu_limits.versions_of_ops(model)
    tensors = {int(t["index"]): t for t in interpreter.get_tensor_details()}
    inputs = [_io_details(d) for d in interpreter.get_input_details()]
    outputs = [_io_details(d) for d in interpreter.get_output_details()]
    ops = [_op_row(op, tensors, versions[int(op["index"])]) for op in interpreter._get_ops_details()]
    limits = edgetpu_limits.check(model)
    first = next((op for op in ops if not op.edgetpu), None)
    float_tensors = [
        {"index": i, "name": t["name"], "dtype": _dtype_name(t["dtype"])}
        for i, t in sorted(tensors.items()) if _dtype_name(t["dtype"]) in FLOAT_DTYPES
    ]

    problems = []
    if len(inputs) != 1 or len(outputs) != 1:
        problems.append(f"model has {len(inputs)} inputs and {len(outputs)} outputs; a classifier has one of each")
    for kind, ios in (("input", inputs), ("output", outputs)):
        for io in ios:
            problems.extend(_io_problems(kind, io))
    dequantize = [op.index for op in ops if op.op == "DEQUANTIZE"]
    if dequantize:
        island = ", ".join(f"{op.op} #{op.index}" for op in ops if op.float)
        problems.append(f"DEQUANTIZE at op #{', #'.join(map(str, dequantize))}: part of the graph runs in float "
                        f"(float island: {island})")
    if float_tensors:
        dtypes = sorted({t["dtype"] for t in float_tensors})
        problems.append(f"{len(float_tensors)} {'/'.join(dtypes)} tensor(s), e.g. {float_tensors[0]['name']!r}: "
                        f"the model is not fully integer")
    if first is not None:
        problems.append(f"first op the Edge TPU cannot run: {first.op} (op #{first.index}); it and "
                        f"everything after it would run on the CPU ({first.why})")
    problems.extend(limits["version_problems"])

    return TfliteCheck(path=str(path), input=inputs[0] if inputs else None, output=outputs[0] if outputs else None,
                       ops=ops, first_unsupported=first, float_tensors=float_tensors, **limits, problems=problems,
                       ok=not problems)


# ---------------------------------------------------------------------------------------------------------------
# The compiler


def find_compiler(explicit_path=None):
    """The edgetpu_compiler to use: an explicit path (which must exist and be executable), else PATH, else None.

    A wrong explicit path is the user's mistake and fails loudly; a compiler that is simply not installed is
    normal off x86-64 Debian, so the caller gets None and says why the compile step was skipped (INSTALL_HINT).
    """
    if explicit_path:
        path = Path(explicit_path).expanduser()
        if not path.is_file():
            raise UserError(f"edgetpu compiler not found: {explicit_path} (give the path to the edgetpu_compiler "
                            f"executable, or leave it out to use the one on PATH)")
        if not os.access(path, os.X_OK):
            raise UserError(f"edgetpu compiler is not executable: {explicit_path} (chmod +x it, or give another)")
        return str(path)
    return shutil.which("edgetpu_compiler")


_VERSION_RE = re.compile(r"Edge TPU Compiler version\s+(\S+)")


def _parse_version(text):
    match = _VERSION_RE.search(text or "")
    return match.group(1) if match else None


def compiler_version(compiler):
    """The compiler's version string (e.g. '16.0.384591198') from `edgetpu_compiler --version`, or None.

    Kept in the report because op support differs between compiler versions.
    """
    try:
        run = subprocess.run([str(compiler), "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (run.stdout or "") + (run.stderr or "")
    return _parse_version(text) or (text.strip().splitlines()[0] if text.strip() else None)


# The compiler's summary, as printed by edgetpu_compiler 15/16 when part of a model stays on the CPU:
#   Number of operations that will run on Edge TPU: 264
#   Number of operations that will run on CPU: 3
# and the table that --show_operations prints (and the .log file always holds):
#   Operator                       Count      Status
#
#   CONV_2D                        11         Mapped to Edge TPU
#   QUANTIZE                       1          Operation is otherwise supported, but not mapped due to some ...
_ON_TPU_RE = re.compile(r"Number of operations that will run on Edge TPU:\s*(\d+)")
_ON_CPU_RE = re.compile(r"Number of operations that will run on CPU:\s*(\d+)")
_TABLE_HEADER_RE = re.compile(r"^\s*Operator\s+Count\s+Status\s*$")
_TABLE_ROW_RE = re.compile(r"^\s*([A-Za-z][A-Za-z0-9_]*)\s+(\d+)\s+(\S.*?)\s*$")
MAPPED = "Mapped to Edge TPU"


def parse_operation_table(text):
    """The rows of the compiler's 'Operator Count Status' table: [{op, count, status}], [] if there is none."""
    rows, in_table = [], False
    for line in (text or "").splitlines():
        if _TABLE_HEADER_RE.match(line):
            in_table, rows = True, []
            continue
        if not in_table or not line.strip():
            continue
        match = _TABLE_ROW_RE.match(line)
        if not match:
            break
        rows.append({"op": match.group(1), "count": int(match.group(2)), "status": match.group(3)})
    return rows


def parse_compiler_output(text, log_text=""):
    """Op counts from the compiler's text: (ops_on_edgetpu, ops_on_cpu, operations table).

    The summary lines win when present; a fully mapped model prints no summary, so the counts then come from
    the operation table (stdout with --show_operations, else the .log file). None where neither says.
    """
    operations = parse_operation_table(text) or parse_operation_table(log_text)
    on_tpu, on_cpu = _ON_TPU_RE.search(text or ""), _ON_CPU_RE.search(text or "")
    if on_tpu and on_cpu:
        return int(on_tpu.group(1)), int(on_cpu.group(1)), operations
    if operations:
        mapped = sum(row["count"] for row in operations if row["status"] == MAPPED)
        return mapped, sum(row["count"] for row in operations) - mapped, operations
    return None, None, operations


def _first_line_with(text, needle):
    """The line holding `needle` plus the next non-empty line, as one line ("Invalid model: x; Model not
    quantized"), or None."""
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    for i, line in enumerate(lines):
        if needle in line:
            return "; ".join(lines[i:i + 2])
    return None


def _last_line(text):
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _keep_output(log_path, command, returncode, stdout, stderr):
    """Append the compiler's own stdout/stderr to its .log (or write the log if it wrote none): the log is the
    one place a user looks when a compile fails, and the compiler's log has only the op table."""
    section = (f"\n# command: {' '.join(command)}\n# exit code: {returncode}\n"
               f"# stdout:\n{stdout or ''}\n# stderr:\n{stderr or ''}\n")
    with open(log_path, "a", encoding="utf-8") as log:
        log.write(section)


@dataclass(frozen=True)
class CompileResult:
    """What edgetpu_compiler made of a model: ok, or the reason why not in one line; its output file (only when ok)
    and its log (kept for diagnosis), and the op counts and table it printed."""

    ok: bool
    reason: str | None
    returncode: int | None = None
    version: str | None = None
    output_path: str | None = None
    log_path: str | None = None
    ops_on_edgetpu: int | None = None
    ops_on_cpu: int | None = None
    operations: list[dict] = field(default_factory=list)  # the compiler's table: op, count, status
    seconds: float | None = None


def compile_for_edgetpu(tflite_path, out_dir, compiler, min_runtime_version=None, timeout_s=180):
    """Run edgetpu_compiler on a .tflite and say whether it really worked: a CompileResult.

    Writes <stem>_edgetpu.tflite and <stem>_edgetpu.log into out_dir (old ones of those two names are removed
    first, so a stale file never passes for a new result). Good only if the exit code is 0, the output file
    exists and the output has no "Invalid model".
    """
    tflite_path, out_dir = Path(tflite_path), Path(out_dir)
    if not tflite_path.is_file():
        raise UserError(f"no such TFLite model file: {tflite_path}")
    out_dir.mkdir(parents=True, exist_ok=True)
    output_path = out_dir / f"{tflite_path.stem}_edgetpu.tflite"
    log_path = out_dir / f"{tflite_path.stem}_edgetpu.log"
    for stale in (output_path, log_path):
        stale.unlink(missing_ok=True)

    command = [str(compiler), "--out_dir", str(out_dir), "--show_operations"]
    if min_runtime_version is not None:
        command += ["--min_runtime_version", str(min_runtime_version)]
    command.append(str(tflite_path))

    timed_out = False
    started = time.monotonic()
    try:
        run = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
        returncode, stdout, stderr = run.returncode, run.stdout, run.stderr
    except subprocess.TimeoutExpired as expired:
        returncode, timed_out = None, True
        stdout = expired.stdout.decode(errors="replace") if isinstance(expired.stdout, bytes) else expired.stdout
        stderr = expired.stderr.decode(errors="replace") if isinstance(expired.stderr, bytes) else expired.stderr
    except OSError as error:
        return CompileResult(ok=False, reason=f"could not run edgetpu_compiler {compiler}: {error}")
    seconds = time.monotonic() - started

    text = (stdout or "") + "\n" + (stderr or "")
    _keep_output(log_path, command, returncode, stdout, stderr)
    log_text = log_path.read_text(encoding="utf-8", errors="replace")
    on_tpu, on_cpu, operations = parse_compiler_output(text, log_text)
    invalid = _first_line_with(text, "Invalid model")
    if timed_out:
        reason = f"edgetpu_compiler did not finish within {timeout_s} s"
    elif returncode != 0:
        reason = f"edgetpu_compiler exited with code {returncode}: {_last_line(text) or 'no output'}"
    elif invalid:
        reason = f"edgetpu_compiler rejected the model: {invalid}"
    elif not output_path.is_file():
        reason = f"edgetpu_compiler exited 0 but wrote no {output_path.name} in {out_dir}"
    else:
        reason = None
    return CompileResult(ok=reason is None, reason=reason, returncode=returncode, version=_parse_version(text),
                         output_path=str(output_path) if reason is None else None, log_path=str(log_path),
                         ops_on_edgetpu=on_tpu, ops_on_cpu=on_cpu, operations=operations, seconds=round(seconds, 3))
