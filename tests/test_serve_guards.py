"""serve.py against hostile clients: a stalled header or body is closed within --request_timeout, a client gone
mid-body is one log line, a foreign Host and a cross-site content type are refused, the queue answers 503 past its
places and starts no work for a client that has gone, and the API needs the token when one is set."""
import asyncio
import json
import select
import socket
import threading
import time

import numpy as np
import pytest

from conftest import drawing, png_bytes, run_cli
from test_serve import JSON, Server, b64, http_scope, in_process_app, one_line_error, tiny_run  # noqa: F401

import serve  # noqa: E402  (after test_serve, which skips this module without serve.py's requirements)
from support.request_gate import TOKEN_VARIABLE, allowed_hosts, read_token

pytestmark = [
    pytest.mark.filterwarnings("ignore:Statistics for quantized inputs:UserWarning"),
    pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy:DeprecationWarning"),
]

TIMEOUT = 2  # the guarded server's --request_timeout
CLOSED_WITHIN = 20  # a generous bound for "closed after TIMEOUT seconds" on a busy machine
TOKEN = "s3cret-token-for-the-test"


@pytest.fixture(scope="module")
def guarded(tiny_run, tmp_path_factory):  # noqa: F811
    """A server with a token, a short --request_timeout, and one model copy with no waiting room: as many
    requests at work as this machine has cores (serve.workers)."""
    token_file = tmp_path_factory.mktemp("token") / "token.txt"
    token_file.write_text(TOKEN + "\n")
    running = Server(tiny_run[1], "--token_file", str(token_file), "--request_timeout", str(TIMEOUT),
                     "--model_copies", "1", "--max_queue", "0", headers={"Authorization": f"Bearer {TOKEN}"})
    yield running
    running.stop()


def one_image(server):
    return json.dumps({"instances": [b64(png_bytes(drawing(np.random.default_rng(1), 0)))]})


def raw_request(server, method, path, headers, body=b""):
    """The bytes of a request with exactly these headers (Host and token included only if given)."""
    lines = [f"{method} {path} HTTP/1.1", *(f"{name}: {value}" for name, value in headers.items()), "", ""]
    return "\r\n".join(lines).encode() + body


def authorized(server, **headers):
    return {"Host": f"127.0.0.1:{server.port}", **server.headers, **headers}


def closed(sock):
    try:
        return sock.recv(1024) == b""
    except ConnectionResetError:
        return True


def read_until_closed(sock):
    """Everything the server sends until it closes the connection, and how long that took; fails the test if the
    connection is still open after CLOSED_WITHIN seconds."""
    sock.settimeout(CLOSED_WITHIN)
    start, received = time.monotonic(), b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except ConnectionResetError:
        pass
    return received, time.monotonic() - start


# --- slow and gone clients ---------------------------------------------------------------------------------

def test_a_stalled_header_is_closed_within_the_request_timeout(guarded):
    with socket.create_connection(("127.0.0.1", guarded.port)) as sock:
        sock.sendall(f"GET /v1/models/{guarded.name} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Half: ".encode())
        received, seconds = read_until_closed(sock)
    assert received == b"" and seconds < CLOSED_WITHIN
    assert guarded.is_serving()


def trickled_until_closed(sock, data):
    """Sends `data` a byte every half second until the server closes the connection: whether it did before the
    end (which takes longer than CLOSED_WITHIN)."""
    assert len(data) * 0.5 > CLOSED_WITHIN
    for at in range(len(data)):
        try:
            sock.sendall(data[at:at + 1])
        except (BrokenPipeError, ConnectionResetError):
            return True
        if select.select([sock], [], [], 0.5)[0] and closed(sock):
            return True
    return False


def test_a_header_sent_a_byte_at_a_time_gains_no_time(guarded):
    """Slowloris: a byte every half second keeps no connection open past the limit (the clock never restarts)."""
    with socket.create_connection(("127.0.0.1", guarded.port)) as sock:
        assert trickled_until_closed(sock, b"GET / HTTP/1.1\r\nX-Slow: " + b"a" * 3 * CLOSED_WITHIN)
    assert guarded.is_serving()


