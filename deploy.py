"""Turn a run folder into deployable models, and prove each one (see README: "The deploy folder").

    python deploy.py --read_from progress/test --save_to deploy/test

Writes labels.txt, model.h5, a full-integer model.tflite (uint8 in and out, batch 1, calibrated on
un-jittered training images), model_edgetpu.tflite when edgetpu_compiler is installed, a SavedModel for
TensorFlow Serving and Vertex AI in saved_model/<version>/ (saved_model_export.py), and deploy_report.json with
each artifact's size, validation accuracy and CPU latency, and how often the SavedModel, given the validation
images' files, answers as predict.py does. Both .tflite files carry TFLite Model Metadata (name, input image,
class names), which MediaPipe Tasks and the TFLite Task Library read.

    python deploy.py --read_from progress/next --save_to deploy/test --formats saved_model --saved_model_version 2

adds version 2 of the SavedModel to an existing deploy folder, beside version 1, which is how TensorFlow Serving
rolls out a new model: it serves the highest version it finds.

Each artifact is one writer in ARTIFACTS, run in its order for the chosen --formats, which writes its files into the
working folder and adds its part to the report (support/deploy_report.py's Report); the report is written last.
"""
from support import startup

if __name__ == "__main__":
    startup.setup()  # first: before anything imports TensorFlow (support/startup.py)

# The imports below load TensorFlow (through Keras), so they come after the start-up call.
import argparse
import dataclasses
import functools
import os

import keras
import numpy as np

import config
from datagen import BatchGenerator, ImageGenerator, open_run_data, run_batches
from support import console, edgetpu, edgetpu_compiler, folders, saved_model_export, storage, tflite_metadata
from support.deploy_report import (CompileSkipped, EdgeTpuModel, Measured, Metadata, Report, SavedModelVersion,
                                   Validation)
from support.errors import ArgumentParser, UserError, first_line, positive_int, reports_user_errors
from support.folders import INT8_MODEL, KERAS_H5, REPORT, SAVED_MODEL
from support.inference import latency_ms, load_classifier, model_in, predict_batches
from support.labels import LABELS, labels_from_text


def formats(text):
    chosen = list(dict.fromkeys(f.strip() for f in text.split(",") if f.strip()))
    unknown = [f for f in chosen if f not in ARTIFACTS]
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(f"unknown format '{','.join(unknown)}'; choose from: {', '.join(ARTIFACTS)}")
    return chosen


def parse_args(argv=None):
    p = ArgumentParser(description="Export a trained run as .h5, int8 .tflite and Edge TPU models and a SavedModel for "
                                   "TensorFlow Serving, with a report.")
    p.add_argument("--read_from", required=True, help="run folder written by train.py")
    p.add_argument("--save_to", required=True, help="deploy folder to write")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing deploy folder; with --formats saved_model alone, only the SavedModel "
                        "version it writes")
    p.add_argument("--formats", type=formats, default=list(ARTIFACTS),
                   help="comma-separated artifacts to write: h5, tflite, edgetpu, saved_model (default: all)")
    p.add_argument("--saved_model_version", type=positive_int,
                   help="the SavedModel's version folder, saved_model/N/ (default: 1). With --formats saved_model "
                        "alone and an existing deploy folder as --save_to, adds version N to its saved_model/ "
                        "(which must be there, from a run of the same classes) and leaves everything else; an "
                        "existing version needs --overwrite")
    p.add_argument("--calibration_samples", type=positive_int, default=300,
                   help="training images that calibrate int8 quantization (default: %(default)s)")
    config.add_flags(p, "deploy")
    p.add_argument("--edgetpu_compiler", help="path to edgetpu_compiler (default: found on PATH)")
    p.add_argument("--min_runtime_version", help="edgetpu_compiler --min_runtime_version")
    p.add_argument("--strict", action="store_true",
                   help="fail when the compiler is missing or the int8 model would not run fully on the Edge TPU")
    args = p.parse_args(argv)
    if args.saved_model_version is not None and "saved_model" not in args.formats:
        p.error(f"--saved_model_version {args.saved_model_version} needs saved_model in --formats")
    args.saved_model_version = args.saved_model_version or 1
    args.eval_samples = config.given_or_default(args, "eval_samples")
    return args


