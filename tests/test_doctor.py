"""doctor.py on tiny photo folders made here: a flipped label ranks first, copies are found with their kind, class and
split, odd images are named, the data is never touched; train.py --exclude and --split_groups act on its report."""
import csv
import hashlib
import os

import numpy as np
import pytest
from PIL import Image

import config
import doctor
import train
from conftest import drawing, exit_code, run_cli
from datagen import in_train_split, open_run_data, run_batches
from support import features
from support.ids import stable_hash

CLASSES = ("blue", "green", "red")
SIDE = 48


class CenteredPixels(features.PixelFeatures):
    """Pixels at 8×8 around mid-grey: a feature model that needs no weights, and in which two different pictures
    of one class are not alike (a tint is small beside each picture's own pattern)."""

    def __init__(self):
        super().__init__((8, 8), 3)

    def __call__(self, images):
        return super().__call__(images) - 128.0


def photo(rng, label):
    """A random picture tinted by its class: the tint tells the classes apart, a smooth pattern and a sharp-edged
    block the pictures."""
    pattern = rng.uniform(-60, 60, size=(4, 4, 3))
    picture = np.asarray(Image.fromarray(np.uint8(pattern + 128)).resize((SIDE, SIDE), Image.BILINEAR), np.float64)
    top, left = rng.integers(4, SIDE // 2, size=2)
    picture[top:top + SIDE // 3, left:left + SIDE // 3] += rng.choice([-1, 1]) * rng.uniform(60, 100)
    picture[:, :, [2, 1, 0][label]] += 50.0
    return np.clip(picture, 0, 255).astype(np.uint8)


def photo_folder(root, per_class=8, seed=0):
    rng = np.random.default_rng(seed)
    for label, name in enumerate(CLASSES):
        os.makedirs(root / name)
        for n in range(per_class):
            Image.fromarray(photo(rng, label)).save(root / name / f"{n}.png")
    return root


def rows(path):
    with open(path, newline="") as f:
        return list(csv.reader(f))


def tree_digest(root):
    """A hash of every file's path and bytes under root."""
    digest = hashlib.sha256()
    for here, _, names in sorted(os.walk(root)):
        for name in sorted(names):
            path = os.path.join(here, name)
            digest.update(os.path.relpath(path, root).encode())
            with open(path, "rb") as f:
                digest.update(f.read())
    return digest.hexdigest()


def check(data, report, capsys, *flags):
    code, out, err = run_cli(lambda argv: doctor.main(argv, feature_model=CenteredPixels()),
                             ["--data", str(data), "--save_to", str(report), *flags], capsys)
    assert code == 0, err
    return out


def test_a_flipped_label_ranks_first_and_the_report_has_its_files_and_columns(tmp_path, capsys):
    data = photo_folder(tmp_path / "photos")
    flipped = data / "green" / "from_red.png"
    Image.fromarray(photo(np.random.default_rng(9), CLASSES.index("red"))).save(flipped)
    before = tree_digest(data)
    out = check(data, tmp_path / "report", capsys)
    issues = rows(tmp_path / "report" / doctor.LABEL_ISSUES)
    assert issues[0] == ["path", "given_label", "suggested_label", "score"]
    assert issues[1][:3] == [str(flipped), "green", "red"] and float(issues[1][3]) > 0.5
    assert rows(tmp_path / "report" / doctor.DUPLICATES)[0] == [
        "path", "duplicate_of", "kind", "same_class", "crosses_split", "split", "duplicate_of_split"]
    assert rows(tmp_path / "report" / doctor.ODD_IMAGES) == [["path", "issue", "value"]]
    with Image.open(tmp_path / "report" / doctor.SHEET) as sheet:
        assert sheet.format == "PNG" and sheet.width > 0
    found = [line.split(":")[0] for line in out.splitlines()]
    assert {"label issues", "duplicates", "odd images"} <= set(found)
    assert any(line.startswith("class balance: 3 classes, 8 (blue) to 9 (green) items") for line in out.splitlines())
    assert tree_digest(data) == before  # nothing in the data folder changed


def test_drawings_are_probed_on_their_pixels(tmp_path, capsys):
    rng = np.random.default_rng(3)
    data = tmp_path / "drawings"
    data.mkdir()
    for label, name in enumerate(("apple", "bicycle", "cat")):
        rows_ = [drawing(rng, label) for _ in range(12)]
        if name == "cat":
            rows_[5] = drawing(rng, 0)  # an apple filed as a cat
        np.save(data / f"{name}.npy", np.stack(rows_).reshape(12, -1))
    code, out, err = run_cli(doctor.main, ["--data", str(data), "--save_to", str(tmp_path / "report")], capsys)
    assert code == 0, err
    assert "features: pixels-28x28x1" in out
    assert rows(tmp_path / "report" / doctor.LABEL_ISSUES)[1][:3] == ["cat/5", "cat", "apple"]


def name_in_other_split(folder, stem, suffix, original_train):
    """A file name in `folder` whose item lands in the other split (seed 0, ratio 0.8) than the original's."""
    for n in range(200):
        name = f"{stem}{n}{suffix}"
        item_id = os.path.relpath(os.path.join(folder, name), os.path.dirname(os.path.dirname(folder)))
        if in_train_split([stable_hash(item_id)], 0, 0.8)[0] != original_train:
            return folder / name
    raise AssertionError("no name found")


def test_copies_are_found_with_their_kind_class_and_split(tmp_path, capsys):
    data = photo_folder(tmp_path / "photos")
    original_id = lambda path: os.path.relpath(path, tmp_path)  # noqa: E731  ids are relative to the data's parent
    exact_source, pixel_source, near_source = data / "blue" / "0.png", data / "red" / "1.png", data / "green" / "2.png"
    exact = data / "red" / "copy_of_blue.png"  # the same bytes, another class
    exact.write_bytes(exact_source.read_bytes())
    pixels = data / "red" / "resaved.png"  # the same pixels, other bytes
    Image.open(pixel_source).save(pixels, compress_level=1)
    assert pixels.read_bytes() != pixel_source.read_bytes()
    near_train = in_train_split([stable_hash(original_id(near_source))], 0, 0.8)[0]
    near = name_in_other_split(data / "green", "smaller", ".jpg", near_train)  # resized, re-encoded, other split
    with Image.open(near_source) as image:
        image.resize((43, 43), Image.BILINEAR).save(near, quality=70)
    check(data, tmp_path / "report", capsys)
    found = {frozenset((row[0], row[1])): row[2:] for row in rows(tmp_path / "report" / doctor.DUPLICATES)[1:]}
    crosses = in_train_split([stable_hash(original_id(p)) for p in (exact_source, exact)], 0, 0.8)
    assert found[frozenset((str(exact_source), str(exact)))][:3] == [
        "exact_bytes", "no", "yes" if crosses[0] != crosses[1] else "no"]
    assert found[frozenset((str(pixel_source), str(pixels)))][:2] == ["exact_pixels", "yes"]
    near_row = found[frozenset((str(near_source), str(near)))]
    assert near_row[:3] == ["near_copy", "yes", "yes"] and sorted(near_row[3:]) == ["train", "val"]
    assert len(found) == 3


def test_blank_tiny_and_unreadable_images_are_odd(tmp_path, capsys):
    data = photo_folder(tmp_path / "photos")
    Image.new("RGB", (SIDE, SIDE), (90, 90, 90)).save(data / "blue" / "blank.png")
    Image.fromarray(photo(np.random.default_rng(5), 0)).resize((8, 8)).save(data / "blue" / "tiny.png")
    (data / "green" / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    out = check(data, tmp_path / "report", capsys)
    odd = {(os.path.basename(path), issue) for path, issue, _ in rows(tmp_path / "report" / doctor.ODD_IMAGES)[1:]}
    assert odd == {("blank.png", "blank"), ("tiny.png", "tiny"), ("broken.jpg", "unreadable")}
    assert "odd images: 1 unreadable, 1 tiny, 1 blank, 0 dark, 0 bright, 0 blurry" in out


def test_photos_get_pretrained_features_cached_in_the_report(tmp_path, capsys):
    data = photo_folder(tmp_path / "photos", per_class=4)
    model = doctor.PretrainedFeatures(input_size=(64, 64))  # the photo path, at a size a test can afford
    for computed in (12, 0):  # the second run reads every photo's features from the first's cache
        code, out, err = run_cli(lambda argv: doctor.main(argv, feature_model=model),
                                 ["--data", str(data), "--save_to", str(tmp_path / "report")], capsys)
        assert code == 0, err
        assert f"features: efficientnet_lite0-imagenet-64x64 of 12 items, {computed} computed" in out
    assert (tmp_path / "report" / "features-efficientnet_lite0-imagenet-64x64.npz").is_file()
    assert "class balance: 3 classes of 4 items each" in out


class CountingFeatures(CenteredPixels):
    cached = True

    def __init__(self):
        super().__init__()
        self.computed = 0

    def __call__(self, images):
        self.computed += len(images)
        return super().__call__(images)


def test_features_are_cached_by_content_and_a_changed_file_is_computed_again(tmp_path):
    images = {n: photo(np.random.default_rng(n), 0) for n in range(5)}
    hashes = [features.content_hash(images[n].tobytes()) for n in range(5)]
    model = CountingFeatures()
    first, computed = features.features_of(list(range(5)), hashes, images.get, model, str(tmp_path))
    again, computed_again = features.features_of(list(range(5)), hashes, images.get, model, str(tmp_path))
    assert (computed, computed_again, model.computed) == (5, 0, 5) and np.array_equal(first, again)
    images[2] = photo(np.random.default_rng(99), 1)
    hashes[2] = features.content_hash(images[2].tobytes())
    changed, computed = features.features_of(list(range(5)), hashes, images.get, model, str(tmp_path))
    assert computed == 1 and np.array_equal(changed[[0, 1, 3, 4]], first[[0, 1, 3, 4]])


TRAIN_FLAGS = ["--model", "logistic", "--input_size", "8,8", "--channels", "3", "--num_epochs", "1",
               "--batch_size", "8"]


def split_of(run_dir):
    """The items of each split, as deploy.py and evaluate.py rebuild them from the run's config.json."""
    settings = config.read(run_dir)
    reader, val_reader = open_run_data(settings)
    train_batches, val_batches = run_batches(settings, reader, val_reader)
    return ({reader.source.files[i] for i in train_batches.indices},
            {reader.source.files[i] for i in val_batches.indices})


def test_train_exclude_leaves_the_listed_items_out_and_records_them(tmp_path, capsys):
    data = photo_folder(tmp_path / "photos")
    report = tmp_path / "report"
    check(data, report, capsys, "--label_issues", "3")
    listed = [row[0] for row in rows(report / doctor.LABEL_ISSUES)[1:]]
    plain = tmp_path / "plain.txt"
    plain.write_text(os.path.relpath(data / "blue" / "7.png") + "\n")
    for exclude, left_out in ((report / doctor.LABEL_ISSUES, listed), (plain, [str(data / "blue" / "7.png")])):
        run_dir = str(tmp_path / f"run_{exclude.stem}")
        assert exit_code(train.main, ["--data", str(data), "--save_to", run_dir, "--exclude", str(exclude),
                                      *TRAIN_FLAGS]) == 0
        assert config.read(run_dir).exclude == [os.path.abspath(path) for path in left_out]
        training, validation = split_of(run_dir)
        assert len(training) + len(validation) == 24 - len(left_out)
        assert not set(left_out) & (training | validation)


def test_train_split_groups_keeps_copies_on_one_side_and_records_them(tmp_path, capsys):
    data = photo_folder(tmp_path / "photos")
    source = data / "green" / "2.png"
    source_train = in_train_split([stable_hash(os.path.relpath(source, tmp_path))], 0, 0.8)[0]
    twin = name_in_other_split(data / "green", "twin", ".png", source_train)
    twin.write_bytes(source.read_bytes())
    check(data, tmp_path / "report", capsys)
    duplicates_csv = str(tmp_path / "report" / doctor.DUPLICATES)
    run_dir = str(tmp_path / "run")
    assert exit_code(train.main, ["--data", str(data), "--save_to", run_dir, "--split_groups", duplicates_csv,
                                  *TRAIN_FLAGS]) == 0
    assert config.read(run_dir).split_groups == [sorted([str(source), str(twin)])]
    training, validation = split_of(run_dir)
    assert {str(source), str(twin)} <= training or {str(source), str(twin)} <= validation
    check(data, tmp_path / "grouped", capsys, "--split_groups", duplicates_csv)
    assert [row[4] for row in rows(tmp_path / "grouped" / doctor.DUPLICATES)[1:]] == ["no"]


@pytest.mark.parametrize("case, message", [
    ("missing", "data path not found"),
    ("one_class", "has one class (blue)"),
    ("unreadable_exclude", "argument --exclude: cannot read"),
    ("unknown_exclude", "--exclude names 1 item(s) that are not in --data: "),
    ("not_duplicates_csv", "argument --split_groups: "),
    ("report_inside_data", "is inside the data folder"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys, case, message):
    data = photo_folder(tmp_path / "photos", per_class=3)
    report = tmp_path / "report"
    flags = {"missing": ["--data", str(tmp_path / "nowhere")],
             "one_class": ["--data", str(data), "--classes", "blue"],
             "unreadable_exclude": ["--data", str(data), "--exclude", str(tmp_path)],
             "unknown_exclude": ["--data", str(data), "--exclude", str(tmp_path / "list.txt")],
             "not_duplicates_csv": ["--data", str(data), "--split_groups", str(tmp_path / "list.txt")],
             "report_inside_data": ["--data", str(data)]}[case]
    (tmp_path / "list.txt").write_text("photos/blue/0.png\nphotos/blue/no_such.png\n")
    report = data / "report" if case == "report_inside_data" else report
    before = tree_digest(data)
    code, _, err = run_cli(lambda argv: doctor.main(argv, feature_model=CenteredPixels()),
                           [*flags, "--save_to", str(report)], capsys)
    lines = err.strip().splitlines()  # an image folder's one index line may come first
    assert code == 2 and [line for line in lines if line.startswith("error")] == lines[-1:], err
    assert message in lines[-1] and not report.exists() and tree_digest(data) == before


def test_train_refuses_an_exclude_list_naming_items_not_in_the_data(tmp_path, capsys):
    data = photo_folder(tmp_path / "photos", per_class=3)
    (tmp_path / "list.txt").write_text(str(data / "blue" / "gone.png") + "\n")
    run_dir = tmp_path / "run"
    code, _, err = run_cli(train.main, ["--data", str(data), "--save_to", str(run_dir), "--exclude",
                                        str(tmp_path / "list.txt"), *TRAIN_FLAGS], capsys)
    lines = err.strip().splitlines()
    assert code == 2 and [line for line in lines if line.startswith("error")] == lines[-1:], err
    assert lines[-1].startswith("error: --exclude names 1 item(s)") and "gone.png" in lines[-1]
    assert not run_dir.exists()
