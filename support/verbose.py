"""KERAS_TEMPLATE_VERBOSE=1, for debugging: every library log line, and the full cause behind every user error.

Read once, when a tool starts. console.py follows it (library lines) and errors.py too (causes); this module
imports nothing heavy, so neither does anything that only reports errors.
"""
import os

VARIABLE = "KERAS_TEMPLATE_VERBOSE"
ON = os.environ.get(VARIABLE, "0") not in ("", "0")
HELP = (f"Library log lines (TensorFlow, absl, the TFLite converter, LiteRT) are hidden, and an error is one line; "
        f"set {VARIABLE}=1 to see the lines and the library failure behind an error.")
