"""The SavedModel deploy.py writes, given image files as a server is, against predict.py on the same files: top-1
agreement and the largest probability gap on the shared photos and drawings; and the export's image preparation
against support.images.prepare's, pixel by pixel, beside the preparations it was chosen over.

    REAL_DATA_DIR=../shared/data .venv/bin/python bench/saved_model_agreement.py      # ~15 minutes on 2 cores
    REAL_DATA_DIR=../shared/data .venv/bin/python bench/saved_model_agreement.py --sets cats --work_dir /tmp/sma

Per data set, in --work_dir (kept: a second call reuses its runs and deploy folders): train.py trains a small run
(the photos: EfficientNet-Lite0 on its ImageNet weights, a head on the frozen base for one epoch; cats_grey: the
cats in grey at 96×96, photo_cnn from scratch for 3 epochs, for the grey conversion; the drawings: quickdraw_cnn for 3
epochs), deploy.py deploys it with --formats h5,saved_model, and predict.py writes every class's
probability (--top_k = the classes) for every image of the set. The export's serving_default, loaded with
tf.saved_model.load, then answers each image's file (DataReader.encoded: the JPEG file, the TFRecord's PNG), in
batches of 32. Printed per set: images, top-1 agreement, largest and mean probability gap.

The variants, on a seeded sample of --variant_images per set: the export's preparation and three others, each
compared with support.images.prepare's pixels (share of pixels equal, largest difference) and, through the run's Keras
model, with predict.py's answers (top-1 agreement, largest probability gap).
"""
import argparse
import csv
import os
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from support import startup  # noqa: E402

startup.setup()  # first: before anything imports TensorFlow (support/startup.py)
import tensorflow as tf  # noqa: E402

from datagen import select  # noqa: E402
from support.images import prepare  # noqa: E402
from few_shot import run  # noqa: E402  a tool in its own process; its output if it fails
from reader import DataReader  # noqa: E402
from support.folders import SAVED_MODEL  # noqa: E402
from support.inference import load_classifier  # noqa: E402
from support.saved_model_export import (agreement, converted, decoded, prepared, resized, rounded, served,
                                        version_folder)

PHOTO_RUN = ["--model", "efficientnet_lite", "--model_kwargs", '{"weights": "imagenet"}', "--freeze_epochs", "1",
             "--num_epochs", "1", "--batch_size", "32"]
SETS = {  # name -> (training source, sources whose every image is compared, train.py flags), under REAL_DATA_DIR
    "cats": ("cats_vs_dogs/train", ["cats_vs_dogs/train"], PHOTO_RUN),
    "scenes": ("scenes", ["scenes"], PHOTO_RUN),
    "cats_grey": ("cats_vs_dogs/train", ["cats_vs_dogs/train"],
                  ["--model", "photo_cnn", "--channels", "1", "--input_size", "96,96", "--num_epochs", "3"]),
    "drawings": ("quickdraw_tfrecord/training", ["quickdraw_tfrecord/training", "quickdraw_tfrecord/validation"],
                 ["--num_epochs", "3"]),
}
GOALS = (0.995, 0.02)  # top-1 agreement at least, probability gap at most


def predict_py(run_dir, sources, classes, output):
    """predict.py's probabilities for every item of `sources`: {id: (classes,) float array}."""
    run("predict.py", "--read_from", run_dir, "--data", *sources, "--output_file", output, "--top_k", str(classes),
        "--overwrite")
    answers = {}
    with open(output, newline="") as f:
        for row in csv.reader(f):
            if row[0] == "id":
                continue
            probabilities = np.zeros(classes, np.float32)
            for n in range(classes):
                probabilities[int(row[1 + 3 * n])] = float(row[3 + 3 * n])
            answers[row[0]] = probabilities
    return answers


def variants(input_size, channels):
    """name -> bytes -> uint8 pixels: the export's preparation and the ones it was chosen over."""
    def one_pass(antialias):
        return lambda data: rounded(tf.image.resize(tf.cast(converted(decoded(data), channels), tf.float32),
                                                    input_size, "bilinear", antialias=antialias))

    def default_dct(data):  # tf.io.decode_image decodes a JPEG with TensorFlow's default, the fast integer DCT
        return resized(converted(tf.io.decode_image(data, expand_animations=False), channels), input_size)

    return {"the export's (accurate DCT, two rounded passes)": lambda data: prepared(data, input_size, channels),
            "one antialiased pass": one_pass(True), "one pass without antialiasing": one_pass(False),
            "TensorFlow's default JPEG DCT": default_dct}


