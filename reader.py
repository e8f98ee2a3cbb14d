"""DataReader: one index over every image source the template reads.

Each format is one class with the same face: `class_names`, `labels` (-1 where unlabeled), `ids` (stable
names), `id_keys` (64-bit hashes of the ids, for splitting), `load(i) -> uint8 H×W×C` and `load_many(indices)`.
Indexing touches as little as it can: QuickDraw .npy files are memory-mapped and TFRecords are indexed by
their framing, so only the rows a batch needs are ever read. To add a format, write one class with a
`detect(paths)` static method and add it to FORMATS.
"""
import glob
import io
import os
import sys

import numpy as np
from PIL import Image
from tqdm import tqdm

from support.class_match import match_classes
from support.errors import UserError, first_of
from support.ids import mix64, stable_hash
from support.images import MAX_PIXELS, ImageTooLarge, decode_image, opened
from support.labels import read_labels_txt
from support.tfrecord_framing import walk_records

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
NOT_AN_IMAGE, UNREADABLE, EMPTY_CLASS_FOLDER = "not an image", "unreadable", "empty class folder"
TOO_LARGE = f"over {MAX_PIXELS:,} pixels"
TFRECORD_SUFFIXES = (".tfrecord", ".tfrecords")
KEY_CANDIDATES = {
    "image": ("image", "image/encoded", "image_raw", "img"),
    "label": ("label", "image/class/label", "class"),
    "id": ("image_id", "id", "image/filename", "filename"),
}


def expand_paths(source):
    """A path, glob, or list of them -> existing paths, in a stable order; a missing one is an error."""
    paths = []
    for item in [source] if isinstance(source, (str, os.PathLike)) else source:
        item = os.fspath(item)
        matches = sorted(glob.glob(item)) if glob.has_magic(item) else ([item] if os.path.exists(item) else [])
        if not matches:
            raise UserError(f"data path not found: {item}")
        paths.extend(matches)
    if not paths:
        raise UserError("no data source given")
    return paths


def first_per_class(labels, max_per_class):
    """Indices of the first `max_per_class` items of each label (all of them when None), in source order."""
    if max_per_class is None:
        return np.arange(len(labels))
    keep = np.zeros(len(labels), dtype=bool)
    for label in np.unique(labels):
        keep[np.flatnonzero(labels == label)[:max_per_class]] = True
    return np.flatnonzero(keep)


def choose_classes(available, wanted):
    """The source's names of the classes asked for, in the order asked (all available when None). A name
    asked for finds its class as match_classes says: a run's `cat` selects a validation folder's `cats/`."""
    if wanted is None:
        return list(available)
    found = {run: data for data, run in match_classes(available, wanted).items()}
    unknown = [name for name in wanted if name not in found]
    if unknown:
        raise UserError(f"unknown class {', '.join(unknown)}; the source has: {', '.join(available)}")
    return [found[name] for name in wanted]


