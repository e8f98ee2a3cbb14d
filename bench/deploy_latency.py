"""Per-image CPU latency of every registered model: the int8 model.tflite deploy.py writes vs the float Keras model.

    .venv/bin/python bench/deploy_latency.py                         # all of config.MODELS, ~2 minutes
    .venv/bin/python bench/deploy_latency.py --models quickdraw_cnn --rounds 10

Each model is built untrained at its usual input size (28×28×1 for drawings, 224×224×3 for photos), converted
with deploy.to_int8_tflite (calibrated on a few random images), and both artifacts are timed through
inference.load_classifier / latency_ms, the path deploy.py's report takes (batch 1, quantization included).
The two alternate for a few rounds on the same image; the medians of the rounds are compared. `keras` is the
eager call inference.KerasClassifier makes (what deploy_report.json shows); `compiled` is the same model
through predict_on_batch, to separate Keras' per-call overhead from the arithmetic.
"""
import argparse
import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402

import config  # noqa: E402
from deploy import to_int8_tflite  # noqa: E402
from support.inference import KerasClassifier, latency_ms, load_classifier  # noqa: E402

INPUT_SHAPES = {"quickdraw_cnn": (28, 28, 1), "logistic": (28, 28, 1),
                "mobilenet_v1": (224, 224, 3), "mobilenet_v2": (224, 224, 3)}
CLASSES = {(28, 28, 1): 345, (224, 224, 3): 2}  # all of QuickDraw; cats vs dogs


class CompiledKeras:
    """The Keras model through predict_on_batch (a traced tf.function) rather than an eager call: shows how
    much of the Keras latency is per-call eager overhead rather than arithmetic."""

    def __init__(self, model):
        self.model = model

    def predict(self, images):
        return self.model.predict_on_batch(images)


class RandomImages:
    """Calibration images for to_int8_tflite: uniform random pixels, float32 (1, H, W, C)."""

    def __init__(self, shape, count, seed=0):
        rng = np.random.default_rng(seed)
        self.images = [rng.integers(0, 256, size=(1, *shape)).astype(np.float32) for _ in range(count)]

    def representative_dataset(self):
        for image in self.images:
            yield [image]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default=",".join(config.MODELS), help="comma-separated registered models "
                                                                     "(default: %(default)s)")
    p.add_argument("--calibration", type=int, default=8, help="random calibration images (default: %(default)s)")
    p.add_argument("--rounds", type=int, default=5, help="alternating rounds per artifact (default: %(default)s)")
    p.add_argument("--repeats", type=int, default=20, help="timed runs per round, median taken "
                                                           "(default: %(default)s)")
    args = p.parse_args()
    names = [name.strip() for name in args.models.split(",") if name.strip()]
    unknown = [name for name in names if name not in config.MODELS]
    if unknown:
        sys.exit(f"error: unknown model {', '.join(unknown)}; registered: {', '.join(config.MODELS)}")

    rows = []
    with tempfile.TemporaryDirectory(prefix="deploy_latency_") as work:
        for name in names:
            shape = INPUT_SHAPES.get(name, (224, 224, 3))
            model = config.MODELS[name](shape, CLASSES[shape])
            start = time.perf_counter()
            path = os.path.join(work, f"{name}.tflite")
            with open(path, "wb") as f:
                f.write(to_int8_tflite(model, RandomImages(shape, args.calibration)))
            convert_s = time.perf_counter() - start
            classifiers = {"keras": KerasClassifier(f"{name} (in memory)", model), "int8": load_classifier(path),
                           "compiled": CompiledKeras(model)}
            image = np.random.default_rng(1).integers(0, 256, size=shape).astype(np.float32)
            times = {kind: [] for kind in classifiers}
            for _ in range(args.rounds):
                for kind, classifier in classifiers.items():
                    times[kind].append(latency_ms(classifier, image, repeats=args.repeats, warmup=3))
            keras_ms, int8_ms, compiled_ms = (float(np.median(times[k])) for k in ("keras", "int8", "compiled"))
            rows.append((name, shape, model.count_params(), os.path.getsize(path), keras_ms, int8_ms, compiled_ms,
                         convert_s))
            print(f"{name}: ms per round: " + "; ".join(f"{kind} " + " ".join(f"{t:.2f}" for t in values)
                                                        for kind, values in times.items()), flush=True)

    print(f"\n{'model':<15}{'input':>11}{'params':>11}{'tflite bytes':>14}{'keras ms':>10}{'int8 ms':>9}"
          f"{'keras/int8':>12}{'compiled ms':>13}{'compiled/int8':>15}{'convert s':>11}")
    for name, shape, params, size, keras_ms, int8_ms, compiled_ms, convert_s in rows:
        print(f"{name:<15}{'×'.join(map(str, shape)):>11}{params:>11,}{size:>14,}{keras_ms:>10.2f}{int8_ms:>9.2f}"
              f"{keras_ms / int8_ms:>12.2f}{compiled_ms:>13.2f}{compiled_ms / int8_ms:>15.2f}{convert_s:>11.1f}")
    print("deploy_latency: keras/int8 per-image latency " + ", ".join(f"{r[0]} {r[4] / r[5]:.2f}×" for r in rows)
          + " (goal > 1: the int8 model is the faster one on the CPU too)")


if __name__ == "__main__":
    main()
