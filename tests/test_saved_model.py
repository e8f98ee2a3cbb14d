"""The SavedModel deploy.py writes: its image preparation against reader.decode_image + support.images.prepare, its
answers against predict.py's (loaded as a server loads it, in a fresh process), its signatures as saved_model_cli
shows them, adding a version, and bad input."""
import csv
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest
from PIL import Image

import deploy
import predict
import train
from conftest import REAL_DATA_DIR, exit_code, needs_real_data, run_cli
from support.images import prepare
from reader import DataReader
from support import saved_model_export
from support.images import decode_image

pytestmark = pytest.mark.filterwarnings("ignore:Statistics for quantized inputs:UserWarning")

CLASSES = ["cats", "dogs"]
INPUT = (32, 32, 3)
SMALL_MODEL = ["--model_kwargs", '{"filters": [8, 16], "dense_units": 16}']


def photo(rng, height, width, label):
    """A colour photo-like image: a smooth gradient (its colour order says the class) with sensor-like noise."""
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 // width, y * 255 // height, np.full((height, width), 128)], axis=2)
    base = base[:, :, ::-1] if label else base
    return np.clip(base + rng.normal(0, 20, (height, width, 3)), 0, 255).astype(np.uint8)


def encoded(image, fmt, **options):
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """Class folders of JPEG photos, each of its own size, smaller and larger than the model's 32×32 input."""
    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(3)
    for label, name in enumerate(CLASSES):
        (root / name).mkdir()
        for n in range(30):
            height, width = (int(d) for d in rng.integers(20, 90, 2))
            Image.fromarray(photo(rng, height, width, label)).save(root / name / f"{n}.jpg", quality=90)
    return str(root)


@pytest.fixture(scope="module")
def photo_run(photos, tmp_path_factory):
    run = str(tmp_path_factory.mktemp("photo_run") / "run")
    args = ["--data", photos, "--channels", "3", "--input_size", "32,32", "--save_to", run, "--num_epochs", "4",
            "--batch_size", "8", "--learning_rate", "0.01", *SMALL_MODEL]
    assert exit_code(train.main, args) == 0
    return run


@pytest.fixture(scope="module")
def photo_deploy(photo_run, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("photo_deploy") / "photos")
    assert exit_code(deploy.main, ["--read_from", photo_run, "--save_to", out, "--formats", "h5,saved_model"]) == 0
    return out


def in_graph(data, input_size, channels):
    import tensorflow as tf
    return saved_model_export.prepared(tf.constant(data), input_size, channels).numpy()


def image_files():
    """Bytes of every kind of file decode_image reads and the export decodes: (name, bytes)."""
    rng = np.random.default_rng(0)
    rgb = photo(rng, 45, 61, 0)
    grey = rgb[:, :, 1]
    rgba = np.concatenate([rgb, rng.integers(0, 256, (45, 61, 1), dtype=np.uint8)], axis=2)
    palette = Image.fromarray(rgb).quantize(50)
    return [
        ("jpeg", encoded(Image.fromarray(rgb), "JPEG", quality=90)),
        ("grey jpeg", encoded(Image.fromarray(grey), "JPEG")),
        ("cmyk jpeg", encoded(Image.fromarray(rgb).convert("CMYK"), "JPEG")),
        ("png", encoded(Image.fromarray(rgb), "PNG")),
        ("grey png", encoded(Image.fromarray(grey), "PNG")),
        ("grey+alpha png", encoded(Image.fromarray(np.stack([grey, grey[::-1]], axis=2), "LA"), "PNG")),
        ("rgba png", encoded(Image.fromarray(rgba), "PNG")),
        ("palette png", encoded(palette, "PNG")),
        ("palette png with a transparent entry", encoded(palette, "PNG", transparency=3)),
        ("1-bit png", encoded(Image.fromarray(grey > 128), "PNG")),
        ("16-bit png", encoded(Image.fromarray(grey.astype(np.uint16) * 257 + 13), "PNG")),
        ("16-bit rgb png", cv2.imencode(".png", rgb.astype(np.uint16) * 257)[1].tobytes()),
        ("gif", encoded(palette, "GIF")),
        ("animated gif", encoded(palette, "GIF", save_all=True,
                                 append_images=[Image.fromarray(rgb[::-1]).quantize(9)])),  # the first frame counts
        ("bmp", encoded(Image.fromarray(rgb), "BMP")),
        ("grey bmp", encoded(Image.fromarray(grey), "BMP")),
        ("palette bmp", encoded(palette, "BMP")),
        ("webp", encoded(Image.fromarray(rgb), "WEBP", lossless=True)),
        ("rgba webp", encoded(Image.fromarray(rgba), "WEBP", lossless=True)),
    ]