def check_deploy_folder(save_to, overwrite):
    """Refuse to touch an existing folder unless asked, and then only one that holds nothing but what deploy.py
    writes."""
    if not storage.exists(save_to):
        return
    if not overwrite:
        raise UserError(f"{save_to} already exists; pass --overwrite to replace it")
    folders.check_replaceable(folders.DEPLOY, save_to)


def adds_version(args):
    """Whether this deploy adds a SavedModel version to an existing deploy folder rather than writing one."""
    return args.formats == ["saved_model"] and storage.exists(args.save_to)


def check_new_version(args, class_names):
    """A version is added only to a deploy folder that has a SavedModel of the same classes, and replaces one only
    with --overwrite. Returns the folder's report, which will record the new version."""
    folder, version = args.save_to, args.saved_model_version
    if not folders.is_deploy_folder(folder):
        raise UserError(f"{folder} exists and is not a deploy folder (no {' or '.join(folders.DEPLOY.markers)}); "
                        f"give a new --save_to, or a deploy folder to add SavedModel version {version} to")
    folders.check_complete_deploy_folder(folder)
    if not storage.isdir(os.path.join(folder, SAVED_MODEL)):
        raise UserError(f"{folder} has no {SAVED_MODEL}/ to add version {version} to; deploy the run "
                        f"there with saved_model among --formats (and --overwrite), or give a new --save_to")
    labels = os.path.join(folder, LABELS)
    theirs = labels_from_text(storage.read_text(labels))
    if theirs != class_names:
        raise UserError(f"{args.read_from} has classes {', '.join(class_names)} but {labels} lists "
                        f"{', '.join(theirs)}; versions of one SavedModel must answer the same classes: give a new "
                        f"--save_to")
    target = saved_model_export.version_folder(folder, version)
    if storage.exists(target) and not args.overwrite:
        existing = storage.listdir(os.path.join(folder, SAVED_MODEL))
        raise UserError(f"{target} already exists (versions there: {', '.join(sorted(existing, key=str))}); choose "
                        f"another --saved_model_version or pass --overwrite to replace version {version}")
    try:
        return Report.read(folder)
    except ValueError as error:
        raise UserError(f"cannot read {os.path.join(folder, REPORT)} to record version {version} in: {error}") \
            from error


def float32_copy(model, settings):
    """A mixed-precision run's model rebuilt in float32 with its weights: what int8 calibration expects."""
    rebuilt = config.build_model(settings)  # deploy never sets a mixed policy, so this is float32
    rebuilt.set_weights(model.get_weights())
    return rebuilt


def batch_one(model):
    """The same model on a static batch-1 input: the Edge TPU compiler rejects a dynamic batch dimension."""
    inputs = keras.Input(shape=model.input_shape[1:], batch_size=1)
    return keras.Model(inputs, model(inputs))


def to_int8_tflite(model, calibration):
    """Full-integer quantization: int8 weights and activations, uint8 input and output."""
    import tensorflow as tf
    converter = tf.lite.TFLiteConverter.from_keras_model(batch_one(model))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = calibration.representative_dataset
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.uint8
    converter.inference_output_type = tf.uint8
    try:
        with console.captured_output():  # the converter's chatter, shown only if it fails
            return converter.convert()
    except Exception as error:
        raise UserError(f"int8 TFLite conversion failed: {first_line(error)}") from error


def described(model_bytes, settings, run_dir):
    """The int8 model with TFLite Model Metadata: what an app that gets only this file needs to name its answers."""
    names = settings.class_names
    shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
    return tflite_metadata.write(
        model_bytes, name=os.path.basename(os.path.normpath(run_dir)), version=settings.started,
        description=f"{settings.model} image classifier of {len(names)} classes ({shown}), trained by the Keras "
                    f"template; run {storage.absolute(run_dir)}", class_names=names)


def measure(path, val_batches, image):
    """Size, top-1 accuracy on the validation images, and median CPU latency of one saved artifact; and its
    probabilities for those images."""
    classifier = load_classifier(path)
    probabilities, labels = predict_batches(classifier, val_batches, desc=f"evaluating {os.path.basename(path)}")
    return Measured(bytes=storage.size(path), accuracy=float(np.mean(probabilities.argmax(1) == labels)),
                    latency_ms=round(latency_ms(classifier, image), 4), kind=classifier.kind), probabilities


