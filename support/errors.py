"""User-facing errors, the way every command-line tool reports them, and the flag-value checks they share.

A mistake in what the user gave (a path, a flag value, a file) is a UserError: the tools print it as one
line `error: ...`, exit with code 2, and have written nothing. Anything else is a bug and keeps its traceback.
A UserError raised for a library failure is chained to it (`raise UserError(...) from error`), and with
KERAS_TEMPLATE_VERBOSE=1 the tools print that whole chain before the line, so the cause is never lost.
"""
import argparse
import functools
import json
import sys
import traceback

from support import verbose


class UserError(Exception):
    """A problem with the user's input; the message names the bad value and the valid choices."""


def first_of(items, limit):
    """The first `limit` items, comma-separated, and how many more there are."""
    return ", ".join(items[:limit]) + (f" and {len(items) - limit} more" if len(items) > limit else "")


def first_line(error):
    """A library exception in one line, for a UserError that wraps it: its first line, or its type's name."""
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


class ArgumentParser(argparse.ArgumentParser):
    """argparse with a one-line error (no usage block), so flag mistakes look like every other error, and a
    --help that ends by saying how to bring back the library lines and error causes it hides."""

    def __init__(self, *args, epilog=verbose.HELP, **kwargs):
        super().__init__(*args, epilog=epilog, **kwargs)

    def error(self, message):
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)


def reports_user_errors(main):
    """Wrap a CLI entry point: a UserError becomes `error: ...` on stderr and exit code 2 (after its chained
    traceback when KERAS_TEMPLATE_VERBOSE is set)."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except UserError as error:
            if verbose.ON:
                traceback.print_exception(error, file=sys.stderr)
            print(f"error: {error}", file=sys.stderr)
            sys.exit(2)

    return wrapper


# Flag types: argparse reports their ArgumentTypeError as `error: argument --flag: <message>`.

def positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def non_negative_int(text):
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def positive_float(text):
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def non_negative_float(text):
    value = float(text)
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number of 0 or more, got {text}")
    return value


def ratio(text):
    value = float(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {text}")
    return value


def image_size(text):
    try:
        height, width = (int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be H,W (two positive integers, e.g. 224,224), got '{text}'")
    if height < 1 or width < 1:
        raise argparse.ArgumentTypeError(f"must be H,W with positive sizes, got '{text}'")
    return [height, width]


def comma_list(text):
    return [part.strip() for part in text.split(",") if part.strip()]


def json_object(text):
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"must be a JSON object such as '{{\"alpha\": 0.5}}', got '{text}'")
    return value
