"""Checking a converted .tflite for the Coral Edge TPU, without the device (edgetpu_compiler.py runs the compiler).

- Will it map to the Edge TPU at all? `inspect_tflite` reads the converted model with the LiteRT interpreter and
  reports what the compiler would object to: non-uint8 input/output, a batch that is not a static 1, float
  tensors (a DEQUANTIZE -> float op -> QUANTIZE island converts without any error), and the first op outside
  Coral's op table, from where on the compiler leaves the whole rest of the graph to the CPU; and, through
  edgetpu_limits.py, each op's version against what the toolchain parses, and the parameters against the on-chip
  cache.

It answers in a frozen dataclass of plain values (TfliteCheck), the one place its shape is written:
deploy_report.json holds it as its fields, and support/deploy_report.py reads it back.
"""
from dataclasses import dataclass
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
