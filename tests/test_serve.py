"""serve.py: TF Serving REST answers for b64 and pixel instances equal predict.py's, every bad input is a JSON 4xx
while the server keeps serving, concurrent requests are answered right, and bad flags are one-line errors.
tests/test_serve_guards.py has the hostile clients: slow, gone, foreign, without the token, too many."""
import asyncio
import base64
import csv
import http.client
import json
import logging
import os
import re
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import zlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

import predict
from conftest import ROOT, drawing, png_bytes, run_cli
from test_evaluate import CLASSES, build_run

for requirement in ("starlette", "uvicorn"):
    pytest.importorskip(requirement, reason="serve.py's requirements are not installed: "
                                            "pip install -r requirements-serve.txt")
import serve  # noqa: E402

pytestmark = [
    pytest.mark.filterwarnings("ignore:Statistics for quantized inputs:UserWarning"),
    pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy:DeprecationWarning"),
]

LIMITS = {"max_request_bytes": 200_000, "max_instances": 4, "max_image_pixels": 250_000, "max_request_pixels": 400_000}
JSON = {"Content-Type": "application/json"}


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    return build_run(str(tmp_path_factory.getbasetemp() / "tiny_deployed_run"))  # shared with test_predict


class Server:
    """serve.py in its own process on a free localhost port, with small request limits: a folder's model, or
    with model_dir None, the --model_file in `flags` alone. Its log (stderr) goes to a file the test can read."""

    def __init__(self, model_dir, *flags, env=None, headers=None):
        limits = [f"--{flag}={value}" for flag, value in LIMITS.items()]
        source = ["--model_dir", model_dir] if model_dir else []
        self.log_file = tempfile.NamedTemporaryFile("w", prefix="serve_log_", suffix=".txt", delete=False)
        self.process = subprocess.Popen([sys.executable, os.path.join(ROOT, "serve.py"), *source,
                                         "--port", "0", *limits, *flags], stdout=subprocess.PIPE,
                                        stderr=self.log_file, text=True, env=env)
        watchdog = threading.Timer(180, self.process.kill)  # never let a stuck start hang the test run
        watchdog.start()
        self.banner = self.process.stdout.readline()
        watchdog.cancel()
        assert "http://127.0.0.1:" in self.banner, self.log()  # localhost unless told otherwise
        self.port = int(self.banner.split("http://127.0.0.1:")[1].split("/")[0])
        self.name = os.path.basename(model_dir) if model_dir else "model"
        self.headers = headers or {}  # sent with every request (a token)

    def request(self, method, path, body=None, headers=None):
        """(status, parsed JSON body, response headers); a body is sent as JSON unless the headers say otherwise,
        and a header given as None is not sent."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            sent = {**(JSON if body is not None else {}), **self.headers, **(headers or {})}
            sent = {name: value for name, value in sent.items() if value is not None}
            connection.request(method, path, body=body, headers=sent)
            response = connection.getresponse()
            return response.status, json.loads(response.read()), dict(response.getheaders())
        finally:
            connection.close()

    def predict(self, instances):
        """The probabilities for a list of instances; any refusal fails the test with the server's message."""
        body = json.dumps({"instances": instances})
        status, answer, _ = self.request("POST", f"/v1/models/{self.name}:predict", body)
        assert status == 200, answer
        return np.array(answer["predictions"], dtype=np.float32)

    def is_serving(self):
        return self.request("GET", f"/v1/models/{self.name}")[0] == 200 and self.process.poll() is None

    def log(self):
        with open(self.log_file.name) as f:
            return f.read()

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=30)
        self.process.stdout.close()
        self.log_file.close()
        os.unlink(self.log_file.name)


@pytest.fixture(scope="module")
def server(tiny_run):
    running = Server(tiny_run[1])
    yield running
    running.stop()


def b64(data):
    return {"b64": base64.b64encode(data).decode()}


