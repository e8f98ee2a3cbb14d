"""predict.py: one CSV row per item for Keras and int8 TFLite models, its columns, ids, and bad input."""
import csv
import os
import shutil

import numpy as np
import pytest
from PIL import Image

import predict
from conftest import drawing, quickdraw_records, run_cli, write_tfrecord
from test_evaluate import CLASSES, build_run

pytestmark = [
    pytest.mark.filterwarnings("ignore:Statistics for quantized inputs:UserWarning"),
    pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy:DeprecationWarning"),
]

ITEMS = 120  # noisy_npy: three classes of 40


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    return build_run(str(tmp_path_factory.getbasetemp() / "tiny_deployed_run"))  # shared with test_evaluate


@pytest.fixture(scope="module")
def unlabeled_records(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("records") / "test.tfrecords")
    return write_tfrecord(path, quickdraw_records(7, with_labels=False))


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.reader(f))


def data_of(run_dir):
    return os.path.join(os.path.dirname(run_dir), "npy")


@pytest.mark.parametrize("model", ["keras", "tflite"])
def test_one_row_per_item_with_id_class_name_and_probability(model, tiny_run, tmp_path, capsys):
    run_dir, deploy_dir = tiny_run
    output = str(tmp_path / "predictions.csv")
    tflite = os.path.join(deploy_dir, "model.tflite")
    source = ["--read_from", run_dir] if model == "keras" else ["--model_file", tflite]
    code, stdout, _ = run_cli(predict.main, [*source, "--data", data_of(run_dir), "--output_file", output], capsys)
    assert code == 0 and f"{ITEMS} predictions ({model} model" in stdout
    rows = read_csv(output)
    assert rows[0] == ["id", "class", "name", "prob"]
    assert len(rows) == ITEMS + 1
    assert rows[1][0] == "apple/0" and len({row[0] for row in rows[1:]}) == ITEMS  # ids are the reader's
    for item, label, name, probability in rows[1:]:
        assert CLASSES[int(label)] == name and 0.0 <= float(probability) <= 1.0
    right = np.mean([row[2] == row[0].split("/")[0] for row in rows[1:]])
    assert right > 0.5  # the model learnt something: the names line up with the classes
    assert os.listdir(tmp_path) == ["predictions.csv"]  # no temporary file left beside it


def test_top_k_adds_the_next_guesses_in_order(tiny_run, tmp_path, capsys):
    run_dir, deploy_dir = tiny_run
    output = str(tmp_path / "top3.csv")
    args = ["--model_file", os.path.join(deploy_dir, "model.tflite"), "--data", data_of(run_dir),
            "--output_file", output, "--top_k", "3"]
    assert run_cli(predict.main, args, capsys)[0] == 0
    rows = read_csv(output)
    assert rows[0] == ["id", "class", "name", "prob", "class_2", "name_2", "prob_2", "class_3", "name_3", "prob_3"]
    for row in rows[1:]:
        classes, names, probabilities = row[1::3], row[2::3], [float(p) for p in row[3::3]]
        assert sorted(classes) == ["0", "1", "2"] and [CLASSES[int(c)] for c in classes] == names
        assert probabilities == sorted(probabilities, reverse=True)


def test_kaggle_form_and_ids_from_an_unlabeled_tfrecord(tiny_run, unlabeled_records, tmp_path, capsys):
    run_dir, _ = tiny_run
    output = str(tmp_path / "submission.csv")
    args = ["--read_from", run_dir, "--data", unlabeled_records, "--output_file", output, "--kaggle"]
    assert run_cli(predict.main, args, capsys)[0] == 0
    rows = read_csv(output)
    assert rows[0] == ["Id", "Category"]
    assert [row[0] for row in rows[1:]] == [f"id{n:04d}" for n in range(7)]
    assert all(row[1] in {"0", "1", "2"} for row in rows[1:])


def test_single_image_files_of_any_size_and_colour(tiny_run, tmp_path, capsys):
    run_dir, _ = tiny_run
    rng = np.random.default_rng(3)
    first, second = tmp_path / "first.png", tmp_path / "second.jpg"
    Image.fromarray(drawing(rng, 0, side=56)).save(first)  # grey, twice the model's size
    Image.fromarray(np.stack([drawing(rng, 2, side=40)] * 3, axis=2)).save(second)  # colour
    output = str(tmp_path / "out" / "predictions.csv")  # a folder that does not exist yet is made
    assert run_cli(predict.main, ["--read_from", run_dir, "--data", str(first), str(second), "--output_file", output],
                       capsys)[0] == 0
    rows = read_csv(output)
    assert [row[0] for row in rows[1:]] == ["first.png", "second.jpg"]


