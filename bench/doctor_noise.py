"""What doctor.py finds in photos made worse on purpose, what it costs, and the leakage of a real photo set.

    REAL_DATA_DIR=../shared/data .venv/bin/python bench/doctor_noise.py

For each set (--sets; scenes and the cats and dogs by default) a copy in a temporary folder gets 5 % of its photos
moved into another class (flipped labels) and 20 photos copied into other classes: 10 byte for byte, 10 resized to
90 % and saved again as JPEG at another quality. doctor.py runs on it as a user runs it (a fresh process), at its
default cut, then again with --label_issues 2×(flipped), which reads the features the first run cached. Printed: the
flipped labels among those 2× suspects (recall), precision and recall at the default cut (a photo copied into another
class is mislabeled too), the copies found (in one group with their original, of the right kind), whether
crosses_split is right for each (against datagen's split), both runs' wall times, and how two rankings of the
probe's probabilities (self-confidence, the doctor's, and the normalized margin) find the flipped labels.

Then grocery/train as it is (--leakage_set): how many validation photos have a copy or near twin in training, and the
same under --split_groups its own duplicates.csv, with that split's sizes. Last, drawings (--drawings): 1,000 of each
QuickDraw .npy class, 5 % moved into another class's file, checked on their pixels.
"""
import argparse
import csv
import glob
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from support import startup  # noqa: E402

startup.setup()  # first: before anything imports TensorFlow (support/startup.py)
import config  # noqa: E402
from datagen import in_train_split  # noqa: E402
from reader import DataReader  # noqa: E402
from support import curation, features, label_probe  # noqa: E402
from support.duplicates import connected_sets  # noqa: E402

FLIP_SHARE, EXACT_COPIES, REENCODED_COPIES = 0.05, 10, 10


def place(target, flat, class_name, name):
    """Where a file named `name` of class `class_name` goes: a class folder, or Kaggle's `class.name` prefix."""
    return os.path.join(target, f"{class_name}.{name}") if flat else os.path.join(target, class_name, name)


