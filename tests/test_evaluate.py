"""evaluate.py: metrics against hand-computed values, the CLI's files, agreement with deploy's report, bad input."""
import csv
import json
import os
import shutil

import numpy as np
import pytest
from PIL import Image

import evaluate
from conftest import quickdraw_records, run_cli, write_npy, write_tfrecord

pytestmark = [
    # Library noise, not ours: the TF converter on uint8 input, and Keras' model.save under NumPy 2.
    pytest.mark.filterwarnings("ignore:Statistics for quantized inputs:UserWarning"),
    pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy:DeprecationWarning"),
]

CLASSES = ["apple", "bicycle", "cat"]


# --- metrics on a tiny fixed example ---------------------------------------------------------------------

# Six items, three classes. Predictions (argmax): a, a, a, b, b, a. Class "cat" is never predicted.
PROBABILITIES = np.array([
    [0.70, 0.20, 0.10],  # apple   -> apple   (right)
    [0.60, 0.30, 0.10],  # apple   -> apple   (right)
    [0.50, 0.40, 0.10],  # bicycle -> apple   (2nd guess right)
    [0.10, 0.80, 0.10],  # bicycle -> bicycle (right)
    [0.30, 0.60, 0.10],  # cat     -> bicycle (3rd guess right)
    [0.45, 0.20, 0.35],  # cat     -> apple   (2nd guess right)
])
LABELS = np.array([0, 0, 1, 1, 2, 2])


def test_metrics_match_hand_computed_values_and_a_never_predicted_class_has_precision_zero():

    result = evaluate.metrics(PROBABILITIES, LABELS, CLASSES)
    # rows = true class, columns = predicted class
    assert result["confusion_matrix"] == [[2, 0, 0], [1, 1, 0], [1, 1, 0]]
    assert result["items"] == 6
    assert result["top1"] == pytest.approx(3 / 6)
    assert result["balanced_accuracy"] == pytest.approx((2 / 2 + 1 / 2 + 0 / 2) / 3)  # the mean recall
    assert result["k"] == 3 and result["top_k"] == pytest.approx(1.0)  # k = min(5, 3 classes)
    assert evaluate.metrics(PROBABILITIES, LABELS, CLASSES, k=2)["top_k"] == pytest.approx(5 / 6)
    expected = {  # precision = right / predicted, recall = right / support
        "apple": (2 / 4, 2 / 2, 2 * 0.5 * 1.0 / 1.5, 2),
        "bicycle": (1 / 2, 1 / 2, 0.5, 2),
        "cat": (0.0, 0.0, 0.0, 2),  # never predicted: precision 0 by convention, not NaN
    }
    for name, (precision, recall, f1, support) in expected.items():
        row = result["per_class"][name]
        assert row["precision"] == pytest.approx(precision), name
        assert row["recall"] == pytest.approx(recall), name
        assert row["f1"] == pytest.approx(f1), name
        assert row["support"] == support, name
    assert result["macro"]["precision"] == pytest.approx(1 / 3)
    assert result["macro"]["recall"] == pytest.approx(0.5)
    assert result["macro"]["f1"] == pytest.approx((2 / 3 + 0.5 + 0) / 3)
    assert result["weighted"]["recall"] == pytest.approx(0.5)  # equal supports: same as macro
    true_probabilities = np.array([0.7, 0.6, 0.4, 0.8, 0.1, 0.35])
    assert result["loss"] == pytest.approx(np.mean(-np.log(true_probabilities)))
    assert json.loads(json.dumps(result)) == result  # JSON-ready: no NumPy types, no NaN


