"""Batches for Keras from a DataReader: the split, the one image-preparation function, and the jitter (imgaug).

An item's split depends only on its id and the seed, so it is the same on every run and machine, and adding
data never moves an existing validation item into training. Shuffling and jitter are seeded from
(seed, epoch, batch index): a run repeats for a seed, and worker processes never repeat each other.
"""
import math

import keras
import numpy as np

import config
from reader import DataReader
from support import curation, imgaug_shim
from support.images import prepare
from support.errors import UserError
from support.ids import mix64

MODES = ("train", "val", "test")
DEFAULT = config.RunConfig()  # the declared defaults (config.SETTINGS), for batches made outside a run


def in_train_split(id_keys, seed, train_ratio):
    """True for items that train: a uniform draw in [0, 1) from hash(id, seed), below the ratio."""
    draws = mix64(np.asarray(id_keys, dtype=np.uint64) ^ mix64(np.uint64(seed)))
    return (draws >> np.uint64(11)).astype(np.float64) / 2.0 ** 53 < train_ratio


def select(reader, mode, seed=DEFAULT.seed, train_ratio=DEFAULT.train_ratio, limit=None):
    """Indices of the reader's items in a mode's split, less those it leaves out; `limit` keeps a seeded random
    sample of them."""
    if mode not in MODES:
        raise UserError(f"unknown mode '{mode}'; choose from: {', '.join(MODES)}")
    if not 0.0 < train_ratio <= 1.0:
        raise UserError(f"train_ratio must be in (0, 1], got {train_ratio}")
    if mode == "test":
        indices = np.arange(len(reader))
    else:
        train = in_train_split(reader.id_keys, seed, train_ratio)
        indices = np.flatnonzero(train if mode == "train" else ~train)
    indices = indices[~reader.left_out[indices]]
    if len(indices) == 0:
        raise UserError(f"the {mode} split of {reader} is empty (train_ratio {train_ratio})")
    return seeded_sample(indices, limit, seed)


def seeded_sample(indices, limit, seed):
    """`limit` of the indices (all when None or more), drawn from (seed, how many there are): the same items on
    every run, so deploy.py and evaluate.py score the same sample."""
    if limit is None or limit >= len(indices):
        return indices
    return np.sort(np.random.default_rng([seed, len(indices)]).choice(indices, limit, replace=False))


def drawing_augmenter(iaa):
    """Small geometric changes for strokes on a plain background (either polarity: borders copy the edge)."""
    return iaa.Sequential([
        iaa.Fliplr(0.5),
        iaa.Affine(scale=(0.85, 1.15), translate_percent=(-0.1, 0.1), rotate=(-15, 15), shear=(-8, 8),
                   order=1, mode="edge"),
    ])


def photo_augmenter(iaa):
    """Geometry, light and a little blur/noise: what changes between two photos of the same class.

    Strong enough to matter on a few thousand photos trained from scratch, where it is the main defence
    against memorising the training set; borders are mirrored, as a camera would have seen more scene."""
    return iaa.Sequential([
        iaa.Fliplr(0.5),
        iaa.Affine(scale=(0.8, 1.2), translate_percent=(-0.1, 0.1), rotate=(-15, 15), shear=(-8, 8), order=1,
                   mode="reflect"),
        iaa.Multiply((0.75, 1.25)),
        iaa.LinearContrast((0.75, 1.25)),
        iaa.Sometimes(0.3, iaa.GaussianBlur(sigma=(0.0, 1.0))),
        iaa.Sometimes(0.2, iaa.AdditiveGaussianNoise(scale=(0, 0.03 * 255))),
    ], random_order=False)


CROP_AREA, CROP_ASPECT = (0.6, 1.0), (3 / 4, 4 / 3)


