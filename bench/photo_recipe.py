"""Photos of several classes: the README's photo recipe against Model Maker's default recipe, the template's earlier
photo recipe and a longer one, and each pretrained backbone under the recipe, trained and scored in one run.

    REAL_DATA_DIR=../shared/data .venv/bin/python bench/photo_recipe.py                      # scenes: recipes
    REAL_DATA_DIR=../shared/data .venv/bin/python bench/photo_recipe.py --data ../shared/data/grocery
    REAL_DATA_DIR=../shared/data .venv/bin/python bench/photo_recipe.py --recipes recipe,longer
    REAL_DATA_DIR=../shared/data .venv/bin/python bench/photo_recipe.py --backbones lite0,lite1,lite2
    .venv/bin/python bench/photo_recipe.py --data PHOTOS/ --recipes model_maker,recipe     # class folders of your own

The photos: class folders (default: the shared `scenes`, 6 classes), split 3:1 by a hash of each file's class/name
(the template's own split function, with a seed of its own so that train.py's inner split of the three quarters is
independent of it); or a folder with train/ and test/ class folders (the shared `grocery`), trained on train/ and
scored on test/ as they are. Each row is one train.py process on the training photos (its own validation split picks
best.keras), then deploy.py, then evaluate.py on the held-out photos, scored once, for the float and the int8 model.
The rows (--recipes):

- model_maker: Model Maker's default recipe, a new head (dropout 0.2, label smoothing 0.1) trained on the frozen
  EfficientNet-Lite0: here 10 epochs of the head alone, on features computed once (converged: a logistic probe on
  the same features does no better);
- earlier: the template's earlier photo recipe (2 frozen epochs, 6 of the whole model at 0.2x the rate, BatchNorm
  kept, affine jitter, batch 32);
- recipe: the README's photo command (its --time_budget sizes the epochs on the machine it runs on);
- longer: the recipe's settings at a fixed 2 + 30 epochs, without a budget: the ceiling, its time aside.

Printed per row: held-out top-1 of the float and the int8 model, the epochs trained (config.json's num_epochs: what a
budget decided), training seconds (train.py's wall time), int8 size, int8 CPU latency and the estimated on-chip
parameter memory from deploy_report.json; then each row's distance from the best float row, in points.
"""
import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from support import startup  # noqa: E402

startup.setup()  # first: before anything imports TensorFlow (support/startup.py)
from datagen import in_train_split  # noqa: E402
from reader import IMAGE_SUFFIXES  # noqa: E402
from support.ids import stable_hash  # noqa: E402

DEV_SHARE = 0.75
IMAGENET = {"weights": "imagenet"}
# The README's photo command, less --data and --save_to.
RECIPE = ["--model", "efficientnet_lite", "--freeze_epochs", "2", "--num_epochs", "20", "--time_budget", "14",
          "--unfreeze_lr_factor", "0.2", "--batch_size", "32", "--loss", "label_smoothing", "--jitter"]
LONGER = [*RECIPE[:RECIPE.index("--num_epochs")], "--num_epochs", "32", *RECIPE[RECIPE.index("--time_budget") + 2:]]
EARLIER = ["--model", "efficientnet_lite", "--freeze_epochs", "2", "--num_epochs", "8", "--unfreeze_lr_factor", "0.2",
           "--batch_size", "32", "--loss", "label_smoothing", "--jitter"]
MODEL_MAKER = ["--model", "efficientnet_lite", "--freeze_epochs", "10", "--num_epochs", "10", "--batch_size", "32",
               "--loss", "label_smoothing"]
RECIPES = {"model_maker": MODEL_MAKER, "earlier": EARLIER, "recipe": RECIPE, "longer": LONGER}


def parts_of(photos, folder, seed):
    """({"dev": (folder, count), "held_out": (folder, count)}, how they were made): the photos' own train/ and test/,
    or split()'s."""
    own = [os.path.join(photos, part) for part in ("train", "test")]
    if not all(os.path.isdir(part) for part in own):
        return split(photos, folder, seed), f"split seed {seed}"
    return {part: (path, sum(len(files) for _, _, files in os.walk(path)))
            for part, path in zip(("dev", "held_out"), own)}, "its own test/"


def split(photos, folder, seed):
    """dev/ and held_out/ trees of links to the photos' class folders, 3:1 by a hash of class/name."""
    name = os.path.basename(os.path.normpath(photos))
    files = sorted(f"{c}/{f}" for c in os.listdir(photos) if os.path.isdir(os.path.join(photos, c))
                   for f in os.listdir(os.path.join(photos, c)) if f.lower().endswith(IMAGE_SUFFIXES))
    dev = in_train_split(np.array([stable_hash(f) for f in files], dtype=np.uint64), seed, DEV_SHARE)
    parts = {}
    for part, chosen in (("dev", dev), ("held_out", ~dev)):
        for file in np.array(files)[chosen]:
            link = os.path.join(folder, part, name, file)  # ids keep the photo set's own name: name/class/file
            os.makedirs(os.path.dirname(link), exist_ok=True)
            os.symlink(os.path.abspath(os.path.join(photos, file)), link)
        parts[part] = (os.path.join(folder, part, name), int(chosen.sum()))
    return parts