class QuickDrawNpy:
    """QuickDraw numpy_bitmap files, `<class>.npy` or `full_numpy_bitmap_<class>.npy`: a folder of them, or files."""

    name = "quickdraw_npy"
    PREFIX = "full_numpy_bitmap_"

    @staticmethod
    def detect(paths):
        return bool(QuickDrawNpy.files_in(paths))

    @staticmethod
    def files_in(paths):
        """The .npy files: those given, or those in the one folder given."""
        if len(paths) == 1 and os.path.isdir(paths[0]):
            return sorted(glob.glob(os.path.join(paths[0], "*.npy")))
        return paths if all(p.endswith(".npy") and os.path.isfile(p) for p in paths) else []

    def __init__(self, paths, classes=None, max_per_class=None, **_):
        if not self.detect(paths):
            raise UserError(f"quickdraw_npy needs a folder of .npy files or .npy files, got: {', '.join(paths)}")
        files = {self.class_of(f): f for f in self.files_in(paths)}
        self.class_names = choose_classes(sorted(files), classes)
        self.arrays, counts = [], []
        for name in tqdm(self.class_names, desc="indexing .npy", unit="class", disable=None):
            array = self.open(files[name])
            self.arrays.append(array)
            counts.append(len(array) if max_per_class is None else min(len(array), max_per_class))
        self.labels = np.repeat(np.arange(len(counts)), counts)
        self.rows = np.concatenate([np.arange(n) for n in counts]) if counts else np.zeros(0, dtype=int)
        class_keys = np.array([stable_hash(n) for n in self.class_names], dtype=np.uint64)
        self.id_keys = mix64(class_keys[self.labels] ^ mix64(self.rows))

    def class_of(self, path):
        stem = os.path.splitext(os.path.basename(path))[0]
        return stem[len(self.PREFIX):] if stem.startswith(self.PREFIX) else stem

    @staticmethod
    def open(path):
        """Memory-map one file and check it holds square uint8 bitmaps (N×784 or N×28×28)."""
        try:
            array = np.load(path, mmap_mode="r", allow_pickle=False)
        except Exception as error:
            raise UserError(f"cannot read {path} as a .npy array: {error}") from error
        side = int(round(np.sqrt(array.shape[1]))) if array.ndim == 2 else None
        square = (array.ndim == 2 and side * side == array.shape[1]) or (
            array.ndim == 3 and array.shape[1] == array.shape[2])
        if array.dtype != np.uint8 or not square:
            raise UserError(f"{path} holds {array.dtype} {array.shape}; expected uint8 N×784 or N×28×28 bitmaps")
        return array

    @property
    def ids(self):
        return [f"{self.class_names[c]}/{r}" for c, r in zip(self.labels, self.rows)]

    def load(self, i):
        return self.load_many([i])[0]

    def load_many(self, indices):
        """The images of many items: one gather per class file (memmap[rows]), not one call per row."""
        labels, rows = self.labels[indices], self.rows[indices]
        images = [None] * len(labels)
        for label in np.unique(labels):
            where = np.flatnonzero(labels == label)
            array = self.arrays[label]
            side = array.shape[1] if array.ndim == 3 else int(round(np.sqrt(array.shape[1])))
            for n, image in zip(where, np.asarray(array[rows[where]]).reshape(-1, side, side, 1)):
                images[n] = image
        return images