def resized_crops(images, random_state, parents, hooks):
    """Each image a crop of CROP_AREA of its area at an aspect ratio in CROP_ASPECT (log-uniform), at a random place,
    resized back to the image's size (imgaug's Lambda calls it with its own random state)."""
    from imgaug import imresize_single_image

    cropped = []
    for image in images:
        height, width = image.shape[:2]
        area = random_state.uniform(*CROP_AREA) * height * width
        aspect = math.exp(random_state.uniform(*np.log(CROP_ASPECT)))
        crop_height = min(height, max(1, round(math.sqrt(area / aspect))))
        crop_width = min(width, max(1, round(math.sqrt(area * aspect))))
        top = random_state.integers(0, height - crop_height + 1)
        left = random_state.integers(0, width - crop_width + 1)
        crop = image[top:top + crop_height, left:left + crop_width]
        cropped.append(imresize_single_image(crop, (height, width), interpolation="linear").reshape(image.shape))
    return np.stack(cropped) if isinstance(images, np.ndarray) else cropped


def crop_augmenter(iaa):
    """Random-resized crops and flips: the augmentation ImageNet models are fine-tuned with. The crop is taken from the
    prepared image (at the input size) and resized back to it."""
    return iaa.Sequential([iaa.Fliplr(0.5), iaa.Lambda(func_images=resized_crops)])


def augmenter(kind, channels):
    """--jitter's augmenter of a --jitter_kind: crops, or affine (grey inputs are taken to be drawings, colour inputs
    photos). imgaug is imported here, first used."""
    iaa = imgaug_shim.augmenters()
    if kind == "crops":
        return crop_augmenter(iaa)
    return drawing_augmenter(iaa) if channels == 1 else photo_augmenter(iaa)


class BatchGenerator(keras.utils.PyDataset):
    """(float32 images 0–255, int32 labels) batches of one split of a reader.

    `workers`, `use_multiprocessing` and `max_queue_size` go to PyDataset (Keras 3 takes them here, not in
    fit). Set `epoch` before an epoch starts (the EpochSeed callback does) to reshuffle and re-jitter.
    `labels` replaces the reader's (evaluate.py's: the data's classes as the run's), and `indices` the split's
    items, for a caller that chooses its own.

    Prepared (decoded, resized, un-jittered) images are kept in memory up to `cache_mb`: a photo takes far
    longer to decode and resize than to augment, and a small data set is read again every epoch."""

    def __init__(self, reader, mode="train", batch_size=DEFAULT.batch_size, input_size=DEFAULT.input_size,
                 channels=DEFAULT.channels, jitter=False, jitter_kind=DEFAULT.jitter_kind, seed=DEFAULT.seed,
                 train_ratio=DEFAULT.train_ratio, limit=None, shard=0, num_shards=1, whole_batches=False, cache_mb=0,
                 labels=None, indices=None, **kwargs):
        super().__init__(**kwargs)
        if batch_size < 1:
            raise UserError(f"batch_size must be a positive integer, got {batch_size}")
        if batch_size % num_shards:
            raise UserError(f"batch_size {batch_size} does not split over {num_shards} processes; "
                            f"use a multiple of {num_shards}")
        self.reader, self.mode, self.global_batch_size = reader, mode, batch_size
        self.batch_size = batch_size // num_shards
        self.shard, self.num_shards = shard, num_shards
        self.whole_batches = whole_batches or num_shards > 1
        self.input_size, self.channels, self.seed = tuple(input_size), channels, seed
        self.labels = reader.labels if labels is None else np.asarray(labels)
        self.indices = select(reader, mode, seed, train_ratio, limit) if indices is None else np.asarray(indices)
        if self.whole_batches and len(self.indices) < batch_size:
            raise UserError(f"the {mode} split of {reader} has {len(self.indices)} items, fewer than one batch of "
                            f"{batch_size}, and data-parallel training takes whole batches only; use a smaller "
                            f"--batch_size")
        self.augmenter = augmenter(jitter_kind, channels) if jitter and mode == "train" else None
        self.epoch = 0
        self._order_of_epoch = (None, None)
        self.cache, self.cache_room = {}, cache_mb * 2 ** 20

    def __len__(self):
        return math.ceil(len(self.order()) / self.batch_size)

    def order(self):
        """This epoch's item order: shuffled from (seed, epoch) in train mode, fixed otherwise.

        With several shards (processes), shard k takes every num_shards-th item of each global batch, so the
        processes' batches together form the global batch. The last partial global batch is dropped then, and
        with `whole_batches` (data-parallel training, whose batch must split evenly over the devices), so that
        every process and device has the same number of equal batches. Computed once per epoch."""
        if self._order_of_epoch[0] != self.epoch:
            order = self.indices
            if self.mode == "train":
                order = np.random.default_rng([self.seed, self.epoch]).permutation(self.indices)
            if self.whole_batches:
                whole = len(order) // self.global_batch_size * self.global_batch_size
                order = order[:whole][self.shard::self.num_shards]
            self._order_of_epoch = (self.epoch, order)
        return self._order_of_epoch[1]

    def chosen(self, index):
        """The items of batch `index` of this epoch."""
        return self.order()[index * self.batch_size:(index + 1) * self.batch_size]

    def prepared(self, chosen):
        """The batch's images at the input size: from the cache, the rest loaded in one call (and cached)."""
        missing = [i for i in chosen if i not in self.cache]
        loaded = dict(zip(missing, (prepare(image, self.input_size, self.channels)
                                    for image in self.reader.load_many(missing))))
        for i, image in loaded.items():
            if image.nbytes <= self.cache_room:
                self.cache[i] = image
                self.cache_room -= image.nbytes
        return np.stack([self.cache[i] if i in self.cache else loaded[i] for i in chosen])

    def __getitem__(self, index):
        if not 0 <= index < len(self):
            raise IndexError(f"batch {index} out of range 0..{len(self) - 1}")
        chosen = self.chosen(index)
        images = self.prepared(chosen)
        if self.augmenter is not None:
            augmenter = self.augmenter.deepcopy()  # a private copy: threads must not share one RNG
            augmenter.seed_(int(np.random.SeedSequence([self.seed, self.epoch, index]).generate_state(1)[0]))
            images = augmenter(images=images)
        return images.astype(np.float32), self.labels[chosen].astype(np.int32)


