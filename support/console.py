"""A quiet console: every tool prints its own lines, Keras' progress, and real warnings, not library chatter.

Each command-line tool imports this module before anything that imports TensorFlow or Keras, because the
chatter starts at `import tensorflow`: TensorFlow 2.21 writes its oneDNN and cpu_feature_guard lines and absl's
"All log messages before absl::InitializeLog()" from C++ straight to file descriptor 2, whatever any log-level
variable says. So the import runs here with the output descriptors held (`captured_output`), and
TF_CPP_MIN_LOG_LEVEL=1, set before it, hides TensorFlow's later C++ info lines. Python warnings known to be
harmless here are silenced by their exact message, one by one; anything else still shows.

KERAS_TEMPLATE_VERBOSE=1 (verbose.py) turns all of this off, for debugging: every library line comes back.
"""
import contextlib
import os
import re
import sys
import tempfile
import warnings

from support import images  # noqa: F401  before TensorFlow, whose Keras imports OpenCV: cv2 reads the pixel
#                                         limit images.py sets for it only when it is first imported
from support import requirements, verbose


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
            if failed:  # what the libraries said is the explanation now
                held.seek(0)
                sys.stderr.write(held.read())


def _not_harmless(record):
    return not record.getMessage().startswith(HARMLESS_LOG_MESSAGES)


def silence_harmless_messages():
    """Drop the warnings and log messages listed above, matched by their exact text; every other one shows."""
    from absl import logging as absl_logging  # Keras logs through absl's logger

    absl_logging.get_absl_logger().addFilter(_not_harmless)
    for message in HARMLESS_WARNINGS:
        warnings.filterwarnings("ignore", message=re.escape(message) + r"\Z")


def quiet_libraries():
    """Import TensorFlow without its start-up lines, hide its later C++ info lines, and the harmless messages."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")  # 1 hides C++ info lines; warnings and errors stay
    with captured_output():
        import tensorflow  # noqa: F401
    silence_harmless_messages()


requirements.require_keras_backend()  # before any tool imports Keras
if not verbose.ON:
    quiet_libraries()