def test_a_stalled_body_is_answered_408_and_closed_within_the_request_timeout(guarded):
    head = raw_request(guarded, "POST", f"/v1/models/{guarded.name}:predict",
                       authorized(guarded, **JSON, **{"Content-Length": "100000"}))
    with socket.create_connection(("127.0.0.1", guarded.port)) as sock:
        sock.sendall(head + b'{"instances": [')
        received, seconds = read_until_closed(sock)
    assert received.startswith(b"HTTP/1.1 408 ") and b"--request_timeout" in received and seconds < CLOSED_WITHIN
    assert guarded.is_serving()


def test_the_rest_of_an_answered_body_is_not_waited_for_without_end(guarded):
    """The page's route answers without reading a body: a body trickled after that answer holds nothing open."""
    head = raw_request(guarded, "GET", "/", {"Host": "127.0.0.1", "Content-Length": "100000"})
    with socket.create_connection(("127.0.0.1", guarded.port)) as sock:
        sock.sendall(head)
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")
        assert trickled_until_closed(sock, b"x" * 3 * CLOSED_WITHIN)


def log_lines_after(server, mark, words):
    """The server's log lines after the first `mark` characters, once one holds `words` (waits up to 30 s)."""
    deadline = time.monotonic() + 30
    while True:
        lines = server.log()[mark:].splitlines()
        if any(words in line for line in lines) or time.monotonic() > deadline:
            return lines
        time.sleep(0.1)


def test_a_client_gone_mid_body_is_one_log_line_without_a_traceback(guarded):
    mark = len(guarded.log())
    head = raw_request(guarded, "POST", f"/v1/models/{guarded.name}:predict",
                       authorized(guarded, **JSON, **{"Content-Length": "100000"}))
    with socket.create_connection(("127.0.0.1", guarded.port)) as sock:
        sock.sendall(head + b"x" * 50_000)
        time.sleep(0.2)  # the body's start is in; then the client goes
    lines = log_lines_after(guarded, mark, "client gone")
    assert len([line for line in lines if "client gone" in line and ":predict" in line]) == 1, lines
    assert guarded.is_serving()
    assert "Traceback" not in guarded.log() and "internal error" not in guarded.log()


# --- the queue ---------------------------------------------------------------------------------------------

def test_a_request_past_the_queue_is_answered_503_at_once_with_retry_after(guarded):
    """No waiting room: while requests hold every place (their bodies still arriving), the next is refused at
    once; once those clients go, the next is answered."""
    head = raw_request(guarded, "POST", f"/v1/models/{guarded.name}:predict",
                       authorized(guarded, **JSON, **{"Content-Length": "100000", "Expect": "100-continue"}))
    holders = [socket.create_connection(("127.0.0.1", guarded.port), timeout=CLOSED_WITHIN)
               for _ in range(serve.workers(1))]
    try:
        for holder in holders:
            holder.sendall(head)
            assert holder.recv(1024).startswith(b"HTTP/1.1 100 ")  # the server reads the body: a place is taken
        status, answer, headers = guarded.request("POST", f"/v1/models/{guarded.name}:predict", one_image(guarded))
    finally:
        for holder in holders:
            holder.close()
    assert status == 503 and "--max_queue" in answer["error"] and headers["retry-after"] == "1"
    deadline = time.monotonic() + CLOSED_WITHIN
    while (status := guarded.request("POST", f"/v1/models/{guarded.name}:predict", one_image(guarded))[0]) == 503:
        assert time.monotonic() < deadline, "the place was never given back"
        time.sleep(0.1)
    assert status == 200


