"""A database URL that may hold a password (tune.py's --storage): read from an environment variable when asked,
printed with its secrets masked, and handed to child processes through their environment, never their argv (which
`ps` shows every user of the machine; a process's environment only its own user and root).

Its secrets: the password of the user info (`user:password@`), and the value of every query parameter whose name
holds one of SENSITIVE (password, passwd, pwd, sslpassword, secret, client_secret, token, access_token, api_key,
...), which drivers such as psycopg read as well. A URL this module cannot take apart is never shown at all.
"""
import os
import re
import traceback
from urllib.parse import unquote, unquote_plus

from support.errors import UserError

UNPARSEABLE = "<unparseable storage URL>"
SENSITIVE = ("pass", "pwd", "secret", "token", "key", "credential", "auth")  # parts of a query parameter's name
MASK = "***"
FROM_ENVIRONMENT = re.compile(r"env:(?P<name>[A-Za-z_][A-Za-z0-9_]*)")
# SQLAlchemy's layout, scheme://[user[:password]@]host[:port][/database][?query], read so that the user info ends at
# the first "@" after which a host without "@" follows: the whole of a password that holds an "@" is its password.
URL = re.compile(r"(?P<head>[\w+]+://)(?:(?P<user>[^:/@]*)(?::(?P<password>.*?))?@)?"
                 r"(?P<host>[^@/?]*)(?P<path>/[^?]*)?(?:\?(?P<query>.*))?", re.DOTALL)


def sensitive(name):
    return any(part in unquote_plus(name).lower() for part in SENSITIVE)


def printable(url):
    """`url` as it may be printed or written: every secret replaced by ***; an unparseable URL by UNPARSEABLE."""
    parts = URL.fullmatch(url)
    if not parts:
        return UNPARSEABLE
    text = parts["head"]
    if parts["user"] is not None:
        text += parts["user"] + ("" if parts["password"] is None else f":{MASK}") + "@"
    text += parts["host"] + (parts["path"] or "")
    if parts["query"] is not None:
        text += "?" + "&".join(f"{pair.partition('=')[0]}={MASK}" if sensitive(pair.partition("=")[0]) else pair
                               for pair in parts["query"].split("&"))
    return text


def secrets(url):
    """Each secret of `url` as written and as decoded, longest first."""
    parts = URL.fullmatch(url)
    if not parts:
        return [url]  # nothing known about it: all of it
    found = [parts["password"] or ""]
    for pair in (parts["query"] or "").split("&"):
        name, _, value = pair.partition("=")
        if sensitive(name):
            found.append(value)
    found += [unquote_plus(secret) for secret in found] + [unquote(secret) for secret in found]
    return sorted({secret for secret in found if secret}, key=len, reverse=True)


def masked(text, url):
    """A library's message about `url` (which may quote it, or its password, in any form) with its secrets masked
    wherever they occur (a password of a letter or two masks those letters in words too: unreadable, but safe)."""
    for secret in secrets(url):
        text = text.replace(secret, MASK)
    return text


class MaskedCause(Exception):
    """A library failure as text (its traceback and chained causes) with a URL's secrets masked: the cause to chain
    to a UserError, which KERAS_TEMPLATE_VERBOSE=1 prints."""


def masked_cause(error, url):
    return MaskedCause(masked("".join(traceback.format_exception(error)), url).rstrip())


def resolve(given, flag):
    """The URL a `flag` gave: itself, or with `env:NAME` the value of the environment variable NAME. A password
    with a bare "@" is refused: SQLAlchemy would take the host from its first "@" on (write it as %40)."""
    named = FROM_ENVIRONMENT.fullmatch(given)
    url = os.environ.get(named["name"], "") if named else given
    if named and not url:
        raise UserError(f"{flag} {given}: the environment variable {named['name']} is not set")
    parts = URL.fullmatch(url)
    if parts and "@" in (parts["password"] or ""):
        raise UserError(f"{flag} {printable(url)}: its password holds an '@', which SQLAlchemy reads as the end of "
                        f"the password; write it as %40")
    return url


def by_environment(argv, url, variable):
    """A child's command-line arguments and environment: `argv` with `url` (as a value of its own, or after "=")
    replaced by env:`variable`, and `variable` set to `url` in a copy of this process's environment."""
    reference = f"env:{variable}"

    def replaced(arg):
        if arg == url:
            return reference
        if arg.startswith("-") and arg.endswith("=" + url):  # --storage=URL
            return arg[:-len(url)] + reference
        return arg

    return [replaced(arg) for arg in argv], {**os.environ, variable: url}
