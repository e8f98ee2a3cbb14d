"""Few drawings of classes a model never saw: training from scratch against starting from a model pretrained on other
classes (--from_ckpt), with and without --freeze_epochs, on the shared QuickDraw files, both ways round.

    REAL_DATA_DIR=../shared/data .venv/bin/python bench/few_shot.py                  # ~25 minutes on 2 cores
    REAL_DATA_DIR=../shared/data .venv/bin/python bench/few_shot.py --freezing 1/0.1,10/0.1,10/1 --seeds 0,1

Split A pretrains quickdraw_cnn (train.py's defaults, 3000 drawings a class) on apple, bicycle, bowtie, cat and
diamond and learns eye, fish, lollipop and rainbow anew; split B the other way round (pretrained on diamond, eye, fish,
lollipop, rainbow). Of each new class, the first N drawings train (N = 10: 20 epochs, batch 16; N = 50: 15 epochs,
batch 32), the next 100 validate (--val_data: best.keras is the best epoch on them, and they choose the default
--head_lr_factor and --unfreeze_lr_factor), and the last 800 are the test set, scored once by evaluate.py on
best.keras. Every run is a train.py process. Printed: one row per run (best validation accuracy, test top-1), then
the mean test top-1 per start, and the gains over training from scratch with train.py's defaults.
"""
import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from support import startup  # noqa: E402

startup.setup()  # first: before anything imports TensorFlow (support/startup.py)
import config  # noqa: E402

SPLITS = {"A": (["apple", "bicycle", "bowtie", "cat", "diamond"], ["eye", "fish", "lollipop", "rainbow"]),
          "B": (["diamond", "eye", "fish", "lollipop", "rainbow"], ["apple", "bicycle", "bowtie", "cat"])}
SIZES = {10: ["--num_epochs", "20", "--batch_size", "16"], 50: ["--num_epochs", "15", "--batch_size", "32"]}
VALIDATION, TEST = 100, 800
GOALS = {10: 10.0, 50: 3.0}  # points the frozen start must gain over training from scratch


def run(*arguments):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run([sys.executable, *arguments], cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"error: {' '.join(arguments[:1])} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return done.stdout


def few_shot_folders(quickdraw, classes, count, folder):
    """train/, val/, test/ folders of <class>.npy: the first `count` drawings, the next 100, the last 800."""
    parts = {"train": slice(0, count), "val": slice(count, count + VALIDATION), "test": slice(-TEST, None)}
    for part, rows in parts.items():
        os.makedirs(os.path.join(folder, part), exist_ok=True)
        for name in classes:
            drawings = np.load(os.path.join(quickdraw, f"{name}.npy"), mmap_mode="r")
            np.save(os.path.join(folder, part, f"{name}.npy"), np.asarray(drawings[rows]))
    return {part: os.path.join(folder, part) for part in parts}


def scores(run_dir, test):
    """(best validation accuracy of the run, test top-1 of its best.keras)."""
    with open(os.path.join(run_dir, "history.csv")) as f:
        best = max(float(row["val_accuracy"]) for row in csv.DictReader(f))
    out = os.path.join(run_dir, "test")
    run("evaluate.py", "--read_from", run_dir, "--data", test, "--save_to", out, "--overwrite")
    with open(os.path.join(out, "metrics.json")) as f:
        return best, json.load(f)["top1"]


def freezing(head, unfreeze):
    """(name of its rows, train.py flags after --from_ckpt PRE) of one freezing recipe."""
    flags = ["--freeze_epochs", "5", "--head_lr_factor", f"{head:g}", "--unfreeze_lr_factor", f"{unfreeze:g}"]
    return " ".join(["--from_ckpt", *flags]), flags


def starts(pretrained, recipes):
    """(name, train.py flags) of every start compared."""
    yield "from scratch", []
    yield "--from_ckpt", ["--from_ckpt", pretrained]
    for head, unfreeze in recipes:
        name, flags = freezing(head, unfreeze)
        yield name, ["--from_ckpt", pretrained, *flags]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    defaults = f"{config.NAMED['head_lr_factor'].default:g}/{config.NAMED['unfreeze_lr_factor'].default:g}"
    p.add_argument("--freezing", default=f"1/0.1,{defaults}",
                   help="comma-separated HEAD/UNFREEZE pairs of --head_lr_factor and --unfreeze_lr_factor to compare "
                        "(default: %(default)s: the factors of before --head_lr_factor, and train.py's defaults)")
    p.add_argument("--seeds", default="0", help="comma-separated --seed values of the few-shot runs")
    p.add_argument("--work_dir", help="keep the data and runs here (default: a temporary folder)")
    args = p.parse_args()
    real_data = os.environ.get("REAL_DATA_DIR")
    if not real_data:
        sys.exit("error: set REAL_DATA_DIR to the shared data folder (it reads quickdraw_npy/)")
    quickdraw = os.path.join(real_data, "quickdraw_npy")
    recipes = [tuple(float(f) for f in pair.split("/")) for pair in args.freezing.split(",")]
    seeds = args.seeds.split(",")
    work = args.work_dir or tempfile.mkdtemp(prefix="few_shot-")
    results = {}  # (size, start) -> test top-1 of every split and seed
    by_split = {}  # (size, start, split) -> test top-1 of every seed
    for split, (known, new) in SPLITS.items():
        pretrained = os.path.join(work, f"pretrained_{split}")
        if not os.path.isfile(os.path.join(pretrained, "best.keras")):
            run("train.py", "--data", *[os.path.join(quickdraw, f"{name}.npy") for name in known],
                "--max_per_class", "3000", "--save_to", pretrained, "--overwrite")
        for size, flags in SIZES.items():
            data = few_shot_folders(quickdraw, new, size, os.path.join(work, f"data_{split}_{size}"))
            for seed in seeds:
                for start, start_flags in starts(pretrained, recipes):
                    run_dir = os.path.join(work, f"{split}_{size}_seed{seed}_{len(results)}")
                    run("train.py", "--data", data["train"], "--val_data", data["val"], *flags, *start_flags,
                        "--seed", seed, "--save_to", run_dir, "--overwrite")
                    best, top1 = scores(run_dir, data["test"])
                    results.setdefault((size, start), []).append(top1)
                    by_split.setdefault((size, start, split), []).append(top1)
                    print(f"split {split}, {size:2d} a class, seed {seed}: {start:76} best val {best:.3f}  "
                          f"test top-1 {top1:.3f}", flush=True)
    print(f"\nmean test top-1 over seeds ({', '.join(seeds)}), per split and over both:")
    for (size, start), values in results.items():
        per_split = "  ".join(f"{split} {np.mean(by_split[(size, start, split)]):.3f}" for split in SPLITS)
        print(f"  {size:2d} a class  {start:76} {per_split}  both {np.mean(values):.3f}")
    default = freezing(config.NAMED["head_lr_factor"].default, config.NAMED["unfreeze_lr_factor"].default)[0]
    gains = []
    for size, goal in GOALS.items():
        scratch = np.mean(results[(size, "from scratch")])
        if (size, default) in results:
            gains.append(f"{size} a class: frozen {100 * (np.mean(results[(size, default)]) - scratch):+.1f} points "
                         f"(goal >= +{goal:g}), --from_ckpt "
                         f"{100 * (np.mean(results[(size, '--from_ckpt')]) - scratch):+.1f} (goal >= 0)")
    print(f"few_shot: test top-1 over from scratch with train.py's defaults ({default}): "
          f"{'; '.join(gains) or 'the defaults are not among --freezing'}")


if __name__ == "__main__":
    main()
