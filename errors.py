"""User-facing errors and the way every command-line tool reports them.

A mistake in what the user gave (a path, a flag value, a file) is a UserError: the tools print it as one
line `error: ...`, exit with code 2, and have written nothing. Anything else is a bug and keeps its traceback.
"""
import argparse
import functools
import sys


class UserError(Exception):
    """A problem with the user's input; the message names the bad value and the valid choices."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse with a one-line error (no usage block), so flag mistakes look like every other error."""

    def error(self, message):
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)


def reports_user_errors(main):
    """Wrap a CLI entry point: a UserError becomes `error: ...` on stderr and exit code 2."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except UserError as error:
            print(f"error: {error}", file=sys.stderr)
            sys.exit(2)

    return wrapper
