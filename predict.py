"""Predict classes for new images with a trained run or a deployed model; write one CSV row per image.

    python predict.py --read_from progress/test --data test.tfrecords --output_file predictions.csv
    python predict.py --model_file deploy/test/model.tflite --data photos/ --output_file predictions.csv --top_k 3
    python predict.py --read_from progress/test --data test.tfrecords --output_file submission.csv --kaggle

Reads anything DataReader reads (the KMLC unlabeled test TFRecords with `image` + `image_id`, image folders,
single image files, QuickDraw .npy files); labels in the data, if any, are ignored. Images are resized and
converted by support.images.prepare to the model's own input shape, as in training. Keras (.keras, .h5) and LiteRT
(.tflite, int8 or float) models answer the same way.

The CSV has `id,class,name,prob` (the item's id: the TFRecord's image_id, or the image file's path; the
predicted class index and name; its probability), then `class_2,name_2,prob_2, ...` for the next guesses
with --top_k. --kaggle writes the KMLC leaderboard's `Id,Category` (Category = predicted class index).
The CSV is written to a temporary file beside it and renamed when complete: a failure never leaves a part.
"""
from support import startup

if __name__ == "__main__":
    startup.setup()  # first: before anything imports TensorFlow (support/startup.py)

# The imports below load TensorFlow (through Keras), so they come after the start-up call.
import os

import numpy as np

import config
from datagen import BatchGenerator
from reader import DataReader
from support import folders, storage
from support.errors import ArgumentParser, UserError, positive_int, reports_user_errors
from support.inference import (check_class_names, check_probabilities, class_names_beside, image_classifier, model_in,
                               predict_batches, top_k)


def parse_args(argv=None):
    p = ArgumentParser(description="Write a CSV of predicted classes for images, with a run or a model file.")
    p.add_argument("--read_from", help="run folder written by train.py (its best.keras and class names)")
    p.add_argument("--model_file", help="model to run: .keras, .h5 or .tflite (default: the run's best.keras); "
                                        "a bare file name is looked up in --read_from")
    p.add_argument("--data", nargs="+", required=True,
                   help="images to classify: TFRecord files, image folders or files, .npy files, globs")
    p.add_argument("--output_file", default="predictions.csv", help="CSV to write (default: %(default)s)")
    p.add_argument("--top_k", type=positive_int, default=1,
                   help="guesses per image, best first; more than 1 adds class_2, name_2, prob_2, ... columns "
                        "(default: %(default)s)")
    p.add_argument("--kaggle", action="store_true",
                   help="write the KMLC leaderboard form: Id,Category (Category = predicted class index)")
    config.add_flags(p, "predict")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    args = p.parse_args(argv)
    if not args.read_from and not args.model_file:
        p.error("give --read_from RUN_DIR or --model_file FILE (or both)")
    if args.kaggle and args.top_k > 1:
        p.error("--kaggle writes one guess per image (Id,Category); drop --top_k or --kaggle")
    return args


# --- the predictions -------------------------------------------------------------------------------------

def rows(ids, probabilities, class_names, k, kaggle=False):
    """The CSV's header and rows."""
    classes, probs = top_k(probabilities, k)
    if kaggle:
        return ["Id", "Category"], [[item, int(c[0])] for item, c in zip(ids, classes)]
    header = ["id", "class", "name", "prob"]
    for n in range(2, k + 1):
        header += [f"class_{n}", f"name_{n}", f"prob_{n}"]
    body = []
    for item, row_classes, row_probs in zip(ids, classes, probs):
        row = [item]
        for c, p in zip(row_classes, row_probs):
            row += [int(c), class_names[c], f"{p:.6f}"]
        body.append(row)
    return header, body


def check_output_file(path, overwrite):
    if storage.isdir(path):
        raise UserError(f"--output_file {path} is a folder; give a file name such as {path}/predictions.csv")
    if storage.exists(path) and not overwrite:
        raise UserError(f"{path} already exists; pass --overwrite to replace it")


def run(args):
    """Predict as the options of parse_args say, and return the CSV's rows as dicts (column: value): the command's
    path, and the Python API's (README: "From Python")."""
    check_output_file(args.output_file, args.overwrite)
    if args.read_from:
        settings = config.read(args.read_from)
        path = model_in(args.read_from, args.model_file)
        class_names, names_from = settings.class_names, os.path.join(args.read_from, folders.CONFIG)
    else:
        path = args.model_file
    classifier = image_classifier(path)
    if not args.read_from:
        class_names, names_from = class_names_beside(path, classifier.num_classes)
    if names_from is not None:
        check_class_names(classifier, class_names, names_from)
    if args.top_k > classifier.num_classes:
        raise UserError(f"--top_k {args.top_k} is more than the model's {classifier.num_classes} classes; "
                        f"choose 1 to {classifier.num_classes}")

    reader = DataReader(args.data, config.given_or_default(args, "data_format"))
    height, width, channels = classifier.input_shape
    batches = BatchGenerator(reader, mode="test", batch_size=config.given_or_default(args, "batch_size"),
                             input_size=(height, width), channels=channels)
    probabilities, _ = predict_batches(classifier, batches, desc=f"predicting with {os.path.basename(path)}")
    check_probabilities(classifier, probabilities, len(batches.indices))
    ids = reader.ids
    header, body = rows([ids[i] for i in batches.indices], probabilities, class_names, args.top_k, args.kaggle)
    storage.write_csv(args.output_file, [header, *body])  # written whole: readers never see a partial CSV
    counts = np.bincount(probabilities.argmax(1), minlength=len(class_names))
    common = ", ".join(f"{class_names[c]} {counts[c]}" for c in np.argsort(-counts, kind="stable")[:5] if counts[c])
    print(f"{len(body)} predictions ({classifier.kind} model {path}) written to {args.output_file}; "
          f"most predicted: {common}")
    return [dict(zip(header, row)) for row in body]


@reports_user_errors
def main(argv=None):
    return run(parse_args(argv))


if __name__ == "__main__":
    main()
