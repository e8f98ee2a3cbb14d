import os

import numpy as np
import pytest
from PIL import Image

from conftest import png_bytes, quickdraw_records, write_npy, write_tfrecord
from errors import UserError
from reader import DataReader


# --- QuickDraw .npy

def test_npy_indexes_classes_labels_and_rows(npy_dir):
    reader = DataReader(npy_dir)
    assert reader.fmt == "quickdraw_npy"
    assert reader.class_names == ["apple", "bicycle", "cat"]
    assert np.bincount(reader.labels).tolist() == [30, 40, 50]
    assert reader.ids[:2] == ["apple/0", "apple/1"] and len(set(reader.ids)) == 120
    row = np.load(os.path.join(npy_dir, "bicycle.npy"))[7]
    image = reader.load(30 + 7)
    assert image.shape == (28, 28, 1) and image.dtype == np.uint8
    assert np.array_equal(image.reshape(-1), row)


def test_npy_is_memory_mapped_not_read(npy_dir):
    reader = DataReader(npy_dir)
    assert all(isinstance(array, np.memmap) for array in reader.source.arrays)


def test_npy_full_numpy_bitmap_names_and_square_arrays(tmp_path):
    folder = write_npy(str(tmp_path / "full"), {"eye": 5, "fish": 6}, prefix="full_numpy_bitmap_", flat=False)
    reader = DataReader(folder)
    assert reader.class_names == ["eye", "fish"]
    assert reader.load(6).shape == (28, 28, 1)


def test_npy_single_files(npy_dir):
    reader = DataReader([os.path.join(npy_dir, "cat.npy"), os.path.join(npy_dir, "apple.npy")])
    assert reader.class_names == ["apple", "cat"] and len(reader) == 80


def test_npy_max_per_class_and_class_subset(npy_dir):
    reader = DataReader(npy_dir, max_per_class=10, classes=["cat", "apple"])
    assert reader.class_names == ["cat", "apple"]
    assert np.bincount(reader.labels).tolist() == [10, 10]
    assert np.array_equal(reader.load(0).reshape(-1), np.load(os.path.join(npy_dir, "cat.npy"))[0])


def test_npy_unknown_class_names_the_choices(npy_dir):
    with pytest.raises(UserError, match="unknown class zebra.*apple, bicycle, cat"):
        DataReader(npy_dir, classes=["zebra"])


def test_npy_wrong_shape_or_dtype(tmp_path):
    np.save(tmp_path / "bad.npy", np.zeros((4, 100, 3), dtype=np.uint8))
    with pytest.raises(UserError, match=r"bad.npy holds uint8 \(4, 100, 3\)"):
        DataReader(str(tmp_path))
    np.save(tmp_path / "bad.npy", np.zeros((4, 784), dtype=np.float32))
    with pytest.raises(UserError, match="float32"):
        DataReader(str(tmp_path))


# --- TFRecords

def test_tfrecord_quickdraw_layout_with_labels_txt(tmp_path):
    folder = tmp_path / "records"
    folder.mkdir()
    records = quickdraw_records(12)
    write_tfrecord(str(folder / "train-00000-of-00002.tfrecords"), records[:5])
    write_tfrecord(str(folder / "train-00001-of-00002.tfrecords"), records[5:])
    (tmp_path / "labels.txt").write_text("0 -> apple\n1 -> bicycle\n2 -> cat\n")
    reader = DataReader(str(folder))
    assert reader.fmt == "tfrecord"
    assert reader.class_names == ["apple", "bicycle", "cat"]
    assert reader.labels.tolist() == [n % 3 for n in range(12)]
    assert len(set(reader.ids)) == 12
    original = np.asarray(Image.open(__import__("io").BytesIO(records[7]["image"])))
    assert np.array_equal(reader.load(7)[:, :, 0], original)


def test_tfrecord_glob_and_max_per_class(tmp_path):
    write_tfrecord(str(tmp_path / "a.tfrecord"), quickdraw_records(9))
    write_tfrecord(str(tmp_path / "b.tfrecord"), quickdraw_records(9, seed=1))
    reader = DataReader(str(tmp_path / "*.tfrecord"), max_per_class=4)
    assert reader.class_names == ["0", "1", "2"]
    assert np.bincount(reader.labels).tolist() == [4, 4, 4]


def test_tfrecord_unlabeled_test_layout_uses_image_ids(tmp_path):
    path = write_tfrecord(str(tmp_path / "test.tfrecords"), quickdraw_records(6, with_labels=False))
    reader = DataReader(path)
    assert reader.labels.tolist() == [-1] * 6
    assert reader.ids == [f"id{n:04d}" for n in range(6)]


def test_tfrecord_cats_vs_dogs_layout_names_classes_from_filenames(tmp_path):
    rng = np.random.default_rng(0)
    records = [{"image/encoded": png_bytes(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8), "JPEG"),
                "image/filename": f"{'cat' if n % 2 == 0 else 'dog'}.{n}.jpg".encode(),
                "image/class/label": n % 2} for n in range(6)]
    reader = DataReader(write_tfrecord(str(tmp_path / "train-00000-of-00001"), records))
    assert reader.class_names == ["cat", "dog"]
    assert reader.labels.tolist() == [0, 1, 0, 1, 0, 1]
    assert reader.ids[1] == "dog.1.jpg"
    assert reader.load(0).shape == (20, 24, 3)