@pytest.mark.parametrize("name, data", image_files(), ids=[name for name, _ in image_files()])
def test_the_graph_prepares_each_kind_of_file_as_decode_image_and_prepare_do(name, data):
    decoded = decode_image(data, name)
    height, width = decoded.shape[:2]
    # Same size: decoding and the channel conversion alone, which must give Pillow's very pixels.
    for channels in (1, 3):
        assert np.array_equal(in_graph(data, (height, width), channels), prepare(decoded, (height, width), channels))
    # Shrinking, enlarging, and both at once: Pillow's resize, at most one level apart on a few pixels.
    for size in ((32, 32), (90, 120), (30, 100)):
        for channels in (1, 3):
            expected = prepare(decoded, size, channels).astype(int)
            got = in_graph(data, size, channels)
            assert got.shape == expected.shape and got.dtype == np.uint8
            difference = np.abs(got.astype(int) - expected)
            assert difference.max() <= 1 and np.mean(difference == 0) >= 0.98, (size, channels)


def test_deploy_writes_the_saved_model_layout_that_tensorflow_serving_loads(photo_deploy):
    version = os.path.join(photo_deploy, "saved_model", "1")
    assert sorted(os.listdir(os.path.join(photo_deploy, "saved_model"))) == ["1"]
    assert {"saved_model.pb", "variables", "assets"} <= set(os.listdir(version))
    assert os.listdir(os.path.join(version, "variables"))
    with open(os.path.join(version, "assets", "labels.txt")) as f:
        assert f.read().split("\n") == [*CLASSES, ""]  # the class names travel inside it
    with open(os.path.join(photo_deploy, "labels.txt")) as f:
        assert f.read().split() == CLASSES  # and stay beside it


FRESH_PROCESS = """
import json, sys
import tensorflow as tf
serving = tf.saved_model.load(sys.argv[1]).signatures["serving_default"]
files = [open(path, "rb").read() for path in sys.argv[2:]]
answer = serving(image_bytes=tf.constant(files))
print(json.dumps({"probabilities": answer["probabilities"].numpy().tolist(),
                  "classes": [name.decode() for name in answer["classes"].numpy()],
                  "dtypes": [answer["probabilities"].dtype.name, answer["classes"].dtype.name]}))
"""


