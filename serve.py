"""Serve one deploy or run folder over TensorFlow Serving's REST API, with a try-it page at /.

    python serve.py --model_dir deploy/run                      # model.tflite (int8) at http://127.0.0.1:8501/
    python serve.py --model_dir progress/run --port 8600        # a run folder's best.keras
    python serve.py --model_file model.tflite                   # a model file alone: class names from its metadata
    curl -d '{"instances": [{"b64": "'"$(base64 -w0 doodle.png)"'"}]}' localhost:8501/v1/models/run:predict

TensorFlow Serving's API, so clients written for it work unchanged: GET /v1/models/NAME (status),
GET /v1/models/NAME/metadata (input shape and dtype, class names), POST /v1/models/NAME:predict with
{"instances": [...]}, each instance {"b64": "<base64 of a JPEG/PNG file>"} or a nested list of 0-255 pixels of
the model's input shape, answered with {"predictions": [...]}, one probability vector per instance.
Images are decoded by reader.decode_image and resized by datagen.prepare, as in training and predict.py, so a
served answer equals predict.py's for the same file. Every refused request is JSON {"error": "..."} with a 4xx
status, and the server goes on serving. An unexpected failure (a bug) is logged with its traceback and an id,
and answered 500 {"error": "internal error", "id": ...}: the client learns nothing of the code, the operator
finds the log line by the id.
"""
import argparse
import base64
import binascii
import html
import io
import json
import logging
import os
import queue
import socket
import sys
import time
import uuid

from support import console  # noqa: F401  first: quiets TensorFlow's import (see console.py)
from support import requirements

requirements.require(["starlette", "uvicorn"], "requirements-serve.txt", "serve.py")
import numpy as np
import uvicorn
from PIL import Image
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.responses import FileResponse, HTMLResponse, JSONResponse
from starlette.routing import Route

from datagen import prepare
from support import folders, storage
from support.errors import ArgumentParser, UserError, positive_int, reports_user_errors
from support.images import decode_image
from support.inference import check_class_names, class_names_beside, image_classifier, model_in
from support.labels import LABELS

PAGE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "serve_page")
log = logging.getLogger("serve")


def port_number(text):
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"must be a port number 0-65535 (0 picks a free one), got '{text}'")
    return int(text)


def parse_args(argv=None):
    p = ArgumentParser(description="Serve a deploy or run folder over TensorFlow Serving's REST API, "
                                   "with a page at / to draw or drop an image and see the answer.")
    p.add_argument("--model_dir", help="deploy folder (deploy.py --save_to) or run folder (train.py --save_to)")
    p.add_argument("--model_file", help="model to serve: .tflite, .h5 or .keras (default: a deploy folder's "
                                        "model.tflite, a run folder's best.keras); a bare name is looked up in "
                                        "--model_dir; alone, its class names come from beside it or its metadata")
    p.add_argument("--model_name", help="NAME in /v1/models/NAME (default: the folder's name)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on; 0.0.0.0 opens it to the network "
                                                       "(default: %(default)s)")
    p.add_argument("--port", type=port_number, default=8501, help="0 picks a free one (default: %(default)s)")
    p.add_argument("--model_copies", type=positive_int, default=2,
                   help="copies of the model answering side by side; 1 is one model behind a lock "
                        "(default: %(default)s)")
    p.add_argument("--max_request_bytes", type=positive_int, default=10_000_000,
                   help="larger request bodies are refused before they are read (default: %(default)s)")
    p.add_argument("--max_instances", type=positive_int, default=64,
                   help="instances in one request (default: %(default)s)")
    p.add_argument("--max_image_pixels", type=positive_int, default=25_000_000,
                   help="width × height of an image, checked before it is decoded (default: %(default)s)")
    args = p.parse_args(argv)
    if not args.model_dir and not args.model_file:
        p.error("give --model_dir (a deploy or run folder) or --model_file (a model file)")
    return args


# --- the model ---------------------------------------------------------------------------------------------

def chosen_model(model_dir, model_file):
    """The model file to serve from a deploy folder (model.tflite by default) or a run folder (best.keras), or
    `model_file` alone."""
    if model_dir is None:
        return model_file
    if not storage.isdir(model_dir):
        raise UserError(f"--model_dir {model_dir} is not a folder; give a deploy folder (deploy.py --save_to) "
                        f"or a run folder (train.py --save_to)")
    if not folders.is_deploy_folder(model_dir) and not folders.is_run_folder(model_dir):
        raise UserError(f"--model_dir {model_dir} is neither a deploy folder (no "
                        f"{' or '.join(folders.DEPLOY.markers)}) nor a run folder (no {folders.CONFIG})")
    return model_in(model_dir, model_file)


