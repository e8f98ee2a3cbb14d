"""MediaPipe Tasks' ImageClassifier on a deployed model.tflite against our own LiteRT answers for the same pixels:
whether the model's metadata names the classes for MediaPipe, and whether MediaPipe scores as we do.

    python3 -m venv .venv-mediapipe && .venv-mediapipe/bin/pip install mediapipe==1.2.2
    .venv-mediapipe/bin/python bench/mediapipe_classifier.py --deploy deploy/cats \
        --images ../shared/data/cats_vs_dogs/train

mediapipe lives in a venv of its own (its opencv-contrib-python overwrites imgaug's cv2), without TensorFlow, so
the work is split in two processes. This script, run by the mediapipe venv's Python, first runs itself under the
template's venv (--python) with --ours_to: that half reads the images with DataReader, brings them to the model's
input size with support.images.prepare, and classifies them with inference.load_classifier (LiteRT); it saves those very
pixels and its answers. The mediapipe half then hands MediaPipe the same pixels, already at the input size, so its
own resize has nothing to change and both see identical input. Scores are compared in quantisation steps of the
uint8 output (its scale): both dequantize the same uint8 output, so identical answers differ by 0 steps.
The model must be 3-channel (MediaPipe's ImageClassifier takes 3 or 4) and carry metadata (tflite_metadata.write).
"""
import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL = "model.tflite"


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--deploy", required=True, help=f"deploy folder holding a 3-channel {MODEL} with metadata")
    p.add_argument("--images", required=True, help="images to classify: any source DataReader reads (a folder of "
                                                   "JPEG/PNG files, class folders, TFRecords)")
    p.add_argument("--limit", type=int, default=500, help="images to use, a seeded sample (default: %(default)s)")
    p.add_argument("--python", default=os.path.join(ROOT, ".venv", "bin", "python"),
                   help="the template's venv Python, for our half (default: %(default)s)")
    p.add_argument("--ours_to", help="run only our half, in the template's venv, and save its answers to this .npz")
    return p.parse_args()


def save_our_answers(args):
    """Our half: the template's reading, resizing and LiteRT classification; saves pixels, scores, scale, labels."""
    sys.path.insert(0, ROOT)
    from support import startup
    startup.setup()  # first: before anything imports TensorFlow, as every tool of the template does
    from support import tflite_metadata
    from datagen import select
    from support.images import prepare
    from support.inference import load_classifier
    from reader import DataReader

    path = os.path.join(args.deploy, MODEL)
    classifier = load_classifier(path)
    height, width, channels = classifier.input_shape
    reader = DataReader(args.images)
    pixels = np.stack([prepare(reader.load(i), (height, width), channels)
                       for i in select(reader, "test", limit=args.limit)])
    with open(path, "rb") as f:
        labels = tflite_metadata.class_names(f.read())
    np.savez(args.ours_to, pixels=pixels, scores=classifier.predict(pixels.astype(np.float32)),
             scale=classifier.interpreter.get_output_details()[0]["quantization"][0],
             labels=np.array(labels or [], dtype=str))


def our_answers(args):
    """Runs our half in the template's venv and loads what it saved."""
    if not os.path.isfile(args.python):
        sys.exit(f"error: no Python at {args.python} for our half; give the template's venv with --python")
    with tempfile.TemporaryDirectory(prefix="mediapipe_classifier_") as work:
        saved = os.path.join(work, "ours.npz")
        command = [args.python, os.path.abspath(__file__), "--deploy", args.deploy, "--images", args.images,
                   "--limit", str(args.limit), "--ours_to", saved]
        if subprocess.run(command, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}).returncode != 0:
            sys.exit("error: our half (LiteRT in the template's venv) failed; its error is above")
        with np.load(saved) as answers:
            return {key: answers[key] for key in answers.files}


def mediapipe_answers(model_path, pixels, classes):
    """MediaPipe's scores (N, classes) by category index, and the category name it gives each index."""
    import mediapipe as mp
    from mediapipe.tasks.python import BaseOptions, vision

    options = vision.ImageClassifierOptions(base_options=BaseOptions(model_asset_path=model_path), max_results=-1)
    scores, names = np.zeros((len(pixels), classes), np.float32), {}
    with vision.ImageClassifier.create_from_options(options) as classifier:
        for n, image in enumerate(pixels):
            result = classifier.classify(mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(image)))
            for category in result.classifications[0].categories:
                scores[n, category.index] = category.score
                names.setdefault(category.index, set()).add(category.category_name)
    return scores, [sorted(names.get(i, {None}), key=str) for i in range(classes)]


def main():
    args = parse_args()
    if args.ours_to:
        return save_our_answers(args)
    try:
        import mediapipe  # noqa: F401
    except ImportError:
        sys.exit("error: mediapipe is not installed in this Python; run this script with the mediapipe venv's "
                 "Python (see its docstring)")
    ours = our_answers(args)
    pixels, labels = ours["pixels"], [str(label) for label in ours["labels"]]
    if pixels.shape[-1] != 3:
        sys.exit(f"error: {MODEL} takes {pixels.shape[-1]}-channel images; MediaPipe's ImageClassifier takes 3 or 4")
    theirs, names = mediapipe_answers(os.path.join(args.deploy, MODEL), pixels, ours["scores"].shape[1])
    agreement = float(np.mean(theirs.argmax(1) == ours["scores"].argmax(1)))
    steps = np.abs(theirs - ours["scores"]) / float(ours["scale"])
    named = all(len(given) == 1 for given in names) and [given[0] for given in names] == labels

    print(f"MediaPipe ImageClassifier and LiteRT on {len(pixels)} images of {args.images}, "
          f"{'x'.join(map(str, pixels.shape[1:]))}, {os.path.join(args.deploy, MODEL)}")
    print("category names MediaPipe returns, by index: "
          + ", ".join(f"{i} {'/'.join(map(str, given))}" for i, given in enumerate(names))
          + f"; labels.txt packed in the model: {', '.join(labels) or 'none'}")
    print(f"top-1: the two agree on {int(round(agreement * len(pixels)))} of {len(pixels)} images ({agreement:.1%})")
    print(f"scores: largest difference {steps.max():.2f} quantisation steps, mean {steps.mean():.3f} "
          f"(output scale {float(ours['scale']):.6g})")
    print(f"mediapipe_classifier: top-1 agreement {agreement:.1%}, largest score difference {steps.max():.2f} steps, "
          f"category names {'from' if named else 'NOT from'} the model's labels "
          f"(goal >= 99%, <= 1 step, names from the labels)")


if __name__ == "__main__":
    main()