class TFRecords:
    """TFRecord files of tf.train.Example (the KMLC starter kits' quickdraw, test and cats_vs_dogs layouts).

    Records are read in place: each file is indexed once by walking its framing (payload CRCs are not
    checked; a damaged payload fails when parsed, naming the file and offset)."""

    name = "tfrecord"

    @staticmethod
    def detect(paths):
        return bool(TFRecords.files_in(paths))

    @staticmethod
    def files_in(paths):
        files = []
        for path in paths:
            if os.path.isdir(path):
                files += [os.path.join(path, f) for f in sorted(os.listdir(path)) if TFRecords.looks_like(f)]
            elif TFRecords.looks_like(path):
                files.append(path)
        return files

    @staticmethod
    def looks_like(path):
        name = os.path.basename(path)
        return name.endswith(TFRECORD_SUFFIXES) or "-of-" in name

    def __init__(self, paths, classes=None, max_per_class=None, keys=None, **_):
        from tensorflow.core.example import example_pb2  # TensorFlow only where TFRecords are read
        self.parse = example_pb2.Example.FromString
        self.files = self.files_in(paths)
        if not self.files:
            raise UserError(f"no TFRecord files (*.tfrecord, *.tfrecords, *-of-*) in: {', '.join(paths)}")
        file_of, offsets, lengths = [], [], []
        for n, path in enumerate(tqdm(self.files, desc="indexing TFRecords", unit="file", disable=None)):
            starts, sizes = walk_records(path)
            file_of.append(np.full(len(starts), n, dtype=np.int32))
            offsets.append(starts)
            lengths.append(sizes)
        self.file_of, self.offsets, self.lengths = map(np.concatenate, (file_of, offsets, lengths))
        if not len(self.offsets):
            raise UserError(f"no records in {', '.join(self.files)}")
        self.keys = self.detect_keys(self.example(0), keys or {})
        labels, ids = self.read_labels_and_ids()
        names = self.class_names_for(labels, ids)
        selected = choose_classes(names, classes)
        if classes is not None:
            remap = np.array([selected.index(n) if n in selected else -2 for n in names] + [-1])
            labels = remap[labels]
        keep = first_per_class(labels, max_per_class)
        keep = keep[labels[keep] != -2]
        self.class_names = selected
        self.labels, self.file_of = labels[keep], self.file_of[keep]
        self.offsets, self.lengths = self.offsets[keep], self.lengths[keep]
        self.ids = [ids[i] for i in keep]
        self.id_keys = np.array([stable_hash(i) for i in self.ids], dtype=np.uint64)

    def payloads(self, indices):
        """(position in `indices`, payload bytes) of records, in file and offset order: each file is opened
        once for all of them, not once per record."""
        indices = np.asarray(indices, dtype=np.int64)
        positions = np.lexsort((self.offsets[indices], self.file_of[indices]))
        files = self.file_of[indices[positions]]
        for group in np.split(positions, np.flatnonzero(np.diff(files)) + 1):
            if len(group):
                with open(self.files[self.file_of[indices[group[0]]]], "rb") as f:
                    for n in group:
                        f.seek(self.offsets[indices[n]])
                        yield n, f.read(self.lengths[indices[n]])

    def features(self, i, payload):
        """The features of record i, parsed from its payload; a damaged one names its file and offset."""
        try:
            return self.parse(payload).features.feature
        except Exception as error:
            raise UserError(f"corrupted record in {self.files[self.file_of[i]]} at offset "
                            f"{int(self.offsets[i]) - 12}: {error}") from error

    def example(self, i):
        (_, payload), = self.payloads([i])
        return self.features(i, payload)

    @staticmethod
    def detect_keys(feature, overrides):
        keys = {}
        for role, candidates in KEY_CANDIDATES.items():
            wanted = overrides.get(role)
            if wanted is not None and wanted not in feature:
                raise UserError(f"TFRecord has no feature '{wanted}' for the {role}; it has: "
                                f"{', '.join(sorted(feature))}")
            keys[role] = wanted or next((k for k in candidates if k in feature), None)
        if keys["image"] is None:
            raise UserError(f"TFRecord has no image feature (tried {', '.join(KEY_CANDIDATES['image'])}); "
                            f"it has: {', '.join(sorted(feature))}; name it with the image key override")
        return keys

    def read_labels_and_ids(self):
        labels = np.full(len(self.offsets), -1, dtype=np.int64)
        ids = [None] * len(self.offsets)
        names = [os.path.basename(path) for path in self.files]
        label_key, id_key = self.keys["label"], self.keys["id"]
        records = self.payloads(np.arange(len(self.offsets)))  # all of them, in file order: positions are indices
        for i, payload in tqdm(records, total=len(self.offsets), desc="reading labels", unit="rec", disable=None):
            feature = self.features(i, payload)
            if label_key:
                labels[i] = feature[label_key].int64_list.value[0]
            ids[i] = feature[id_key].bytes_list.value[0].decode() if id_key else f"{names[self.file_of[i]]}:{i}"
        return labels, ids

    def class_names_for(self, labels, ids):
        """From labels.txt if present; else from file-name prefixes (cat.0.jpg) if they agree; else 0..K-1."""
        count = int(labels.max()) + 1 if labels.max() >= 0 else 0
        folders = [os.path.dirname(os.path.abspath(f)) for f in self.files[:1]]
        names = read_labels_txt(folders + [os.path.dirname(folders[0])])
        if names and len(names) >= count:
            return names
        prefixes = {}
        for label, item_id in zip(labels, ids):
            prefixes.setdefault(label, set()).add(item_id.split(".")[0])
        if count and all(len(prefixes.get(n, ())) == 1 for n in range(count)):
            names = [prefixes[n].pop() for n in range(count)]
            if len(set(names)) == count:
                return names
        return [str(n) for n in range(count)]

    def load(self, i):
        return self.load_many([i])[0]

    def encoded(self, i):
        return self.example(i)[self.keys["image"]].bytes_list.value[0]

    def load_many(self, indices):
        """The images of many records (a batch), read file by file in offset order."""
        images = [None] * len(indices)
        for n, payload in self.payloads(indices):
            i = indices[n]
            images[n] = decode_image(self.features(i, payload)[self.keys["image"]].bytes_list.value[0],
                                     f"{self.files[self.file_of[i]]} record at offset {int(self.offsets[i]) - 12}")
        return images