@dataclasses.dataclass
class Job:
    """What the artifact writers work from: the run, the float32 model, the images, and the local working folder
    they write into (renamed to, or uploaded as, --save_to once whole); and the report they each add to."""

    args: argparse.Namespace
    settings: config.RunConfig
    folder: str
    model: keras.Model
    model_path: str  # the run's own model file
    val_batches: BatchGenerator
    calibration: ImageGenerator
    compiler: str | None
    report: Report
    expected: np.ndarray | None = None  # the float model's probabilities, which the SavedModel's are compared with

    @functools.cached_property
    def image(self):
        """The image each artifact's latency is measured on."""
        return next(iter(self.calibration))[0]

    def final(self, path):
        """Where a file of the working folder ends up: the report names that."""
        return path and os.path.join(self.args.save_to, os.path.basename(path))


def measure_float(job, path):
    """The report's first row: the float model every other artifact is compared with."""
    job.report.artifacts[os.path.basename(path)], job.expected = measure(path, job.val_batches, job.image)


def write_h5(job):
    """model.h5, the float Keras model: the float row of the report."""
    path = os.path.join(job.folder, KERAS_H5)
    storage.save_model(job.model, path)
    measure_float(job, path)


def write_tflite(job):
    """model.tflite, full int8 with metadata; the report gains its row, its metadata and its Edge TPU check, whose
    problems are printed as warnings."""
    path = os.path.join(job.folder, INT8_MODEL)
    model_bytes = described(to_int8_tflite(job.model, job.calibration), job.settings, job.args.read_from)
    storage.write(path, model_bytes)
    job.report.metadata = Metadata.of(model_bytes)
    job.report.tflite_check = edgetpu.inspect_tflite(path)
    job.report.artifacts[INT8_MODEL] = measure(path, job.val_batches, job.image)[0]
    for problem in job.report.tflite_check.problems:
        print(f"warning: model.tflite: {problem}")


def write_edgetpu(job):
    """model_edgetpu.tflite and its log from edgetpu_compiler, when it is installed, with the metadata written again
    (the compiler drops it: README, "Deploying"); the report gains the compiler's result."""
    if job.compiler is None:
        job.report.edgetpu_compiler = CompileSkipped(f"edgetpu_compiler not found; {edgetpu_compiler.INSTALL_HINT}")
        return
    compiled = edgetpu_compiler.compile_for_edgetpu(os.path.join(job.folder, INT8_MODEL), job.folder, job.compiler,
                                           job.args.min_runtime_version)
    job.report.edgetpu_compiler = dataclasses.replace(
        compiled, version=compiled.version or edgetpu_compiler.compiler_version(job.compiler),
        output_path=job.final(compiled.output_path), log_path=job.final(compiled.log_path))
    if compiled.ok:
        output = compiled.output_path
        storage.write(output, described(storage.read_bytes(output), job.settings, job.args.read_from))
        job.report.artifacts[os.path.basename(output)] = EdgeTpuModel(bytes=os.path.getsize(output))


def write_saved_model(job, path=None):
    """saved_model/<version>/ in the working folder, or at `path` (where a version added to an existing deploy folder
    is staged); the report gains its size and how its serving_default, given the validation images' files, agrees
    with job.expected, predict.py's answers for them."""
    version = job.args.saved_model_version
    path = path or saved_model_export.version_folder(job.folder, version)
    saved_model_export.export(job.model, job.settings.class_names, path)
    files = [job.val_batches.reader.encoded(i) for i in job.val_batches.indices]
    entry = SavedModelVersion(
        path=saved_model_export.version_folder(job.args.save_to, version), run=storage.absolute(job.args.read_from),
        bytes=saved_model_export.folder_bytes(path),
        agreement={**saved_model_export.agreement(saved_model_export.served(path, files), job.expected),
                   "with": "the Keras model on support.images.prepare's pixels of the same files, as predict.py"},
        differences=list(saved_model_export.TENSORFLOW_DIFFERS))
    job.report.saved_model = {**(job.report.saved_model or {}), str(version): entry}


