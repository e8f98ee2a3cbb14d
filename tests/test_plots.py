"""plots.py: training curves, the confusion matrix and the jitter preview are written as sensible PNGs."""
import json
import os

import numpy as np
import pytest
from PIL import Image

import callbacks
import plots
from conftest import run_cli

NINE = ["apple", "bicycle", "bowtie", "cat", "diamond", "eye", "fish", "lollipop", "rainbow"]


def png_size(path):
    with Image.open(path) as image:
        image.verify()  # a whole, valid PNG
    with Image.open(path) as image:
        assert image.format == "PNG"
        return image.size


def write_history(run_dir, epochs=3):
    os.makedirs(run_dir, exist_ok=True)
    with open(os.path.join(run_dir, "history.csv"), "w") as f:  # as Keras' CSVLogger writes it
        f.write("epoch,accuracy,learning_rate,loss,val_accuracy,val_loss\n")
        for epoch in range(epochs):
            f.write(f"{epoch},{0.5 + 0.1 * epoch},0.001,{1.0 - 0.2 * epoch},{0.45 + 0.1 * epoch},{1.1 - 0.2 * epoch}\n")
    return run_dir


def test_training_curves_from_a_tiny_history(tmp_path):
    run_dir = write_history(str(tmp_path / "run"))
    path = plots.training_curves(run_dir)
    assert path == os.path.join(run_dir, "curves.png")
    width, height = png_size(path)
    assert 600 <= width <= 2000 and 300 <= height <= 1200 and width > height  # two panels side by side
    history = plots.history_columns(callbacks.read_history(run_dir))
    assert list(history["epoch"]) == [0, 1, 2] and "val_loss" in history


def test_training_curves_without_a_finished_epoch_write_nothing(tmp_path):
    assert plots.training_curves(str(tmp_path)) is None
    (tmp_path / "history.csv").write_text("epoch,accuracy,loss,val_accuracy,val_loss\n")
    assert plots.training_curves(str(tmp_path)) is None
    assert not (tmp_path / "curves.png").exists()


def test_curves_command(tmp_path, capsys):
    run_dir = write_history(str(tmp_path / "run"), epochs=1)
    assert run_cli(plots.main, ["curves", "--read_from", run_dir], capsys)[0] == 0
    png_size(os.path.join(run_dir, "curves.png"))
    code, _, err = run_cli(plots.main, ["curves", "--read_from", str(tmp_path / "none")], capsys)
    assert code == 2 and err.startswith("error: ") and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("count", [2, 9, 60])
def test_confusion_matrix_png_grows_with_the_class_count(count, tmp_path):
    names = NINE if count == 9 else [f"class_{n}" for n in range(count)]
    rng = np.random.default_rng(0)
    matrix = rng.integers(0, 5, (count, count)) + np.diag(np.full(count, 40))
    matrix[:, 0] = 0  # a class never predicted, and a row that sums to 0 are both fine
    matrix[1] = 0
    path = plots.confusion_matrix_png(matrix, names, str(tmp_path / "cm.png"), "title")
    width, height = png_size(path)
    assert 400 <= width <= 4500 and 400 <= height <= 4500
    if count == 60:
        small = png_size(plots.confusion_matrix_png(matrix[:9, :9], NINE, str(tmp_path / "nine.png"), "t"))
        assert width > 2 * small[0]


def test_confusion_matrix_png_rejects_a_matrix_that_does_not_fit_the_names(tmp_path):
    with pytest.raises(ValueError):
        plots.confusion_matrix_png(np.zeros((3, 3)), ["a", "b"], str(tmp_path / "cm.png"))


def test_jitter_preview_of_drawings(npy_dir, tmp_path, capsys):
    path = str(tmp_path / "jitter.png")
    assert run_cli(plots.main, ["jitter", "--data", npy_dir, "--count", "4", "--save_to", path], capsys)[0] == 0
    width, height = png_size(path)
    assert width >= 400 and height >= 4 * 100  # four rows of original + three jittered versions


def test_jitter_preview_of_colour_photos_at_a_model_size(image_tree, tmp_path, capsys):
    path = str(tmp_path / "jitter.png")
    args = ["jitter", "--data", image_tree, "--input_size", "48,64", "--channels", "3", "--count", "2",
            "--versions", "2", "--save_to", path]
    assert run_cli(plots.main, args, capsys)[0] == 0
    width, height = png_size(path)
    assert width > height  # 2 rows of 3 wide pictures
    code, _, err = run_cli(plots.main, args, capsys)  # the PNG exists now
    assert code == 2 and "--overwrite" in err
    assert run_cli(plots.main, args + ["--overwrite"], capsys)[0] == 0


def test_jitter_preview_of_random_resized_crops_says_so(image_tree, tmp_path, capsys, monkeypatch):
    titles = []
    preview = plots.jitter_preview
    monkeypatch.setattr(plots, "jitter_preview", lambda *a: titles.append((a[7], a[8])) or preview(*a))
    path = str(tmp_path / "jitter.png")
    args = ["jitter", "--data", image_tree, "--input_size", "48,48", "--channels", "3", "--count", "2",
            "--jitter_kind", "crops", "--save_to", path]
    assert run_cli(plots.main, args, capsys)[0] == 0
    assert titles[0][0] == "crops" and titles[0][1].startswith("jitter preview (crops augmenter)")
    png_size(path)


def test_jitter_preview_takes_data_size_and_channels_from_a_run(npy_dir, tmp_path, capsys):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    settings = {"model": "logistic", "model_kwargs": {}, "input_size": [20, 20], "channels": 1,
                "class_names": ["apple", "bicycle", "cat"], "data": [npy_dir], "data_format": "quickdraw_npy",
                "seed": 0, "train_ratio": 0.8, "loss": "crossentropy", "optimizer": "adam",
                "learning_rate": 0.001, "num_epochs": 1, "batch_size": 8}
    (run_dir / "config.json").write_text(json.dumps(settings))
    path = str(tmp_path / "jitter.png")
    assert run_cli(plots.main, ["jitter", "--read_from", str(run_dir), "--count", "3", "--save_to", path], capsys)[0] == 0
    png_size(path)


def test_jitter_without_data_or_a_run_previews_the_sample_train_py_uses(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert run_cli(plots.main, ["jitter", "--count", "2", "--save_to", "x.png"], capsys)[0] == 0
    png_size(str(tmp_path / "x.png"))
    assert sorted(os.listdir(tmp_path / "data" / "doodles"))[:2] == ["arrow.npy", "circle.npy"]


def test_spread_sample_cycles_over_the_classes():
    labels = np.array([0] * 10 + [1] * 10 + [2] * 2)
    chosen = plots.spread_sample(labels, 7, seed=0)
    assert len(chosen) == len(set(chosen)) == 7
    assert sorted(labels[chosen][:3]) == [0, 1, 2] and list(labels[chosen]).count(2) == 2
    assert len(plots.spread_sample(labels, 100, seed=0)) == len(labels)
