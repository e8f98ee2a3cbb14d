"""Indexing and random access of KMLC-style TFRecords against TensorFlow's own sequential reader.

    .venv/bin/python bench/tfrecord_index.py                      # 500,000 records in 8 files, ~1-2 minutes
    .venv/bin/python bench/tfrecord_index.py --records 2000000    # bigger

The records are the KMLC quickdraw layout (`image` = 28×28 PNG bytes, `label` = int64), written fast by
encoding a few dozen drawings once and reusing their bytes, into a temporary folder deleted afterwards.
Measured in one process, side by side (each pair alternating, medians of the rounds):
- `DataReader(folder)`: records/s to index (walk the framing, read every label) — against
  `tf.data.TFRecordDataset` reading the same files sequentially, raw and with the labels parsed;
- `BatchGenerator` (mode train, shuffled, batch 128): random-access images/s, decoding included — against a
  sequential tf.data pipeline that parses and decodes the same PNGs into batches of 128 (goal ≥ 1×).
"""
import argparse
import io
import os
import shutil
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from PIL import Image  # noqa: E402

from datagen import BatchGenerator  # noqa: E402
from reader import DataReader  # noqa: E402
from support.doodles import SHAPES, draw  # noqa: E402


def png(array):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "PNG")
    return buffer.getvalue()


def write_records(folder, records, files, classes, drawings=48, seed=0):
    """KMLC quickdraw TFRecords: `drawings` distinct PNGs, each serialized once per label, then reused."""
    rng = np.random.default_rng(seed)
    shapes = list(SHAPES.values())
    pngs = [png(255 - draw(shapes[n % len(shapes)], rng)) for n in range(drawings)]  # black strokes on white
    payloads = [tf.train.Example(features=tf.train.Features(feature={
        "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[pngs[n % drawings]])),
        "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[n % classes]))})).SerializeToString()
        for n in range(drawings * classes)]  # payload n: label n % classes, drawing n % drawings
    os.makedirs(folder)
    paths, per_file = [], -(-records // files)
    for f in range(files):
        path = os.path.join(folder, f"train-{f:05d}-of-{files:05d}.tfrecords")
        with tf.io.TFRecordWriter(path) as writer:
            for n in range(f * per_file, min(records, (f + 1) * per_file)):
                writer.write(payloads[(n * 7919) % len(payloads)])
        paths.append(path)
    return paths


def alternating(functions, repeats):
    """Call the functions in turn, `repeats` rounds: (median seconds, last result) of each, in order.
    Alternating keeps a noisy machine's slow spells from landing on one side only."""
    times, results = [[] for _ in functions], [None] * len(functions)
    for _ in range(repeats):
        for n, function in enumerate(functions):
            start = time.perf_counter()
            results[n] = function()
            times[n].append(time.perf_counter() - start)
    return [(float(np.median(t)), result) for t, result in zip(times, results)]


def tf_raw(paths):
    """Records/s baseline: TFRecordDataset, sequential, batched so Python's per-element cost stays out."""
    return sum(int(batch.shape[0]) for batch in tf.data.TFRecordDataset(paths).batch(4096))


def tf_labels(paths):
    spec = {"label": tf.io.FixedLenFeature([], tf.int64)}
    dataset = tf.data.TFRecordDataset(paths).batch(4096).map(lambda x: tf.io.parse_example(x, spec)["label"])
    return np.concatenate([batch.numpy() for batch in dataset])


def tf_decoded_batches(paths, batches, batch_size):
    """A sequential tf.data pipeline: parse, decode the PNG, batch; the first `batches` batches."""
    spec = {"image": tf.io.FixedLenFeature([], tf.string), "label": tf.io.FixedLenFeature([], tf.int64)}

    def decode(record):
        example = tf.io.parse_single_example(record, spec)
        return tf.cast(tf.io.decode_png(example["image"], channels=1), tf.float32), example["label"]

    dataset = tf.data.TFRecordDataset(paths).map(decode).batch(batch_size).take(batches)
    return sum(int(labels.shape[0]) for _, labels in dataset)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--records", type=int, default=500_000, help="records to write (default: %(default)s)")
    p.add_argument("--files", type=int, default=8, help="files to spread them over (default: %(default)s)")
    p.add_argument("--classes", type=int, default=345, help="distinct labels (default: %(default)s)")
    p.add_argument("--batch_size", type=int, default=128, help="random-access batch size (default: %(default)s)")
    p.add_argument("--batches", type=int, default=300, help="batches timed per pass (default: %(default)s)")
    p.add_argument("--repeats", type=int, default=5, help="passes of each measurement; medians shown "
                                                          "(default: %(default)s)")
    args = p.parse_args()
    work = tempfile.mkdtemp(prefix="tfrecord_index_")
    try:
        start = time.perf_counter()
        paths = write_records(os.path.join(work, "training"), args.records, args.files, args.classes)
        size = sum(os.path.getsize(path) for path in paths)
        print(f"wrote {args.records:,} records ({size / 1e6:.0f} MB, {args.files} files, {args.classes} classes) "
              f"in {time.perf_counter() - start:.1f} s")
        folder = os.path.dirname(paths[0])

        tf_raw(paths)  # warm the page cache and tf.data before anything is timed
        (raw_s, count), (labels_s, labels), (index_s, reader) = alternating(
            [lambda: tf_raw(paths), lambda: tf_labels(paths), lambda: DataReader(folder)], args.repeats)
        assert count == len(reader) == args.records and np.array_equal(reader.labels, labels)
        rows = [("tf.data TFRecordDataset, raw records", args.records / raw_s, "reference"),
                ("tf.data + parse_example(label)", args.records / labels_s, ""),
                ("DataReader(folder): index", args.records / index_s, f"{index_s:.2f} s")]

        generator = BatchGenerator(reader, "train", batch_size=args.batch_size, input_size=(28, 28), channels=1)
        count = min(args.batches, len(generator))
        images = sum(len(generator[i][1]) for i in range(count))
        (tf_batches_s, decoded), (random_s, _) = alternating(
            [lambda: tf_decoded_batches(paths, count, args.batch_size),
             lambda: [generator[i] for i in range(count)]], args.repeats)
        assert decoded == images
        rows.append(("tf.data parse + decode_png, sequential", images / tf_batches_s,
                     f"{count / tf_batches_s:.1f} batches/s"))
        rows.append(("BatchGenerator, shuffled random access", images / random_s, f"{count / random_s:.1f} batches/s"))
    finally:
        shutil.rmtree(work)

    reference = rows[0][1]
    print(f"\n{'records read by':<42}{'items/s':>12}{'÷ raw tf.data':>15}   (median of {args.repeats})")
    for name, rate, note in rows:
        print(f"{name:<42}{rate:>12,.0f}{rate / reference:>15.3f}   {note}")
    index_rate, random_rate, tf_decode_rate = rows[2][1], rows[4][1], rows[3][1]
    print(f"tfrecord_index: random batches {random_rate / args.batch_size:.1f}/s = "
          f"{random_rate / tf_decode_rate:.2f}× tf.data sequential decode (goal ≥ 1: random access no slower than "
          f"TF reading in order); index {index_rate:,.0f} records/s = {index_rate / rows[1][1]:.2f}× tf.data "
          f"label parsing (no goal)")


if __name__ == "__main__":
    main()
