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
"""
from support import startup

if __name__ == "__main__":
    startup.setup()  # first: before anything imports TensorFlow (support/startup.py)

# The imports below load TensorFlow (through Keras), so they come after the start-up call.
import argparse
import json
import os

import keras
import numpy as np

import config
from datagen import ImageGenerator, open_run_data, run_batches
from support import console, edgetpu, edgetpu_limits, folders, saved_model_export, storage, tflite_metadata
from support.errors import ArgumentParser, UserError, first_line, positive_int, reports_user_errors
from support.folders import INT8_MODEL, KERAS_H5, REPORT, SAVED_MODEL
from support.inference import latency_ms, load_classifier, model_in, predict_batches
from support.labels import LABELS, labels_from_text

ARTIFACTS = ("h5", "tflite", "edgetpu", "saved_model")


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
    report_path = os.path.join(folder, REPORT)
    try:
        return json.loads(storage.read_text(report_path))
    except ValueError as error:
        raise UserError(f"cannot read {report_path} to record version {version} in: {error}") from error


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


def metadata_report(path):
    """What deploy_report.json says of a model's metadata, and whether MediaPipe's ImageClassifier can use it."""
    metadata = tflite_metadata.read(storage.read_bytes(path))
    colour = metadata["input"]["color_space"]
    mediapipe = ("names its classes (category_name, from the packed labels.txt)" if colour == "RGB" else
                 "refuses it (it takes only 3- or 4-channel input): run this 1-channel model with LiteRT "
                 "(predict.py, serve.py), or train with --channels 3 for MediaPipe")
    return {**{key: metadata[key] for key in ("name", "version", "description", "min_parser_version")},
            "input": metadata["input"], "output": metadata["output"], "classes": len(metadata["class_names"]),
            "mediapipe_image_classifier": mediapipe}


def measure(path, val_batches, image):
    """Size, top-1 accuracy on the validation images, and median CPU latency of one saved artifact; and its
    probabilities for those images."""
    classifier = load_classifier(path)
    probabilities, labels = predict_batches(classifier, val_batches, desc=f"evaluating {os.path.basename(path)}")
    return {"bytes": storage.size(path), "accuracy": float(np.mean(probabilities.argmax(1) == labels)),
            "latency_ms": round(latency_ms(classifier, image), 4), "kind": classifier.kind}, probabilities


def write_saved_model(args, settings, path, model, val_batches, expected):
    """The SavedModel in `path`, a local working folder for saved_model/<version>/, and what the report says of it:
    its size, and how its serving_default, given the validation images' files, agrees with `expected`, predict.py's
    answers for them."""
    saved_model_export.export(model, settings.class_names, path)
    files = [val_batches.reader.encoded(i) for i in val_batches.indices]
    return {"path": saved_model_export.version_folder(args.save_to, args.saved_model_version),
            "run": storage.absolute(args.read_from), "bytes": saved_model_export.folder_bytes(path),
            "agreement": {**saved_model_export.agreement(saved_model_export.served(path, files), expected),
                          "with": "the Keras model on support.images.prepare's pixels of the same files, as predict.py"},
            "differences": list(saved_model_export.TENSORFLOW_DIFFERS)}


def compile_edgetpu(compiler, tflite_path, folder, save_to, min_runtime_version):
    """Compile in the local working folder; the report names the files where they end up, in save_to."""
    if compiler is None:
        return {"ok": None, "skipped": f"edgetpu_compiler not found; {edgetpu.INSTALL_HINT}"}
    result = edgetpu.compile_for_edgetpu(tflite_path, folder, compiler, min_runtime_version)
    result["version"] = result["version"] or edgetpu.compiler_version(compiler)
    for key in ("output_path", "log_path"):
        if result[key]:
            result[key] = os.path.join(save_to, os.path.basename(result[key]))
    return result


def edgetpu_verdict(report):
    """Whether the Edge TPU runs the whole int8 model: an op version its toolchain cannot parse fails the whole
    compile; else the op table's answer; then the compiler's if it ran."""
    check = report["tflite_check"]
    first = check["first_unsupported"]
    if check["version_problems"]:
        verdict = f"fails: {check['version_problems'][0]}"
    elif first:
        verdict = (f"not all ops mapped: op #{first['index']} {first['op']} is the first the Edge TPU cannot run "
                   f"({first['why']}); it and all after it run on the CPU")
    elif check["problems"]:
        verdict = f"not ready: {check['problems'][0]}"
    else:
        verdict = f"all {len(check['ops'])} ops mapped"
    compiled = report.get("edgetpu_compiler")
    if not compiled:
        return verdict
    if compiled.get("skipped"):
        return f"{verdict}; edgetpu_compiler not found, so not compiled ({REPORT} says how to install it)"
    if not compiled["ok"]:
        return f"{verdict}; the compile failed"
    if compiled["ops_on_cpu"] is None:
        return f"{verdict}; compiled"
    return f"{verdict}; compiled: {compiled['ops_on_edgetpu']} ops on the Edge TPU, {compiled['ops_on_cpu']} on the CPU"


def summary_lines(report):
    """What a person reads at a glance: the int8 model against the float one, the Edge TPU verdict, the SavedModel."""
    artifacts = report["artifacts"]
    float_name = next(iter(artifacts))
    return ([f"summary, on {report['validation']['items']} validation images:"]
            + artifact_lines(float_name, artifacts[float_name], artifacts.get("model.tflite"), report)
            + [saved_model_line(version, entry, float_name, artifacts[float_name]["bytes"])
               for version, entry in report.get("saved_model", {}).items()])


def artifact_lines(float_name, float_row, int8_row, report):
    if int8_row is None:
        return [f"  {float_name}: {float_row['bytes']:,} bytes, accuracy {float_row['accuracy']:.1%}, "
                f"{float_row['latency_ms']:.3f} ms per image; no int8 model (--formats)"]
    speedup = float_row["latency_ms"] / int8_row["latency_ms"]
    return [
        f"  size      model.tflite is {int8_row['bytes'] / float_row['bytes']:.0%} of {float_name} "
        f"({int8_row['bytes']:,} vs {float_row['bytes']:,} bytes)",
        f"  accuracy  int8 {int8_row['accuracy']:.1%} vs float {float_row['accuracy']:.1%} "
        f"({100 * (int8_row['accuracy'] - float_row['accuracy']):+.1f} points)",
        f"  speed     int8 {int8_row['latency_ms']:.3f} ms vs float {float_row['latency_ms']:.3f} ms per image: "
        + (f"{speedup:.1f}x faster" if speedup >= 1 else f"{1 / speedup:.1f}x slower"),
        f"  Edge TPU  {edgetpu_verdict(report)}",
        f"  ops       {ops_line(report['tflite_check'])}",
        f"  on-chip   {on_chip_line(report['tflite_check']['parameter_memory'])}",
        f"  metadata  {metadata_line(report['metadata'])}",
    ]


def ops_line(check):
    """The model's min_runtime_version and each op's version, marking those the Edge TPU toolchain cannot parse."""
    versions = ", ".join(f"{row['op']} v{row['version']}" + (
        f" (TensorFlow 2.5: up to v{row['tf25_max']})" if row["tf25_max"] and row["version"] > row["tf25_max"] else "")
        for row in check["op_versions"])
    within = "newer than" if check["version_problems"] else "all within"
    return (f"min_runtime_version {check['min_runtime_version'] or 'not written'}; {versions}: {within} TensorFlow "
            f"2.5's registry (what {edgetpu_limits.TOOLCHAIN} parse)")


def on_chip_line(memory):
    """The int8 model's parameters against the Edge TPU's on-chip cache, and what streams when they exceed it."""
    line = (f"parameters {memory['bytes'] / 2 ** 20:.2f} MiB ({memory['bytes']:,} bytes of constant buffers), "
            f"{memory['share']:.0%} of the Edge TPU's {memory['cache_bytes'] // 2 ** 20} MiB on-chip cache")
    if not memory["streamed_bytes"]:
        return line
    return (f"{line}: about {memory['streamed_bytes'] / 2 ** 20:.2f} MiB would stream from the host every "
            f"inference, which slows inference")


def saved_model_line(version, entry, float_name, float_bytes):
    agreement = entry["agreement"]
    return (f"  SavedModel {SAVED_MODEL}/{version}: {entry['bytes']:,} bytes ({float_name} "
            f"{float_bytes:,}); given the image files, top-1 as predict.py's on "
            f"{agreement['top1_agreement']:.1%} of {agreement['images']}, probabilities at most "
            f"{agreement['max_probability_gap']:.4f} apart")


def metadata_line(metadata):
    image = metadata["input"]
    return (f"name, input ({image['width']}x{image['height']} {image['color_space']}, 0-255) and "
            f"{metadata['classes']} class names inside model.tflite; MediaPipe's ImageClassifier "
            f"{metadata['mediapipe_image_classifier']}")


def write_report(folder, report):
    storage.write(os.path.join(folder, REPORT), json.dumps(report, indent=2, default=str))


def write_artifacts(args, settings, folder, model, model_path, val_batches, calibration, compiler):
    """Fill the local working folder; returns the report, which is written after every artifact."""
    storage.write(os.path.join(folder, LABELS), "".join(f"{name}\n" for name in settings.class_names))
    image = next(iter(calibration))[0]
    report = {"run": storage.absolute(args.read_from), "model": settings.model,
              "validation": {"items": len(val_batches.indices),
                             "source": "val_data" if settings.val_data else "split",
                             "eval_samples": args.eval_samples, "seed": settings.seed},
              "calibration_samples": len(calibration), "artifacts": {}}

    if "h5" in args.formats:
        keras_path = os.path.join(folder, KERAS_H5)
        storage.save_model(model, keras_path)
    else:
        keras_path = model_path
    report["artifacts"][os.path.basename(keras_path)], expected = measure(keras_path, val_batches, image)
    write_report(folder, report)

    if "saved_model" in args.formats:
        path = saved_model_export.version_folder(folder, args.saved_model_version)
        report["saved_model"] = {str(args.saved_model_version): write_saved_model(args, settings, path, model,
                                                                                  val_batches, expected)}
        write_report(folder, report)

    if "tflite" in args.formats or "edgetpu" in args.formats:
        tflite_path = os.path.join(folder, INT8_MODEL)
        storage.write(tflite_path, described(to_int8_tflite(model, calibration), settings, args.read_from))
        report["metadata"] = metadata_report(tflite_path)
        report["tflite_check"] = edgetpu.inspect_tflite(tflite_path)
        report["artifacts"][INT8_MODEL] = measure(tflite_path, val_batches, image)[0]
        write_report(folder, report)
        for problem in report["tflite_check"]["problems"]:
            print(f"warning: model.tflite: {problem}")
        if "edgetpu" in args.formats:
            report["edgetpu_compiler"] = compile_edgetpu(compiler, tflite_path, folder, args.save_to,
                                                         args.min_runtime_version)
            if report["edgetpu_compiler"].get("ok"):
                output = os.path.join(folder, os.path.basename(report["edgetpu_compiler"]["output_path"]))
                # the compiler drops the metadata (README: "Deploying"): again
                storage.write(output, described(storage.read_bytes(output), settings, args.read_from))
                report["artifacts"][os.path.basename(output)] = {"bytes": os.path.getsize(output), "metadata": True}
            write_report(folder, report)
    return report


def add_version(args, settings, report, classifier, model, val_batches):
    """Write saved_model/<version>/ into an existing deploy folder and record it in the folder's report."""
    expected, _ = predict_batches(classifier, val_batches, desc=f"evaluating {os.path.basename(classifier.path)}")
    version = saved_model_export.version_folder(args.save_to, args.saved_model_version)
    with folders.building(version) as path:  # replaces the version (--overwrite) only once the new one is whole
        entry = write_saved_model(args, settings, path, model, val_batches, expected)
    report.setdefault("saved_model", {})[str(args.saved_model_version)] = entry
    write_report(args.save_to, report)
    print(f"summary, on {len(val_batches.indices)} validation images:\n"
          + saved_model_line(args.saved_model_version, entry, os.path.basename(classifier.path),
                             storage.size(classifier.path)))


