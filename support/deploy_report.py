"""deploy_report.json as dataclasses: what deploy.py proves of each artifact it writes, and the summary it prints.

A Report holds the run, the validation images every artifact is scored on, one row per artifact (Measured, or
EdgeTpuModel for the compiled model), the int8 model's metadata, its Edge TPU check and the compiler's result
(support/edgetpu.py's TfliteCheck and CompileResult, or CompileSkipped) and each SavedModel version with its
agreement. deploy_report.json is their fields as plain values (record()); a part the deploy did not make (a format
not chosen) is left out rather than written as null. read() types a report again, for deploy.py to add a SavedModel
version to it.
"""
import json
import os
from dataclasses import dataclass, field, fields, is_dataclass

from support import edgetpu_limits, storage, tflite_metadata
from support.edgetpu import OpRow, TfliteCheck
from support.edgetpu_compiler import CompileResult
from support.folders import INT8_MODEL, REPORT, SAVED_MODEL

OPTIONAL = "optional"  # the metadata key that marks an optional() field


def optional():
    """A field a report may lack (a format not deployed, or a field an older deploy.py did not write): left out of
    its JSON while None."""
    return field(default=None, metadata={OPTIONAL: True})


@dataclass(frozen=True)
class Validation:
    """The validation images every artifact is scored on (evaluate.py with the same --eval_samples scores them too)."""

    items: int
    source: str  # "val_data" or "split"
    eval_samples: int
    seed: int


@dataclass(frozen=True)
class Measured:
    """A model file scored on the validation images: its size, top-1 accuracy, median CPU latency and which runtime
    ran it."""

    bytes: int
    accuracy: float
    latency_ms: float
    kind: str


@dataclass(frozen=True)
class EdgeTpuModel:
    """model_edgetpu.tflite: only its size, as it runs on an Edge TPU alone; its metadata written again after the
    compile, which drops it."""

    bytes: int
    metadata: bool = True


@dataclass(frozen=True)
class Metadata:
    """What model.tflite's TFLite Model Metadata holds, and whether MediaPipe's ImageClassifier can use it."""

    name: str
    version: str
    description: str
    min_parser_version: str
    input: dict  # tflite_metadata.read's: width, height, color_space, range, ...
    output: dict
    classes: int
    mediapipe_image_classifier: str

    @classmethod
    def of(cls, model_bytes):
        metadata = tflite_metadata.read(model_bytes)
        mediapipe = ("names its classes (category_name, from the packed labels.txt)"
                     if metadata["input"]["color_space"] == "RGB" else
                     "refuses it (it takes only 3- or 4-channel input): run this 1-channel model with LiteRT "
                     "(predict.py, serve.py), or train with --channels 3 for MediaPipe")
        return cls(**{key: metadata[key] for key in ("name", "version", "description", "min_parser_version", "input",
                                                     "output")},
                   classes=len(metadata["class_names"]), mediapipe_image_classifier=mediapipe)

    def line(self):
        image = self.input
        return (f"name, input ({image['width']}x{image['height']} {image['color_space']}, 0-255) and "
                f"{self.classes} class names inside {INT8_MODEL}; MediaPipe's ImageClassifier "
                f"{self.mediapipe_image_classifier}")


@dataclass(frozen=True)
class SavedModelVersion:
    """saved_model/<version>/: where it is, the run it came from, its size, how its serving_default agrees with
    predict.py on the validation images' files (saved_model_export.agreement, and with what), and what TensorFlow's
    preparation does differently (optional: older reports did not record it)."""

    path: str
    run: str
    bytes: int
    agreement: dict  # images, top1_agreement, max_probability_gap, mean_probability_gap, with
    differences: list[str] | None = optional()

    def line(self, version, float_name, float_bytes):
        agreement = self.agreement
        return (f"  SavedModel {SAVED_MODEL}/{version}: {self.bytes:,} bytes ({float_name} {float_bytes:,}); given "
                f"the image files, top-1 as predict.py's on {agreement['top1_agreement']:.1%} of "
                f"{agreement['images']}, probabilities at most {agreement['max_probability_gap']:.4f} apart")


@dataclass(frozen=True)
class CompileSkipped:
    """The Edge TPU compile that did not run, edgetpu_compiler not being installed; `skipped` says how to install it."""

    ok: None = field(default=None, init=False)  # neither passed nor failed
    skipped: str


