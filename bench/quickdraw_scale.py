"""The full QuickDraw set's shape (345 classes × up to 150,000 rows, ~40 GB): index time, memory, items/s.

    .venv/bin/python bench/quickdraw_scale.py                       # 10k, 50k and 150k rows per file, ~2 minutes
    .venv/bin/python bench/quickdraw_scale.py --full_epoch          # one whole epoch at each size (2.76M items)

The files are sparse: each is a real .npy header, a few rows of strokes, and a hole up to its full size, so
40 GB of apparent data costs a few MB of disk (in a temporary folder, deleted afterwards). Each size is
measured in its own process: `DataReader(folder, max_per_class=10000)`, then training batches of 1024 from
`BatchGenerator` (mode train, shuffled). Anonymous memory (RssAnon in /proc/self/status, sampled every 10 ms;
memory-mapped file pages don't count) must stay under the goal and not grow with the rows per file, since
only `max_per_class` rows of each file are ever indexed.

Columns: items/s over all the batches iterated; `1st ms` and `med ms` the first and the median batch. The
first batches are slow because each file's rows are touched for the first time: a page fault maps the page
and reads around it (read_ahead_kb of the disk, 8 MB on the machine this was written on; holes are
zero-filled here, real files read from disk). Once the indexed rows (345 × 10,000 × 784 B = 2.7 GB) are in
the page cache, the median batch shows the steady state.
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLASSES, SIDE = 345, 28
GOAL_INDEX_S, GOAL_ANON_MB = 5.0, 1536


def rss_anon_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no RssAnon in /proc/self/status (Linux only)")


class PeakSampler(threading.Thread):
    """Samples RssAnon every `interval` seconds in the background; `peak` is the highest seen."""

    def __init__(self, interval=0.01):
        super().__init__(daemon=True)
        self.interval, self.peak, self.running = interval, rss_anon_mb(), True

    def run(self):
        while self.running:
            self.peak = max(self.peak, rss_anon_mb())
            time.sleep(self.interval)

    def stop(self):
        self.running = False
        self.join()
        self.peak = max(self.peak, rss_anon_mb())
        return self.peak


def write_sparse(folder, rows, classes=CLASSES, seed=0):
    """`classes` files of rows × 784 uint8 in the numpy_bitmap format: a header, strokes in a few rows, a hole."""
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    marked = sorted({0, 1, 2, rows // 2, rows - 1})
    for n in range(classes):
        path = os.path.join(folder, f"full_numpy_bitmap_class{n:03d}.npy")
        with open(path, "wb") as f:
            np.lib.format.write_array_header_1_0(f, {"descr": "|u1", "fortran_order": False,
                                                     "shape": (rows, SIDE * SIDE)})
            header = f.tell()
        os.truncate(path, header + rows * SIDE * SIDE)  # the rest of the file is a hole: reads as zeros
        array = np.lib.format.open_memmap(path, mode="r+")
        for row in marked:
            picture = np.zeros((SIDE, SIDE), dtype=np.uint8)
            top, left = rng.integers(2, 14, size=2)
            picture[top:top + 12, left:left + 2] = 255  # a vertical stroke, somewhere
            picture[top + 5, left:left + 12] = 255  # and a horizontal one
            array[row] = picture.reshape(-1)
        array.flush()
        del array
    return folder


def disk_usage(folder):
    """(apparent bytes, bytes actually allocated on disk) of the files in a folder."""
    stats = [os.stat(os.path.join(folder, name)) for name in os.listdir(folder)]
    return sum(s.st_size for s in stats), sum(s.st_blocks * 512 for s in stats)


def measure(folder, rows, max_per_class, batch_size, batches):
    """Runs in a child process: index the folder, then iterate training batches; prints one result line."""
    sys.path.insert(0, ROOT)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from datagen import BatchGenerator
    from reader import DataReader

    baseline = rss_anon_mb()
    sampler = PeakSampler()
    sampler.start()
    start = time.perf_counter()
    reader = DataReader(folder, max_per_class=max_per_class)
    index_s = time.perf_counter() - start
    index_peak = sampler.peak
    start = time.perf_counter()
    generator = BatchGenerator(reader, "train", batch_size=batch_size, input_size=(SIDE, SIDE), channels=1)
    split_s = time.perf_counter() - start
    count = len(generator) if batches is None else min(batches, len(generator))
    seen, lit, times = 0, 0, []
    for index in range(count):
        start = time.perf_counter()
        images, labels = generator[index]
        times.append(time.perf_counter() - start)
        seen += len(labels)
        lit += int((images.reshape(len(images), -1).max(axis=1) > 0).sum())
    peak = sampler.stop()
    assert lit > 0 or rows > 3 * count * batch_size, "no batch held a drawn row"
    items_s = seen / sum(times)
    print(f"{rows:>9,}{len(reader):>11,}{index_s:>9.2f}{split_s:>9.2f}{count:>9}{items_s:>10,.0f}"
          f"{1000 * times[0]:>9.0f}{1000 * np.median(times):>9.1f}{baseline:>10.0f}{index_peak:>10.0f}{peak:>10.0f}",
          flush=True)
    print(f"RESULT {rows} {index_s} {peak} {peak - baseline} {items_s} {np.median(times)}", flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", default="10000,50000,150000", help="rows per class file, one run each "
                                                                "(default: %(default)s)")
    p.add_argument("--max_per_class", type=int, default=10000, help="DataReader's cap (default: %(default)s)")
    p.add_argument("--batch_size", type=int, default=1024, help="training batch size (default: %(default)s)")
    p.add_argument("--batches", type=int, default=200, help="batches to iterate per run (default: %(default)s)")
    p.add_argument("--full_epoch", action="store_true", help="iterate every batch of the epoch instead")
    p.add_argument("--one", nargs=2, metavar=("FOLDER", "ROWS"), help=argparse.SUPPRESS)
    args = p.parse_args()
    batches = None if args.full_epoch else args.batches
    if args.one:
        return measure(args.one[0], int(args.one[1]), args.max_per_class, args.batch_size, batches)

    sizes = [int(r) for r in args.rows.split(",")]
    work = tempfile.mkdtemp(prefix="quickdraw_scale_")
    results = []
    print(f"{CLASSES} classes, max_per_class {args.max_per_class}, batch {args.batch_size}, "
          f"{'full epoch' if args.full_epoch else f'{args.batches} batches'} per run; MB = RssAnon")
    print(f"{'rows/file':>9}{'items':>11}{'index s':>9}{'split s':>9}{'batches':>9}{'items/s':>10}"
          f"{'1st ms':>9}{'med ms':>9}{'MB start':>10}{'MB index':>10}{'MB peak':>10}   (data: apparent / on disk)")
    try:
        for rows in sizes:
            folder = write_sparse(os.path.join(work, "npy"), rows)
            apparent, allocated = disk_usage(folder)
            child = subprocess.run([sys.executable, __file__, "--one", folder, str(rows),
                                    "--max_per_class", str(args.max_per_class), "--batch_size", str(args.batch_size),
                                    "--batches", str(args.batches)] + (["--full_epoch"] if args.full_epoch else []),
                                   env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"), capture_output=True, text=True)
            if child.returncode:
                sys.exit(f"error: run with {rows} rows failed:\n{child.stderr[-3000:]}")
            lines = child.stdout.splitlines()
            print("\n".join(line for line in lines if not line.startswith("RESULT"))
                  + f"   ({apparent / 1e9:.1f} GB / {allocated / 1e6:.0f} MB)", flush=True)
            result = next(line for line in lines if line.startswith("RESULT")).split()[2:]
            results.append((rows, *map(float, result)))  # rows, index s, peak MB, growth MB, items/s, median s
    finally:
        shutil.rmtree(work)
    worst_index = max(r[1] for r in results)
    worst_peak = max(r[2] for r in results)
    smallest, largest = results[0], results[-1]
    print(f"from {smallest[0]:,} to {largest[0]:,} rows/file: index time ×{largest[1] / smallest[1]:.2f}, "
          f"peak RssAnon ×{largest[2] / smallest[2]:.2f}, median batch ×{largest[5] / smallest[5]:.2f}")
    print(f"quickdraw_scale: index {worst_index:.2f} s (goal < {GOAL_INDEX_S:.0f} s), peak RssAnon {worst_peak:.0f} MB "
          f"(goal < {GOAL_ANON_MB} MB, flat: ×{largest[2] / smallest[2]:.2f} from {smallest[0]:,} to "
          f"{largest[0]:,} rows/file)")


if __name__ == "__main__":
    main()