def test_a_class_absent_from_the_labels_scores_zero_and_stays_out_of_the_macro_average():

    four = np.hstack([PROBABILITIES * 0.9, np.full((6, 1), 0.1 * 0.99)])  # "dog": never true, never argmax
    result = evaluate.metrics(four, LABELS, CLASSES + ["dog"])
    assert result["per_class"]["dog"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert result["macro"]["recall"] == pytest.approx(0.5)  # over apple, bicycle, cat only
    assert result["balanced_accuracy"] == pytest.approx(0.5)
    assert result["k"] == 4 and result["confusion_matrix"][3] == [0, 0, 0, 0]


def test_balanced_accuracy_shows_a_neglected_rare_class_that_top1_hides():

    labels = np.array([0] * 18 + [1] * 2)  # 18 common, 2 rare
    always_common = np.tile([0.9, 0.1], (20, 1))
    result = evaluate.metrics(always_common, labels, ["common", "rare"])
    assert result["top1"] == pytest.approx(0.9) and result["balanced_accuracy"] == pytest.approx(0.5)
    one_of_each_wrong = always_common.copy()
    one_of_each_wrong[[0, 18]] = [0.1, 0.9]  # a common one called rare, a rare one found
    result = evaluate.metrics(one_of_each_wrong, labels, ["common", "rare"])
    assert result["top1"] == pytest.approx(0.9) and result["balanced_accuracy"] == pytest.approx((17 / 18 + 1 / 2) / 2)


def test_ties_rank_the_lower_index_first_as_argmax_does_and_loss_is_clipped_like_keras():

    tied = np.array([[0.5, 0.5, 0.0], [0.0, 0.0, 1.0]])
    assert evaluate.top_k_accuracy(tied, np.array([1, 2]), 1) == 0.5  # argmax of a tie is class 0
    assert evaluate.top_k_accuracy(tied, np.array([1, 2]), 2) == 1.0
    # int8 outputs: rows that do not sum to 1 are rescaled, a 0 for the true class costs -log(1e-7)
    assert evaluate.crossentropy(np.array([[0.25, 0.25, 0.0]]), np.array([0])) == pytest.approx(np.log(2))
    assert evaluate.crossentropy(tied[1:], np.array([0])) == pytest.approx(-np.log(1e-7))
    with pytest.raises(ValueError):
        evaluate.metrics(PROBABILITIES, np.array([0, 0, 1, 1, 2, 3]), CLASSES)


def test_confusion_matrix_counts_rows_as_true_and_columns_as_predicted():

    matrix = evaluate.confusion_matrix(np.array([1, 1, 0]), np.array([0, 1, 0]), 3)
    assert matrix.tolist() == [[1, 1, 0], [0, 1, 0], [0, 0, 0]]


# --- the command -----------------------------------------------------------------------------------------

def noisy_npy(folder):
    """Three classes where a quarter of each file is drawn like the next class: a tiny model learns the
    rest, so validation accuracy is high but not 1 and the int8 comparison below means something."""
    write_npy(folder, {name: 40 for name in CLASSES})
    arrays = {name: np.load(os.path.join(folder, f"{name}.npy")) for name in CLASSES}
    for n, name in enumerate(CLASSES):
        following = CLASSES[(n + 1) % len(CLASSES)]
        arrays[name][:10] = np.load(os.path.join(folder, f"{following}.npy"))[10:20]
    for name, array in arrays.items():
        np.save(os.path.join(folder, f"{name}.npy"), array)
    return folder


def build_run(base):
    """A tiny trained run (logistic on noisy .npy drawings) and its deploy folder, made once per session
    (test_predict.py uses it too). Returns (run_dir, deploy_dir)."""
    import deploy
    import train

    run_dir, deploy_dir = os.path.join(base, "run"), os.path.join(base, "deploy")
    if not os.path.isfile(os.path.join(deploy_dir, "deploy_report.json")):
        data = noisy_npy(os.path.join(base, "npy"))
        train.main(["--data", data, "--save_to", run_dir, "--model", "logistic", "--num_epochs", "2",
                    "--batch_size", "16", "--learning_rate", "0.01", "--keep_checkpoints", "0", "--overwrite"])
        deploy.main(["--read_from", run_dir, "--save_to", deploy_dir, "--formats", "h5,tflite",
                     "--calibration_samples", "32"])
    return run_dir, deploy_dir


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    return build_run(str(tmp_path_factory.getbasetemp() / "tiny_deployed_run"))


def test_evaluate_writes_metrics_json_confusion_csv_and_png(tiny_run, tmp_path, capsys):
    run_dir, _ = tiny_run
    out = str(tmp_path / "eval")
    code, stdout, _ = run_cli(evaluate.main, ["--read_from", run_dir, "--save_to", out], capsys)
    assert code == 0
    with open(os.path.join(out, "metrics.json")) as f:
        result = json.load(f)
    assert result["kind"] == "keras" and result["model"].endswith("best.keras")
    assert result["class_names"] == CLASSES and result["k"] == 3
    assert 0 < result["items"] <= 1000 and result["data"]["source"] == "the run's validation split"
    assert set(result["per_class"]) == set(CLASSES) and result["loss"] > 0
    with open(os.path.join(out, "confusion_matrix.csv")) as f:
        rows = list(csv.reader(f))
    assert rows[0][1:] == CLASSES and [row[0] for row in rows[1:]] == CLASSES
    assert [[int(v) for v in row[1:]] for row in rows[1:]] == result["confusion_matrix"]
    assert sum(int(v) for row in rows[1:] for v in row[1:]) == result["items"]
    with Image.open(os.path.join(out, "confusion_matrix.png")) as image:
        assert image.format == "PNG" and image.width >= 300 and image.height >= 300
    assert f"top-1 accuracy {result['top1']:.4f}   balanced accuracy {result['balanced_accuracy']:.4f}" in stdout
    assert "precision" in stdout and "bicycle" in stdout
    # an existing, non-empty output folder is refused without --overwrite, and rewritten with it
    code, _, err = run_cli(evaluate.main, ["--read_from", run_dir, "--save_to", out], capsys)
    assert code == 2 and "--overwrite" in err
    assert run_cli(evaluate.main, ["--read_from", run_dir, "--save_to", out, "--overwrite"], capsys)[0] == 0


def test_int8_tflite_scores_exactly_what_deploy_reported(tiny_run, capsys):
    run_dir, deploy_dir = tiny_run
    with open(os.path.join(deploy_dir, "deploy_report.json")) as f:
        report = json.load(f)
    code, _, _ = run_cli(evaluate.main, ["--read_from", run_dir, "--model_file", os.path.join(deploy_dir, "model.tflite")],
                              capsys)
    assert code == 0
    out = os.path.join(run_dir, "evaluation", "model_tflite")  # the default output folder
    with open(os.path.join(out, "metrics.json")) as f:
        result = json.load(f)
    assert result["kind"] == "tflite"
    assert result["items"] == report["validation"]["items"]
    assert result["top1"] == report["artifacts"]["model.tflite"]["accuracy"]
    assert 0.4 < result["top1"] < 1.0  # the noisy data keeps this comparison from being trivially 1 == 1


def test_a_copied_model_file_alone_is_evaluated_with_the_class_names_of_its_metadata(tiny_run, tmp_path, capsys):
    run_dir, deploy_dir = tiny_run
    lone = tmp_path / "lone"
    lone.mkdir()
    shutil.copy(os.path.join(deploy_dir, "model.tflite"), lone / "model.tflite")
    out = str(tmp_path / "eval")
    data = os.path.join(os.path.dirname(run_dir), "npy")
    code, _, _ = run_cli(evaluate.main, ["--model_file", str(lone / "model.tflite"), "--data", data,
                                         "--save_to", out], capsys)
    assert code == 0
    with open(os.path.join(out, "metrics.json")) as f:
        result = json.load(f)
    assert result["class_names"] == CLASSES and result["run"] is None and result["items"] == 120
    assert 0.4 < result["top1"] < 1.0  # the data's class folders matched to the model's names, not numbers
    code, _, err = run_cli(evaluate.main, ["--model_file", str(lone / "model.tflite")], capsys)
    assert code == 2 and "give --read_from RUN_DIR, or --model_file FILE with --data" in err


def test_evaluate_with_data_maps_its_classes_to_the_run_by_name(tiny_run, tmp_path, capsys):
    run_dir, _ = tiny_run
    # a labeled TFRecord whose labels.txt orders the classes differently and holds only two of the run's
    folder = tmp_path / "records"
    folder.mkdir()
    write_tfrecord(str(folder / "valid.tfrecords"), quickdraw_records(12, classes=2))
    (folder / "labels.txt").write_text("cat\napple\n")
    out = str(tmp_path / "eval")
    assert run_cli(evaluate.main, ["--read_from", run_dir, "--data", str(folder), "--save_to", out], capsys)[0] == 0
    with open(os.path.join(out, "metrics.json")) as f:
        result = json.load(f)
    assert result["items"] == 12 and result["data"]["source"] == "--data"
    supports = {name: row["support"] for name, row in result["per_class"].items()}
    assert supports == {"apple": 6, "bicycle": 0, "cat": 6}


@pytest.mark.parametrize("case", ["not_a_model", "unlabeled_data", "missing_run", "missing_model", "wrong_classes"])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(case, tiny_run, tmp_path, capsys):
    run_dir, _ = tiny_run
    out = tmp_path / "eval"
    args = ["--read_from", run_dir, "--save_to", str(out)]
    if case == "not_a_model":
        (tmp_path / "model.keras").write_text("not a model")
        args += ["--model_file", str(tmp_path / "model.keras")]
    elif case == "unlabeled_data":
        write_tfrecord(str(tmp_path / "test.tfrecords"), quickdraw_records(6, with_labels=False))
        args += ["--data", str(tmp_path / "test.tfrecords")]
    elif case == "missing_run":
        args = ["--read_from", str(tmp_path / "no_such_run"), "--save_to", str(out)]
    elif case == "missing_model":
        args += ["--model_file", "model.tflite"]  # a bare name: looked up in the run folder, not there
    elif case == "wrong_classes":
        write_npy(str(tmp_path / "other"), {"dog": 5, "fish": 5})
        args += ["--data", str(tmp_path / "other")]
    code, _, err = run_cli(evaluate.main, args, capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert not out.exists()
    assert not os.path.exists(os.path.join(run_dir, "evaluation", "model_keras"))
