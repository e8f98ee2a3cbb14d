"""Two limits of the Coral Edge TPU that its op table does not show, read from a .tflite without the compiler.

- Op versions. Every TFLite builtin op has versions: the converter gives each op the lowest version that covers
  what the model asks of it (a grouped convolution makes CONV_2D version 6), and writes into the model's metadata
  "min_runtime_version", the oldest TFLite runtime that has all those versions (from TensorFlow's
  tensorflow/lite/tools/versioning/runtime_version.cc). The Edge TPU toolchain stopped at TensorFlow 2.5:
  edgetpu_compiler 16.0 and libedgetpu 16 parse a model with TensorFlow 2.5's op registry, and an op version newer
  than it registers fails there ("Didn't find op for builtin opcode 'CONV_2D' version '6'"), however well the op
  maps otherwise. A newer TensorFlow writes such versions without any warning.
- On-chip memory. The Edge TPU caches a model's parameters in 8 MiB of on-chip SRAM; what does not fit streams from
  the host for every inference, which slows each one. The estimate here is the bytes of the int8 model's constant
  buffers (weights, biases); the compiler's log says what it really cached (users report about 7 MiB usable).

What it returns is frozen dataclasses of plain values: deploy_report.json holds them as their fields.
"""
from dataclasses import dataclass

from ai_edge_litert import schema_py_generated as schema
from ai_edge_litert.tools import flatbuffer_utils

# The highest version of each builtin op that TensorFlow 2.5.0's BuiltinOpResolver registers: register.cc of TF
# 2.5.0 (tensorflow/lite/kernels/register.cc at tag v2.5.0; an op registered without versions has version 1 only),
# read in the copy that github.com/barbolo/tflite_runtime_build builds tflite_runtime 2.5.0 from (it only adds custom
# ops), and checked against runtime_version.cc: for every op here, the highest version whose first runtime is 2.5.0
# or older. The Edge TPU's ops, the ops that leave float islands, and the ops the template's models convert to.
# An op that is not here is checked through the model's min_runtime_version instead.
TF25_MAX_VERSIONS = {
    "ADD": 3, "AVERAGE_POOL_2D": 3, "BATCH_MATMUL": 4, "CONCATENATION": 3, "CONV_2D": 5, "DEPTHWISE_CONV_2D": 6,
    "DEQUANTIZE": 4, "ELU": 1, "EXP": 1, "EXPAND_DIMS": 1, "FULLY_CONNECTED": 9, "GATHER": 5, "HARD_SWISH": 1,
    "L2_NORMALIZATION": 2, "LEAKY_RELU": 2, "LOGISTIC": 3, "LSTM": 4, "MAXIMUM": 4, "MAX_POOL_2D": 3, "MEAN": 3,
    "MINIMUM": 4, "MUL": 4, "PACK": 3, "PAD": 3, "PADV2": 3, "PRELU": 1, "QUANTIZE": 2, "REDUCE_MAX": 3,
    "REDUCE_MIN": 3, "RELU": 3, "RELU6": 3, "RELU_N1_TO_1": 1, "RESHAPE": 1, "RESIZE_BILINEAR": 4,
    "RESIZE_NEAREST_NEIGHBOR": 4, "RSQRT": 2, "SLICE": 5, "SOFTMAX": 3, "SPACE_TO_DEPTH": 2, "SPLIT": 4,
    "SQUARED_DIFFERENCE": 2, "SQUEEZE": 2, "STRIDED_SLICE": 5, "SUB": 5, "SUM": 2, "TANH": 3, "TILE": 2,
    "TRANSPOSE": 5, "TRANSPOSE_CONV": 3, "UNIDIRECTIONAL_SEQUENCE_LSTM": 3,
}
TOOLCHAIN_RUNTIME = "2.5.0"  # the TensorFlow (Lite) runtime whose registry edgetpu_compiler 16 and libedgetpu parse
TOOLCHAIN = "edgetpu_compiler 16 and libedgetpu"
CACHE_BYTES = 8 * 2 ** 20  # the Edge TPU's on-chip parameter memory
MIN_RUNTIME_VERSION = b"min_runtime_version"
OP_NAMES = {code: name for name, code in vars(schema.BuiltinOperator).items() if not name.startswith("_")}