def run(*arguments):
    """A tool of the template as a user runs it; its wall time in seconds."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, *arguments], cwd=ROOT, capture_output=True, text=True,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    if done.returncode:
        sys.exit(f"error: {arguments[0]} failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
    return time.perf_counter() - start


def held_out_top1(model_file, held_out, folder):
    run("evaluate.py", "--model_file", model_file, "--data", held_out, "--save_to", folder, "--overwrite")
    with open(os.path.join(folder, "metrics.json")) as f:
        return json.load(f)["top1"]


def row(name, flags, parts, folder):
    """One recipe: train on dev, deploy, score both models on the held-out photos."""
    run_dir, deploy_dir = os.path.join(folder, name, "run"), os.path.join(folder, name, "deploy")
    seconds = run("train.py", "--data", parts["dev"][0], *flags, "--save_to", run_dir)
    run("deploy.py", "--read_from", run_dir, "--save_to", deploy_dir, "--formats", "h5,tflite")
    with open(os.path.join(deploy_dir, "deploy_report.json")) as f:
        report = json.load(f)
    int8 = report["artifacts"]["model.tflite"]
    with open(os.path.join(run_dir, "config.json")) as f:
        epochs = json.load(f)["num_epochs"]
    return {"name": name, "epochs": epochs,
            "float": held_out_top1(os.path.join(run_dir, "best.keras"), parts["held_out"][0],
                                   os.path.join(folder, name, "float")),
            "int8": held_out_top1(os.path.join(deploy_dir, "model.tflite"), parts["held_out"][0],
                                  os.path.join(folder, name, "int8")),
            "seconds": seconds, "bytes": int8["bytes"], "latency_ms": int8["latency_ms"],
            "on_chip": report["tflite_check"]["parameter_memory"]["bytes"]}


def with_kwargs(flags, **kwargs):
    return [*flags, "--model_kwargs", json.dumps({**IMAGENET, **kwargs})]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", help="class folders of photos, or a folder with train/ and test/ class folders "
                                  "(default: $REAL_DATA_DIR/scenes)")
    p.add_argument("--recipes", default="model_maker,earlier,recipe",
                   help=f"rows to train, of {', '.join(RECIPES)} (default: %(default)s)")
    p.add_argument("--backbones", help="instead: the recipe on each of these variants, e.g. lite0,lite1,lite2")
    p.add_argument("--keep", help="a folder to keep each row's run, deploy and evaluate folders in (default: a "
                                  "temporary one, removed at the end)")
    p.add_argument("--split_seed", type=int, default=1, help="seed of the 3:1 held-out split (default: 1, the "
                   "README's figures); another seed measures the same rows on another split")
    args = p.parse_args()
    if args.split_seed == 0:
        sys.exit("error: --split_seed 0 is train.py's own split seed, so its validation split would not be independent"
                 " of the held-out one; choose another seed")
    photos = args.data or os.path.join(os.environ.get("REAL_DATA_DIR", ""), "scenes")
    if not os.path.isdir(photos):
        sys.exit("error: give --data PHOTOS/ (class folders), or set REAL_DATA_DIR to a folder with scenes/")
    if args.backbones:
        rows = {variant: with_kwargs(RECIPE, variant=variant) for variant in args.backbones.split(",")}
    else:
        unknown = sorted(set(args.recipes.split(",")) - set(RECIPES))
        if unknown:
            sys.exit(f"error: --recipes {','.join(unknown)}: choose from {', '.join(RECIPES)}")
        rows = {name: with_kwargs(RECIPES[name]) for name in args.recipes.split(",")}
    with contextlib.nullcontext(args.keep) if args.keep else tempfile.TemporaryDirectory() as folder:
        parts, made = parts_of(photos, folder, args.split_seed)
        print(f"{photos}: {parts['dev'][1]} photos train (train.py splits off its validation), {parts['held_out'][1]} "
              f"held out ({made}); {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the start")
        print(f"{'row':12} {'float':>7} {'int8':>7} {'epochs':>7} {'train s':>8} {'int8 MB':>8} {'ms/img':>7} "
              f"{'on-chip MiB':>12}")
        results = {}
        for name, flags in rows.items():
            r = results[name] = row(name, flags, parts, folder)
            print(f"{name:12} {r['float']:7.4f} {r['int8']:7.4f} {r['epochs']:7d} {r['seconds']:8.0f} "
                  f"{r['bytes'] / 1e6:8.2f} {r['latency_ms']:7.1f} {r['on_chip'] / 2 ** 20:12.2f}", flush=True)
    print(f"load average {os.getloadavg()[0]:.1f} at the end")
    best = max(results.values(), key=lambda r: r["float"])
    print("photo_recipe: held-out top-1 against the best row's (" + best["name"] + "), in points: " + ", ".join(
        f"{name} {100 * (r['float'] - best['float']):+.1f} (int8 {100 * (r['int8'] - r['float']):+.1f} of its float)"
        for name, r in results.items()))


if __name__ == "__main__":
    main()