def test_a_fresh_process_loads_the_export_and_answers_as_predict_py_for_jpeg_files(photo_run, photo_deploy, photos,
                                                                                    tmp_path, capsys):
    files = sorted(os.path.join(root, name) for root, _, names in os.walk(photos) for name in names)
    # Nothing of the template in that process: only TensorFlow, as in a server.
    done = subprocess.run([sys.executable, "-c", FRESH_PROCESS, os.path.join(photo_deploy, "saved_model", "1"), *files],
                          capture_output=True, text=True, cwd=tmp_path, timeout=600,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": ""})
    assert done.returncode == 0, done.stderr[-3000:]
    served = json.loads(done.stdout.strip().splitlines()[-1])
    assert served["dtypes"] == ["float32", "string"]

    output = str(tmp_path / "predictions.csv")
    code, _, _ = run_cli(predict.main, ["--read_from", photo_run, "--data", photos, "--output_file", output,
                                        "--top_k", "2"], capsys)
    assert code == 0
    with open(output, newline="") as f:
        # ids are paths from the folder above, photos0/cats/0.jpg
        rows = {os.path.join(os.path.dirname(photos), row["id"]): row for row in csv.DictReader(f)}
    assert len(rows) == len(files) == 60
    for path, probabilities, name in zip(files, served["probabilities"], served["classes"]):
        row = rows[path]
        assert name == row["name"] == CLASSES[int(np.argmax(probabilities))]
        expected = {row["name"]: float(row["prob"]), row["name_2"]: float(row["prob_2"])}
        for label, probability in zip(CLASSES, probabilities):
            assert abs(probability - expected[label]) <= 0.02, (path, label, probability, expected)


def test_the_pixels_signature_answers_as_the_keras_model(photo_run, photo_deploy, photos):
    import keras
    import tensorflow as tf
    reader = DataReader(photos)
    pixels = np.stack([prepare(reader.load(i), INPUT[:2], INPUT[2]) for i in range(len(reader))])
    served = tf.saved_model.load(os.path.join(photo_deploy, "saved_model", "1")).signatures["pixels"]
    answer = served(pixels=tf.constant(pixels))
    keras_model = keras.saving.load_model(os.path.join(photo_run, "best.keras"), compile=False)
    np.testing.assert_allclose(answer["probabilities"].numpy(), keras_model.predict(pixels.astype(np.float32),
                                                                                    verbose=0), atol=1e-5)
    assert [c.decode() for c in answer["classes"].numpy()] == [CLASSES[c] for c in
                                                               answer["probabilities"].numpy().argmax(1)]


def signatures_shown(text):
    """saved_model_cli show --all's text -> {signature: {"inputs"|"outputs": {name: (dtype, shape)}, "method": ...}}."""
    found = {}
    for block in re.split(r"\nsignature_def\['", text)[1:]:
        name = block.split("'", 1)[0]
        tensors = {"inputs": {}, "outputs": {}}
        for kind, tensor, dtype, shape in re.findall(
                r"(inputs|outputs)\['([^']+)'\] tensor_info:\s+dtype: (\w+)\s+shape: (.+)", block):
            tensors[kind][tensor] = (dtype, shape.strip())
        method = re.search(r"Method name is: (.*)", block)
        found[name] = {**tensors, "method": method.group(1).strip() if method else None}
    return found


def saved_model_cli(*args):
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")  # it ships with TensorFlow
    done = subprocess.run([cli if os.path.exists(cli) else "saved_model_cli", *args], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_saved_model_cli_shows_both_signatures_with_their_names_dtypes_and_shapes(photo_deploy):
    shown = signatures_shown(saved_model_cli("show", "--all", "--dir", os.path.join(photo_deploy, "saved_model", "1")))
    outputs = {"probabilities": ("DT_FLOAT", "(-1, 2)"), "classes": ("DT_STRING", "(-1)")}
    assert shown["serving_default"] == {"inputs": {"image_bytes": ("DT_STRING", "(-1)")}, "outputs": outputs,
                                        "method": "tensorflow/serving/predict"}
    assert shown["pixels"] == {"inputs": {"pixels": ("DT_UINT8", "(-1, 32, 32, 3)")}, "outputs": outputs,
                               "method": "tensorflow/serving/predict"}


def test_a_session_loader_like_tensorflow_servings_restores_the_variables_and_answers(photo_run, photo_deploy, photos,
                                                                                       tmp_path):
    """saved_model_cli run loads a SavedModel into a TF1 session, restoring its variables by the saver in its graph,
    as TensorFlow Serving's C++ loader does; a model whose variables only Python's tf.saved_model.load finds fails
    here."""
    import keras
    files = [os.path.join(photos, name, "0.jpg") for name in CLASSES] + [os.path.join(photos, "dogs", "1.jpg")]
    inputs = str(tmp_path / "image_bytes.npy")
    np.save(inputs, np.array([open(path, "rb").read() for path in files]))  # JPEGs end in FFD9: no NUL is lost
    printed = saved_model_cli("run", "--dir", os.path.join(photo_deploy, "saved_model", "1"), "--tag_set", "serve",
                              "--signature_def", "serving_default", "--inputs", f"image_bytes={inputs}")
    served = re.findall(r"b'([^']*)'", re.search(r"Result for output key classes:\s*\[([^\]]*)\]", printed).group(1))
    keras_model = keras.saving.load_model(os.path.join(photo_run, "best.keras"), compile=False)
    pixels = np.stack([prepare(decode_image(open(path, "rb").read(), path), INPUT[:2], INPUT[2]) for path in files])
    assert served == [CLASSES[c] for c in keras_model.predict(pixels.astype(np.float32), verbose=0).argmax(1)]


def test_the_report_records_the_export_and_its_agreement_and_the_summary_says_it(photo_run, tmp_path, capsys):
    out = str(tmp_path / "deploy")
    code, stdout, _ = run_cli(deploy.main, ["--read_from", photo_run, "--save_to", out, "--formats", "h5,saved_model",
                                            "--saved_model_version", "7"], capsys)
    assert code == 0 and sorted(os.listdir(os.path.join(out, "saved_model"))) == ["7"]
    with open(os.path.join(out, "deploy_report.json")) as f:
        report = json.load(f)
    entry = report["saved_model"]["7"]
    assert entry["path"] == os.path.join(out, "saved_model", "7") and entry["run"] == os.path.abspath(photo_run)
    assert entry["bytes"] == saved_model_export.folder_bytes(os.path.join(out, "saved_model", "7"))
    agreement = entry["agreement"]
    assert agreement["images"] == report["validation"]["items"] > 0
    assert agreement["top1_agreement"] == 1.0 and agreement["max_probability_gap"] <= 0.02
    line = next(line for line in stdout.splitlines() if "SavedModel" in line)
    assert line == (f"  SavedModel saved_model/7: {entry['bytes']:,} bytes (model.h5 "
                    f"{report['artifacts']['model.h5']['bytes']:,}); given the image files, top-1 as predict.py's on "
                    f"100.0% of {agreement['images']}, probabilities at most "
                    f"{agreement['max_probability_gap']:.4f} apart")


def listing(folder):
    """Every file under a folder with a hash of its content: what 'nothing written or deleted' compares."""
    files = {}
    for root, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                files[os.path.relpath(path, folder)] = hashlib.sha256(f.read()).hexdigest()
    return files


def test_a_new_version_goes_beside_the_others_and_replaces_one_only_with_overwrite(photo_run, photo_deploy, tmp_path,
                                                                                    capsys):
    out = str(tmp_path / "deploy")
    shutil.copytree(photo_deploy, out)
    before = listing(out)
    add = ["--read_from", photo_run, "--save_to", out, "--formats", "saved_model", "--saved_model_version", "2"]
    code, stdout, _ = run_cli(deploy.main, add, capsys)
    assert code == 0, stdout
    assert sorted(os.listdir(os.path.join(out, "saved_model"))) == ["1", "2"]
    after = listing(out)
    changed = {path for path in after if before.get(path) != after[path]}
    assert changed == {"deploy_report.json"} | {path for path in after if path.startswith("saved_model/2/")}
    with open(os.path.join(out, "deploy_report.json")) as f:
        report = json.load(f)
    with open(os.path.join(photo_deploy, "deploy_report.json")) as f:
        first = json.load(f)
    assert report["saved_model"]["1"] == first["saved_model"]["1"] and report["artifacts"] == first["artifacts"]
    assert report["saved_model"]["2"]["agreement"]["top1_agreement"] == 1.0
    assert re.search(r"^  SavedModel saved_model/2: [\d,]+ bytes \(best.keras [\d,]+\); given the image files, "
                     r"top-1 as predict.py's on 100.0% of \d+", stdout, re.M)

    assert exit_code(deploy.main, add) == 2  # version 2 exists now
    capsys.readouterr()
    os.remove(os.path.join(out, "saved_model", "2", "saved_model.pb"))  # so that a replacement shows
    assert exit_code(deploy.main, [*add, "--overwrite"]) == 0
    replaced = listing(out)
    assert "saved_model/2/saved_model.pb" in replaced
    assert {path: digest for path, digest in replaced.items() if path.startswith("saved_model/1/")} == \
           {path: digest for path, digest in before.items() if path.startswith("saved_model/1/")}


def test_bad_inputs_are_one_line_errors_that_write_and_delete_nothing(photo_run, photo_deploy, tmp_path, capsys):
    no_export = str(tmp_path / "no_export")
    assert exit_code(deploy.main, ["--read_from", photo_run, "--save_to", no_export, "--formats", "h5"]) == 0
    other_classes = str(tmp_path / "other_classes")
    shutil.copytree(photo_deploy, other_classes)
    with open(os.path.join(other_classes, "labels.txt"), "w") as f:
        f.write("apple\nbicycle\n")
    not_deploy = tmp_path / "mine"
    not_deploy.mkdir()
    (not_deploy / "keep.txt").write_text("x")
    capsys.readouterr()
    add = ["--read_from", photo_run, "--formats", "saved_model"]
    cases = [
        ([*add, "--save_to", no_export, "--saved_model_version", "2"], "has no saved_model/ to add version 2 to"),
        ([*add, "--save_to", photo_deploy], "saved_model/1 already exists (versions there: 1); choose another "
                                            "--saved_model_version or pass --overwrite"),
        ([*add, "--save_to", photo_deploy, "--saved_model_version", "two"],
         "argument --saved_model_version: must be an integer, got 'two'"),
        ([*add, "--save_to", photo_deploy, "--saved_model_version", "1.5"], "must be an integer, got '1.5'"),
        ([*add, "--save_to", photo_deploy, "--saved_model_version", "0"], "must be a positive integer, got 0"),
        (["--read_from", photo_run, "--save_to", str(tmp_path / "new"), "--formats", "h5", "--saved_model_version",
          "2"], "--saved_model_version 2 needs saved_model in --formats"),
        ([*add, "--save_to", other_classes, "--saved_model_version", "2"],
         "versions of one SavedModel must answer the same classes"),
        ([*add, "--save_to", str(not_deploy)], "is not a deploy folder (no deploy_report.json or labels.txt)"),
    ]
    folders = [no_export, photo_deploy, other_classes, str(not_deploy)]
    before = {folder: listing(folder) for folder in folders}
    for args, message in cases:
        assert exit_code(deploy.main, args) == 2, args
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], (args, err)
        assert {folder: listing(folder) for folder in folders} == before, args
    assert not os.path.exists(tmp_path / "new")


@needs_real_data
@pytest.mark.parametrize("source, flags", [
    ("cats_vs_dogs/train", ["--channels", "3", "--input_size", "64,64", "--max_per_class", "60"]),
    ("scenes", ["--channels", "3", "--input_size", "160,160", "--max_per_class", "20"]),
    ("quickdraw_tfrecord/validation", ["--max_per_class", "40"]),
])
def test_on_real_files_the_export_answers_as_predict_py(source, flags, tmp_path, capsys):
    run, out = str(tmp_path / "run"), str(tmp_path / "deploy")
    assert exit_code(train.main, ["--data", os.path.join(REAL_DATA_DIR, source), *flags, "--save_to", run,
                                  "--num_epochs", "2", "--batch_size", "16", *SMALL_MODEL]) == 0
    assert exit_code(deploy.main, ["--read_from", run, "--save_to", out, "--formats", "saved_model"]) == 0
    with open(os.path.join(out, "deploy_report.json")) as f:
        agreement = json.load(f)["saved_model"]["1"]["agreement"]
    assert agreement["images"] >= 20
    assert agreement["top1_agreement"] >= 0.995 and agreement["max_probability_gap"] <= 0.02, agreement
