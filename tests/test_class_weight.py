"""--class_weight: on a folder made imbalanced on purpose, weighting the loss lifts the rare class's recall (in plain
training and in the frozen epochs on cached features); the weights are the inverse class shares; config.json records
the setting and a run folder from before it still resumes; each bad value is one error line."""
import json
import os

import numpy as np
import pytest

import config
import train
from conftest import exit_code, run_cli
from reader import DataReader
from support import class_weight

COUNTS = {"common": 400, "rare": 40}
# Two classes told apart only by the brightness of the whole image, whose ranges overlap (mean 100 and 150, spread
# 30): where they overlap, an unweighted loss does best by answering the class that is ten times more common.
MEANS = {"common": 100, "rare": 150}


def brightness_npy(folder, counts, seed):
    """.npy files of 28x28 grey images: one brightness per image, from its class's range, plus pixel noise."""
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    for name, count in counts.items():
        level = rng.normal(MEANS[name], 30, size=(count, 1))
        np.save(os.path.join(folder, f"{name}.npy"),
                np.clip(level + rng.normal(0, 20, size=(count, 784)), 0, 255).astype(np.uint8))
    return folder


@pytest.fixture(scope="module")
def imbalanced(tmp_path_factory):
    return brightness_npy(str(tmp_path_factory.mktemp("imbalanced")), COUNTS, seed=0)


@pytest.fixture(scope="module")
def balanced_test_set(tmp_path_factory):
    """300 fresh images of each class, scored once per model."""
    reader = DataReader(brightness_npy(str(tmp_path_factory.mktemp("test")), {"common": 300, "rare": 300}, seed=1))
    return np.stack([reader.load(i) for i in range(len(reader))]).astype("float32"), reader.labels


def recalls(model, test_set):
    images, labels = test_set
    predicted = model.predict(images, verbose=0).argmax(axis=1)
    return [float(np.mean(predicted[labels == c] == c)) for c in range(len(COUNTS))]


@pytest.mark.parametrize("flags", [
    ["--model", "logistic"],
    # Every epoch frozen and no jitter: the head trains on the frozen base's cached features (transfer.py).
    ["--model", "quickdraw_cnn", "--model_kwargs", '{"filters": [8, 16], "dense_units": 16}', "--freeze_epochs", "10"],
], ids=["fit", "frozen epochs on cached features"])
def test_balanced_weights_lift_the_recall_of_the_rare_class(flags, imbalanced, balanced_test_set, tmp_path, capsys):
    common = ["--data", imbalanced, "--num_epochs", "10", "--batch_size", "32", "--learning_rate", "0.01", *flags]
    plain = train.main([*common, "--save_to", str(tmp_path / "plain")])
    weighted = train.main([*common, "--save_to", str(tmp_path / "weighted"), "--class_weight", "balanced"])
    out = capsys.readouterr().out
    assert ("head alone, on features cached" in out) == ("--freeze_epochs" in flags)
    (plain_common, plain_rare), (weighted_common, weighted_rare) = recalls(plain, balanced_test_set), \
        recalls(weighted, balanced_test_set)
    # Measured here, both ways: the rare class's recall 0.00 unweighted, 0.88 weighted; the common class's 1.00, and
    # 0.47 (fit) or 0.79 (frozen) weighted.
    assert plain_rare <= 0.2 and weighted_rare >= 0.6
    assert (weighted_common + weighted_rare) / 2 >= (plain_common + plain_rare) / 2 + 0.1  # balanced accuracy


def test_balanced_weights_are_the_inverse_class_shares_and_a_map_names_classes():
    labels = np.array([0] * 30 + [1] * 10 + [3] * 20)  # class 2 has no training items
    names = ["a", "b", "c", "d"]
    weights = class_weight.per_class("balanced", names, labels)
    assert weights == pytest.approx({0: 60 / (3 * 30), 1: 60 / (3 * 10), 3: 60 / (3 * 20)})
    assert sum(weights[c] * n for c, n in ((0, 30), (1, 10), (3, 20))) == pytest.approx(60)  # the same total weight
    assert class_weight.per_class({"b": 2.5}, names, labels) == {0: 1.0, 1: 2.5, 2: 1.0, 3: 1.0}
    assert class_weight.per_class(None, names, labels) is None
    assert class_weight.describe(weights, names) == "a 0.667, b 2, d 1"


def test_the_setting_is_in_config_json_and_weighs_what_train_prints(imbalanced, tmp_path, capsys):
    run_dir = str(tmp_path / "run")
    args = ["--data", imbalanced, "--save_to", run_dir, "--model", "logistic", "--num_epochs", "1"]
    assert exit_code(train.main, [*args, "--class_weight", '{"rare": 3}']) == 0
    assert config.read(run_dir).class_weight == {"rare": 3.0}
    assert "loss weight of each class (--class_weight): common 1, rare 3\n" in capsys.readouterr().out
    assert exit_code(train.main, [*args, "--overwrite"]) == 0
    assert config.read(run_dir).class_weight is None and "--class_weight" not in capsys.readouterr().out


def test_a_run_folder_from_before_class_weight_still_resumes(imbalanced, tmp_path):
    run_dir = tmp_path / "run"
    assert exit_code(train.main, ["--data", imbalanced, "--save_to", str(run_dir), "--model", "logistic",
                                  "--num_epochs", "1"]) == 0
    settings = json.loads((run_dir / "config.json").read_text())
    del settings["class_weight"]
    (run_dir / "config.json").write_text(json.dumps(settings))
    assert exit_code(train.main, ["--save_to", str(run_dir), "--resume", "--num_epochs", "2"]) == 0
    assert len((run_dir / "history.csv").read_text().strip().splitlines()) == 1 + 2


@pytest.mark.parametrize("value, message", [
    ("heavy", "argument --class_weight: must be 'balanced' or a JSON object of class name: positive weight, "
              "e.g. '{\"cat\": 2.0, \"dog\": 1.0}'; got 'heavy'"),
    ('{"rare": 0}', "must be 'balanced' or a JSON object"),
    ('{"rare": "3"}', "must be 'balanced' or a JSON object"),
    ("[2, 1]", "must be 'balanced' or a JSON object"),
    ('{"kitten": 2, "rare": 3}', "--class_weight names kitten, which the data has no class of; its classes: common, "
                                 "rare"),
], ids=["word", "zero", "string", "list", "unknown class"])
def test_a_bad_value_is_one_error_line_that_writes_nothing(value, message, imbalanced, tmp_path, capsys):
    run_dir = tmp_path / "run"
    code, _, err = run_cli(train.main, ["--data", imbalanced, "--save_to", str(run_dir), "--model", "logistic",
                                        "--class_weight", value], capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines
    assert not run_dir.exists()