class ImageGenerator:
    """Single un-jittered images, float32 (1, H, W, C), exactly as the model's input sees them.

    Calibrating int8 quantization on anything else (jittered, differently resized) skews the ranges."""

    def __init__(self, reader, input_size, channels, limit, mode="train", seed=DEFAULT.seed,
                 train_ratio=DEFAULT.train_ratio):
        self.reader, self.input_size, self.channels = reader, tuple(input_size), channels
        self.indices = select(reader, mode, seed, train_ratio, limit)

    def __len__(self):
        return len(self.indices)

    def __iter__(self):
        for i in self.indices:
            yield prepare(self.reader.load(i), self.input_size, self.channels)[None].astype(np.float32)

    def representative_dataset(self):
        """The generator TFLiteConverter.representative_dataset expects."""
        for image in self:
            yield [image]


def open_run_data(settings):
    """The readers a run's settings (a config.RunConfig) name: (training source, separate validation source or
    None), without the items --exclude names and with --split_groups' copies keeping together."""
    train = DataReader(settings.data, settings.data_format, settings.classes, settings.max_per_class)
    val = DataReader(settings.val_data, classes=train.class_names) if settings.val_data else None
    curation.apply(settings, train, val)
    return train, val


def run_batches(settings, train_reader, val_reader, limit=None, shard=0, num_shards=1, whole_batches=False,
                **loader_options):
    """(training, validation) BatchGenerators of a run: the split of --data, or all of --val_data.

    `limit` caps the validation items (a seeded sample); `shard` of `num_shards` is this process's share
    in multi-process training; `whole_batches` drops partial batches (data-parallel training);
    `loader_options` go to PyDataset."""
    common = dict(batch_size=settings.batch_size, input_size=settings.input_size, channels=settings.channels,
                  seed=settings.seed, shard=shard, num_shards=num_shards, whole_batches=whole_batches,
                  cache_mb=settings.cache_mb, **loader_options)
    ratio = 1.0 if val_reader else settings.train_ratio
    train = BatchGenerator(train_reader, "train", jitter=settings.jitter, jitter_kind=settings.jitter_kind,
                           train_ratio=ratio, **common)
    val = (BatchGenerator(val_reader, "test", limit=limit, **common) if val_reader else
           BatchGenerator(train_reader, "val", train_ratio=ratio, limit=limit, **common))
    return train, val
