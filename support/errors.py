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
    """argparse whose flag mistakes are UserErrors: one line, like every other error, from a tool's main(), and an
    exception to catch from Python (a tool's parse_args makes the options its run() takes); and a --help that ends
    by saying how to bring back the library lines and error causes it hides."""

    def __init__(self, *args, epilog=verbose.HELP, **kwargs):
        super().__init__(*args, epilog=epilog, **kwargs)

    def error(self, message):
        raise UserError(message)


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


# Value types: each takes a flag's text (argparse reports its ArgumentTypeError as `error: argument --flag: <message>`)
# or the value itself, from config.json or the Python API (config.Setting.check reports it as `<name>: <message>`),
# and returns it in the one form the template holds it in.

def text(value):
    if not isinstance(value, str):
        raise argparse.ArgumentTypeError(f"must be text, got {value!r}")
    return value


def integer(value):
    """An int, or its digits as text; never a bool or a float that would be cut."""
    return converted(value, int, int, "an integer")


def number(value):
    """A float, from an int, a float or their text; never a bool."""
    return converted(value, float, (int, float), "a number")


def converted(value, kind, accepted, described):
    """`kind(value)` for text that parses or a value of the `accepted` types (a bool is none of them, though Python
    counts it an int); anything else is an ArgumentTypeError saying what was `described`."""
    if isinstance(value, str):
        try:
            return kind(value)
        except ValueError:
            pass
    elif isinstance(value, accepted) and not isinstance(value, bool):
        return kind(value)
    raise argparse.ArgumentTypeError(f"must be {described}, got {value!r}")


def positive_int(value):
    if integer(value) < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return integer(value)


def non_negative_int(value):
    if integer(value) < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return integer(value)


def positive_float(value):
    if not number(value) > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {value}")
    return number(value)


def non_negative_float(value):
    if not 0 <= number(value) < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number of 0 or more, got {value}")
    return number(value)


def ratio(value):
    if not 0 < number(value) <= 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {value}")
    return number(value)


def image_size(value):
    """[H, W] from "H,W" or a pair of positive integers."""
    parts = value.split(",") if isinstance(value, str) else value
    try:
        height, width = (integer(part) for part in parts)
    except (argparse.ArgumentTypeError, TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"must be H,W (two positive integers, e.g. 224,224), got {value!r}")
    if height < 1 or width < 1:
        raise argparse.ArgumentTypeError(f"must be H,W with positive sizes, got {value!r}")
    return [height, width]


def comma_list(value):
    """Names from "a,b" or a list of them."""
    parts = value.split(",") if isinstance(value, str) else value
    if not isinstance(parts, (list, tuple)) or not all(isinstance(part, str) for part in parts):
        raise argparse.ArgumentTypeError(f"must be comma-separated names, got {value!r}")
    return [part.strip() for part in parts if part.strip()]


def json_object(value):
    """A dict, or a JSON object as text."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            pass
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"must be a JSON object such as '{{\"alpha\": 0.5}}', got {value!r}")
    return value