class ClassifierPool:
    """Copies of one classifier, each answering one request at a time: a TFLite interpreter is not safe to call
    from two threads at once (a Keras model is treated the same). One copy is a lock; more let requests run side
    by side (bench/serve_load.py measures both)."""

    def __init__(self, path, copies):
        loaded = [image_classifier(path) for _ in range(copies)]
        self.free = queue.Queue()
        for classifier in loaded:
            self.free.put(classifier)
        first = loaded[0]
        self.path, self.kind, self.input_shape, self.num_classes = (first.path, first.kind, first.input_shape,
                                                                    first.num_classes)

    def predict(self, images):
        classifier = self.free.get()
        try:
            return classifier.predict(images)
        finally:
            self.free.put(classifier)


# --- requests ----------------------------------------------------------------------------------------------

class RequestError(Exception):
    """A refused request: answered as JSON {"error": message} with its 4xx status (and any headers)."""

    def __init__(self, status, message, headers=None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers


def check_image_size(data, where, max_pixels):
    """Refuse an image whose header says it is too large before decoding it: a small PNG can expand to
    gigabytes. Anything that is not an image is left for decode_image to name."""
    try:
        with Image.open(io.BytesIO(data)) as picture:
            size = picture.size
    except Image.DecompressionBombError:  # over Pillow's own limit, far above any sensible --max_image_pixels
        size = None
    except Exception:
        return
    if size is None or size[0] * size[1] > max_pixels:
        shown = f"{size[0]}×{size[1]} pixels" if size else "more pixels than Pillow will open"
        raise RequestError(413, f"{where}: image of {shown} is over the limit of {max_pixels} pixels "
                                f"(--max_image_pixels); send a smaller image")


def instance_pixels(instance, where, input_shape, max_pixels):
    """One instance as the model's float32 (H, W, C) 0-255 input: a base64 image file is decoded and prepared
    exactly as in training; a nested list of pixels must already have the input shape."""
    if isinstance(instance, dict):
        if set(instance) != {"b64"} or not isinstance(instance["b64"], str):
            raise RequestError(400, f'{where}: an object instance must be {{"b64": "<base64 of a JPEG/PNG file>"}}')
        try:
            data = base64.b64decode(instance["b64"], validate=True)
        except binascii.Error:
            raise RequestError(400, f"{where}: b64 is not valid base64") from None
        check_image_size(data, where, max_pixels)
        try:
            image = decode_image(data, where)
        except UserError as error:
            raise RequestError(400, str(error)) from None
        return prepare(image, input_shape[:2], input_shape[2]).astype(np.float32)
    expected = f"a nested list of 0-255 pixels of shape {list(input_shape)} (H, W, C), or {{\"b64\": ...}}"
    try:
        pixels = np.asarray(instance)
    except ValueError:
        raise RequestError(400, f"{where}: pixels are not a rectangular nested list; expected {expected}") from None
    if pixels.dtype.kind not in "iuf":
        raise RequestError(400, f"{where}: pixels must be numbers; expected {expected}")
    if pixels.shape != input_shape:
        raise RequestError(400, f"{where}: pixels of shape {list(pixels.shape)}; expected {expected}")
    if not ((pixels >= 0) & (pixels <= 255)).all():
        raise RequestError(400, f"{where}: pixel values must be in 0-255; expected {expected}")
    return pixels.astype(np.float32)


def request_images(body, input_shape, max_instances, max_pixels):
    """The images of a TF Serving row-format body {"instances": [...]}, checked before any model runs."""
    try:
        payload = json.loads(body)
    except ValueError as error:
        raise RequestError(400, f"malformed JSON: {error}") from None
    except RecursionError:
        raise RequestError(400, "malformed JSON: nested too deeply") from None
    if not isinstance(payload, dict) or "instances" not in payload:
        raise RequestError(400, 'the body must be a JSON object with "instances": [...]')
    instances = payload["instances"]
    if not isinstance(instances, list) or not instances:
        raise RequestError(400, '"instances" must be a non-empty list')
    if len(instances) > max_instances:
        raise RequestError(413, f"{len(instances)} instances is over the limit of {max_instances} per request "
                                f"(--max_instances); split the request")
    return np.stack([instance_pixels(instance, f"instance {n}", input_shape, max_pixels)
                     for n, instance in enumerate(instances)])


def body_too_large(size, limit):
    """413 for a body that will not be read to its end: the answer closes the connection and says so, since the
    client must not send its next request on it."""
    return RequestError(413, f"request body {size} is over the limit of {limit} bytes (--max_request_bytes)",
                        {"Connection": "close"})


async def read_body(request, limit):
    """The request body, refused as soon as it is known to be over `limit`: before reading it when
    Content-Length says so, otherwise while it streams in."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise body_too_large(f"of {declared} bytes", limit)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise body_too_large("streamed in", limit)
    return bytes(body)


# --- the app -----------------------------------------------------------------------------------------------

def metadata(name, pool, class_names):
    """TF Serving's metadata form (a signature with a float 0-255 image input), plus the class names."""
    def tensor(tensor_name, dims):
        return {"name": tensor_name, "dtype": "DT_FLOAT",
                "tensor_shape": {"dim": [{"size": str(d), "name": ""} for d in dims], "unknown_rank": False}}

    signature = {"inputs": {"images": tensor("images", [-1, *pool.input_shape])},
                 "outputs": {"probabilities": tensor("probabilities", [-1, pool.num_classes])},
                 "method_name": "tensorflow/serving/predict"}
    return {"model_spec": {"name": name, "signature_name": "", "version": "1"},
            "metadata": {"signature_def": {"signature_def": {"serving_default": signature}},
                         "input_shape": list(pool.input_shape), "input_dtype": "float32 pixel values 0-255",
                         "class_names": class_names, "model_file": os.path.basename(pool.path),
                         "kind": pool.kind}}


def build_app(name, pool, class_names, max_request_bytes, max_instances, max_image_pixels):
    """The Starlette app: the REST API for one model, and the try-it page."""
    status = {"model_version_status": [{"version": "1", "state": "AVAILABLE",
                                        "status": {"error_code": "OK", "error_message": ""}}]}
    described = metadata(name, pool, class_names)
    with open(os.path.join(PAGE_DIR, "index.html")) as f:
        page = f.read().replace("{{model_name}}", html.escape(name))

    def known(request):
        asked = request.path_params["name"]
        if asked != name:
            raise RequestError(404, f"no model named {asked!r}; this server serves {name!r}")

    async def model_status(request):
        known(request)
        return JSONResponse(status)

    async def model_metadata(request):
        known(request)
        return JSONResponse(described)

    def answer(body):
        start = time.perf_counter()
        images = request_images(body, pool.input_shape, max_instances, max_image_pixels)
        probabilities = pool.predict(images)
        milliseconds = (time.perf_counter() - start) * 1000
        return JSONResponse({"predictions": probabilities.tolist()},
                            headers={"Server-Timing": f"predict;dur={milliseconds:.2f}"})

    async def model_predict(request):
        known(request)
        body = await read_body(request, max_request_bytes)
        return await run_in_threadpool(answer, body)

    async def index(request):
        return HTMLResponse(page)

    async def script(request):
        return FileResponse(os.path.join(PAGE_DIR, "app.js"), media_type="text/javascript")

    async def refused(request, error):
        return JSONResponse({"error": error.message}, status_code=error.status, headers=error.headers)

    async def http_error(request, error):
        message = error.detail
        if error.status_code == 404:
            message = (f"no such path {request.url.path}; the API is /v1/models/{name}, "
                       f"/v1/models/{name}/metadata and /v1/models/{name}:predict")
        return JSONResponse({"error": message}, status_code=error.status_code, headers=error.headers)

    routes = [Route("/", index), Route("/app.js", script),
              Route("/v1/models/{name}:predict", model_predict, methods=["POST"]),
              Route("/v1/models/{name}/metadata", model_metadata),
              Route("/v1/models/{name}", model_status)]
    return Starlette(routes=routes, exception_handlers={RequestError: refused, HTTPException: http_error},
                     middleware=[Middleware(InternalErrors)])


class InternalErrors:
    """ASGI middleware: an exception no handler answered is logged with its traceback under a new id, and the
    client gets a 500 that carries only that id. (Starlette's own handler for Exception would re-raise it after
    answering, so the server would log it a second time, without the id.)"""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        started = False

        async def sending(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except Exception as error:
            if scope["type"] != "http" or started:  # nothing left to answer with: the server logs and closes
                raise
            error_id = uuid.uuid4().hex[:12]
            log.error("internal error %s on %s %s", error_id, scope["method"], scope["path"], exc_info=error)
            await JSONResponse({"error": "internal error", "id": error_id}, status_code=500)(scope, receive, send)


def listening_socket(host, port):
    """Bind before serving, so that a port in use is a one-line error rather than a server log. The socket names
    its protocol (TCP) as asyncio's own do: asyncio then sets TCP_NODELAY on each connection, without which every
    response waits ~40 ms for the client's delayed ACK."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as error:
        sock.close()
        raise UserError(f"cannot listen on {host}:{port} ({error.strerror or error}); "
                        f"choose another --port (0 picks a free one) or --host") from error
    return sock


@reports_user_errors
def main(argv=None):
    args = parse_args(argv)
    path = chosen_model(args.model_dir, args.model_file)
    name = args.model_name or os.path.basename(os.path.normpath(args.model_dir or os.path.splitext(path)[0]))
    pool = ClassifierPool(path, args.model_copies)
    # Beside the model file, or in the folder it was named from; a model file alone may carry them in its metadata.
    names_at = os.path.join(args.model_dir, LABELS) if args.model_dir else path
    class_names, names_from = class_names_beside(names_at, pool.num_classes)
    check_class_names(pool, class_names, names_from)
    sock = listening_socket(args.host, args.port)
    app = build_app(name, pool, class_names, args.max_request_bytes, args.max_instances, args.max_image_pixels)
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    print(f"serving {pool.kind} model {path} as {name!r} at http://{shown}:{port}/ "
          f"(REST: /v1/models/{name}:predict)", flush=True)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    log.propagate = False  # one line per failure, whatever handlers the libraries put on the root logger
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    server.run(sockets=[sock])


if __name__ == "__main__":
    main()
