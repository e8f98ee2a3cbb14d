import os

import numpy as np
import pytest
from PIL import Image

from conftest import png_bytes, quickdraw_records, write_npy, write_tfrecord
from reader import DataReader
from support.class_match import match_classes
from support.errors import UserError
from support.images import decode_image


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
    assert capsys.readouterr().err == (f"indexed 10 image(s) in {kaggle_dir}: cat 5, dog 5; skipped: "
                                       "cat 1 unreadable (kaggle/cat.99.jpg), dog 1 unreadable (kaggle/dog.98.jpg)\n")
    with pytest.raises(UserError, match=r"2 unreadable image\(s\): .*cat.99.jpg"):
        DataReader(kaggle_dir, strict=True)


def test_folder_rgba_and_grey_images_become_3_and_1_channels(tmp_path):
    (tmp_path / "a").mkdir()
    Image.new("RGBA", (8, 6), (1, 2, 3, 4)).save(tmp_path / "a" / "x.png")
    Image.new("L", (8, 6), 7).save(tmp_path / "a" / "y.png")
    reader = DataReader(str(tmp_path))
    assert reader.load(0).shape == (6, 8, 3) and reader.load(1).shape == (6, 8, 1)


def test_folder_nested_class_folders_are_indexed_and_one_line_counts_what_was_skipped(tmp_path, capsys):
    root = tmp_path / "photos"
    for folder, count in (("cats", 2), ("dogs", 1), ("dogs/sub", 2), ("dogs/sub/deeper", 1)):
        (root / folder).mkdir(parents=True)
        for n in range(count):
            Image.new("RGB", (8, 8), (n, 0, 0)).save(root / folder / f"{n}.jpg")
    (root / "birds").mkdir()
    (root / "cats" / "notes.txt").write_text("not an image")
    (root / "dogs" / "sub" / "broken.png").write_bytes(b"not a png")
    reader = DataReader(str(root))
    assert reader.class_names == ["cats", "dogs"]  # an empty folder is no class
    assert np.bincount(reader.labels).tolist() == [2, 4]
    dogs = [i for i, label in zip(reader.ids, reader.labels) if label == 1]
    assert dogs == [os.path.join("photos", "dogs", *path) for path in
                    (["0.jpg"], ["sub", "0.jpg"], ["sub", "1.jpg"], ["sub", "deeper", "0.jpg"])]
    assert capsys.readouterr().err == (
        f"indexed 6 image(s) in {root}: cats 2, dogs 4; skipped: birds empty class folder, "
        f"cats 1 not an image (notes.txt), dogs 1 unreadable ({os.path.join('photos', 'dogs', 'sub', 'broken.png')})\n")


