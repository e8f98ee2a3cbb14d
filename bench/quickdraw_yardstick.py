"""The yardstick quickdraw_cnn must beat: a plain 3-conv CNN trained in memory on the same QuickDraw .npy data.

    REAL_DATA_DIR=../shared/data .venv/bin/python bench/quickdraw_yardstick.py
    .venv/bin/python train.py --data ../shared/data/quickdraw_npy --save_to progress/qd   # the template's model

The yardstick: Rescaling, Conv 32-64-128 (3×3, ReLU, max pooling between), global average pooling, dropout 0.3,
softmax; Adam 1e-3, batch 128, 10 epochs, the whole set in memory, a seeded random 80/20 split.
"""
import glob
import os
import sys
import time

import keras
import numpy as np
from keras import layers


def yardstick(input_shape, num_classes):
    inputs = keras.Input(input_shape)
    x = layers.Rescaling(1 / 255)(inputs)
    for filters in (32, 64):
        x = layers.MaxPooling2D()(layers.Conv2D(filters, 3, padding="same", activation="relu")(x))
    x = layers.Conv2D(128, 3, padding="same", activation="relu")(x)
    x = layers.Dropout(0.3)(layers.GlobalAveragePooling2D()(x))
    return keras.Model(inputs, layers.Dense(num_classes, activation="softmax")(x))


class EpochTimes(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.start, self.rows = time.perf_counter(), []

    def on_epoch_end(self, epoch, logs=None):
        self.rows.append((epoch + 1, time.perf_counter() - self.start, logs["val_accuracy"]))
        print(f"epoch {epoch + 1:2d}: {self.rows[-1][1]:6.1f} s, val_accuracy {logs['val_accuracy']:.4f}")


def main():
    if not os.environ.get("REAL_DATA_DIR"):
        sys.exit("error: set REAL_DATA_DIR to the folder holding quickdraw_npy/")
    files = sorted(glob.glob(os.path.join(os.environ["REAL_DATA_DIR"], "quickdraw_npy", "*.npy")))
    arrays = [np.load(f) for f in files]
    images = np.concatenate(arrays).reshape(-1, 28, 28, 1).astype(np.float32)
    labels = np.concatenate([np.full(len(a), n) for n, a in enumerate(arrays)])
    order = np.random.default_rng(42).permutation(len(labels))
    cut = int(0.8 * len(order))
    train, val = order[:cut], order[cut:]
    keras.utils.set_random_seed(0)
    model = yardstick((28, 28, 1), len(files))
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    times = EpochTimes()
    model.fit(images[train], labels[train], batch_size=128, epochs=10, validation_data=(images[val], labels[val]),
              callbacks=[times], verbose=0)
    best = max(row[2] for row in times.rows)
    print(f"quickdraw_yardstick: val_accuracy {times.rows[-1][2]:.4f} (best {best:.4f}) in {times.rows[-1][1]:.0f} s "
          f"(goal for quickdraw_cnn via train.py: ≥ 0.95 within 600 s, and above this)")


if __name__ == "__main__":
    main()
