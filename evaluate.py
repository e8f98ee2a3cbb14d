"""Measure a trained model on labeled images: accuracy, loss, per-class scores and a confusion matrix.

    python evaluate.py --read_from progress/test
    python evaluate.py --read_from progress/test --model_file deploy/test/model.tflite
    python evaluate.py --read_from progress/test --data more_labeled_images/ --save_to evaluation/more
    python evaluate.py --model_file model.tflite --data labeled_images/     # a model file without its run

By default it evaluates the run's best.keras on the run's own validation images, with the same split,
preprocessing and --eval_samples sample as deploy.py's report (so an int8 model.tflite scores here exactly
what deploy_report.json says). With --data it evaluates every labeled item of that source instead, its
labels matched to the run's classes by name: exactly, then ignoring case, then singular/plural (a folder
`cats/` scores as the run's `cat`), then as --class_map says; items of classes the run does not know are
skipped. A model file without its run (--model_file and --data, no --read_from) is evaluated at its own input
size, with the class names beside it (labels.txt, config.json) or in its own metadata (deploy.py writes them).
Prints top-1 accuracy, balanced accuracy (the mean per-class recall: what top-1 would be if every class had as
many items, so a model that neglects a rare class shows it), top-k accuracy (k = min(5, classes)), the mean
crossentropy loss and a per-class table;
writes metrics.json, confusion_matrix.csv and confusion_matrix.png to --save_to (default:
RUN_DIR/evaluation/<model file name with '.' as '_'>, e.g. evaluation/best_keras).

Conventions (see metrics()): confusion matrix rows are true classes, columns predicted classes. A class
that is never predicted has precision 0 (not NaN), a class absent from the labels has recall 0, and F1 is 0
when precision + recall is 0. Macro averages, and the balanced accuracy (the macro recall), are over the classes
present in the labels; weighted averages weight each class by its support. The loss is computed from the probabilities as Keras does (rows rescaled
to sum 1, then clipped to [1e-7, 1 - 1e-7]), so best.keras on all validation images gives history's val_loss.
"""
from support import startup

if __name__ == "__main__":
    startup.setup()  # first: before anything imports TensorFlow (support/startup.py)

# The imports below load TensorFlow (through Keras), so they come after the start-up call.
import argparse
import json
import os

import numpy as np

import config
import plots
from datagen import BatchGenerator, open_run_data, run_batches, seeded_sample
from reader import DataReader
from support import folders, storage
from support.class_match import match_classes
from support.folders import EVALUATION, MATRIX_CSV, MATRIX_PNG, METRICS
from support.errors import ArgumentParser, UserError, first_of, reports_user_errors
from support.inference import (check_class_names, check_probabilities, class_names_beside, image_classifier, model_in,
                               predict_batches, top_k)

EPSILON = 1e-7  # probabilities are clipped to [EPSILON, 1 - EPSILON] before the log, as Keras does


# --- metrics: pure NumPy ---------------------------------------------------------------------------------