def test_tfrecord_key_overrides(tmp_path):
    records = [{"pixels": r["image"], "target": r["label"]} for r in quickdraw_records(4)]
    path = write_tfrecord(str(tmp_path / "custom.tfrecord"), records)
    with pytest.raises(UserError, match="no image feature.*it has: pixels, target"):
        DataReader(path)
    reader = DataReader(path, keys={"image": "pixels", "label": "target"})
    assert reader.labels.tolist() == [0, 1, 2, 0]
    with pytest.raises(UserError, match="no feature 'nope'"):
        DataReader(path, keys={"image": "nope"})


def test_tfrecord_truncated_file_names_file_and_offset(tmp_path):
    path = write_tfrecord(str(tmp_path / "t.tfrecord"), quickdraw_records(3))
    data = open(path, "rb").read()
    open(path, "wb").write(data[:-10])
    with pytest.raises(UserError, match=r"truncated .*t\.tfrecord at offset \d+"):
        DataReader(path)


def test_tfrecord_corrupted_length_is_caught(tmp_path):
    path = write_tfrecord(str(tmp_path / "c.tfrecord"), quickdraw_records(3))
    data = bytearray(open(path, "rb").read())
    first = int.from_bytes(data[:8], "little") + 16
    data[first] ^= 0x01  # flip a bit of the second record's length
    open(path, "wb").write(bytes(data))
    with pytest.raises(UserError, match=f"c.tfrecord at offset {first}"):
        DataReader(path)


# --- image folders

def test_folder_with_class_subfolders(image_tree):
    reader = DataReader(image_tree)
    assert reader.fmt == "image_folder"
    assert reader.class_names == ["cats", "dogs"]
    assert np.bincount(reader.labels).tolist() == [6, 6]
    assert reader.ids[0] == os.path.join("tree", "cats", "0.jpg")
    assert reader.load(0).shape == (32, 32, 3)


def test_folder_kaggle_flat_layout(kaggle_dir):
    reader = DataReader(kaggle_dir)
    assert reader.class_names == ["cat", "dog"]
    assert np.bincount(reader.labels).tolist() == [5, 5]
    assert {reader.load(i).shape for i in range(len(reader))} == {(30 + n, 40, 3) for n in range(5)}


def test_folder_without_class_prefix_is_unlabeled(tmp_path):
    for n in range(3):
        Image.new("L", (10, 10), n).save(tmp_path / f"{n + 1}.png")
    reader = DataReader(str(tmp_path))
    assert reader.labels.tolist() == [-1, -1, -1] and reader.class_names == []
    assert reader.load(2).shape == (10, 10, 1)


def test_folder_unreadable_images_skipped_and_reported_or_fatal(kaggle_dir, capsys):
    open(os.path.join(kaggle_dir, "cat.99.jpg"), "wb").write(b"not a jpeg")
    full = open(os.path.join(kaggle_dir, "dog.0.jpg"), "rb").read()
    open(os.path.join(kaggle_dir, "dog.98.jpg"), "wb").write(full[: len(full) // 2])
    reader = DataReader(kaggle_dir)
    assert len(reader) == 10
    assert "skipping 2 unreadable image(s)" in capsys.readouterr().err
    with pytest.raises(UserError, match=r"2 unreadable image\(s\): .*cat.99.jpg"):
        DataReader(kaggle_dir, strict=True)


def test_folder_rgba_and_grey_images_become_3_and_1_channels(tmp_path):
    (tmp_path / "a").mkdir()
    Image.new("RGBA", (8, 6), (1, 2, 3, 4)).save(tmp_path / "a" / "x.png")
    Image.new("L", (8, 6), 7).save(tmp_path / "a" / "y.png")
    reader = DataReader(str(tmp_path))
    assert reader.load(0).shape == (6, 8, 3) and reader.load(1).shape == (6, 8, 1)


# --- format choice and bad input

def test_forced_format_must_fit(npy_dir):
    assert DataReader(npy_dir, fmt="quickdraw_npy").fmt == "quickdraw_npy"
    with pytest.raises(UserError, match="unknown data format 'csv'; choose from: auto, quickdraw_npy"):
        DataReader(npy_dir, fmt="csv")
    with pytest.raises(UserError, match="no TFRecord files"):
        DataReader(npy_dir, fmt="tfrecord")


@pytest.mark.parametrize("make, message", [
    (lambda p: str(p / "missing"), "data path not found"),
    (lambda p: str(p), "no images"),
    (lambda p: str(p / "nothing*.tfrecord"), "data path not found"),
])
def test_missing_or_empty_sources(tmp_path, make, message):
    with pytest.raises(UserError, match=message):
        DataReader(make(tmp_path))


def test_empty_npy_class_subset_and_bad_cap(npy_dir):
    with pytest.raises(UserError, match="max_per_class must be a positive integer"):
        DataReader(npy_dir, max_per_class=0)


def test_ids_and_keys_are_stable_across_readers(npy_dir, kaggle_dir):
    for source in (npy_dir, kaggle_dir):
        first, second = DataReader(source), DataReader(source)
        assert first.ids == second.ids
        assert np.array_equal(first.id_keys, second.id_keys)
        assert len(set(first.id_keys.tolist())) == len(first)