def walk_folder(folder, seen):
    """(image files, other files) anywhere under a folder, in a stable order, following symbolic links;
    `seen` holds real folders already read (each is read once, so a link back up the tree cannot loop)."""
    images, others = [], []
    for here, subfolders, names in os.walk(folder, followlinks=True):
        real = os.path.realpath(here)
        if real in seen:
            subfolders.clear()
            continue
        seen.add(real)
        subfolders.sort()
        for name in sorted(names):
            (images if name.lower().endswith(IMAGE_SUFFIXES) else others).append(os.path.join(here, name))
    return images, others


def skipped_summary(skipped, base):
    """What was skipped, per class and reason: `dogs 1 unreadable (root/dogs/x.jpg), birds empty class folder`;
    unreadable files are named relative to `base`, other files by their name."""
    groups = {}
    for name, reason, path in skipped:
        groups.setdefault((name or "(no class)", reason), []).append(path)
    parts = []
    for (name, reason), files in sorted(groups.items()):
        if reason == EMPTY_CLASS_FOLDER:
            parts.append(f"{name} {reason}")
        else:
            shown = [os.path.relpath(f, base) if reason in (UNREADABLE, TOO_LARGE) else os.path.basename(f)
                     for f in files]
            parts.append(f"{name} {len(files)} {reason} ({first_of(shown, 3)})")
    return first_of(parts, 10)


def index_summary(paths, class_names, labels, skipped, base):
    """One line: how many images of each class were indexed, and what was skipped and why."""
    counts = np.bincount(labels + 1, minlength=len(class_names) + 1)  # counts[0]: unlabeled items
    indexed = [f"{name} {counts[c + 1]}" for c, name in enumerate(class_names)]
    indexed += [f"unlabeled {counts[0]}"] if counts[0] else []
    line = f"indexed {len(labels)} image(s) in {', '.join(paths)}: {first_of(indexed, 10)}"
    return line + (f"; skipped: {skipped_summary(skipped, base)}" if skipped else "")


class ImageFolder:
    """Image files: class subfolders (root/cat/1.jpg), Kaggle's flat layout (root/cat.1.jpg), or plain files.

    Flat files named like `123.jpg` (no class prefix) are unlabeled, as in a Kaggle test folder. A class
    folder's images are taken from every folder below it too, through symbolic links, as Keras'
    image_dataset_from_directory and torchvision's ImageFolder do. Every file is decoded once up front so
    that a broken image is found before training, not in epoch 7; one line then says what was indexed per
    class, and what was skipped and why."""

    name = "image_folder"

    @staticmethod
    def detect(paths):
        return any(os.path.isdir(p) or p.lower().endswith(IMAGE_SUFFIXES) for p in paths)

    def __init__(self, paths, classes=None, max_per_class=None, strict=False, **_):
        files, names, skipped = self.find(paths)
        base = os.path.dirname(paths[0].rstrip(os.sep))  # ids are paths from here: root/cat/1.jpg
        if not files:
            raise UserError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in: {', '.join(paths)}"
                            + (f"; skipped: {skipped_summary(skipped, base)}" if skipped else ""))
        available = sorted(set(n for n in names if n is not None))
        self.class_names = choose_classes(available, classes)
        labels = np.array([self.class_names.index(n) if n in self.class_names else (-1 if n is None else -2)
                           for n in names], dtype=np.int64)
        keep = first_per_class(labels, max_per_class)
        keep = keep[labels[keep] != -2]
        problems = self.check_readable([files[i] for i in keep], strict)
        skipped += [(names[i], problem, files[i]) for i, problem in zip(keep, problems) if problem]
        keep = keep[[problem is None for problem in problems]]
        self.files = [files[i] for i in keep]
        self.skipped = skipped  # (class name, reason, path) of each file not indexed: doctor.py lists the unreadable
        self.labels = labels[keep]
        self.ids = [os.path.relpath(f, base) for f in self.files]
        self.id_keys = np.array([stable_hash(i) for i in self.ids], dtype=np.uint64)
        print(index_summary(paths, self.class_names, self.labels, skipped, base), file=sys.stderr)

    @staticmethod
    def find(paths):
        """(files, class name or None for each image, skipped) under the given folders and files; skipped
        holds (class name or None, reason, path) of each file that is not an image and each class folder
        without images."""
        files, names, skipped = [], [], []
        for path in paths:
            if os.path.isfile(path):
                loose = [(path, None)]
            else:
                entries = sorted(os.listdir(path))
                for sub in (e for e in entries if os.path.isdir(os.path.join(path, e))):
                    images, others = walk_folder(os.path.join(path, sub), {os.path.realpath(path)})
                    files += images
                    names += [sub] * len(images)
                    skipped += [(sub, NOT_AN_IMAGE, f) for f in others]
                    skipped += [] if images else [(sub, EMPTY_CLASS_FOLDER, os.path.join(path, sub))]
                loose = [(os.path.join(path, e), e.split(".")[0] if e.count(".") >= 2 else None)
                         for e in entries if not os.path.isdir(os.path.join(path, e))]
            for file, name in loose:
                if file.lower().endswith(IMAGE_SUFFIXES):
                    files.append(file)
                    names.append(name)
                else:
                    skipped.append((None, NOT_AN_IMAGE, file))
        return files, names, skipped

    @staticmethod
    def check_readable(files, strict):
        """Why each file cannot be read (UNREADABLE or TOO_LARGE; None where it decodes); fails on those when
        strict."""
        problems = []
        for path in tqdm(files, desc="checking images", unit="img", disable=None):
            try:
                with open(path, "rb") as f, opened(f.read(), path) as image:
                    image.draft(image.mode, (64, 64))  # JPEG: decode at reduced scale, still reads every byte
                    image.load()
                problems.append(None)
            except ImageTooLarge:
                problems.append(TOO_LARGE)
            except (OSError, UserError):
                problems.append(UNREADABLE)
        bad = [path for path, problem in zip(files, problems) if problem]
        if bad and strict:
            raise UserError(f"{len(bad)} unreadable image(s): {first_of(bad, 5)}")
        return problems

    def encoded(self, i):
        with open(self.files[i], "rb") as f:
            return f.read()

    def load(self, i):
        return decode_image(self.encoded(i), self.files[i])

    def load_many(self, indices):
        return [self.load(i) for i in indices]