class GatedPool:
    """A model whose answers wait until the test lets them go; counts the answers it starts."""
    path, kind, input_shape, num_classes, copies = "gated.tflite", "tflite", (2, 2, 1), 2, 1

    def __init__(self):
        self.release, self.calls, self.counting = threading.Event(), 0, threading.Lock()

    def predict(self, images):
        with self.counting:
            self.calls += 1
        self.release.wait(30)
        return np.full((len(images), 2), 0.5, np.float32)

    def wait_for_calls(self, count):
        deadline = time.monotonic() + 30
        while self.calls < count and time.monotonic() < deadline:
            time.sleep(0.01)


def test_work_for_a_client_gone_while_it_waited_is_not_started(caplog):
    pool = GatedPool()
    app = in_process_app("gated", pool)
    body = json.dumps({"instances": [[[[0], [255]], [[255], [0]]]]}).encode()
    path = "/v1/models/gated:predict"

    async def client(gone):
        """One request; after its body, receive() waits until `gone` is set, then says the client disconnected."""
        incoming, sent = [{"type": "http.request", "body": body, "more_body": False}], []

        async def receive():
            if incoming:
                return incoming.pop(0)
            await gone.wait()
            return {"type": "http.disconnect"}

        async def send(message):
            sent.append(message)

        await app(http_scope("POST", path, body), receive, send)
        return sent

    at_work = serve.workers(pool.copies)

    async def scenario():
        staying, going = asyncio.Event(), asyncio.Event()
        first = [asyncio.create_task(client(staying)) for _ in range(at_work)]
        await asyncio.to_thread(pool.wait_for_calls, at_work)  # they take every turn
        last = asyncio.create_task(client(going))
        await asyncio.sleep(0.2)  # it has read its body and waits for a turn
        going.set()
        pool.release.set()
        return await asyncio.gather(*first), await last

    with caplog.at_level("INFO", logger="serve"):
        first, _ = asyncio.run(scenario())
    assert [sent[0]["status"] for sent in first] == [200] * at_work and pool.calls == at_work
    assert "client gone" in caplog.text and "Traceback" not in caplog.text


# --- who may ask -------------------------------------------------------------------------------------------

def test_a_foreign_host_is_refused_and_the_loopback_names_are_served(guarded):
    path = f"/v1/models/{guarded.name}"
    status, answer, _ = guarded.request("GET", path, headers={"Host": "attacker.example"})
    assert status == 421 and "attacker.example" in answer["error"] and "--allowed_hosts" in answer["error"]
    for host in ("localhost", f"localhost:{guarded.port}", "127.0.0.1", f"[::1]:{guarded.port}", "LOCALHOST"):
        assert guarded.request("GET", path, headers={"Host": host})[0] == 200, host


def test_a_request_without_a_host_is_refused(guarded):
    with socket.create_connection(("127.0.0.1", guarded.port)) as sock:
        sock.sendall(f"GET /v1/models/{guarded.name} HTTP/1.0\r\n\r\n".encode())
        received, _ = read_until_closed(sock)
    assert received.startswith(b"HTTP/1.1 400 ") and b"Host" in received


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data",
                                          None])
def test_a_post_that_a_page_on_another_site_could_send_is_refused_415(guarded, content_type):
    headers = authorized(guarded, **({"Content-Type": content_type} if content_type else {}))
    body = one_image(guarded).encode()
    request = raw_request(guarded, "POST", f"/v1/models/{guarded.name}:predict",
                          {**headers, "Content-Length": str(len(body))}, body)
    with socket.create_connection(("127.0.0.1", guarded.port), timeout=CLOSED_WITHIN) as sock:
        sock.sendall(request)
        reply = sock.recv(65536)
    assert reply.startswith(b"HTTP/1.1 415 ") and b"predictions" not in reply


def test_json_with_a_charset_is_json(guarded):
    status, answer, _ = guarded.request("POST", f"/v1/models/{guarded.name}:predict", one_image(guarded),
                                        headers={"Content-Type": "application/json; charset=utf-8"})
    assert status == 200 and len(answer["predictions"]) == 1


