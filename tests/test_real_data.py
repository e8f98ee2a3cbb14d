"""The real data in $REAL_DATA_DIR (shared/data): every format, with the counts and labels its README gives."""
import csv
import os

import numpy as np

from conftest import REAL_DATA_DIR, needs_real_data
from datagen import BatchGenerator
from reader import DataReader

pytestmark = needs_real_data
QUICKDRAW = ["apple", "bicycle", "bowtie", "cat", "diamond", "eye", "fish", "lollipop", "rainbow"]


def real(*parts):
    return os.path.join(REAL_DATA_DIR, *parts)


def test_quickdraw_npy():
    reader = DataReader(real("quickdraw_npy"))
    assert reader.fmt == "quickdraw_npy" and reader.class_names == QUICKDRAW
    assert np.bincount(reader.labels).tolist() == [3000, 3000, 5000, 3000, 3000, 3000, 3000, 5000, 5000]
    image = reader.load(0)
    assert image.shape == (28, 28, 1) and image[0, 0, 0] == 0  # white strokes on black


def test_quickdraw_tfrecords_train_validation_and_test():
    train = DataReader(real("quickdraw_tfrecord", "training"))
    val = DataReader(real("quickdraw_tfrecord", "validation", "valid.tfrecords"))
    test = DataReader(real("quickdraw_tfrecord", "test", "test.tfrecords"))
    assert train.class_names == QUICKDRAW and val.class_names == QUICKDRAW
    assert np.bincount(train.labels).tolist() == [1000] * 9
    assert np.bincount(val.labels).tolist() == [200] * 9
    assert len(test) == 1800 and (test.labels == -1).all()
    with open(real("quickdraw_tfrecord", "test_labels.csv")) as f:
        assert set(test.ids) == {row["image_id"] for row in csv.DictReader(f)}
    assert train.load(0).shape == (28, 28, 1) and train.load(0)[0, 0, 0] == 255  # black strokes on white


def test_cats_vs_dogs_folder_and_tfrecord():
    folder = DataReader(real("cats_vs_dogs", "train"))
    assert folder.class_names == ["cat", "dog"] and np.bincount(folder.labels).tolist() == [1001, 1001]
    records = DataReader(real("cats_vs_dogs_tfrecord", "train-00000-of-00001"))
    assert records.class_names == ["cat", "dog"] and len(records) == 400
    assert np.bincount(records.labels).tolist() == [200, 200]
    assert records.load(0).ndim == 3 and records.load(0).shape[2] == 3
    assert all(records.ids[i].startswith(records.class_names[records.labels[i]]) for i in range(400))


def test_real_photos_batch_at_model_input_size():
    reader = DataReader(real("cats_vs_dogs", "train"))
    images, labels = BatchGenerator(reader, "train", batch_size=8, input_size=(96, 96), channels=3, jitter=True)[0]
    assert images.shape == (8, 96, 96, 3) and set(labels) <= {0, 1}
