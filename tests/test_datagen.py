import multiprocessing

import numpy as np
import pytest

from conftest import write_npy
import config
import datagen
from datagen import BatchGenerator, ImageGenerator, augmenter, run_batches, select
from support.images import prepare
from reader import DataReader
from support.errors import UserError


@pytest.fixture
def big_npy(tmp_path):
    return DataReader(write_npy(str(tmp_path / "big"), {"a": 2000, "b": 3000}))


# --- splits

def test_split_is_disjoint_complete_and_near_the_ratio(big_npy):
    train, val = select(big_npy, "train"), select(big_npy, "val")
    assert not set(train) & set(val)
    assert len(train) + len(val) == len(big_npy)
    assert abs(len(train) / len(big_npy) - 0.8) < 0.02
    train_70 = select(big_npy, "train", train_ratio=0.7)
    assert abs(len(train_70) / len(big_npy) - 0.7) < 0.02
    assert set(train_70) <= set(train)  # a lower ratio only moves items out of train


def test_split_depends_on_seed_and_is_stable(big_npy, tmp_path):
    again = DataReader(write_npy(str(tmp_path / "again"), {"a": 2000, "b": 3000}))
    assert np.array_equal(select(big_npy, "val", seed=3), select(again, "val", seed=3))
    assert not np.array_equal(select(big_npy, "val", seed=3), select(big_npy, "val", seed=4))
    # pinned: the split of an id must never change between versions, or users' validation sets leak
    assert select(big_npy, "val")[:5].tolist() == [2, 5, 21, 28, 31]


def test_adding_items_never_moves_existing_items_between_splits(tmp_path):
    small = DataReader(write_npy(str(tmp_path / "small"), {"a": 300, "b": 300}))
    grown = DataReader(write_npy(str(tmp_path / "grown"), {"a": 500, "b": 450, "c": 100}))
    for mode in ("train", "val"):
        before = {small.ids[i] for i in select(small, mode)}
        after = {grown.ids[i] for i in select(grown, mode)}
        assert before <= after


def test_limit_takes_a_seeded_sample_across_classes(big_npy):
    sample = select(big_npy, "train", limit=200)
    assert len(sample) == 200 and np.array_equal(sample, select(big_npy, "train", limit=200))
    assert set(big_npy.labels[sample]) == {0, 1}


# --- batches

def test_batches_are_float_pixels_and_int_labels(big_npy):
    generator = BatchGenerator(big_npy, "val", batch_size=64)
    images, labels = generator[0]
    assert images.shape == (64, 28, 28, 1) and images.dtype == np.float32
    assert labels.dtype == np.int32 and labels.shape == (64,)
    assert images.max() > 100 and images.min() == 0
    last_images, _ = generator[len(generator) - 1]
    assert sum(len(generator[i][1]) for i in range(len(generator))) == len(select(big_npy, "val"))
    assert 0 < len(last_images) <= 64
    with pytest.raises(IndexError):
        generator[len(generator)]


def test_batches_resize_and_convert_channels(big_npy):
    images, _ = BatchGenerator(big_npy, "val", batch_size=4, input_size=(40, 36), channels=3)[0]
    assert images.shape == (4, 40, 36, 3)
    assert np.array_equal(images[..., 0], images[..., 2])


def test_prepare_converts_colour_to_grey_and_keeps_exact_sizes():
    colour = np.random.default_rng(0).integers(0, 256, size=(20, 30, 3), dtype=np.uint8)
    grey = prepare(colour, (10, 15), 1)
    assert grey.shape == (10, 15, 1) and grey.dtype == np.uint8
    assert prepare(colour, (20, 30), 3) is colour


def test_train_order_reshuffles_each_epoch_but_repeats_for_a_seed(big_npy):
    generator = BatchGenerator(big_npy, "train", batch_size=32, seed=5)
    first = generator[0][1].copy()
    generator.epoch = 1
    assert not np.array_equal(generator.order(), BatchGenerator(big_npy, "train", seed=5).order())
    generator.epoch = 0
    assert np.array_equal(generator[0][1], first)
    assert np.array_equal(BatchGenerator(big_npy, "val").order(), select(big_npy, "val"))


# --- jitter

def test_jitter_keeps_shape_changes_pixels_and_repeats(big_npy):
    plain = BatchGenerator(big_npy, "train", batch_size=16, seed=1)
    jittered = BatchGenerator(big_npy, "train", batch_size=16, seed=1, jitter=True)
    images, labels = jittered[0]
    clean, clean_labels = plain[0]
    assert images.shape == clean.shape and images.dtype == np.float32
    assert np.array_equal(labels, clean_labels)
    assert not np.array_equal(images, clean)
    assert np.array_equal(images, BatchGenerator(big_npy, "train", batch_size=16, seed=1, jitter=True)[0][0])
    assert np.array_equal(BatchGenerator(big_npy, "val", batch_size=16, jitter=True)[0][0],
                          BatchGenerator(big_npy, "val", batch_size=16)[0][0])


def test_jitter_differs_between_batches_and_epochs_of_the_same_images(big_npy):
    generator = BatchGenerator(big_npy, "train", batch_size=16, jitter=True)
    generator.indices = np.repeat(generator.indices[:16], 2)  # batches 0 and 1 hold the same images
    generator.order = lambda: generator.indices
    assert not np.array_equal(generator[0][0], generator[1][0])
    first = generator[0][0]
    generator.epoch = 1
    assert not np.array_equal(generator[0][0], first)


def batch_in_child(generator, index):
    return generator[index][0]