@dataclass(frozen=True)
class OpVersion:
    """One op version a model uses, how many of its ops have it, and the highest TensorFlow 2.5 registers (None for an
    op TF25_MAX_VERSIONS does not hold)."""

    op: str
    version: int
    count: int
    tf25_max: int | None

    @property
    def too_new(self):
        """Whether the Edge TPU toolchain cannot parse this version."""
        return self.tf25_max is not None and self.version > self.tf25_max


@dataclass(frozen=True)
class ParameterMemory:
    """The int8 model's constant buffers against the Edge TPU's on-chip cache: their bytes, the cache's, the share of
    it they take, and what would stream from the host every inference."""

    bytes: int
    cache_bytes: int
    share: float
    streamed_bytes: int


def read_model(path):
    """The .tflite as flatbuffer objects (the caller has checked that it is one)."""
    with open(path, "rb") as f:
        return flatbuffer_utils.read_model_from_bytearray(bytearray(f.read()))


def op_name(code):
    """An operator code's builtin op name; codes below 127 may sit in the deprecated field (TFLite's GetBuiltinCode)."""
    return OP_NAMES.get(max(code.builtinCode, code.deprecatedBuiltinCode), "UNKNOWN")


def versions_of_ops(model):
    """The version of each op of the first subgraph, in execution order (inspect_tflite's op table's order)."""
    codes = model.operatorCodes
    return [int(codes[op.opcodeIndex].version) for op in model.subgraphs[0].operators]


def op_versions(model):
    """[OpVersion]: each op version the model uses, in order of first use."""
    counts = {}
    codes = model.operatorCodes
    for op in model.subgraphs[0].operators:
        key = (op_name(codes[op.opcodeIndex]), int(codes[op.opcodeIndex].version))
        counts[key] = counts.get(key, 0) + 1
    return [OpVersion(name, version, count, TF25_MAX_VERSIONS.get(name)) for (name, version), count in counts.items()]


def min_runtime_version(model):
    """The converter's "min_runtime_version" metadata ('1.14.0'), or None when the model has none."""
    for entry in model.metadata or []:
        data = model.buffers[entry.buffer].data if entry.name == MIN_RUNTIME_VERSION else None
        if data is not None:
            return bytes(data).split(b"\0")[0].decode() or None  # a 16-byte buffer, padded with zeros
    return None


def newer(version, than):
    """Whether a dotted version is newer than another: '2.10.0' is newer than '2.5.0'."""
    return [int(part) for part in version.split(".")] > [int(part) for part in than.split(".")]


def version_problems(versions, runtime):
    """One line for each op version newer than TensorFlow 2.5's registry; else, when the model's min_runtime_version
    is newer than 2.5 (an op this table does not hold), one line that says so."""
    problems = [f"{row.op} version {row.version} is newer than TensorFlow 2.5's (up to {row.tf25_max}), "
                f"the registry {TOOLCHAIN} parse: the compile fails (\"Didn't find op for builtin opcode "
                f"'{row.op}' version '{row.version}'\")"
                for row in versions if row.too_new]
    if not problems and runtime and newer(runtime, TOOLCHAIN_RUNTIME):
        problems.append(f"min_runtime_version {runtime} is newer than TensorFlow 2.5, whose registry {TOOLCHAIN} "
                        f"parse: an op version it needs is unknown to them")
    return problems


def parameter_memory(model):
    """The constant buffers of the model's tensors (each buffer once) against the Edge TPU's on-chip cache."""
    buffers = {tensor.buffer for graph in model.subgraphs for tensor in graph.tensors}
    size = sum(len(model.buffers[index].data) for index in buffers if model.buffers[index].data is not None)
    return ParameterMemory(size, CACHE_BYTES, round(size / CACHE_BYTES, 4), max(0, size - CACHE_BYTES))


def check(model):
    """What inspect_tflite adds to its TfliteCheck: min_runtime_version, op_versions, version_problems and
    parameter_memory."""
    versions, runtime = op_versions(model), min_runtime_version(model)
    return {"min_runtime_version": runtime, "op_versions": versions,
            "version_problems": version_problems(versions, runtime), "parameter_memory": parameter_memory(model)}
