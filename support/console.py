"""A quiet console: every tool prints its own lines, Keras' progress, and real warnings, not library chatter.

Each command-line tool calls quiet() (through startup.setup()) before anything imports TensorFlow or Keras, because
the chatter starts at `import tensorflow`: TensorFlow 2.21 writes its oneDNN and cpu_feature_guard lines and absl's
"All log messages before absl::InitializeLog()" from C++ straight to file descriptor 2, whatever any log-level
variable says. So that import, whenever it comes, runs with the output descriptors held (`captured_output`,
through QuietImport), and TF_CPP_MIN_LOG_LEVEL=1, set before it, hides TensorFlow's later C++ info lines. Python
warnings known to be harmless here are silenced by their exact message, one by one; anything else still shows.

KERAS_TEMPLATE_VERBOSE=1 (verbose.py) turns all of this off, for debugging: every library line comes back.
"""
import contextlib
import importlib.abc
import importlib.util
import logging
import os
import re
import sys
import tempfile
import warnings

from support import verbose


# Python warnings that say nothing to a user of this template, each for a reason:
HARMLESS_WARNINGS = (
    # The int8 converter asks for the legacy mean/std of a uint8 input; calibration (representative_dataset) sets
    # the input's scale and zero point instead, as deploy.py's accuracy check confirms.
    "Statistics for quantized inputs were expected, but not specified; continuing anyway.",
)
HARMLESS_LOG_MESSAGES = (
    # deploy.py writes model.h5 because the user asks for it (--formats h5); the run keeps the native best.keras.
    "You are saving your model as an HDF5 file via `model.save()`",
)


@contextlib.contextmanager
def captured_output():
    """Hold everything written to stdout and stderr while the block runs; show it only if the block fails.

    C++ libraries write to file descriptors 1 and 2 directly, past sys.stdout and Python's logging, so the
    descriptors themselves point at a temporary file meanwhile; Python's own streams follow them there.
    """
    if verbose.ON:
        yield
        return
    with tempfile.TemporaryFile(mode="w+", encoding="utf-8", errors="replace") as held:
        sys.stdout.flush()
        sys.stderr.flush()
        originals = os.dup(1), os.dup(2)
        failed = True
        try:
            os.dup2(held.fileno(), 1)
            os.dup2(held.fileno(), 2)
            with contextlib.redirect_stdout(held), contextlib.redirect_stderr(held):
                yield
            failed = False
        finally:
            held.flush()
            for descriptor, original in enumerate(originals, start=1):
                os.dup2(original, descriptor)
                os.close(original)
            restore_log_streams(held)
            if failed:  # what the libraries said is the explanation now
                held.seek(0)
                sys.stderr.write(held.read())


def restore_log_streams(held):
    """Log handlers made inside the block (TensorFlow's logger makes its own at import) write to the stream they were
    given, the held file, which closes after it: they write to stderr again."""
    loggers = [logging.getLogger(), *(logging.getLogger(name) for name in logging.root.manager.loggerDict)]
    for handler in (handler for logger in loggers for handler in logger.handlers):
        if isinstance(handler, logging.StreamHandler) and handler.stream is held:
            handler.setStream(sys.stderr)


def _not_harmless(record):
    return not record.getMessage().startswith(HARMLESS_LOG_MESSAGES)


def silence_harmless_messages():
    """Drop the warnings and log messages listed above, matched by their exact text; every other one shows."""
    from absl import logging as absl_logging  # Keras logs through absl's logger

    absl_logging.get_absl_logger().addFilter(_not_harmless)
    for message in HARMLESS_WARNINGS:
        warnings.filterwarnings("ignore", message=re.escape(message) + r"\Z")


class QuietImport(importlib.abc.MetaPathFinder):
    """Has TensorFlow's first import, whoever makes it and whenever, run inside captured_output: a tool that never
    needs TensorFlow (--help, the JAX backend on local data) never imports it, and one that does stays quiet."""

    def find_spec(self, name, path, target=None):
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)  # once: the search below, and every later import, go to the usual finders
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            load = spec.loader.exec_module

            def load_quietly(module):
                with captured_output():
                    load(module)

            spec.loader.exec_module = load_quietly
        return spec


def quiet():
    """TensorFlow imported without its start-up lines when it is first imported, its later C++ info lines hidden,
    and the harmless messages dropped."""
    if verbose.ON:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")  # 1 hides C++ info lines; warnings and errors stay
    if "tensorflow" not in sys.modules and not any(isinstance(f, QuietImport) for f in sys.meta_path):
        sys.meta_path.insert(0, QuietImport())
    silence_harmless_messages()
