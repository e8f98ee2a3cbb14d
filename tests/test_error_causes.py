"""A user error is one line; with KERAS_TEMPLATE_VERBOSE=1 every tool also prints the library failure behind it.

Each tool runs as a user runs it, in a fresh process, on a model file that is not a model: the library's own
exception (Keras' or LiteRT's) must appear in the chained traceback, above the one `error:` line.
"""
import os
import subprocess
import sys

import pytest

import config
from conftest import ROOT, write_npy
from support import verbose

CAUSE_HEADER = "The above exception was the direct cause of the following exception:"


@pytest.fixture(scope="module")
def broken(tmp_path_factory):
    """Tiny drawings, model files that are not models, and a run folder whose best.keras is one of them."""
    folder = tmp_path_factory.mktemp("broken")
    data = write_npy(str(folder / "npy"), {"apple": 10, "bicycle": 10})
    for name in ("model.keras", "model.tflite"):
        (folder / name).write_bytes(b"these bytes are not a model")
    run = folder / "run"
    run.mkdir()
    (run / "best.keras").write_bytes(b"these bytes are not a model")
    config.save(str(run), config.RunConfig(data=[data], class_names=["apple", "bicycle"]))
    return {"data": data, "keras": str(folder / "model.keras"), "tflite": str(folder / "model.tflite"),
            "run": str(run), "out": str(folder / "out")}


COMMANDS = {
    "train": lambda b: ["train.py", "--data", b["data"], "--from_ckpt", b["keras"], "--save_to", b["out"]],
    "deploy": lambda b: ["deploy.py", "--read_from", b["run"], "--save_to", b["out"]],
    "evaluate": lambda b: ["evaluate.py", "--model_file", b["keras"], "--data", b["data"]],
    "predict": lambda b: ["predict.py", "--model_file", b["tflite"], "--data", b["data"],
                          "--output_file", os.path.join(b["out"], "p.csv")],
    "serve": lambda b: ["serve.py", "--model_file", b["tflite"], "--port", "0"],
}


def run_tool(command, loud):
    env = {k: v for k, v in os.environ.items() if k != verbose.VARIABLE}
    if loud:
        env[verbose.VARIABLE] = "1"
    return subprocess.run([sys.executable, *command], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("tool", sorted(COMMANDS))
def test_a_library_failure_is_one_line_and_its_chained_traceback_when_verbose(broken, tool):
    if tool == "serve":
        pytest.importorskip("uvicorn", reason="serve.py needs requirements-serve.txt")
    command = COMMANDS[tool](broken)
    quiet = run_tool(command, loud=False)
    assert quiet.returncode == 2 and quiet.stderr.count("\n") == 1 and quiet.stderr.startswith("error: cannot load")
    loud = run_tool(command, loud=True)
    assert loud.returncode == 2 and loud.stderr.splitlines()[-1] == quiet.stderr.strip()
    traceback = loud.stderr[loud.stderr.rindex("Traceback (most recent call last):"):]
    assert CAUSE_HEADER in loud.stderr and "UserError: cannot load" in traceback
    cause = loud.stderr[:loud.stderr.index(CAUSE_HEADER)]
    assert "Traceback (most recent call last):" in cause and "errors.UserError" not in cause
    assert not os.path.exists(broken["out"])
