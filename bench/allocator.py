"""What `allocator.reuse_cpu_memory()` saves: train.py with TensorFlow's default CPU allocator against its
BFC allocator, on the same short runs.

    .venv/bin/python bench/allocator.py                                  # drawings (the sample doodles)
    REAL_DATA_DIR=../shared/data .venv/bin/python bench/allocator.py     # and photos (cats_vs_dogs/train)

Each run is its own train.py process (TensorFlow reads the setting once), 2 epochs; the two settings
alternate on the same arguments, so their runs learn exactly the same (the final accuracy is printed to
show it). Printed per run: wall, user and system CPU seconds, and peak memory; then the ratio default / BFC
of the wall time per case (above 1: BFC is faster).
"""
import csv
import os
import resource
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import allocator  # noqa: E402

DRAWINGS = ["--num_epochs", "2"]
PHOTOS = ["--model", "photo_cnn", "--input_size", "96,96", "--channels", "3", "--jitter", "--batch_size", "32",
          "--num_epochs", "2"]


def train(arguments, bfc, save_to):
    """One train.py run: (wall s, user s, system s, peak MB of the child, final val_accuracy)."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", **{allocator.SETTING: "true" if bfc else "false"})
    before, start = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    subprocess.run([sys.executable, "train.py", *arguments, "--save_to", save_to, "--overwrite"], cwd=ROOT,
                   env=env, check=True, capture_output=True)
    wall, after = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_CHILDREN)
    with open(os.path.join(save_to, "history.csv")) as history:
        accuracy = float(list(csv.DictReader(history))[-1]["val_accuracy"])
    return (wall, after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime, after.ru_maxrss / 1024,
            accuracy)


def compare(name, arguments, scratch):
    default = train(arguments, False, os.path.join(scratch, "default"))
    bfc = train(arguments, True, os.path.join(scratch, "bfc"))
    for label, (wall, user, system, peak, accuracy) in (("default", default), ("BFC", bfc)):
        print(f"{name:9} {label:8} {wall:6.1f} s wall  user {user:6.1f} s  system {system:6.1f} s  "
              f"peak of all runs so far {peak:6.0f} MB  final val_accuracy {accuracy:.4f}")
    return default[0] / bfc[0]


def main():
    real_data = os.environ.get("REAL_DATA_DIR")
    with tempfile.TemporaryDirectory() as scratch:
        ratios = [f"drawings {compare('drawings', DRAWINGS, scratch):.2f}"]
        if real_data:
            photos = compare("photos", ["--data", os.path.join(real_data, "cats_vs_dogs", "train"), *PHOTOS], scratch)
            ratios.append(f"photos {photos:.2f}")
        else:
            ratios.append("photos skipped (set REAL_DATA_DIR to the shared data folder)")
    print(f"allocator: wall time default / BFC, {', '.join(ratios)} (goal > 1: BFC is the faster)")


if __name__ == "__main__":
    main()
