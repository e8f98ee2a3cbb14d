"""The README's "From Python" snippet, exactly as it stands, runs on the embedded sample."""
import os
import re
import subprocess
import sys

from conftest import ROOT, user_environment


def readme_snippet():
    with open(os.path.join(ROOT, "README.md")) as f:
        section = f.read().split("## From Python", 1)[1]
    return re.search(r"```python\n(.*?)```", section, flags=re.S).group(1)


def test_the_readme_python_snippet_trains_deploys_evaluates_and_predicts(tmp_path):
    code = "from support import startup\nstartup.setup()\n" + readme_snippet()
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=900,
                          env={**user_environment(), "PYTHONPATH": ROOT})
    assert done.returncode == 0, done.stderr[-3000:]
    assert sorted(os.listdir(tmp_path / "deploy" / "notebook")) == [
        "deploy_report.json", "labels.txt", "model.h5", "model.tflite", "saved_model"]
    assert (tmp_path / "progress" / "notebook" / "evaluation" / "model_tflite" / "metrics.json").is_file()
    with open(tmp_path / "predictions.csv") as f:
        assert len(f.read().splitlines()) == 1 + 3000  # every drawing of the sample, after the header
    first = eval(done.stdout.strip().splitlines()[-1])  # the snippet's last line prints the first row
    assert first["id"] == "arrow/0" and set(first) == {"id", "class", "name", "prob"}