FORMATS = {source.name: source for source in (QuickDrawNpy, TFRecords, ImageFolder)}


class DataReader:
    """The index of one data source, whatever its format; the rest of the template sees only this."""

    def __init__(self, source, fmt="auto", classes=None, max_per_class=None, strict=False, keys=None):
        if max_per_class is not None and max_per_class < 1:
            raise UserError(f"max_per_class must be a positive integer, got {max_per_class}")
        paths = expand_paths(source)
        if fmt == "auto":
            fmt = next((name for name, kind in FORMATS.items() if kind.detect(paths)), None)
            if fmt is None:
                raise UserError(f"cannot tell the format of {', '.join(paths)}; "
                                f"expected one of: {', '.join(FORMATS)}")
        if fmt not in FORMATS:
            raise UserError(f"unknown data format '{fmt}'; choose from: auto, {', '.join(FORMATS)}")
        self.fmt, self.paths = fmt, paths
        self.source = FORMATS[fmt](paths, classes=classes, max_per_class=max_per_class, strict=strict, keys=keys)
        if len(self.source.labels) == 0:
            raise UserError(f"no items in {', '.join(paths)} (format {fmt})")
        self.class_names = self.source.class_names
        self.labels = self.source.labels
        self.id_keys = self.source.id_keys
        self.left_out = np.zeros(len(self.labels), dtype=bool)  # items in no split (--exclude: support/curation.py)

    @property
    def ids(self):
        return self.source.ids

    def __len__(self):
        return len(self.labels)

    def load(self, i):
        return self.source.load(i)

    def load_many(self, indices):
        """The images of many items (a batch), read in bulk where the format can."""
        return self.source.load_many(indices)

    def encoded(self, i):
        """Item i as the bytes of an image file, what a client would send a server: the file or the record's image
        as stored, or a PNG of the pixels where the source holds bare pixels (QuickDraw .npy)."""
        if hasattr(self.source, "encoded"):
            return self.source.encoded(i)
        image = self.load(i)
        buffer = io.BytesIO()
        Image.fromarray(image[:, :, 0] if image.shape[2] == 1 else image).save(buffer, "PNG")
        return buffer.getvalue()

    def __repr__(self):
        return f"DataReader({self.fmt}: {len(self)} items, {len(self.class_names)} classes)"