def confusion_matrix(predicted, labels, num_classes):
    """int64 (K, K) counts: row = true class, column = predicted class."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(labels, dtype=np.int64), np.asarray(predicted, dtype=np.int64)), 1)
    return matrix


def per_class_scores(matrix):
    """(precision, recall, f1, support) arrays from a confusion matrix; 0 where a ratio would be 0/0."""
    matrix = np.asarray(matrix, dtype=np.float64)
    hits = np.diag(matrix)
    predicted, support = matrix.sum(axis=0), matrix.sum(axis=1)
    precision = np.divide(hits, predicted, out=np.zeros_like(hits), where=predicted > 0)
    recall = np.divide(hits, support, out=np.zeros_like(hits), where=support > 0)
    total = precision + recall
    f1 = np.divide(2 * precision * recall, total, out=np.zeros_like(hits), where=total > 0)
    return precision, recall, f1, support.astype(np.int64)


def top_k_accuracy(probabilities, labels, k):
    """Share of items whose true class is among the k highest probabilities (top_k's, so top-1 here equals argmax
    accuracy)."""
    classes, _ = top_k(np.asarray(probabilities), k)
    return float(np.mean(np.any(classes == np.asarray(labels)[:, None], axis=1)))


def crossentropy(probabilities, labels):
    """Mean -log p(true class), as Keras computes it from probabilities: each row is scaled to sum 1 (an int8
    model's outputs do not quite), then clipped to [EPSILON, 1 - EPSILON]."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    sums = probabilities.sum(axis=1, keepdims=True)
    probabilities = probabilities / np.maximum(sums, EPSILON)
    true = probabilities[np.arange(len(probabilities)), np.asarray(labels)]
    return float(np.mean(-np.log(np.clip(true, EPSILON, 1 - EPSILON))))


def metrics(probabilities, labels, class_names, k=None):
    """Every number evaluate.py reports, for class probabilities (N, K) and true labels (N,) in 0..K-1.

    Returns a JSON-ready dict: items, top1, balanced_accuracy, top_k (with k, default min(5, K)), loss, per_class
    {name: {precision, recall, f1, support}}, macro and weighted averages, class_names and the confusion
    matrix (rows true, columns predicted)."""
    probabilities = np.asarray(probabilities)
    labels = np.asarray(labels, dtype=np.int64)
    num_classes = len(class_names)
    if probabilities.ndim != 2 or probabilities.shape != (len(labels), num_classes):
        raise ValueError(f"probabilities {probabilities.shape} do not fit {len(labels)} labels "
                         f"of {num_classes} classes")
    if len(labels) == 0:
        raise ValueError("no items to evaluate")
    if labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(f"labels must be in 0..{num_classes - 1}")
    k = min(5, num_classes) if k is None else k
    predicted = probabilities.argmax(axis=1)
    matrix = confusion_matrix(predicted, labels, num_classes)
    precision, recall, f1, support = per_class_scores(matrix)
    present = support > 0
    weights = support / support.sum()
    return {
        "items": int(len(labels)),
        "top1": float(np.mean(predicted == labels)),
        "balanced_accuracy": float(recall[present].mean()),
        "k": int(k),
        "top_k": top_k_accuracy(probabilities, labels, k),
        "loss": crossentropy(probabilities, labels),
        "per_class": {name: {"precision": float(precision[c]), "recall": float(recall[c]), "f1": float(f1[c]),
                             "support": int(support[c])} for c, name in enumerate(class_names)},
        "macro": {"precision": float(precision[present].mean()), "recall": float(recall[present].mean()),
                  "f1": float(f1[present].mean())},
        "weighted": {"precision": float(weights @ precision), "recall": float(weights @ recall),
                     "f1": float(weights @ f1)},
        "class_names": list(class_names),
        "confusion_matrix": matrix.tolist(),
    }


def table(result):
    """The per-class table as text, one line per class, then the averages."""
    names = result["class_names"]
    width = max(12, *(len(n) for n in names)) + 2
    lines = [f"{'class':<{width}}{'precision':>10}{'recall':>10}{'f1':>10}{'support':>10}"]
    for name in names:
        row = result["per_class"][name]
        lines.append(f"{name:<{width}}{row['precision']:>10.4f}{row['recall']:>10.4f}{row['f1']:>10.4f}"
                     f"{row['support']:>10}")
    for average in ("macro", "weighted"):
        row = result[average]
        lines.append(f"{average + ' avg':<{width}}{row['precision']:>10.4f}{row['recall']:>10.4f}"
                     f"{row['f1']:>10.4f}{result['items']:>10}")
    return "\n".join(lines)


def write_confusion_csv(path, matrix, class_names):
    storage.write_csv(path, [["true \\ predicted", *class_names],
                             *([name, *(int(v) for v in row)] for name, row in zip(class_names, matrix))])


# --- the command -----------------------------------------------------------------------------------------


def parse_args(argv=None):
    p = ArgumentParser(description="Evaluate a trained model: accuracy, loss, per-class scores, confusion matrix.")
    p.add_argument("--read_from", help="run folder written by train.py (or give --model_file and --data)")
    p.add_argument("--model_file", help="model to evaluate: .keras, .h5 or .tflite (default: the run's best.keras); "
                                        "a bare file name such as model.tflite is looked up in the run folder")
    p.add_argument("--data", nargs="+", help="labeled images to evaluate instead of the run's validation images "
                                             "(folders, files, globs; labels mapped through the run's class names)")
    p.add_argument("--class_map", type=class_pairs, metavar="DATA=RUN,...",
                   help="DATA=RUN pairs for --data classes whose names do not match the run's, e.g. "
                        "kitten=cat,puppy=dog (names are otherwise matched ignoring case and plural: cats -> cat)")
    config.add_flags(p, "evaluate")
    p.add_argument("--save_to", help="folder for metrics.json, confusion_matrix.csv/.png "
                                     "(default: RUN_DIR/evaluation/<model file name with . as _>, "
                                     "e.g. evaluation/best_keras; without a run, evaluation/<...> here)")
    p.add_argument("--overwrite", action="store_true", help="write into an existing, non-empty --save_to")
    args = p.parse_args(argv)
    if args.class_map and args.data is None:
        p.error("--class_map maps the classes of --data; give --data too")
    if not args.read_from and not (args.model_file and args.data):
        p.error("give --read_from RUN_DIR, or --model_file FILE with --data (a model file alone has no "
                "validation images)")
    return args


def class_pairs(text):
    """--class_map's value: `kitten=cat,puppy=dog` -> {"kitten": "cat", "puppy": "dog"}."""
    pairs = [[name.strip() for name in part.split("=")] for part in text.split(",")]
    if any(len(pair) != 2 or not all(pair) for pair in pairs):
        raise argparse.ArgumentTypeError(f"must be DATA=RUN pairs separated by commas, e.g. kitten=cat,puppy=dog; "
                                         f"got '{text}'")
    twice = sorted({data for data, _ in pairs if [d for d, _ in pairs].count(data) > 1})
    if twice:
        raise argparse.ArgumentTypeError(f"maps {', '.join(twice)} more than once; give each data class one run class")
    return dict(pairs)


def output_folder(args, path):
    folder = args.save_to or os.path.join(args.read_from or ".", EVALUATION, os.path.basename(path).replace(".", "_"))
    if storage.isfile(folder):
        raise UserError(f"--save_to {folder} is a file; give a folder")
    if storage.isdir(folder) and storage.listdir(folder) and not args.overwrite:
        raise UserError(f"{folder} already exists and is not empty; pass --overwrite to replace its "
                        f"{METRICS}, {MATRIX_CSV} and {MATRIX_PNG}, or choose another --save_to")
    return folder


def run_labels(reader, class_names, class_map=None):
    """The reader's labels as the run's class indices, matched by class_match.match_classes (which prints the
    mapping when it is not by the same names); -1 for unlabeled items and for classes the run does not know
    (those are skipped, with a note)."""
    names = list(reader.class_names)
    mapping = match_classes(names, class_names, class_map)
    remap = [class_names.index(mapping[n]) if n in mapping else -1 for n in names]
    labels = np.asarray(reader.labels)
    mapped = np.where(labels >= 0, np.array(remap + [-1], dtype=np.int64)[labels], -1)
    unknown = [n for i, (n, r) in enumerate(zip(names, remap)) if r < 0 and np.any(labels == i)]
    listed = first_of(unknown, 10)
    if unknown:
        skipped = int(np.sum((labels >= 0) & (mapped < 0)))
        if skipped == int(np.sum(labels >= 0)):
            raise UserError(f"none of the data's classes ({listed}) is one the run was trained on: "
                            f"{', '.join(class_names)}; name the pairs with --class_map DATA=RUN,...")
        print(f"note: skipping {skipped} item(s) of classes the run was not trained on: {listed} "
              f"(--class_map DATA=RUN,... maps them)")
    return mapped


def evaluation_batches(args, settings):
    """The batches to evaluate and a description of them: the run's validation images, or --data."""
    if args.data is None:
        train_reader, val_reader = open_run_data(settings)
        limit = config.given_or_default(args, "eval_samples")
        _, batches = run_batches(settings, train_reader, val_reader, limit=limit)
        source = {"source": "the run's val_data" if val_reader else "the run's validation split",
                  "eval_samples": limit, "seed": settings.seed, "paths": settings.val_data or settings.data}
        return batches, source
    reader = DataReader(args.data, config.given_or_default(args, "data_format"))
    unlabeled = int(np.sum(reader.labels < 0))
    if unlabeled == len(reader):
        raise UserError(f"{', '.join(args.data)} has no labels; evaluate needs labeled images "
                        f"(use predict.py for unlabeled ones)")
    # The data's own class order may differ from the run's (or hold only some of its classes): it is scored by the
    # run's indices, and only its items of the run's classes.
    labels = run_labels(reader, settings.class_names, args.class_map)
    items = seeded_sample(np.flatnonzero(labels >= 0), args.eval_samples, settings.seed)
    batches = BatchGenerator(reader, "test", batch_size=settings.batch_size, input_size=settings.input_size,
                             channels=settings.channels, seed=settings.seed, labels=labels, indices=items)
    if unlabeled:
        print(f"note: skipping {unlabeled} unlabeled item(s) of {', '.join(args.data)}")
    source = {"source": "--data", "paths": [os.path.abspath(p) for p in args.data],
              "eval_samples": args.eval_samples, "seed": settings.seed}
    return batches, source


def model_settings(classifier):
    """What evaluating a model file without its run takes from the model: its input, and the class names beside
    it or in its metadata; the declared batch size and seed (for --eval_samples)."""
    class_names, names_from = class_names_beside(classifier.path, classifier.num_classes)
    if names_from is None:
        print(f"note: no class names beside {classifier.path} or in it: classes are numbered 0-"
              f"{classifier.num_classes - 1}")
    height, width, channels = classifier.input_shape
    return config.RunConfig(class_names=class_names, input_size=[height, width], channels=channels)


def check_run_model(run_dir, settings, classifier):
    """The model to evaluate must be one of the run: its classes and its input."""
    check_class_names(classifier, settings.class_names, os.path.join(run_dir, folders.CONFIG))
    expected = (*settings.input_size, settings.channels)
    if classifier.input_shape != tuple(expected):
        raise UserError(f"{classifier.path} takes images {classifier.input_shape} but the run {run_dir} prepares "
                        f"{tuple(expected)}; evaluate a model of this run")


def run(args):
    """Evaluate as the options of parse_args say, and return every number (what metrics.json holds): the command's
    path, and the Python API's (README: "From Python")."""
    settings = config.read(args.read_from) if args.read_from else None
    path = model_in(args.read_from, args.model_file)
    folder = output_folder(args, path)
    classifier = image_classifier(path)
    if settings:
        check_run_model(args.read_from, settings, classifier)
    else:
        settings = model_settings(classifier)
    batches, source = evaluation_batches(args, settings)
    if len(batches.indices) == 0:
        raise UserError("no labeled items to evaluate")

    probabilities, labels = predict_batches(classifier, batches, desc=f"evaluating {os.path.basename(path)}")
    check_probabilities(classifier, probabilities, len(labels))
    result = metrics(probabilities, labels, settings.class_names)
    result = {"model": storage.absolute(path), "kind": classifier.kind,
              "run": storage.absolute(args.read_from) if args.read_from else None,
              "data": source, **result}

    storage.write(os.path.join(folder, METRICS), json.dumps(result, indent=2))
    matrix = np.array(result["confusion_matrix"])
    write_confusion_csv(os.path.join(folder, MATRIX_CSV), matrix, settings.class_names)
    plots.confusion_matrix_png(matrix, settings.class_names, os.path.join(folder, MATRIX_PNG),
                               f"{os.path.basename(path)}: {result['items']} images, top-1 {result['top1']:.4f}")

    print(f"{os.path.basename(path)} ({classifier.kind}) on {result['items']} images ({source['source']})")
    print(f"top-1 accuracy {result['top1']:.4f}   balanced accuracy {result['balanced_accuracy']:.4f}   "
          f"top-{result['k']} accuracy {result['top_k']:.4f}   loss {result['loss']:.4f}")
    print(table(result))
    print(f"wrote {METRICS}, {MATRIX_CSV}, {MATRIX_PNG} to {folder}")
    return result


@reports_user_errors
def main(argv=None):
    return run(parse_args(argv))


if __name__ == "__main__":
    main()
