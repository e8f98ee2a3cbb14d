"""The layout a template user copies: what they edit at the top level, the machinery in support/, each module of
which its package docstring names, so the index a newcomer reads first stays the whole story."""
import os
import pkgutil

import support
from conftest import ROOT

# The design card's files, transfer.py, and the commands people run.
TOP_LEVEL = {"config", "reader", "datagen", "loss", "callbacks", "train", "deploy", "transfer", "evaluate", "predict",
             "serve", "tune", "plots", "doctor"}


def test_the_top_level_holds_what_a_user_edits_and_runs_only():
    modules = {name[:-3] for name in os.listdir(ROOT) if name.endswith(".py")}
    assert modules == TOP_LEVEL


def test_the_support_docstring_names_each_of_its_modules():
    listed = {line.split()[0] for line in support.__doc__.splitlines()[2:] if line.strip()}
    modules = {module.name for module in pkgutil.iter_modules(support.__path__)}
    assert modules <= listed, f"support/__init__.py does not name {sorted(modules - listed)}"
    assert "third_party/" in listed