def noisy_copy(source, target, rng):
    """Copy `source` into `target` with flipped labels and copies across classes. Returns (flipped paths,
    [(copy, original, expected kind)])."""
    reader = DataReader(source)
    files, labels, names = reader.source.files, reader.labels, reader.class_names
    flat = all(os.path.dirname(os.path.abspath(f)) == os.path.abspath(source) for f in files)
    bare = [os.path.basename(f).split(".", 1)[1] if flat else os.path.basename(f) for f in files]
    other = [int((label + rng.integers(1, len(names))) % len(names)) for label in labels]
    order = rng.permutation(len(files))
    flips = set(order[:round(FLIP_SHARE * len(files))].tolist())
    copied = order[len(flips):len(flips) + EXACT_COPIES + REENCODED_COPIES]
    flipped, kept = set(), {}
    for i, path in enumerate(files):
        label = other[i] if i in flips else labels[i]
        destination = place(target, flat, names[label], ("flipped-" if i in flips else "") + bare[i])
        os.makedirs(os.path.dirname(destination), exist_ok=True)
        shutil.copyfile(path, destination)
        kept[i] = destination
        if i in flips:
            flipped.add(destination)
    copies = []
    for k, i in enumerate(copied):
        destination = place(target, flat, names[other[i]], f"copy{k}-{bare[i]}")
        if k < EXACT_COPIES:
            shutil.copyfile(files[i], destination)
            copies.append((destination, kept[i], "exact_bytes"))
        else:
            with Image.open(files[i]) as image:
                image.convert("RGB").resize((image.width * 9 // 10, image.height * 9 // 10), Image.BILINEAR).save(
                    destination, "JPEG", quality=int(rng.choice([65, 75, 85])))
            copies.append((destination, kept[i], "near"))
    return flipped, copies


def doctor(data, report, *flags):
    """doctor.py in a fresh process; its wall time in seconds."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, os.path.join(ROOT, "doctor.py"), "--data", data, "--save_to", report,
                           *flags], cwd=ROOT, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"doctor.py failed:\n{done.stderr}")
    print("\n".join("    " + line for line in done.stdout.strip().splitlines()))
    return time.perf_counter() - start


def table(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def splits_of(data):
    """{file path: "train"/"val"} as datagen splits the data (seed 0, ratio 0.8)."""
    reader = DataReader(data)
    train = in_train_split(reader.id_keys, 0, 0.8)
    return {path: "train" if t else "val" for path, t in zip(reader.source.files, train)}


def measure_noisy(name, real_data, scratch, rng):
    source = os.path.join(real_data, name)
    data = os.path.join(scratch, name.replace("/", "_"), os.path.basename(source.rstrip("/")))
    flipped, copies = noisy_copy(source, data, rng)
    report = os.path.join(scratch, name.replace("/", "_"), "report")
    print(f"{name}: {len(flipped)} labels flipped, {len(copies)} photos copied into other classes")
    first = doctor(data, report)
    flagged = {row["path"] for row in table(os.path.join(report, "label_issues.csv"))}
    mislabeled = flipped | {copy for copy, _, _ in copies}
    second = doctor(data, report, "--label_issues", str(2 * len(flipped)))
    top = {row["path"] for row in table(os.path.join(report, "label_issues.csv"))}
    rows = table(os.path.join(report, "duplicates.csv"))
    groups = connected_sets((row["path"], row["duplicate_of"]) for row in rows)
    group_of = {member: n for n, group in enumerate(groups) for member in group}
    row_of = {}  # the row that describes an item: its own, or for a group's first item, one of its group's
    for row in rows:
        row_of[row["path"]] = row
        row_of.setdefault(row["duplicate_of"], row)
    pair_row = {frozenset((row["path"], row["duplicate_of"])): row for row in rows}
    split = splits_of(data)
    found = {"exact_bytes": 0, "near": 0}
    crosses_right = 0
    for copy, original, kind in copies:
        if copy not in group_of or group_of[copy] != group_of.get(original):
            continue
        row = pair_row.get(frozenset((copy, original)), row_of[copy])  # another first: a copy of a copy
        found[kind] += row["kind"] == kind if kind == "exact_bytes" else row["kind"].startswith("near")
        crosses_right += row["crosses_split"] == ("yes" if split[row["path"]] != split[row["duplicate_of"]] else "no")
    print(f"  label issues: {len(top & flipped) / len(flipped):.3f} of the flipped among the first "
          f"{2 * len(flipped)} suspects; at the default cut {len(flagged)} suspects, precision "
          f"{len(flagged & mislabeled) / max(len(flagged), 1):.3f}, recall {len(flagged & flipped) / len(flipped):.3f} "
          f"of the flipped")
    print(f"  copies: {found['exact_bytes']}/{EXACT_COPIES} exact found as exact_bytes, {found['near']}/"
          f"{REENCODED_COPIES} re-encoded as near; crosses_split right for {crosses_right}/{len(copies)}")
    print(f"  time: {first:.1f} s first run, {second:.1f} s second (features cached)")
    compare_rankings(data, report, flipped)
    return len(top & flipped) / len(flipped), found, first, second


def compare_rankings(data, report, flipped):
    """The flipped labels among the first 2x suspects of two rankings, self-confidence (1 - p(given), the
    doctor's) and the normalized margin (the likeliest other class's p - p(given)), at three probe strengths, on the
    features the doctor cached."""
    reader = DataReader(data)
    cached = features.read_cache(glob.glob(os.path.join(report, "features-*.npz"))[0])
    vectors = np.stack([cached[features.content_hash(reader.encoded(i))] for i in range(len(reader))])
    truth = np.array([path in flipped for path in reader.source.files])
    labels, rows = reader.labels, np.arange(len(reader))
    found = []
    for l2 in (0.1, label_probe.L2, 10.0):
        probabilities = label_probe.out_of_fold(vectors, labels, len(reader.class_names), l2=l2)
        others = probabilities.copy()
        others[rows, labels] = -1.0
        for name, score in (("self-confidence", label_probe.scores(probabilities, labels)),
                            ("normalized margin", others.max(axis=1) - probabilities[rows, labels])):
            found.append(f"{name} {truth[np.argsort(-score)[:2 * truth.sum()]].sum() / truth.sum():.3f} at L2 {l2:g}")
    print(f"  rankings, flipped among the first 2x suspects: {', '.join(found)}")


def measure_drawings(name, real_data, scratch, rng, per_class=1000):
    """The label check of 1-channel drawings (probed on their pixels): the first `per_class` drawings of each
    QuickDraw .npy class, 5 % of them moved to the end of another class's file."""
    source = os.path.join(real_data, name)
    classes = sorted(os.path.splitext(f)[0] for f in os.listdir(source) if f.endswith(".npy"))
    drawings = [np.load(os.path.join(source, f"{c}.npy"), mmap_mode="r")[:per_class] for c in classes]
    total = len(classes) * per_class
    moved = set(rng.choice(total, round(FLIP_SHARE * total), replace=False).tolist())
    incoming = [[] for _ in classes]
    for n in sorted(moved):
        incoming[int((n // per_class + rng.integers(1, len(classes))) % len(classes))].append(n)
    data = os.path.join(scratch, "drawings")
    os.makedirs(data)
    flipped = set()
    for k, c in enumerate(classes):
        kept = [drawings[k][r] for r in range(per_class) if k * per_class + r not in moved]
        flipped |= {f"{c}/{len(kept) + j}" for j in range(len(incoming[k]))}  # a .npy row's id: class/row
        np.save(os.path.join(data, f"{c}.npy"),
                np.stack(kept + [drawings[n // per_class][n % per_class] for n in incoming[k]]))
    print(f"{name}: {len(flipped)} of {total} drawings moved into another class")
    report = os.path.join(scratch, "drawings_report")
    doctor(data, report)
    flagged = {row["path"] for row in table(os.path.join(report, "label_issues.csv"))}
    doctor(data, report, "--label_issues", str(2 * len(flipped)))
    top = {row["path"] for row in table(os.path.join(report, "label_issues.csv"))}
    print(f"  label issues: {len(top & flipped) / len(flipped):.3f} of the flipped among the first "
          f"{2 * len(flipped)} suspects; at the default cut {len(flagged)} suspects, precision "
          f"{len(flagged & flipped) / max(len(flagged), 1):.3f}, recall {len(flagged & flipped) / len(flipped):.3f}")
    return len(top & flipped) / len(flipped)


def leakage(rows):
    """Validation photos whose group of copies holds a training photo."""
    groups = {}
    for row in rows:
        for path, split in ((row["path"], row["split"]), (row["duplicate_of"], row["duplicate_of_split"])):
            groups.setdefault(row["duplicate_of"], {})[path] = split
    return sum(sum(s == "val" for s in members.values()) for members in groups.values()
               if "train" in members.values())


def measure_leakage(name, real_data, scratch):
    data = os.path.join(real_data, name)
    report = os.path.join(scratch, "leakage")
    print(f"{name}, as it is:")
    doctor(data, report)
    plain_csv = os.path.join(scratch, "plain_duplicates.csv")
    shutil.copyfile(os.path.join(report, "duplicates.csv"), plain_csv)
    plain = leakage(table(plain_csv))
    doctor(data, report, "--split_groups", plain_csv)  # the same report folder: its features are cached
    after = leakage(table(os.path.join(report, "duplicates.csv")))
    reader = DataReader(data)
    plain_train = in_train_split(reader.id_keys, 0, 0.8)
    curation.apply(config.RunConfig(data=[data], split_groups=plain_csv), reader)
    grouped_train = in_train_split(reader.id_keys, 0, 0.8)
    print(f"  validation photos with a copy or near twin in training: {plain} of {int((~plain_train).sum())}; "
          f"with --split_groups: {after} of {int((~grouped_train).sum())} ({int(grouped_train.sum())} train, "
          f"{int((plain_train != grouped_train).sum())} photos changed sides)")
    return plain, after


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sets", default="scenes,cats_vs_dogs/train", help="photo sets under REAL_DATA_DIR to spoil")
    p.add_argument("--leakage_set", default="grocery/train", help="the set whose leakage is measured as it is")
    p.add_argument("--drawings", default="quickdraw_npy", help="QuickDraw .npy folder under REAL_DATA_DIR whose "
                                                               "drawings are moved between classes ('' skips)")
    p.add_argument("--keep_copies", help="write the spoiled copies and reports here, kept (default: a temporary "
                                         "folder)")
    args = p.parse_args()
    real_data = os.environ.get("REAL_DATA_DIR")
    if not real_data:
        sys.exit("set REAL_DATA_DIR to the shared data folder (its scenes/, cats_vs_dogs/, grocery/)")
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as temporary:
        scratch = args.keep_copies or temporary
        results = {name: measure_noisy(name, real_data, scratch, rng) for name in args.sets.split(",")}
        plain, after = measure_leakage(args.leakage_set, real_data, scratch)
        drawings = measure_drawings(args.drawings, real_data, scratch, rng) if args.drawings else None
    for name, (recall, found, first, second) in results.items():
        print(f"doctor_noise {name}: flipped labels among the first 2x suspects {recall:.3f} (goal >= 0.8); exact "
              f"copies found {found['exact_bytes']}/{EXACT_COPIES} (goal all); re-encoded found "
              f"{found['near'] / REENCODED_COPIES:.1f} (goal >= 0.9); {first:.0f} s, cached {second:.0f} s "
              f"(goal <= 300 s for ~3,000 photos, seconds cached)")
    print(f"doctor_noise {args.leakage_set}: validation photos with a twin in training {plain}, grouped {after} "
          f"(goal 0 grouped)")
    if drawings is not None:
        print(f"doctor_noise {args.drawings}: flipped labels among the first 2x suspects {drawings:.3f} (goal >= 0.8)")


if __name__ == "__main__":
    main()
