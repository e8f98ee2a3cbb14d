"""Optional requirements: a tool whose extra packages are missing says which file installs them, in one line.

tune.py, serve.py and the JAX backend (multi-process training) need packages that requirements.txt leaves out.
Each checks before its first import of them, so `--help` too ends in one `error:` line and exit code 2 rather
than a ModuleNotFoundError traceback.
"""
import importlib
import os
import sys

BACKENDS = {"jax": "requirements-distributed.txt"}  # Keras backends beyond TensorFlow, and what installs them


def missing(modules):
    """The modules of `modules` that cannot be imported because they (not something they import) are absent."""
    absent = []
    for module in modules:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as error:
            if error.name and error.name.split(".")[0] == module.split(".")[0]:
                absent.append(module)
            else:
                raise
    return absent


def require(modules, requirements_file, needed_by):
    """Exit with one error line naming `requirements_file` when a module of `modules` is not installed."""
    absent = missing(modules)
    if absent:
        print(f"error: {needed_by} needs {', '.join(absent)}, which is not installed here; install it with "
              f"pip install -r {requirements_file}", file=sys.stderr)
        sys.exit(2)


def keras_backend():
    """The Keras backend this process runs on, as the environment chooses it, known without importing Keras."""
    return os.environ.get("KERAS_BACKEND", "tensorflow")


def require_keras_backend():
    """KERAS_BACKEND=jax needs JAX before Keras is first imported (Keras imports its backend as it loads)."""
    backend = keras_backend()
    if backend in BACKENDS:
        require([backend], BACKENDS[backend], f"KERAS_BACKEND={backend}")