def test_class_names_come_from_beside_a_lone_model_file(tiny_run, tmp_path, capsys, unlabeled_records):
    run_dir, deploy_dir = tiny_run
    # config.json beside best.keras (the run folder itself)
    output = str(tmp_path / "from_config.csv")
    assert run_cli(predict.main, ["--model_file", os.path.join(run_dir, "best.keras"), "--data", unlabeled_records,
                        "--output_file", output], capsys)[0] == 0
    assert {row[2] for row in read_csv(output)[1:]} <= set(CLASSES)
    # a copied model.tflite alone: its metadata names the classes (deploy.py packs them into it)
    lone = tmp_path / "lone"
    lone.mkdir()
    shutil.copy(os.path.join(deploy_dir, "model.tflite"), lone / "model.tflite")
    output = str(tmp_path / "from_metadata.csv")
    assert run_cli(predict.main, ["--model_file", str(lone / "model.tflite"), "--data", unlabeled_records,
                        "--output_file", output], capsys)[0] == 0
    rows = read_csv(output)[1:]
    assert rows and all(row[2] == CLASSES[int(row[1])] for row in rows)
    # neither labels.txt nor config.json nor metadata (a Keras file): the class indices are the names
    shutil.copy(os.path.join(deploy_dir, "model.h5"), lone / "model.h5")
    output = str(tmp_path / "indices.csv")
    assert run_cli(predict.main, ["--model_file", str(lone / "model.h5"), "--data", unlabeled_records,
                        "--output_file", output], capsys)[0] == 0
    assert all(row[1] == row[2] for row in read_csv(output)[1:])


def test_an_existing_output_is_kept_without_overwrite_and_replaced_with_it(tiny_run, unlabeled_records, tmp_path,
                                                                           capsys):
    run_dir, _ = tiny_run
    output = tmp_path / "predictions.csv"
    output.write_text("precious\n")
    args = ["--read_from", run_dir, "--data", unlabeled_records, "--output_file", str(output)]
    code, _, err = run_cli(predict.main, args, capsys)
    assert code == 2 and "--overwrite" in err and output.read_text() == "precious\n"
    assert run_cli(predict.main, args + ["--overwrite"], capsys)[0] == 0
    assert len(read_csv(str(output))) == 8


def free_size_model(path):
    import keras

    inputs = keras.Input((None, None, 1))
    outputs = keras.layers.Dense(3, activation="softmax")(keras.layers.GlobalAveragePooling2D()(inputs))
    keras.Model(inputs, outputs).save(path)


def custom_op_model(path):
    """A valid .tflite whose op the CPU interpreter cannot run, as model_edgetpu.tflite's edgetpu-custom-op."""
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([1, 8, 8, 1], tf.float32)])
    def bessel(x):
        return tf.math.bessel_i0(x)

    converter = tf.lite.TFLiteConverter.from_concrete_functions([bessel.get_concrete_function()], bessel)
    converter.allow_custom_ops = True
    with open(path, "wb") as f:
        f.write(converter.convert())


BAD = {
    "not_a_model": lambda t, run, dep: ["--model_file", t("junk.tflite", "not a flatbuffer"), "--data", "{data}"],
    "not_a_keras_model": lambda t, run, dep: ["--model_file", t("junk.keras", "not a zip"), "--data", "{data}"],
    "unknown_model_type": lambda t, run, dep: ["--model_file", t("model.onnx", "x"), "--data", "{data}"],
    "missing_data": lambda t, run, dep: ["--read_from", run, "--data", t("nowhere", None)],
    "empty_folder": lambda t, run, dep: ["--read_from", run, "--data", t("empty/", None)],
    "missing_run": lambda t, run, dep: ["--read_from", t("no_run", None), "--data", "{data}"],
    "top_k_zero": lambda t, run, dep: ["--read_from", run, "--data", "{data}", "--top_k", "0"],
    "top_k_too_big": lambda t, run, dep: ["--model_file", os.path.join(dep, "model.tflite"), "--data", "{data}",
                                          "--top_k", "4"],
    "kaggle_with_top_k": lambda t, run, dep: ["--read_from", run, "--data", "{data}", "--kaggle", "--top_k", "2"],
    "labels_do_not_fit": lambda t, run, dep: ["--model_file", t("wrong/model.tflite", dep), "--data", "{data}"],
    "free_input_size": lambda t, run, dep: ["--model_file", t("free.keras", free_size_model), "--data", "{data}"],
    "unrunnable_op": lambda t, run, dep: ["--model_file", t("model_edgetpu.tflite", custom_op_model),
                                          "--data", "{data}"],
    "no_model": lambda t, run, dep: ["--data", "{data}"],
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_one_line_exit_2_and_leaves_no_csv(case, tiny_run, unlabeled_records, tmp_path, capsys):
    run_dir, deploy_dir = tiny_run
    inputs = tmp_path / "inputs"
    inputs.mkdir()

    def make(name, content):
        path = inputs / name
        if name.endswith("/"):
            path.mkdir()
        elif callable(content):
            content(str(path))
        elif name == "wrong/model.tflite":  # a real model whose labels.txt names 2 classes, not 3
            path.parent.mkdir()
            shutil.copy(os.path.join(content, "model.tflite"), path)
            (path.parent / "labels.txt").write_text("apple\nbicycle\n")
        elif content is not None:
            path.write_text(content)
        return str(path)

    out_dir = tmp_path / "out"
    out_dir.mkdir()
    args = [arg.replace("{data}", unlabeled_records) for arg in BAD[case](make, run_dir, deploy_dir)]
    code, _, err = run_cli(predict.main, args + ["--output_file", str(out_dir / "predictions.csv")], capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert os.listdir(out_dir) == []  # no CSV, no temporary file
