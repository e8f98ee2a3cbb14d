"""Importing a module of the template changes nothing; TensorFlow is imported only where it is used: train.py --help
needs none, and on the JAX backend a training run on local data runs where TensorFlow is not installed at all."""
import json
import os
import pkgutil
import subprocess
import sys

import pytest

import support
from conftest import ROOT, user_environment, write_npy

TOP_LEVEL = sorted(name[:-3] for name in os.listdir(ROOT) if name.endswith(".py"))
SUPPORT = sorted(f"support.{module.name}" for module in pkgutil.iter_modules(support.__path__))


def python(code, *args, **env):
    done = subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, env={**user_environment(), **env},
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_train_help_imports_no_tensorflow_and_no_keras():
    done = subprocess.run([sys.executable, "-X", "importtime", "train.py", "--help"], cwd=ROOT,
                          env=user_environment(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "--batch_size" in done.stdout
    imported = {line.split("|")[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    assert "config" in imported and not {name for name in imported if name.split(".")[0] in ("tensorflow", "keras")}


# What the template's modules import, imported first: their own changes at import are theirs, not the template's.
LIBRARIES = ["tensorflow", "keras", "optuna", "sqlalchemy", "starlette.applications", "uvicorn", "matplotlib.figure",
             "cv2", "PIL.Image", "tqdm", "ai_edge_litert.interpreter", "absl.logging", "tensorboard.compat.proto",
             "scipy.optimize"]
STATE = """
import json, os, sys, warnings
import numpy
for library in sys.argv[1].split(","):
    __import__(library)
def state():
    import matplotlib
    return {"environment": dict(os.environ), "finders": len(sys.meta_path), "filters": len(warnings.filters),
            "numpy": sorted(name for name in ("sctypes", "complex") if hasattr(numpy, name)),
            "matplotlib": matplotlib.get_backend()}
before = state()
for module in sys.argv[2:]:
    __import__(module)
print(json.dumps([before, state()]))
"""


@pytest.mark.parametrize("modules", [TOP_LEVEL, SUPPORT], ids=["top level", "support"])
def test_importing_a_module_changes_nothing(modules):
    out = python(STATE, ",".join(LIBRARIES), *modules, MPLBACKEND="svg")
    before, after = json.loads(out.strip().splitlines()[-1])
    assert after == before


WITHOUT_TENSORFLOW = """
import importlib.abc, sys

class NotInstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] == "tensorflow":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)

sys.meta_path.insert(0, NotInstalled())
sys.path.insert(0, sys.argv[1])
from support import startup
startup.setup()
import train
train.main(sys.argv[2:])
train.main([*sys.argv[2:4], "--resume", "--num_epochs", "3"])
print("tensorflow imported:", "tensorflow" in sys.modules)
"""


def test_jax_training_on_local_data_runs_where_tensorflow_is_not_installed(tmp_path):
    data = write_npy(str(tmp_path / "npy"), {"a": 30, "b": 30})
    run = tmp_path / "run"
    out = python(WITHOUT_TENSORFLOW, ROOT, "--save_to", str(run), "--data", data, "--model", "logistic",
                 "--num_epochs", "2", "--batch_size", "16", KERAS_BACKEND="jax")
    assert "tensorflow imported: False" in out
    assert len((run / "history.csv").read_text().strip().splitlines()) == 1 + 3
    assert len(os.listdir(run / "logs" / "validation")) == 3 and (run / "best.keras").is_file()