@pytest.fixture(scope="module")
def image_files(tmp_path_factory):
    """Images of the tiny model's classes at other sizes and colours, as a user would send them."""
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(5)
    Image.fromarray(drawing(rng, 0)).save(folder / "a.png")
    Image.fromarray(drawing(rng, 1, side=56)).save(folder / "b.png")  # grey, twice the model's size
    Image.fromarray(np.stack([drawing(rng, 2, side=40)] * 3, axis=2)).save(folder / "c.jpg")  # colour JPEG
    return [str(folder / name) for name in ("a.png", "b.png", "c.jpg")]


def read_bytes(path):
    with open(path, "rb") as f:
        return f.read()


def test_status_and_metadata_in_tf_serving_form_with_class_names(server):
    status, answer, _ = server.request("GET", f"/v1/models/{server.name}")
    assert status == 200 and answer["model_version_status"][0]["state"] == "AVAILABLE"
    status, answer, _ = server.request("GET", f"/v1/models/{server.name}/metadata")
    assert status == 200 and answer["model_spec"]["name"] == server.name
    signature = answer["metadata"]["signature_def"]["signature_def"]["serving_default"]
    images = signature["inputs"]["images"]
    assert images["dtype"] == "DT_FLOAT"
    assert [d["size"] for d in images["tensor_shape"]["dim"]] == ["-1", "28", "28", "1"]
    assert [d["size"] for d in signature["outputs"]["probabilities"]["tensor_shape"]["dim"]] == ["-1", "3"]
    assert answer["metadata"]["class_names"] == CLASSES and answer["metadata"]["input_shape"] == [28, 28, 1]
    assert answer["metadata"]["kind"] == "tflite" and answer["metadata"]["model_file"] == "model.tflite"


def test_a_copied_model_file_alone_is_served_with_the_class_names_of_its_metadata(tiny_run, tmp_path):
    lone = tmp_path / "model.tflite"
    lone.write_bytes(read_bytes(os.path.join(tiny_run[1], "model.tflite")))
    alone = Server(None, "--model_file", str(lone))
    try:
        status, answer, _ = alone.request("GET", "/v1/models/model/metadata")
        assert status == 200 and answer["metadata"]["class_names"] == CLASSES
    finally:
        alone.stop()


def test_b64_and_pixel_instances_of_one_image_get_the_same_probabilities(server):
    image = drawing(np.random.default_rng(9), 1)
    probabilities = server.predict([b64(png_bytes(image)), image[:, :, None].tolist()])
    assert probabilities.shape == (2, 3)
    np.testing.assert_array_equal(probabilities[0], probabilities[1])
    assert abs(probabilities[0].sum() - 1) < 0.02 and probabilities[0].argmax() == 1  # the int8 model's output


def predict_py_rows(args, files, tmp_path, capsys):
    """predict.py's CSV rows (class, name, prob for every class, best first) for the files."""
    output = str(tmp_path / "predictions.csv")
    code, _, err = run_cli(predict.main, [*args, "--data", *files, "--output_file", output, "--top_k", "3"], capsys)
    assert code == 0, err
    with open(output, newline="") as f:
        return {row[0]: row[1:] for row in list(csv.reader(f))[1:]}


def as_csv_row(probabilities):
    """A served probability vector in predict.py's CSV form."""
    _, body = predict.rows(["x"], probabilities[None], CLASSES, len(CLASSES))
    return [str(value) for value in body[0][1:]]


def test_served_answers_equal_predict_py_for_the_same_files(server, tiny_run, image_files, tmp_path, capsys):
    expected = predict_py_rows(["--model_file", os.path.join(tiny_run[1], "model.tflite")], image_files, tmp_path,
                               capsys)
    served = server.predict([b64(read_bytes(path)) for path in image_files])
    for path, probabilities in zip(image_files, served):
        assert as_csv_row(probabilities) == expected[os.path.basename(path)]
    assert [row[1] for row in expected.values()] == CLASSES  # each image is its own class: a real comparison


def test_a_run_folder_serves_its_best_keras_as_predict_py_answers(tiny_run, image_files, tmp_path, capsys):
    run_dir = tiny_run[0]
    expected = predict_py_rows(["--read_from", run_dir], image_files, tmp_path, capsys)
    keras_server = Server(run_dir, "--model_copies", "1")
    try:
        assert "serving keras model" in keras_server.banner and "best.keras" in keras_server.banner
        served = keras_server.predict([b64(read_bytes(path)) for path in image_files])
    finally:
        keras_server.stop()
    for path, probabilities in zip(image_files, served):
        assert as_csv_row(probabilities) == expected[os.path.basename(path)]


