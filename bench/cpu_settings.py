"""What two CPU settings of TensorFlow are worth: the BFC allocator train.py asks for (allocator.py), and oneDNN,
which onednn.py keeps on (refusing only the one layer shape that crashes it). train.py with each setting off and
on, on the same short runs.

    .venv/bin/python bench/cpu_settings.py                                  # drawings (the sample doodles)
    REAL_DATA_DIR=../shared/data .venv/bin/python bench/cpu_settings.py     # and photos (cats_vs_dogs/train)
    .venv/bin/python bench/cpu_settings.py --settings onednn                # one setting only

Each run is its own train.py process (TensorFlow reads both settings once), 2 epochs; off and on alternate on the
same arguments, so the runs learn the same (the final accuracy is printed to show it; oneDNN rounds differently).
Printed per run: wall, user and system CPU seconds, the last epoch's time per step, and peak memory; then per case
the ratio off / on of the time per step of the last epoch (tracing excluded; above 1: the setting is faster).
"""
import argparse
import csv
import os
import re
import resource
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from support import startup  # noqa: E402

startup.setup()  # first: before anything imports TensorFlow (support/startup.py)
from support import allocator  # noqa: E402
from support import onednn  # noqa: E402

SETTINGS = {"allocator": (allocator.SETTING, "false", "true"), "onednn": (onednn.SWITCH, "0", "1")}
DRAWINGS = ["--num_epochs", "2"]
PHOTOS = ["--model", "photo_cnn", "--input_size", "96,96", "--channels", "3", "--jitter", "--batch_size", "32",
          "--num_epochs", "2"]


def train(arguments, variable, value, save_to):
    """One train.py run: (wall s, user s, system s, last epoch's ms per step, peak MB of the child, val_accuracy)."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", **{variable: value})
    before, start = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    done = subprocess.run([sys.executable, "train.py", *arguments, "--save_to", save_to, "--overwrite"], cwd=ROOT,
                          env=env, check=True, capture_output=True, text=True)
    wall, after = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_CHILDREN)
    step_ms = float(re.findall(r"(\d+)ms/step", done.stdout)[-1])  # Keras' line for each epoch, verbose=2
    with open(os.path.join(save_to, "history.csv")) as history:
        accuracy = float(list(csv.DictReader(history))[-1]["val_accuracy"])
    return (wall, after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime, step_ms,
            after.ru_maxrss / 1024, accuracy)


def compare(setting, name, arguments, scratch):
    variable, off, on = SETTINGS[setting]
    runs = {label: train(arguments, variable, value, os.path.join(scratch, label)) for label, value in
            ((f"{variable}={off}", off), (f"{variable}={on}", on))}
    for label, (wall, user, system, step_ms, peak, accuracy) in runs.items():
        print(f"{name:9} {label:32} {wall:6.1f} s wall  user {user:6.1f} s  system {system:6.1f} s  "
              f"{step_ms:5.0f} ms/step  peak of all runs so far {peak:6.0f} MB  final val_accuracy {accuracy:.4f}")
    off_run, on_run = runs.values()
    return off_run[3] / on_run[3]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--settings", default="allocator,onednn", help="comma-separated: allocator, onednn")
    settings = p.parse_args().settings.split(",")
    real_data = os.environ.get("REAL_DATA_DIR")
    with tempfile.TemporaryDirectory() as scratch:
        for setting in settings:
            ratios = [f"drawings {compare(setting, 'drawings', DRAWINGS, scratch):.2f}"]
            if real_data:
                photos = ["--data", os.path.join(real_data, "cats_vs_dogs", "train"), *PHOTOS]
                ratios.append(f"photos {compare(setting, 'photos', photos, scratch):.2f}")
            else:
                ratios.append("photos skipped (set REAL_DATA_DIR to the shared data folder)")
            print(f"{setting}: time per step off / on, {', '.join(ratios)} (goal > 1: the setting is the faster)")


if __name__ == "__main__":
    main()
