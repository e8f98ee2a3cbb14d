"""Index time, peak memory and batches/s of the data layer on real sources, each format in its own process.

    REAL_DATA_DIR=../shared/data .venv/bin/python bench/data_pipeline.py

Peak memory is the process's peak resident set minus what it held before indexing (interpreter, NumPy,
TensorFlow for TFRecords), so it shows what the index itself costs.
"""
import os
import resource
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOURCES = {  # name: (path under REAL_DATA_DIR, input size, channels, batch size)
    "quickdraw_npy": ("quickdraw_npy", (28, 28), 1, 128),
    "quickdraw_tfrecord": ("quickdraw_tfrecord/training", (28, 28), 1, 128),
    "cats_vs_dogs_folder": ("cats_vs_dogs/train", (160, 160), 3, 32),
    "cats_vs_dogs_tfrecord": ("cats_vs_dogs_tfrecord", (160, 160), 3, 32),
}


def peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(name, batches=20):
    """Runs in a child process: index one source, then time batches with and without jitter."""
    sys.path.insert(0, ROOT)
    import datagen  # noqa: F401  (imports numpy, keras, imgaug before the baseline)
    import tensorflow  # noqa: F401
    from datagen import BatchGenerator
    from reader import DataReader
    folder, size, channels, batch_size = SOURCES[name]
    baseline = peak_mb()
    start = time.perf_counter()
    reader = DataReader(os.path.join(os.environ["REAL_DATA_DIR"], folder))
    index_s = time.perf_counter() - start
    index_mb = peak_mb() - baseline
    rates = {}
    for jitter in (False, True):
        generator = BatchGenerator(reader, "train", batch_size=batch_size, input_size=size, channels=channels,
                                   jitter=jitter)
        count = min(batches, len(generator))
        start = time.perf_counter()
        for index in range(count):
            generator[index]
        rates[jitter] = count / (time.perf_counter() - start)
    print(f"{name:<24}{len(reader):>8}{index_s:>10.2f}{index_mb:>10.1f}{batch_size:>7}"
          f"{rates[False]:>12.1f}{rates[True]:>12.1f}")


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--one":
        return measure(sys.argv[2])
    if not os.environ.get("REAL_DATA_DIR"):
        sys.exit("error: set REAL_DATA_DIR to the folder holding quickdraw_npy/, quickdraw_tfrecord/, cats_vs_dogs/")
    print(f"{'source':<24}{'items':>8}{'index s':>10}{'index MB':>10}{'batch':>7}{'batches/s':>12}{'+jitter':>12}")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    for name in SOURCES:
        subprocess.run([sys.executable, __file__, "--one", name], env=env, check=True, stderr=subprocess.DEVNULL)


if __name__ == "__main__":
    main()