def run(args):
    """Deploy as the options of parse_args say, and return the deploy folder's report (what deploy_report.json
    holds): the command's path, and the Python API's (README: "From Python")."""
    settings = config.read(args.read_from)
    model_path = model_in(args.read_from)
    adding = adds_version(args)
    if adding:
        report = check_new_version(args, settings.class_names)
    else:
        check_deploy_folder(args.save_to, args.overwrite)
    compiler = edgetpu.find_compiler(args.edgetpu_compiler) if "edgetpu" in args.formats else None
    if "edgetpu" in args.formats and compiler is None and args.strict:
        raise UserError(f"edgetpu_compiler not found and --strict is set; {edgetpu.INSTALL_HINT}")
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
        add_version(args, settings, report, classifier, model, val_batches)
        print(f"deploy folder: {args.save_to}")
        return report

    # Written beside its place, and put there (replacing a deploy folder the user asked to overwrite) when whole.
    with folders.building(args.save_to, last=REPORT) as folder:
        report = write_artifacts(args, settings, folder, model, model_path, val_batches, calibration, compiler)

    print("\n".join(summary_lines(report)))
    compiled = report.get("edgetpu_compiler", {})
    if compiled.get("ok") is False:
        raise UserError(f"Edge TPU compile failed: {compiled['reason']} (log: {compiled['log_path']})")
    if args.strict and report.get("tflite_check", {}).get("problems"):
        raise UserError(f"model.tflite would not run fully on the Edge TPU: {report['tflite_check']['problems'][0]}")
    print(f"deploy folder: {args.save_to}")
    return report


@reports_user_errors
def main(argv=None):
    return run(parse_args(argv))


if __name__ == "__main__":
    main()