def variant_rows(reader, indices, classifier, expected, ids):
    """One row per variant: pixel agreement with support.images.prepare and, through the Keras model, with predict.py."""
    height, width, channels = classifier.input_shape
    reference = np.stack([prepare(reader.load(i), (height, width), channels) for i in indices])
    rows = []
    for name, preparation in variants((height, width), channels).items():
        pixels = np.stack([np.asarray(preparation(tf.constant(reader.encoded(i)))).astype(np.uint8) for i in indices])
        difference = np.abs(pixels.astype(int) - reference)
        agreed = agreement(classifier.predict(pixels.astype(np.float32)), np.stack([expected[ids[i]] for i in indices]))
        rows.append(f"    {name:48} pixels equal {np.mean(difference == 0):7.3%}, largest difference "
                    f"{difference.max():3d}; top-1 as predict.py {agreed['top1_agreement']:7.2%}, largest "
                    f"probability gap {agreed['max_probability_gap']:.4f}")
    return rows


def measure(name, real_data, work, variant_images):
    """Train, deploy, predict and serve one set; prints its lines and returns (images, top-1, largest gap)."""
    training, sources, flags = SETS[name]
    sources = [os.path.join(real_data, source) for source in sources]
    run_dir, deploy_dir = os.path.join(work, f"{name}_run"), os.path.join(work, f"{name}_deploy")
    if not os.path.isfile(os.path.join(run_dir, "best.keras")):
        run("train.py", "--data", os.path.join(real_data, training), *flags, "--save_to", run_dir, "--overwrite")
    if not os.path.isdir(os.path.join(deploy_dir, SAVED_MODEL)):
        run("deploy.py", "--read_from", run_dir, "--save_to", deploy_dir, "--formats", "h5,saved_model", "--overwrite")
    classifier = load_classifier(os.path.join(run_dir, "best.keras"))
    expected = predict_py(run_dir, sources, classifier.num_classes, os.path.join(work, f"{name}_predictions.csv"))

    reader = DataReader(sources)
    ids = reader.ids
    files = [reader.encoded(i) for i in range(len(reader))]
    agreed = agreement(served(version_folder(deploy_dir, 1), files),
                       np.stack([expected[item] for item in ids]))
    top1, gap = agreed["top1_agreement"], agreed["max_probability_gap"]
    print(f"{name}: {len(reader)} images of {', '.join(os.path.relpath(s, real_data) for s in sources)} "
          f"({'x'.join(map(str, classifier.input_shape))} input): top-1 as predict.py on {top1:.2%} "
          f"({int(round((1 - top1) * len(reader)))} differ), probabilities at most {gap:.4f} apart "
          f"(mean {agreed['mean_probability_gap']:.6f})", flush=True)
    sample = select(reader, "test", limit=variant_images)
    print(f"  preparations, on {len(sample)} of them:")
    print("\n".join(variant_rows(reader, sample, classifier, expected, ids)), flush=True)
    return len(reader), top1, gap


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sets", default=",".join(SETS), help="comma-separated data sets (default: %(default)s)")
    p.add_argument("--work_dir", help="keep the runs, deploy folders and predictions here (default: a temporary "
                                      "folder)")
    p.add_argument("--variant_images", type=int, default=300,
                   help="images per set for the comparison of preparations (default: %(default)s)")
    args = p.parse_args()
    real_data = os.environ.get("REAL_DATA_DIR")
    if not real_data:
        sys.exit("error: set REAL_DATA_DIR to the shared data folder (cats_vs_dogs/, scenes/, quickdraw_tfrecord/)")
    work = args.work_dir or tempfile.mkdtemp(prefix="saved_model_agreement-")
    os.makedirs(work, exist_ok=True)
    results = {name: measure(name, real_data, work, args.variant_images) for name in args.sets.split(",")}
    lowest = min(top1 for _, top1, _ in results.values())
    largest = max(gap for _, _, gap in results.values())
    print(f"saved_model_agreement: top-1 as predict.py on at least {lowest:.2%} of each set, probabilities at most "
          f"{largest:.4f} apart, on {sum(n for n, _, _ in results.values())} images "
          f"(goal >= {GOALS[0]:.1%}, <= {GOALS[1]})")


if __name__ == "__main__":
    main()
