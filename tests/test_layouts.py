"""A run trained on one layout of the data, validated, evaluated and used on another: Kaggle's flat
`cat.1.png` files teach the classes cat and dog; folders named `Cats/`, `dogs/`, `kitten/` hold the rest."""
import contextlib
import csv
import io
import json
import os

import numpy as np
import pytest
from PIL import Image

import evaluate
import predict
import train
from conftest import drawing, run_cli

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy:DeprecationWarning")


def class_folders(root, drawn_as, count, seed):
    """One folder per name, each holding `count` drawings of the class index given for it."""
    rng = np.random.default_rng(seed)
    for name, label in drawn_as.items():
        os.makedirs(os.path.join(root, name))
        for n in range(count):
            Image.fromarray(drawing(rng, label)).save(os.path.join(root, name, f"{n}.png"))
    return str(root)


@pytest.fixture(scope="module")
def cat_dog_run(tmp_path_factory):
    """(run folder, what training printed): trained on flat cat.N.png / dog.N.png, validated on Cats/, dogs/."""
    base = tmp_path_factory.mktemp("layouts")
    flat = base / "flat"
    flat.mkdir()
    rng = np.random.default_rng(0)
    for label, name in enumerate(["cat", "dog"]):
        for n in range(24):
            Image.fromarray(drawing(rng, label)).save(flat / f"{name}.{n}.png")
    val = class_folders(base / "val", {"Cats": 0, "dogs": 1}, 6, seed=1)
    run_dir = str(base / "run")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        train.main(["--data", str(flat), "--val_data", val, "--save_to", run_dir, "--model", "logistic",
                    "--num_epochs", "4", "--batch_size", "8", "--learning_rate", "0.05", "--keep_checkpoints", "0"])
    return run_dir, printed.getvalue()


def evaluated(run_dir, args, out, capsys):
    """evaluate.py on --data: (stdout, metrics.json as a dict)."""
    code, stdout, err = run_cli(evaluate.main, ["--read_from", run_dir, "--save_to", str(out), *args], capsys)
    assert code == 0, err
    with open(os.path.join(out, "metrics.json")) as f:
        return stdout, json.load(f)


def test_training_validates_on_class_folders_named_in_another_case_and_number(cat_dog_run):
    run_dir, printed = cat_dog_run
    assert "classes matched: Cats -> cat, dogs -> dog" in printed.splitlines()
    with open(os.path.join(run_dir, "config.json")) as f:
        assert json.load(f)["class_names"] == ["cat", "dog"]


def test_evaluate_scores_cats_and_dogs_folders_for_a_cat_dog_run(cat_dog_run, tmp_path, capsys):
    run_dir, _ = cat_dog_run
    data = class_folders(tmp_path / "test_set", {"cats": 0, "dogs": 1}, 8, seed=2)
    stdout, result = evaluated(run_dir, ["--data", data], tmp_path / "eval", capsys)
    assert "classes matched: cats -> cat, dogs -> dog" in stdout.splitlines()
    assert result["class_names"] == ["cat", "dog"]
    assert {name: row["support"] for name, row in result["per_class"].items()} == {"cat": 8, "dog": 8}
    assert result["top1"] >= 0.9  # labels went to the right classes: a swap would score near 0


def test_class_map_names_the_pairs_that_do_not_match(cat_dog_run, tmp_path, capsys):
    run_dir, _ = cat_dog_run
    data = class_folders(tmp_path / "test_set", {"kitten": 0, "dogs": 1}, 8, seed=3)
    stdout, result = evaluated(run_dir, ["--data", data], tmp_path / "without", capsys)
    assert "note: skipping 8 item(s) of classes the run was not trained on: kitten" in stdout
    assert result["items"] == 8 and result["per_class"]["dog"]["support"] == 8
    stdout, result = evaluated(run_dir, ["--data", data, "--class_map", "kitten=cat"], tmp_path / "with", capsys)
    assert "classes matched: dogs -> dog, kitten -> cat" in stdout.splitlines()
    assert {name: row["support"] for name, row in result["per_class"].items()} == {"cat": 8, "dog": 8}
    assert result["top1"] >= 0.9


def test_predict_names_cats_and_dogs_folders_with_the_run_classes(cat_dog_run, tmp_path, capsys):
    run_dir, _ = cat_dog_run
    data = class_folders(tmp_path / "photos", {"cats": 0, "dogs": 1}, 8, seed=4)
    output = str(tmp_path / "predictions.csv")
    code, _, err = run_cli(predict.main, ["--read_from", run_dir, "--data", data, "--output_file", output], capsys)
    assert code == 0, err
    with open(output, newline="") as f:
        rows = list(csv.reader(f))[1:]
    assert len(rows) == 16 and {row[2] for row in rows} == {"cat", "dog"}
    folder_of = {row[0]: row[0].split(os.sep)[1] for row in rows}  # photos/cats/0.png -> cats
    assert np.mean([folder_of[row[0]] == row[2] + "s" for row in rows]) >= 0.9


@pytest.mark.parametrize("case, message", [
    ("malformed", "argument --class_map: must be DATA=RUN pairs separated by commas, e.g. kitten=cat,puppy=dog; "
                  "got 'kitten'"),
    ("twice", "argument --class_map: maps kitten more than once; give each data class one run class"),
    ("unknown_run_class", "--class_map: 'wolf' is not a class of the run; it has: cat, dog"),
    ("unknown_data_class", "--class_map: 'lions' is not a class of the data; it has: dogs, kitten"),
    ("without_data", "--class_map maps the classes of --data; give --data too"),
    ("nothing_matches", "none of the data's classes (kitten, puppy) is one the run was trained on: cat, dog; "
                        "name the pairs with --class_map DATA=RUN,..."),
])
def test_bad_class_maps_are_one_error_line_exit_2_and_write_nothing(case, message, cat_dog_run, tmp_path, capsys):
    run_dir, _ = cat_dog_run
    names = {"kitten": 0, "puppy": 1} if case == "nothing_matches" else {"kitten": 0, "dogs": 1}
    data = ["--data", class_folders(tmp_path / "data", names, 2, seed=5)]
    class_map = {"malformed": "kitten", "twice": "kitten=cat,kitten=dog", "unknown_run_class": "kitten=wolf",
                 "unknown_data_class": "lions=cat", "without_data": "kitten=cat"}.get(case)
    args = (["--class_map", class_map] if class_map else []) + ([] if case == "without_data" else data)
    out = tmp_path / "eval"
    code, _, err = run_cli(evaluate.main, ["--read_from", run_dir, "--save_to", str(out), *args], capsys)
    lines = err.strip().splitlines()
    assert code == 2 and lines[-1] == f"error: {message}"
    assert all(line.startswith("indexed ") for line in lines[:-1])  # at most the data's counts line before it
    assert not out.exists() and not os.path.exists(os.path.join(run_dir, "evaluation"))