# Each --formats choice and the function that writes it, in the order they run.
ARTIFACTS = {"h5": write_h5, "tflite": write_tflite, "edgetpu": write_edgetpu, "saved_model": write_saved_model}


def to_write(formats):
    """The chosen artifacts in ARTIFACTS' order, and model.tflite for an Edge TPU compile, which compiles it."""
    return [name for name in ARTIFACTS if name in formats or (name == "tflite" and "edgetpu" in formats)]


def write_artifacts(job):
    """Fill the working folder: labels.txt, then each chosen artifact; the report last. Without model.h5, the run's
    own model file is the float row."""
    storage.write(os.path.join(job.folder, LABELS), "".join(f"{name}\n" for name in job.settings.class_names))
    if "h5" not in job.args.formats:
        measure_float(job, job.model_path)
    for name in to_write(job.args.formats):
        ARTIFACTS[name](job)
    job.report.write(job.folder)


def add_version(job, classifier):
    """Write saved_model/<version>/ into an existing deploy folder and record it in the folder's report."""
    job.expected, _ = predict_batches(classifier, job.val_batches,
                                      desc=f"evaluating {os.path.basename(classifier.path)}")
    version = job.args.saved_model_version
    target = saved_model_export.version_folder(job.args.save_to, version)
    with folders.building(target) as path:  # replaces the version (--overwrite) only once the new one is whole
        write_saved_model(job, path)
    job.report.write(job.args.save_to)
    print(f"summary, on {len(job.val_batches.indices)} validation images:\n"
          + job.report.saved_model[str(version)].line(version, os.path.basename(classifier.path),
                                                      storage.size(classifier.path)))


def run(args):
    """Deploy as the options of parse_args say, and return the deploy folder's report, a deploy_report.Report
    (deploy_report.json holds its record()): the command's path, and the Python API's (README: "From Python")."""
    settings = config.read(args.read_from)
    model_path = model_in(args.read_from)
    adding = adds_version(args)
    if adding:
        report = check_new_version(args, settings.class_names)
    else:
        check_deploy_folder(args.save_to, args.overwrite)
    compiler = edgetpu_compiler.find_compiler(args.edgetpu_compiler) if "edgetpu" in args.formats else None
    if "edgetpu" in args.formats and compiler is None and args.strict:
        raise UserError(f"edgetpu_compiler not found and --strict is set; {edgetpu_compiler.INSTALL_HINT}")
    train_reader, val_reader = open_run_data(settings)
    _, val_batches = run_batches(settings, train_reader, val_reader, limit=args.eval_samples)
    ratio = 1.0 if val_reader else settings.train_ratio
    calibration = ImageGenerator(train_reader, settings.input_size, settings.channels, args.calibration_samples,
                                 "train", settings.seed, ratio)
    classifier = load_classifier(model_path)
    model = classifier.model
    if settings.dtype_policy != "float32":
        model = float32_copy(model, settings)
    if adding:
        add_version(Job(args, settings, args.save_to, model, model_path, val_batches, calibration, compiler, report),
                    classifier)
        print(f"deploy folder: {args.save_to}")
        return report

    report = Report(run=storage.absolute(args.read_from), model=settings.model,
                    validation=Validation(items=len(val_batches.indices),
                                          source="val_data" if settings.val_data else "split",
                                          eval_samples=args.eval_samples, seed=settings.seed),
                    calibration_samples=len(calibration), artifacts={})
    # Written beside its place, and put there (replacing a deploy folder the user asked to overwrite) when whole.
    with folders.building(args.save_to, last=REPORT) as folder:
        write_artifacts(Job(args, settings, folder, model, model_path, val_batches, calibration, compiler, report))

    print("\n".join(report.summary_lines()))
    compiled = report.edgetpu_compiler
    if compiled is not None and compiled.ok is False:
        raise UserError(f"Edge TPU compile failed: {compiled.reason} (log: {compiled.log_path})")
    if args.strict and report.tflite_check and report.tflite_check.problems:
        raise UserError(f"model.tflite would not run fully on the Edge TPU: {report.tflite_check.problems[0]}")
    print(f"deploy folder: {args.save_to}")
    return report


@reports_user_errors
def main(argv=None):
    return run(parse_args(argv))


if __name__ == "__main__":
    main()
