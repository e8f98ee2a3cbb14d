"""Who may ask serve.py anything, checked before any route runs: the Host a request names, a bearer token when one
is set, and JSON as the only body a POST may carry.

The Host check stops DNS rebinding: a page on another site can point its own name at 127.0.0.1 and have the
visitor's browser talk to a server there, but the browser still sends that site's name as the Host. The content
type stops cross-site POSTs: a page may send text/plain or a form anywhere without asking first, but not
application/json. Neither helps against a client that is not a browser: that is what the token is for.
"""
import hmac
import ipaddress
import os

from starlette.responses import JSONResponse

from support.errors import UserError

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
EVERY_ADDRESS = ("0.0.0.0", "::", "")
ANY_HOST = "*"
TOKEN_VARIABLE = "KERAS_TEMPLATE_SERVE_TOKEN"


def host_name(header):
    """The name in a Host header, lower case, without its port or an IPv6 address's brackets; None if malformed."""
    header = header.strip().lower()
    if header.startswith("["):
        name, closed, rest = header[1:].partition("]")
        if not closed or (rest and not rest.startswith(":")):
            return None
        port = rest[1:]
    else:
        name, _, port = header.partition(":")
    return name if name and (port == "" or port.isdigit()) else None


def is_loopback(host):
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def allowed_hosts(host, given):
    """The Host names clients may use: --allowed_hosts when given ("*" for any), else the address listened on, and
    the loopback names when it is a loopback address. Listening on every address, there is no telling which names
    reach this machine, so they must be given."""
    if given:
        entries = [entry.strip().lower() for entry in given.split(",")]
        names = [entry if entry.count(":") > 1 and "[" not in entry else host_name(entry)  # a bare IPv6 address
                 for entry in entries]
        if None in names:
            raise UserError(f"--allowed_hosts {given!r}: give names or addresses separated by commas (e.g. "
                            f"myserver.lan,192.168.1.20), or '{ANY_HOST}' for any")
        return names
    if host in EVERY_ADDRESS:
        raise UserError(f"--host {host!r} listens on every address: give --allowed_hosts, the names and addresses "
                        f"clients will use (e.g. --allowed_hosts myserver.lan,192.168.1.20), or --allowed_hosts "
                        f"'{ANY_HOST}' behind a proxy that checks the Host itself")
    return sorted({host.lower(), *LOOPBACK_NAMES}) if is_loopback(host) else [host.lower()]


def read_token(token_file):
    """The bearer token as bytes: the contents of `token_file` (surrounding white space dropped), or of
    $KERAS_TEMPLATE_SERVE_TOKEN; None when neither is set. Never printed: errors name the file, not what it holds."""
    from_environment = os.environ.get(TOKEN_VARIABLE)
    if token_file and from_environment is not None:
        raise UserError(f"a token both in --token_file and in ${TOKEN_VARIABLE}; give one of them")
    if token_file:
        try:
            with open(token_file, "rb") as f:
                token = f.read().strip()
        except OSError as error:
            raise UserError(f"cannot read --token_file {token_file} ({error.strerror or error}); give a file "
                            f"holding the token") from None
        where = f"--token_file {token_file}"
    elif from_environment is not None:
        token, where = from_environment.strip().encode(), f"${TOKEN_VARIABLE}"
    else:
        return None
    if not token:
        raise UserError(f"{where} is empty; put the token there (e.g. python -c \"import secrets; "
                        f"print(secrets.token_urlsafe(32))\")")
    return token


class RequestGate:
    """ASGI middleware: a request naming a Host not allowed is refused 421 (400 without a Host), one without the
    token 401 (except on `open_paths`, the page, which holds nothing), and a POST whose body is not
    application/json 415, each with a JSON {"error": ...} of fixed text, before any route or body is read."""

    def __init__(self, app, allowed_hosts, token, open_paths):
        self.app, self.hosts, self.token, self.open_paths = app, set(allowed_hosts), token, set(open_paths)

    async def __call__(self, scope, receive, send):
        refusal = self.refusal(scope) if scope["type"] == "http" else None
        if refusal is None:
            await self.app(scope, receive, send)
        else:
            status, message, headers = refusal
            await JSONResponse({"error": message}, status_code=status, headers=headers)(scope, receive, send)

    def refusal(self, scope):
        """(status, message, headers) of the first check the request fails, or None."""
        headers = {}
        for name, value in scope["headers"]:
            headers.setdefault(name, value.decode("latin-1"))
        if b"host" not in headers:
            return 400, "a request must name its Host", None
        name = host_name(headers[b"host"])
        if ANY_HOST not in self.hosts and name not in self.hosts:
            return 421, f"this server does not answer for Host {headers[b'host'][:100]!r} (--allowed_hosts)", None
        if self.token is not None and scope["path"] not in self.open_paths and not self.authorized(headers):
            return 401, ("this server needs its token: send the header Authorization: Bearer <token> "
                         "(serve.py --token_file)"), {"WWW-Authenticate": "Bearer"}
        media_type = headers.get(b"content-type", "").split(";")[0].strip().lower()
        if scope["method"] == "POST" and media_type != "application/json":
            return 415, "a POST must send its body as Content-Type: application/json", None
        return None

    def authorized(self, headers):
        scheme, _, credentials = headers.get(b"authorization", "").strip().partition(" ")
        given = credentials.strip().encode("latin-1")
        return scheme.lower() == "bearer" and hmac.compare_digest(given, self.token)
