"""What acting on doctor.py's report is worth in training: the photo recipe on spoiled photos with and without
--exclude, and on grocery with and without --split_groups.

    REAL_DATA_DIR=../shared/data .venv/bin/python bench/doctor_training.py                 # scenes, cats and dogs
    REAL_DATA_DIR=../shared/data .venv/bin/python bench/doctor_training.py --sets none --grouped grocery

--sets: each set is split 3:1 by bench/photo_recipe.py's hash split; the three quarters get 5 % of their photos moved
into another class and 20 copied into other classes (bench/doctor_noise.py's spoiling), doctor.py checks them, and
the template's earlier photo recipe (bench/photo_recipe.py's EARLIER: 2 frozen + 6 unfrozen epochs, the README's
recipe before --time_budget, a third of its time) trains on them twice, as they are and with --exclude
label_issues.csv; both models are scored on the held-out quarter, whose labels nobody spoiled.
--grouped: doctor.py on SET/train as it is, then the recipe trained on it with the template's own split and with
--split_groups duplicates.csv (each set of near twins on one side); for each, the best validation accuracy beside the
top-1 on SET/test, other shots of the same products, scored once.
"""
import argparse
import json
import os
import sys
import tempfile

import numpy as np

BENCH = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, BENCH)
from doctor_noise import doctor, noisy_copy, table  # noqa: E402  (the same spoiling and the doctor's run)
from photo_recipe import DEV_SHARE, EARLIER, IMAGENET, run  # noqa: E402  (the recipe and its share of photos)

from datagen import in_train_split  # noqa: E402
from reader import DataReader  # noqa: E402
from support.ids import stable_hash  # noqa: E402

SPLIT_SEED = 1  # not train.py's own split seed (0), so that its validation split is independent of this one


def split(photos, folder):
    """dev/ and held_out/ trees of links to the photos (class folders or Kaggle's flat files, kept as they are), 3:1
    by a hash of each file's path in the set."""
    files = DataReader(photos).source.files
    relative = [os.path.relpath(f, photos) for f in files]
    dev = in_train_split(np.array([stable_hash(r) for r in relative], dtype=np.uint64), SPLIT_SEED, DEV_SHARE)
    name = os.path.basename(os.path.normpath(photos))
    for file, path, in_dev in zip(files, relative, dev):
        link = os.path.join(folder, "dev" if in_dev else "held_out", name, path)
        os.makedirs(os.path.dirname(link), exist_ok=True)
        os.symlink(os.path.abspath(file), link)
    return {part: (os.path.join(folder, part, name), int(count)) for part, count in
            (("dev", dev.sum()), ("held_out", (~dev).sum()))}


def train_and_score(data, held_out, folder, *flags):
    """The recipe on `data`: its best validation accuracy, the top-1 of best.keras on `held_out`, training seconds."""
    run_dir = os.path.join(folder, "run")
    seconds = run("train.py", "--data", data, *EARLIER, "--model_kwargs", json.dumps(IMAGENET), *flags,
                  "--save_to", run_dir)
    best_val = max(float(row["val_accuracy"]) for row in table(os.path.join(run_dir, "history.csv")))
    run("evaluate.py", "--model_file", os.path.join(run_dir, "best.keras"), "--data", held_out,
        "--save_to", os.path.join(folder, "held_out"))
    with open(os.path.join(folder, "held_out", "metrics.json")) as f:
        return best_val, json.load(f)["top1"], seconds


def spoiled(name, real_data, scratch, rng):
    parts = split(os.path.join(real_data, name), scratch)
    data = os.path.join(scratch, "spoiled", os.path.basename(parts["dev"][0]))
    flipped, copies = noisy_copy(parts["dev"][0], data, rng)
    report = os.path.join(scratch, "report")
    doctor(data, report)
    suspects = {row["path"] for row in table(os.path.join(report, "label_issues.csv"))}
    spoilt = flipped | {copy for copy, _, _ in copies}
    print(f"{name}: {parts['dev'][1]} photos to train on, {len(flipped)} labels flipped and {len(copies)} copies put in "
          f"other classes; --exclude leaves out {len(suspects)} suspects, {len(suspects & spoilt)} of them spoilt; "
          f"{parts['held_out'][1]} held out")
    for label, flags in (("as they are", []), ("--exclude", ["--exclude", os.path.join(report, "label_issues.csv")])):
        val, top1, seconds = train_and_score(data, parts["held_out"][0], os.path.join(scratch, label), *flags)
        print(f"  {label:12} best val {val:.4f}   held-out top-1 {top1:.4f}   {seconds:.0f} s", flush=True)


def grouped(name, real_data, scratch):
    train, test = (os.path.join(real_data, name, part) for part in ("train", "test"))
    report = os.path.join(scratch, "report")
    doctor(train, report)
    for label, flags in (("hash split", []), ("--split_groups", ["--split_groups",
                                                                 os.path.join(report, "duplicates.csv")])):
        val, top1, seconds = train_and_score(train, test, os.path.join(scratch, label), *flags)
        print(f"{name} {label:15} best val {val:.4f}   test top-1 {top1:.4f}   {seconds:.0f} s", flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sets", default="scenes,cats_vs_dogs/train", help="photo sets to spoil, or none")
    p.add_argument("--grouped", default="grocery", help="a set with train/ and test/ for the grouped split, or none")
    p.add_argument("--seed", type=int, default=0, help="seed of the spoiling")
    args = p.parse_args()
    real_data = os.environ.get("REAL_DATA_DIR")
    if not real_data:
        sys.exit("error: set REAL_DATA_DIR to a folder like ../shared/data")
    rng = np.random.default_rng(args.seed)
    for name in [] if args.sets == "none" else args.sets.split(","):
        with tempfile.TemporaryDirectory() as scratch:
            spoiled(name, real_data, scratch, rng)
    if args.grouped != "none":
        with tempfile.TemporaryDirectory() as scratch:
            grouped(args.grouped, real_data, scratch)


if __name__ == "__main__":
    main()
