"""The README's "Make it your own" followed in a full copy of the project, tests included: a new model is one file
plus its name in config.MODELS, and then the every-model tests, tune.py and --freeze_epochs all take it."""
import json
import os
import shutil
import subprocess
import sys

import keras
import numpy as np
import pytest

from conftest import ROOT, write_npy

# The usual mixed-precision head: Dense, then a float32 softmax Activation; both are the declared head.
MY_NET = '''"""Two convolutions and a hidden dense layer: a model added the way the README says."""
import keras
from keras import layers

from models import ModelSpec


def construct(input_shape, num_classes, width=8):
    inputs = keras.Input(shape=input_shape)
    x = layers.Rescaling(1 / 255)(inputs)
    x = layers.Conv2D(width, 3, activation="relu")(x)
    x = layers.MaxPooling2D()(x)
    x = layers.Conv2D(2 * width, 3, activation="relu")(x)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dense(16, activation="relu")(x)
    x = layers.Dense(num_classes, name="classifier")(x)
    outputs = layers.Activation("softmax", dtype="float32", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="my_net")


SPEC = ModelSpec(construct, input_size=(28, 28), channels=1, head=("classifier", "probabilities"),
                 test_size={"input_size": (28, 28), "kwargs": {"width": 4}})
'''
REGISTRY = "MODELS = models.registry([\n"
SKIP = shutil.ignore_patterns(".git", ".venv*", "venv", "data", "progress", "deploy", "__pycache__", ".pytest_cache")


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A copy of the project with models/my_net.py and its name in config.py, as the README says."""
    project = tmp_path_factory.mktemp("copy") / "project"
    shutil.copytree(ROOT, project, ignore=SKIP)
    (project / "models" / "my_net.py").write_text(MY_NET)
    source = (project / "config.py").read_text()
    assert REGISTRY in source
    (project / "config.py").write_text(source.replace(REGISTRY, REGISTRY + '    "my_net",\n'))
    return project


def run(project, *command, timeout=600):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONUNBUFFERED="1")
    env.pop("REAL_DATA_DIR", None)
    done = subprocess.run([sys.executable, *command], cwd=project, env=env, text=True, timeout=timeout,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert done.returncode == 0, done.stdout[-3000:]
    return done.stdout


def test_the_every_model_tests_collect_and_pass_for_the_new_model(project):
    out = run(project, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider", "-k", "my_net",
              "tests/test_models.py", "tests/test_train.py", "tests/test_deploy.py")
    passed = [line.split(" ", 1)[1] for line in out.splitlines() if line.startswith("PASSED ")]
    contract = [test for test in passed if test.startswith("tests/test_models.py::") and "[my_net-" in test]
    assert len(contract) == 10, out[-3000:]  # five contract tests, on 1 and 3 channels
    for test in ("tests/test_models.py::test_train_summary_prints_the_model_at_its_default_input_and_trains_nothing"
                 "[my_net]",
                 "tests/test_train.py::test_every_registered_model_trains_an_epoch_and_fills_its_run_folder[my_net]",
                 "tests/test_deploy.py::test_every_registered_model_converts_to_a_full_int8_edgetpu_ready_model"
                 "[my_net]"):
        assert test in passed, out[-3000:]
    assert "failed" not in out.strip().splitlines()[-1]


def test_tune_runs_a_trial_of_the_new_model_on_its_derived_space(project, tmp_path):
    data = write_npy(str(tmp_path / "npy"), {"a": 30, "b": 30})
    save_to = str(tmp_path / "tune")
    run(project, "tune.py", "--model", "my_net", "--trials", "1", "--data", data, "--num_epochs", "1",
        "--save_to", save_to)
    best = json.load(open(os.path.join(save_to, "best.json")))
    assert best["settings"]["model"] == "my_net" and set(best["params"]) == {"learning_rate", "batch_size", "jitter"}


def test_freeze_epochs_train_the_declared_head_and_keep_the_base(project, tmp_path):
    data = write_npy(str(tmp_path / "npy"), {"a": 30, "b": 30})
    pretrained, fine_tuned = str(tmp_path / "pretrained"), str(tmp_path / "fine_tuned")
    flags = ["--model", "my_net", "--data", data, "--batch_size", "8"]
    run(project, "train.py", *flags, "--num_epochs", "1", "--save_to", pretrained)
    run(project, "train.py", *flags, "--from_ckpt", pretrained, "--freeze_epochs", "1", "--num_epochs", "2",
        "--keep_checkpoints", "2", "--save_to", fine_tuned)
    start = keras.saving.load_model(os.path.join(pretrained, "best.keras"), compile=False)
    frozen = keras.saving.load_model(os.path.join(fine_tuned, "checkpoints", "epoch_001.keras"), compile=False)
    unfrozen = keras.saving.load_model(os.path.join(fine_tuned, "checkpoints", "epoch_002.keras"), compile=False)

    def weights(model, names):
        return [keras.ops.convert_to_numpy(w) for name in names for w in model.get_layer(name).weights]

    def same(a, b):
        return all(np.array_equal(x, y) for x, y in zip(a, b))

    base = [layer.name for layer in start.layers if layer.weights and layer.name != "classifier"]
    assert len(base) == 3  # two convolutions and the hidden dense layer
    assert same(weights(start, base), weights(frozen, base))
    assert not same(weights(start, ["classifier"]), weights(frozen, ["classifier"]))
    assert not same(weights(frozen, base), weights(unfrozen, base))
