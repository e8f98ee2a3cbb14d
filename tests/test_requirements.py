"""A clone with only requirements.txt: tune.py, serve.py and the JAX backend say in one line which file to install."""
import os
import subprocess
import sys

import pytest

from conftest import ROOT


@pytest.fixture
def hidden(tmp_path):
    """A folder of stand-ins for optional packages that fail as a missing package does, first on PYTHONPATH."""
    for name in ("optuna", "uvicorn", "jax"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text(
            f"raise ModuleNotFoundError(\"No module named '{name}'\", name='{name}')\n")
    return str(tmp_path)


@pytest.mark.parametrize("command, env, words", [
    (["tune.py", "--help"], {}, "tune.py needs optuna, which is not installed here; install it with pip install -r "
                                "requirements-tune.txt"),
    (["tune.py", "--save_to", "x"], {}, "tune.py needs optuna, which is not installed here; install it with pip "
                                        "install -r requirements-tune.txt"),
    (["serve.py", "--help"], {}, "serve.py needs uvicorn, which is not installed here; install it with pip install "
                                 "-r requirements-serve.txt"),
    (["train.py", "--help"], {"KERAS_BACKEND": "jax"}, "KERAS_BACKEND=jax needs jax, which is not installed here; "
                                                       "install it with pip install -r requirements-distributed.txt"),
])
def test_a_missing_optional_requirement_is_one_line_and_exit_2(command, env, words, hidden, tmp_path):
    done = subprocess.run([sys.executable, *command], cwd=ROOT, text=True, timeout=120, capture_output=True,
                          env=dict(os.environ, PYTHONPATH=hidden, TF_CPP_MIN_LOG_LEVEL="3", **env))
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.splitlines() == [f"error: {words}"], done.stderr