def test_concurrent_requests_each_get_their_own_answer(server):
    rng = np.random.default_rng(11)
    images = [drawing(rng, n % 3) for n in range(24)]
    alone = [server.predict([b64(png_bytes(image))])[0] for image in images]
    with ThreadPoolExecutor(8) as pool:
        together = list(pool.map(lambda image: server.predict([b64(png_bytes(image))])[0], images))
    for one, other in zip(alone, together):
        np.testing.assert_array_equal(one, other)


def big_png():
    return png_bytes(np.zeros((600, 600), np.uint8))  # 360,000 pixels, a few kB as a PNG


def png_header(width, height, crc_offset=0):
    """The start of a greyscale PNG of any size, up to its first IDAT chunk (one row of pixels): all a
    decompression bomb needs to claim its size. A wrong IHDR checksum (crc_offset) makes Pillow give up before it
    reports the size, while OpenCV decodes the file anyway."""
    def chunk(kind, data, offset=0):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) + offset)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header, crc_offset)
            + chunk(b"IDAT", zlib.compress(bytes(width + 1))))


def hostile_images():
    """Image files that lie about their size or are no image the server reads: (bytes, status, words)."""
    colour = png_bytes(np.random.default_rng(3).integers(0, 256, (40, 40, 3), dtype=np.uint8))
    jpeg_frame = struct.pack(">HBHHB", 11, 8, 20_000, 20_000, 1) + b"\x01\x11\x00"  # SOF0: 20000×20000, 1 channel
    webp_canvas = b"VP8X" + struct.pack("<I", 10) + bytes(4) + (16_383).to_bytes(3, "little") * 2
    return {
        "not_an_image": (b"these bytes are not an image", 400, "cannot decode image"),
        "png_bomb": (png_header(30_000, 30_000), 413, "30000×30000"),
        "png_bomb_with_a_bad_checksum": (png_header(8_000, 8_000, crc_offset=1), 413, "8000×8000"),
        "jpeg_bomb": (b"\xff\xd8\xff\xc0" + jpeg_frame + b"\xff\xda", 413, "20000×20000"),
        "gif_bomb": (b"GIF89a" + struct.pack("<HHBBB", 10_000, 10_000, 0, 0, 0) + b"\x2c"
                     + struct.pack("<HHHHB", 0, 0, 10_000, 10_000, 0), 413, "10000×10000"),
        "webp_bomb": (b"RIFF" + struct.pack("<I", 4 + len(webp_canvas)) + b"WEBP" + webp_canvas, 413,
                      "16384×16384"),
        "tiff_without_a_size": (b"II*\x00" + struct.pack("<IH", 8, 0), 400, "cannot decode image"),
        "eps_for_ghostscript": (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n", 400,
                                "cannot decode image"),
        "svg": (b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>', 400, "cannot decode image"),
        "png_cut_short": (colour[:len(colour) // 2], 400, "do not decode"),
        "signature_alone": (b"\x89PNG\r\n\x1a\n", 400, "cannot decode image"),
    }


# What no answer may carry: an object's repr or address, a library's name or message, a word about what is installed.
LEAKS = re.compile(r"0x[0-9a-f]{4,}|object at|BytesIO|ghostscript|traceback|PIL|cv2|pillow|opencv|errno", re.I)


def bad_requests(name):
    """(method, path, body, headers, status, words in the message) for every kind of bad input."""
    predict_path = f"/v1/models/{name}:predict"
    row = [[0.0]] * 28

    def instances(*items):
        return json.dumps({"instances": list(items)})

    return {
        "malformed_json": ("POST", predict_path, '{"instances": [', {}, 400, "malformed JSON"),
        "nested_too_deeply": ("POST", predict_path, '{"instances": ' + "[" * 50_000 + "]" * 50_000 + "}", {}, 400,
                              "nested too deeply"),
        "not_an_object": ("POST", predict_path, "[1, 2]", {}, 400, '"instances"'),
        "missing_instances": ("POST", predict_path, json.dumps({"inputs": []}), {}, 400, '"instances"'),
        "empty_instances": ("POST", predict_path, instances(), {}, 400, "non-empty"),
        "wrong_pixel_shape": ("POST", predict_path, instances([[0] * 28] * 28), {}, 400, "shape [28, 28]"),
        "ragged_pixels": ("POST", predict_path, instances([row, row[:3]]), {}, 400, "rectangular"),
        "pixels_not_numbers": ("POST", predict_path, instances([[["x"]] * 28] * 28), {}, 400, "numbers"),
        "pixels_out_of_range": ("POST", predict_path, instances([[[300]] * 28] * 28), {}, 400, "0-255"),
        "not_base64": ("POST", predict_path, instances({"b64": "@@not base64@@"}), {}, 400, "base64"),
        "other_instance_keys": ("POST", predict_path, instances({"image": "x"}), {}, 400, '{"b64"'),
        "image_over_pixel_limit": ("POST", predict_path, instances(b64(big_png())), {}, 413, "600×600"),
        **{f"image_{case}": ("POST", predict_path, instances(b64(data)), {}, status, words)
           for case, (data, status, words) in hostile_images().items()},
        # Each under the limit for one image, together over the request's: refused before any is decoded (they
        # would not decode: their pixel data is one row long).
        "images_over_the_request_budget": ("POST", predict_path, instances(*[b64(png_header(500, 400))] * 3), {},
                                           413, "--max_request_pixels"),
        "too_many_instances": ("POST", predict_path, instances(*[b64(big_png())] * 5), {}, 413, "5 instances"),
        "body_over_limit": ("POST", predict_path, "x" * 250_000, {}, 413, "over the limit of 200000"),
        "unknown_model": ("POST", "/v1/models/other:predict", instances([[[0]] * 28] * 28), {}, 404, "'other'"),
        "unknown_model_status": ("GET", "/v1/models/other", None, {}, 404, "no model named"),
        "unknown_path": ("GET", "/v2/anything", None, {}, 404, "no such path"),
    }


@pytest.mark.parametrize("case", list(bad_requests("x")))
def test_every_bad_input_is_a_json_4xx_with_a_message_and_the_server_keeps_serving(case, server):
    method, path, body, headers, status, words = bad_requests(server.name)[case]
    answered, answer, _ = server.request(method, path, body, headers)
    assert answered == status and words in answer["error"], answer
    assert not LEAKS.search(answer["error"]), answer
    assert server.is_serving()


def test_a_body_declared_over_the_limit_is_refused_before_it_is_sent(server):
    """A huge Content-Length gets its 413 at once: the server never waits for (or reads) the body."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        connection.putrequest("POST", f"/v1/models/{server.name}:predict")
        connection.putheader("Content-Type", "application/json")
        connection.putheader("Content-Length", str(10 ** 9))
        connection.endheaders()
        response = connection.getresponse()
        assert response.status == 413 and "1000000000 bytes" in json.loads(response.read())["error"]
    finally:
        connection.close()
    assert server.is_serving()


def test_a_streamed_body_over_the_limit_is_refused_as_it_streams_in(server):
    """Chunks past --max_request_bytes are answered 413 without waiting for the body's end: the client stops
    sending after the limit and still gets its answer (the server may close the connection before reading the
    rest, so a client that went on sending would meet a reset rather than the answer)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(f"POST /v1/models/{server.name}:predict HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".encode())
        chunk = b"x" * 50_000
        for _ in range(LIMITS["max_request_bytes"] // len(chunk) + 1):  # one chunk past the limit, no last chunk
            sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        reply = sock.makefile("rb")
        status = int(reply.readline().split()[1])
        headers = dict(line.decode().rstrip("\r\n").split(": ", 1) for line in iter(reply.readline, b"\r\n"))
        answer = json.loads(reply.read(int(headers["content-length"])))
    assert status == 413 and "over the limit of 200000 bytes" in answer["error"]
    assert headers["connection"] == "close" and server.is_serving()


def test_an_internal_error_is_logged_with_its_traceback_and_answered_with_only_its_id(caplog):
    """A failure no handler expects (here the model itself) reaches the log, with an id; the client gets the id."""

    class BrokenPool:
        path, kind, input_shape, num_classes, copies = "broken.tflite", "tflite", (2, 2, 1), 2, 1

        def predict(self, images):
            raise RuntimeError("the model broke at tensor 7")

    app = in_process_app("broken", BrokenPool())
    body = json.dumps({"instances": [[[[0], [255]], [[255], [0]]]]}).encode()
    with caplog.at_level(logging.ERROR, logger="serve"):
        status, answer = asyncio.run(asgi_request(app, "POST", "/v1/models/broken:predict", body))
    assert status == 500 and set(answer) == {"error", "id"} and answer["error"] == "internal error"
    assert "tensor 7" not in json.dumps(answer)
    [record] = [r for r in caplog.records if r.name == "serve"]
    assert answer["id"] in record.getMessage() and "/v1/models/broken:predict" in record.getMessage()
    assert record.exc_info[0] is RuntimeError and "the model broke at tensor 7" in caplog.text
    assert "Traceback (most recent call last)" in caplog.text


def in_process_app(name, pool, **settings):
    """serve.build_app with the test limits, a queue of 4, localhost only and no token unless `settings` say."""
    return serve.build_app(name, pool, [f"class {n}" for n in range(pool.num_classes)], **{
        **LIMITS, "max_queue": 4, "request_timeout": 30, "hosts": ["127.0.0.1"], "token": None, **settings})


def http_scope(method, path, body):
    """The ASGI scope a server makes of a request from localhost with a JSON body."""
    headers = [(b"host", b"127.0.0.1"), (b"content-type", b"application/json"),
               (b"content-length", str(len(body)).encode())]
    return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
            "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "", "headers": headers,
            "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80)}


async def asgi_request(app, method, path, body):
    """(status, parsed JSON body) of one HTTP request sent straight to an ASGI app, as a server would: after the
    body, receive() waits, as for a client that stays connected."""
    incoming = [{"type": "http.request", "body": body, "more_body": False}]
    sent = []

    async def receive():
        if incoming:
            return incoming.pop(0)
        await asyncio.Event().wait()

    async def send(message):
        sent.append(message)

    await app(http_scope(method, path, body), receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    return start["status"], json.loads(b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body"))


def test_wrong_methods_are_json_405(server):
    status, answer, _ = server.request("DELETE", f"/v1/models/{server.name}")
    assert status == 405 and answer["error"]


# --- bad flags -------------------------------------------------------------------------------------------

def one_line_error(capsys, args):
    code, _, err = run_cli(serve.main, args, capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def test_bad_folders_and_files_are_one_line_errors(tiny_run, tmp_path, capsys):
    run_dir, deploy_dir = tiny_run
    assert "nowhere" in one_line_error(capsys, ["--model_dir", str(tmp_path / "nowhere")])
    assert "neither a deploy folder" in one_line_error(capsys, ["--model_dir", str(tmp_path)])
    assert "no such model file" in one_line_error(capsys, ["--model_dir", deploy_dir, "--model_file", "x.tflite"])
    assert "0-65535" in one_line_error(capsys, ["--model_dir", deploy_dir, "--port", "70000"])
    h5_only = tmp_path / "h5_only"
    h5_only.mkdir()
    (h5_only / "labels.txt").write_text("\n".join(CLASSES) + "\n")
    (h5_only / "deploy_report.json").write_text("{}")  # a whole deploy folder, only without model.tflite
    message = one_line_error(capsys, ["--model_dir", str(h5_only)])
    assert "no model.tflite" in message and "--model_file" in message


def test_a_port_in_use_is_a_one_line_error(tiny_run, capsys):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = str(taken.getsockname()[1])
        message = one_line_error(capsys, ["--model_dir", tiny_run[1], "--port", port])
    assert f"127.0.0.1:{port}" in message and "--port" in message