@dataclass
class Report:
    """A deploy folder's report; deploy.py's artifact writers each add their part."""

    run: str
    model: str
    validation: Validation
    calibration_samples: int
    artifacts: dict[str, Measured | EdgeTpuModel]  # by file name; the first is the float model, the baseline
    saved_model: dict[str, SavedModelVersion] | None = optional()  # by version
    metadata: Metadata | None = optional()
    tflite_check: TfliteCheck | None = optional()
    edgetpu_compiler: CompileResult | CompileSkipped | None = optional()

    def record(self):
        """deploy_report.json's content."""
        return plain(self)

    def write(self, folder):
        storage.write(os.path.join(folder, REPORT), json.dumps(self.record(), indent=2, default=str))

    @classmethod
    def read(cls, folder):
        """The report in a deploy folder; ValueError, in one line, for a file that is not one deploy.py writes."""
        record = json.loads(storage.read_text(os.path.join(folder, REPORT)))
        try:
            return cls.from_record(record)
        except (KeyError, TypeError, AttributeError) as error:
            raise ValueError(f"it is not a report deploy.py writes ({type(error).__name__}: {error})") from error

    @classmethod
    def from_record(cls, record):
        """A report as deploy_report.json holds it, typed again."""
        def part(key, typed):
            return None if record.get(key) is None else typed(record[key])

        return cls(**{
            **record, "validation": Validation(**record["validation"]),
            "artifacts": {name: (EdgeTpuModel if "metadata" in row else Measured)(**row)
                          for name, row in record["artifacts"].items()},
            "saved_model": part("saved_model", lambda versions: {version: SavedModelVersion(**entry)
                                                                 for version, entry in versions.items()}),
            "metadata": part("metadata", lambda metadata: Metadata(**metadata)),
            "tflite_check": part("tflite_check", check_from_record),
            "edgetpu_compiler": part("edgetpu_compiler", lambda compiled: CompileSkipped(compiled["skipped"])
                                     if "skipped" in compiled else CompileResult(**compiled)),
        })

    def summary_lines(self):
        """What a person reads at a glance: the int8 model against the float one, the Edge TPU verdict, the
        SavedModel."""
        float_name, float_row = next(iter(self.artifacts.items()))
        return ([f"summary, on {self.validation.items} validation images:"]
                + self.artifact_lines(float_name, float_row)
                + [entry.line(version, float_name, float_row.bytes)
                   for version, entry in (self.saved_model or {}).items()])

    def artifact_lines(self, float_name, float_row):
        int8_row = self.artifacts.get(INT8_MODEL)
        if int8_row is None:
            return [f"  {float_name}: {float_row.bytes:,} bytes, accuracy {float_row.accuracy:.1%}, "
                    f"{float_row.latency_ms:.3f} ms per image; no int8 model (--formats)"]
        speedup = float_row.latency_ms / int8_row.latency_ms
        return [
            f"  size      {INT8_MODEL} is {int8_row.bytes / float_row.bytes:.0%} of {float_name} "
            f"({int8_row.bytes:,} vs {float_row.bytes:,} bytes)",
            f"  accuracy  int8 {int8_row.accuracy:.1%} vs float {float_row.accuracy:.1%} "
            f"({100 * (int8_row.accuracy - float_row.accuracy):+.1f} points)",
            f"  speed     int8 {int8_row.latency_ms:.3f} ms vs float {float_row.latency_ms:.3f} ms per image: "
            + (f"{speedup:.1f}x faster" if speedup >= 1 else f"{1 / speedup:.1f}x slower"),
            f"  Edge TPU  {edgetpu_verdict(self.tflite_check, self.edgetpu_compiler)}",
            f"  ops       {ops_line(self.tflite_check)}",
            f"  on-chip   {on_chip_line(self.tflite_check.parameter_memory)}",
            f"  metadata  {self.metadata.line()}",
        ]


def edgetpu_verdict(check, compiled):
    """Whether the Edge TPU runs the whole int8 model: an op version its toolchain cannot parse fails the whole
    compile; else the op table's answer; then the compiler's if it ran."""
    first = check.first_unsupported
    if check.version_problems:
        verdict = f"fails: {check.version_problems[0]}"
    elif first:
        verdict = (f"not all ops mapped: op #{first.index} {first.op} is the first the Edge TPU cannot run "
                   f"({first.why}); it and all after it run on the CPU")
    elif check.problems:
        verdict = f"not ready: {check.problems[0]}"
    else:
        verdict = f"all {len(check.ops)} ops mapped"
    if compiled is None:
        return verdict
    if isinstance(compiled, CompileSkipped):
        return f"{verdict}; edgetpu_compiler not found, so not compiled ({REPORT} says how to install it)"
    if not compiled.ok:
        return f"{verdict}; the compile failed"
    if compiled.ops_on_cpu is None:
        return f"{verdict}; compiled"
    return f"{verdict}; compiled: {compiled.ops_on_edgetpu} ops on the Edge TPU, {compiled.ops_on_cpu} on the CPU"


def ops_line(check):
    """The model's min_runtime_version and each op's version, marking those the Edge TPU toolchain cannot parse."""
    versions = ", ".join(f"{row.op} v{row.version}"
                         + (f" (TensorFlow 2.5: up to v{row.tf25_max})" if row.too_new else "")
                         for row in check.op_versions)
    within = "newer than" if check.version_problems else "all within"
    return (f"min_runtime_version {check.min_runtime_version or 'not written'}; {versions}: {within} TensorFlow "
            f"2.5's registry (what {edgetpu_limits.TOOLCHAIN} parse)")


def on_chip_line(memory):
    """The int8 model's parameters against the Edge TPU's on-chip cache, and what streams when they exceed it."""
    line = (f"parameters {memory.bytes / 2 ** 20:.2f} MiB ({memory.bytes:,} bytes of constant buffers), "
            f"{memory.share:.0%} of the Edge TPU's {memory.cache_bytes // 2 ** 20} MiB on-chip cache")
    if not memory.streamed_bytes:
        return line
    return (f"{line}: about {memory.streamed_bytes / 2 ** 20:.2f} MiB would stream from the host every inference, "
            f"which slows inference")


def check_from_record(record):
    """An Edge TPU check as deploy_report.json holds it, typed again."""
    first = record["first_unsupported"]
    return TfliteCheck(**{**record, "ops": [OpRow(**op) for op in record["ops"]],
                          "first_unsupported": first and OpRow(**first),
                          "op_versions": [edgetpu_limits.OpVersion(**row) for row in record["op_versions"]],
                          "parameter_memory": edgetpu_limits.ParameterMemory(**record["parameter_memory"])})


def plain(value):
    """A dataclass, and what it holds, as JSON's plain values; an optional() field is left out while None."""
    if is_dataclass(value):
        return {f.name: plain(getattr(value, f.name)) for f in fields(value)
                if not (f.metadata.get(OPTIONAL) and getattr(value, f.name) is None)}
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    return value