def test_folder_of_photos_as_people_keep_them_is_indexed_completely_and_decoded_right(tmp_path, capsys):
    root = tmp_path / "photos"
    cats, dogs, elsewhere = root / "cats", root / "dogs", tmp_path / "elsewhere"
    for folder in (cats, dogs / "sub", root / "birds", elsewhere):
        folder.mkdir(parents=True)
    expected = {}  # id -> (label, the pixel every position should decode to)

    def save(path, image, label, pixel, **options):
        image.save(path, **options)
        expected[os.path.relpath(path, tmp_path)] = (label, pixel)

    sixteen_bit = np.full((10, 20), 0x8000, dtype=np.uint16)
    save(cats / "grey.jpg", Image.new("L", (20, 10), 77), 0, [77])
    save(cats / "cmyk.jpg", Image.new("CMYK", (20, 10), (0, 255, 255, 0)), 0, [255, 0, 0])
    save(cats / "deep 16-bit.png", Image.fromarray(sixteen_bit), 0, [128])
    save(cats / "scan 16-bit.tif", Image.fromarray(sixteen_bit // 2), 0, [64])
    save(cats / "alpha.png", Image.new("RGBA", (20, 10), (10, 20, 30, 128)), 0, [132, 137, 142])  # half over white
    save(cats / "chat été.gif", Image.new("RGB", (20, 10), (0, 0, 255)), 0, [0, 0, 255])
    save(dogs / "Hund Müller.bmp", Image.new("RGB", (20, 10), (0, 255, 0)), 1, [0, 255, 0])
    save(dogs / "PHOTO 1.JPEG", Image.new("RGB", (20, 10), (200, 100, 50)), 1, [200, 100, 50])
    save(dogs / "web.webp", Image.new("RGB", (20, 10), (1, 2, 3)), 1, [1, 2, 3], lossless=True)
    save(dogs / "sub" / "puppy 1.png", Image.new("RGB", (20, 10), (9, 9, 9)), 1, [9, 9, 9])
    Image.new("RGB", (20, 10), (60, 70, 80)).save(elsewhere / "linked.jpg")
    os.symlink(elsewhere, dogs / "linked")  # a linked folder is followed ...
    expected[os.path.join("photos", "dogs", "linked", "linked.jpg")] = (1, [60, 70, 80])
    os.symlink("..", dogs / "sub" / "loop")  # ... and a link back up the tree is not a loop
    (cats / "notes.txt").write_text("not an image")
    (root / "README.md").write_text("the photos")
    whole = (dogs / "PHOTO 1.JPEG").read_bytes()
    (dogs / "broken.jpg").write_bytes(whole[: len(whole) // 2])

    reader = DataReader(str(root))
    assert reader.class_names == ["cats", "dogs"]
    assert sorted(reader.ids) == sorted(expected)
    for i, item in enumerate(reader.ids):
        label, pixel = expected[item]
        image = reader.load(i)
        assert reader.labels[i] == label, item
        assert image.dtype == np.uint8 and image.shape == (10, 20, len(pixel)), item
        assert np.abs(image.astype(int) - pixel).max() <= 3, (item, image[0, 0])  # JPEG: nearly exact
    assert capsys.readouterr().err == (
        f"indexed 11 image(s) in {root}: cats 6, dogs 5; skipped: (no class) 1 not an image (README.md), "
        f"birds empty class folder, cats 1 not an image (notes.txt), "
        f"dogs 1 unreadable ({os.path.join('photos', 'dogs', 'broken.jpg')})\n")


def test_class_names_match_exactly_then_ignoring_case_then_singular_or_plural(capsys):
    assert match_classes(["cat", "dog"], ["cat", "dog"]) == {"cat": "cat", "dog": "dog"}
    assert capsys.readouterr().out == ""  # the same names: nothing to say
    data = ["Boxes", "buses", "puppies", "glasses", "cat", "fish"]
    assert match_classes(data, ["box", "bus", "puppy", "glass", "cat"]) == {
        "Boxes": "box", "buses": "bus", "puppies": "puppy", "glasses": "glass", "cat": "cat"}
    assert capsys.readouterr().out == ("classes matched: Boxes -> box, buses -> bus, puppies -> puppy, "
                                       "glasses -> glass (and 1 by the same name)\n")
    assert match_classes(["cat", "Cats"], ["cat"]) == {"cat": "cat"}  # a looser match takes no taken class
    assert match_classes(["0", "1"], ["cat", "dog"]) == {"0": "cat", "1": "dog"}  # classes named by index
    # overrides settle the rest, several onto one class if asked
    assert match_classes(["kitten", "cats", "wolves"], ["cat", "dog"], {"kitten": "cat", "wolves": "dog"}) == {
        "kitten": "cat", "cats": "cat", "wolves": "dog"}
    assert capsys.readouterr().out.splitlines()[-1] == "classes matched: kitten -> cat, cats -> cat, wolves -> dog"
    with pytest.raises(UserError, match=r"match more than one way \(Cat -> cat, CAT -> cat\).*--class_map"):
        match_classes(["Cat", "CAT"], ["cat"])
    with pytest.raises(UserError, match="--class_map: 'lions' is not a class of the data; it has: cats"):
        match_classes(["cats"], ["cat"], {"lions": "cat"})
    with pytest.raises(UserError, match="--class_map: 'wolf' is not a class of the run; it has: cat, dog"):
        match_classes(["cats"], ["cat", "dog"], {"cats": "wolf"})


def test_a_class_selection_finds_its_folder_by_case_and_plural(image_tree, capsys):
    reader = DataReader(image_tree, classes=["Dog", "cat"])  # e.g. a run's classes, for its --val_data
    assert reader.class_names == ["dogs", "cats"]
    assert {item.split(os.sep)[1] for item in np.array(reader.ids)[reader.labels == 0]} == {"dogs"}
    assert np.bincount(reader.labels).tolist() == [6, 6]
    assert capsys.readouterr().out == "classes matched: cats -> cat, dogs -> Dog\n"
    with pytest.raises(UserError, match="unknown class bird; the source has: cats, dogs"):
        DataReader(image_tree, classes=["cat", "bird"])


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


def test_encoded_gives_each_item_as_an_image_file_that_decodes_to_its_pixels(npy_dir, kaggle_dir, tmp_path):
    records = quickdraw_records(6)
    tfrecords = write_tfrecord(str(tmp_path / "train.tfrecords"), records)
    for source in (npy_dir, kaggle_dir, tfrecords):
        reader = DataReader(source)
        for i in (0, len(reader) - 1):
            assert np.array_equal(decode_image(reader.encoded(i), f"item {i}"), reader.load(i)), (source, i)
    assert DataReader(tfrecords).encoded(3) == records[3]["image"]  # the stored bytes themselves
    with open(DataReader(kaggle_dir).source.files[0], "rb") as f:
        assert DataReader(kaggle_dir).encoded(0) == f.read()
    assert DataReader(npy_dir).encoded(0)[:8] == b"\x89PNG\r\n\x1a\n"  # bare pixels travel as a lossless PNG