def test_worker_processes_give_distinct_repeatable_jitter(big_npy):
    generator = BatchGenerator(big_npy, "train", batch_size=16, jitter=True)
    with multiprocessing.get_context("fork").Pool(2) as pool:
        in_workers = pool.starmap(batch_in_child, [(generator, i) for i in range(4)])
    for index, images in enumerate(in_workers):
        assert np.array_equal(images, generator[index][0])
    assert len({images.tobytes() for images in in_workers}) == 4


@pytest.mark.parametrize("kind, channels", [("affine", 1), ("affine", 3), ("crops", 1), ("crops", 3)],
                         ids=["drawings", "photos", "crops_of_drawings", "crops_of_photos"])
def test_every_augmenter_runs_on_this_numpy(kind, channels):
    images = np.random.default_rng(0).integers(0, 256, size=(4, 32, 32, channels), dtype=np.uint8)
    for part in augmenter(kind, channels).get_all_children(flat=True):
        out = part(images=images)
        assert out.shape == images.shape and out.dtype == np.uint8, part.name


def test_crops_are_random_resized_crops_within_the_declared_area_and_aspect():
    # Each pixel holds its column in channel 0 and its row in channel 1, so a jittered image shows the box it came from.
    size = 200
    rows, columns = np.mgrid[0:size, 0:size]
    image = np.stack([columns, rows, np.zeros_like(rows)], axis=-1).astype(np.uint8)
    crops = augmenter("crops", 3)
    crops.seed_(1)
    jittered = crops(images=np.stack([image] * 64))
    widths = jittered[:, :, :, 0].max(axis=(1, 2)) - jittered[:, :, :, 0].min(axis=(1, 2)) + 1.0
    heights = jittered[:, :, :, 1].max(axis=(1, 2)) - jittered[:, :, :, 1].min(axis=(1, 2)) + 1.0
    area, aspect = widths * heights / size ** 2, widths / heights
    assert (datagen.CROP_AREA[0] - 0.03 <= area).all() and (area <= 1).all()
    assert (datagen.CROP_ASPECT[0] - 0.03 <= aspect).all() and (aspect <= datagen.CROP_ASPECT[1] + 0.03).all()
    assert area.min() < 0.7 and area.max() > 0.9  # the range is used, not one size
    flipped = jittered[:, 0, 0, 0] > jittered[:, 0, -1, 0]  # the left edge shows the crop's right side
    assert 0 < flipped.sum() < 64


def test_the_run_settings_choose_the_kind_of_jitter(big_npy):
    kinds = {}
    for kind in config.JITTER_KINDS:
        settings = config.RunConfig(jitter=True, jitter_kind=kind, batch_size=64)
        train, val = run_batches(settings, big_npy, None)
        kinds[kind] = [part.name for part in train.augmenter.get_all_children(flat=True)]
        assert val.augmenter is None
    assert any("Lambda" in name for name in kinds["crops"]) and not any("Lambda" in name for name in kinds["affine"])


# --- calibration images and bad input

def test_image_generator_yields_single_unjittered_input_images(big_npy):
    generator = ImageGenerator(big_npy, (32, 32), 1, limit=10)
    images = list(generator)
    assert len(images) == 10 and all(x.shape == (1, 32, 32, 1) and x.dtype == np.float32 for x in images)
    expected = prepare(big_npy.load(generator.indices[3]), (32, 32), 1).astype(np.float32)
    assert np.array_equal(images[3][0], expected)
    assert all(len(item) == 1 for item in generator.representative_dataset())


@pytest.mark.parametrize("kwargs, message", [
    (dict(mode="dev"), "unknown mode 'dev'; choose from: train, val, test"),
    (dict(batch_size=0), "batch_size must be a positive integer"),
    (dict(mode="val", train_ratio=1.0), "the val split .* is empty"),
    (dict(train_ratio=1.5), r"train_ratio must be in \(0, 1\]"),
])
def test_bad_generator_arguments(big_npy, kwargs, message):
    with pytest.raises(UserError, match=message):
        BatchGenerator(big_npy, **kwargs)


# --- cache of prepared images

class CountingReader:
    """A reader that counts the images it is asked to load."""

    def __init__(self, reader):
        self.reader, self.loaded = reader, 0
        self.labels, self.id_keys, self.left_out = reader.labels, reader.id_keys, reader.left_out

    def __len__(self):
        return len(self.reader)

    def load_many(self, indices):
        self.loaded += len(indices)
        return self.reader.load_many(indices)


def test_cached_batches_equal_uncached_and_each_item_is_loaded_once(big_npy):
    counting = CountingReader(big_npy)
    cached = BatchGenerator(counting, "train", batch_size=500, input_size=(32, 32), jitter=True, seed=2, cache_mb=64)
    plain = BatchGenerator(big_npy, "train", batch_size=500, input_size=(32, 32), jitter=True, seed=2)
    for epoch in (0, 1):
        cached.epoch = plain.epoch = epoch
        for index in range(len(plain)):
            for mine, theirs in zip(cached[index], plain[index]):
                assert np.array_equal(mine, theirs)
    assert counting.loaded == len(cached.indices)  # two epochs, one load per item


def test_cache_stops_at_its_budget(big_npy):
    counting = CountingReader(big_npy)
    generator = BatchGenerator(counting, "val", batch_size=100, input_size=(64, 64), cache_mb=1)
    batches = range(4)
    first = [generator[i][0] for i in batches]
    assert counting.loaded == 400
    again = [generator[i][0] for i in batches]
    assert len(generator.cache) == 2 ** 20 // (64 * 64)  # 256 images of 4 KiB fill 1 MiB; the rest stay out
    assert counting.loaded == 400 + 400 - 256
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
