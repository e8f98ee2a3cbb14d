"""What computing the frozen base's features once saves: --freeze_epochs on cached features (train.py's path when
nothing varies between epochs) against the same frozen epochs run on images, where every epoch runs the base again.

    REAL_DATA_DIR=../shared/data .venv/bin/python bench/frozen_features.py       # EfficientNet-Lite0, cats vs dogs
    .venv/bin/python bench/frozen_features.py                                    # photo_cnn on the doodle sample

Both runs are train.py's own path in this process (the image run with transfer.head_on_cached_features answering
no), on the same flags, one after the other; their best validation accuracy is printed to show they learn the
same (the image path also applies the Dropout before the head). Ends with the ratio of their wall times.
"""
import csv
import os
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from support import startup  # noqa: E402

startup.setup()  # first: before anything imports TensorFlow (support/startup.py)
import keras  # noqa: E402

import train  # noqa: E402
import transfer  # noqa: E402

EPOCHS = "3"


def flags():
    real_data = os.environ.get("REAL_DATA_DIR")
    if real_data:
        return ["--data", os.path.join(real_data, "cats_vs_dogs", "train"), "--model", "efficientnet_lite",
                "--model_kwargs", '{"weights": "imagenet"}', "--batch_size", "32"]
    return ["--model", "photo_cnn", "--input_size", "64,64", "--channels", "3", "--batch_size", "32"]


def timed(arguments, save_to):
    keras.backend.clear_session()
    start = time.perf_counter()
    train.main([*arguments, "--freeze_epochs", EPOCHS, "--num_epochs", EPOCHS, "--save_to", save_to, "--overwrite"])
    with open(os.path.join(save_to, "history.csv")) as history:
        best = max(float(row["val_accuracy"]) for row in csv.DictReader(history))
    return time.perf_counter() - start, best


def main():
    arguments = flags()
    with tempfile.TemporaryDirectory() as scratch:
        cached = timed(arguments, os.path.join(scratch, "cached"))
        transfer.head_on_cached_features = lambda *args: False
        images = timed(arguments, os.path.join(scratch, "images"))
    for name, (seconds, best) in (("cached features", cached), ("images", images)):
        print(f"{name:16} {seconds:6.1f} s for {EPOCHS} frozen epochs (start-up included), best val_accuracy {best:.4f}")
    print(f"frozen_features: wall time on images / on cached features, {EPOCHS} frozen epochs of "
          f"{arguments[arguments.index('--model') + 1]}: {images[0] / cached[0]:.2f} (goal > 1)")


if __name__ == "__main__":
    main()