@pytest.mark.parametrize("authorization", [None, "Bearer wrong-token", f"Basic {TOKEN}", "Bearer", TOKEN])
def test_the_api_needs_the_token(guarded, authorization):
    for method, path, body in [("GET", f"/v1/models/{guarded.name}", None),
                               ("POST", f"/v1/models/{guarded.name}:predict", one_image(guarded)),
                               ("GET", "/v2/anything", None)]:  # not even which paths exist
        status, answer, headers = guarded.request(method, path, body, headers={"Authorization": authorization})
        assert status == 401 and headers["www-authenticate"].startswith("Bearer"), (path, answer)
        assert TOKEN not in json.dumps(answer)


def test_the_right_token_is_served_and_the_page_needs_none(guarded):
    assert guarded.request("GET", f"/v1/models/{guarded.name}")[0] == 200
    assert guarded.request("POST", f"/v1/models/{guarded.name}:predict", one_image(guarded))[0] == 200
    for path in ("/", "/app.js"):
        with socket.create_connection(("127.0.0.1", guarded.port), timeout=CLOSED_WITHIN) as sock:
            sock.sendall(raw_request(guarded, "GET", path, {"Host": "127.0.0.1", "Connection": "close"}))
            assert read_until_closed(sock)[0].startswith(b"HTTP/1.1 200 "), path


def test_the_token_is_never_printed_or_logged(guarded):
    assert TOKEN not in guarded.banner and "token is required" in guarded.banner
    guarded.request("GET", f"/v1/models/{guarded.name}", headers={"Authorization": f"Bearer {TOKEN}x"})
    assert TOKEN not in guarded.log()


# --- the flags ---------------------------------------------------------------------------------------------

def test_the_token_comes_from_a_file_or_the_environment_never_both(tmp_path, monkeypatch):
    token_file = tmp_path / "token"
    token_file.write_text("  from-the-file\n")
    monkeypatch.delenv(TOKEN_VARIABLE, raising=False)
    assert read_token(None) is None and read_token(str(token_file)) == b"from-the-file"
    monkeypatch.setenv(TOKEN_VARIABLE, "from-the-environment")
    assert read_token(None) == b"from-the-environment"
    with pytest.raises(serve.UserError, match="give one of them"):
        read_token(str(token_file))


def test_bad_security_flags_are_one_line_errors_that_name_no_secret(tiny_run, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv(TOKEN_VARIABLE, raising=False)
    deploy_dir = tiny_run[1]
    message = one_line_error(capsys, ["--model_dir", deploy_dir, "--host", "0.0.0.0"])
    assert "--allowed_hosts" in message and "0.0.0.0" in message
    assert "--allowed_hosts" in one_line_error(capsys, ["--model_dir", deploy_dir, "--allowed_hosts", "a,,b"])
    missing = str(tmp_path / "no_token")
    assert missing in one_line_error(capsys, ["--model_dir", deploy_dir, "--token_file", missing])
    empty = tmp_path / "empty"
    empty.write_text("\n")
    assert "empty" in one_line_error(capsys, ["--model_dir", deploy_dir, "--token_file", str(empty)])
    monkeypatch.setenv(TOKEN_VARIABLE, "")
    assert TOKEN_VARIABLE in one_line_error(capsys, ["--model_dir", deploy_dir])
    assert "67108864" in one_line_error(capsys, ["--model_dir", deploy_dir, "--max_image_pixels", "100000000"])
    code, _, err = run_cli(serve.main, ["--model_dir", deploy_dir, "--request_timeout", "0"], capsys)
    assert code == 2 and "--request_timeout" in err


def test_allowed_hosts_default_to_the_address_listened_on():
    assert set(allowed_hosts("127.0.0.1", None)) == {"127.0.0.1", "localhost", "::1"}
    assert set(allowed_hosts("::1", None)) == {"127.0.0.1", "localhost", "::1"}
    assert allowed_hosts("192.168.1.20", None) == ["192.168.1.20"]
    assert allowed_hosts("0.0.0.0", "Model.Example:8501, [::1], 10.0.0.2") == ["model.example", "::1", "10.0.0.2"]
    assert allowed_hosts("0.0.0.0", "*") == ["*"]
