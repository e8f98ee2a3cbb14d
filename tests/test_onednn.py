"""The oneDNN crash guard: photo_cnn's narrow shortcuts train on every CPU, and any other model with the crashing
shape is refused in one line where the crash would happen (onednn.py)."""
import os
import subprocess
import sys

import keras
import pytest

import config
import train
from conftest import ROOT, exit_code, write_npy
from models import ModelSpec
from support import onednn


def narrow_shortcut(input_shape, num_classes, stride=2, channels=8, filters=16):
    """A stem of `channels` filters, then a 1x1 convolution of `stride` to `filters`: the shape that crashes."""
    inputs = keras.Input(shape=input_shape)
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv2D(channels, 3, padding="same", name="stem")(x)
    x = keras.layers.Conv2D(filters, 1, strides=stride, name="shortcut")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="classifier")(x)
    return keras.Model(inputs, outputs, name="narrow_shortcut")


@pytest.mark.parametrize("kwargs, found", [
    ({}, ["shortcut"]),
    ({"stride": 1}, []),
    ({"channels": 16}, []),
    ({"filters": 24}, []),
])
def test_the_crashing_shape_is_found_and_nothing_else(kwargs, found):
    model = narrow_shortcut((16, 16, 1), 3, **kwargs)
    assert [layer.name for layer in onednn.crashing_convolutions(model)] == found
    nested = keras.Sequential([keras.Input((16, 16, 1)), model])
    assert [layer.name for layer in onednn.crashing_convolutions(nested)] == found


def test_no_registered_model_has_the_crashing_shape():
    for name, spec in config.MODELS.items():
        for channels in (1, 3):
            assert list(onednn.crashing_convolutions(spec.test_model(3, channels))) == [], name


def test_avx512_is_read_from_the_cpu_flags(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512bw\n")
    assert onednn.avx512_cpu(str(cpuinfo))
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 fma\n")
    assert not onednn.avx512_cpu(str(cpuinfo))
    assert not onednn.avx512_cpu(str(tmp_path / "missing"))


@pytest.fixture
def registered(monkeypatch):
    spec = ModelSpec(narrow_shortcut, input_size=(16, 16), channels=1, head=("classifier",),
                     test_size={"input_size": (16, 16)})
    monkeypatch.setitem(config.MODELS, "narrow_shortcut", spec)
    monkeypatch.setattr(onednn, "avx512_cpu", lambda: True)


def test_train_refuses_the_shape_in_one_line_naming_the_switch_and_writes_nothing(registered, tmp_path, capsys):
    data = write_npy(str(tmp_path / "npy"), {"a": 20, "b": 20})
    run_dir = tmp_path / "run"
    assert exit_code(train.main, ["--data", data, "--model", "narrow_shortcut", "--save_to", str(run_dir)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: narrow_shortcut's layer shortcut (1x1 convolution, stride 2, "
                                               "8 -> 16 channels) crashes TensorFlow's oneDNN kernel"), err
    assert "TF_ENABLE_ONEDNN_OPTS=0" in err[0] and not run_dir.exists()


def test_with_onednn_off_the_shape_is_let_through(registered, monkeypatch):
    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "0")
    onednn.check(narrow_shortcut((16, 16, 1), 3))  # no UserError


@pytest.mark.parametrize("channels", ["1", "3"])
def test_the_small_stem_photo_cnn_trains_as_a_user_runs_it(channels, tmp_path):
    """The reproduction that aborted on an AVX-512 AMD EPYC: 99 training items, so the last batch holds 3."""
    data = write_npy(str(tmp_path / "npy"), {"a": 40, "b": 40, "c": 40})
    done = subprocess.run([sys.executable, "train.py", "--data", data, "--model", "photo_cnn", "--input_size", "32,32",
                           "--channels", channels, "--model_kwargs", '{"stem": 8, "filters": [8, 16]}',
                           "--num_epochs", "1", "--batch_size", "16", "--save_to", str(tmp_path / "run")],
                          cwd=ROOT, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"), text=True, timeout=300,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert done.returncode == 0, done.stdout[-2000:]
    assert os.path.isfile(tmp_path / "run" / "best.keras")
