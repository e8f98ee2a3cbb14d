"""Serve one deploy or run folder over TensorFlow Serving's REST API, with a try-it page at /.

    python serve.py --model_dir deploy/run                      # model.tflite (int8) at http://127.0.0.1:8501/
    python serve.py --model_dir progress/run --port 8600        # a run folder's best.keras
    python serve.py --model_file model.tflite                   # a model file alone: class names from its metadata
    curl -H 'Content-Type: application/json' -d '{"instances": [{"b64": "'"$(base64 -w0 doodle.png)"'"}]}' \
         localhost:8501/v1/models/run:predict

TensorFlow Serving's API, so clients written for it work unchanged: GET /v1/models/NAME (status),
GET /v1/models/NAME/metadata (input shape and dtype, class names), POST /v1/models/NAME:predict with
{"instances": [...]}, each instance {"b64": "<base64 of a JPEG/PNG file>"} or a nested list of 0-255 pixels of
the model's input shape, answered with {"predictions": [...]}, one probability vector per instance.
Images are decoded by support.images' decode_image and prepare, as in training and predict.py,
so a served answer equals predict.py's for the same file. Every refused request is JSON {"error": "..."} of fixed
text with a 4xx status (503 when busy), and the server goes on serving. An unexpected failure (a bug) is logged
with its traceback and an id, and answered 500 {"error": "internal error", "id": ...}: the client learns nothing
of the code, the operator finds the log line by the id.

Every request is bounded before it costs anything (README, "Security"): its Host, token and content type
(support/request_gate.py), its size, its time to arrive (support/request_deadline.py for the headers), the pixels
its images' headers declare, and a place in a bounded queue for the model copies.
"""
from support import startup

if __name__ == "__main__":
    startup.setup()  # first: before anything imports TensorFlow (support/startup.py)

# The imports below load TensorFlow (through Keras), so they come after the start-up call.
import argparse
import asyncio
import contextlib
import functools
import html
import http
import logging
import os
import queue
import socket
import sys
import time
import uuid

from support import requirements

requirements.require(["starlette", "uvicorn"], "requirements-serve.txt", "serve.py")
import uvicorn
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from support import folders, storage
from support.errors import (ArgumentParser, UserError, non_negative_int, positive_float, positive_int,
                            reports_user_errors)
from support.images import MAX_PIXELS
from support.inference import check_class_names, class_names_beside, image_classifier, model_in
from support.labels import LABELS
from support.request_deadline import DeadlineProtocol
from support.request_gate import TOKEN_VARIABLE, RequestGate, allowed_hosts, read_token
from support.rest_request import RequestError, request_images

PAGE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "serve_page")
PAGE_PATHS = ("/", "/app.js")  # open without the token: the page holds nothing, and asks for the token itself
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
                                                       "(then give --allowed_hosts; README, Security) "
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
                   help=f"width × height of an image, read from its header before it is decoded; at most "
                        f"{MAX_PIXELS} (default: %(default)s)")
    p.add_argument("--max_request_pixels", type=positive_int, default=100_000_000,
                   help="width × height summed over a request's images, read from their headers before any is "
                        "decoded (default: %(default)s)")
    p.add_argument("--max_queue", type=non_negative_int, default=32,
                   help="requests waiting their turn; past that, and those at work (one per --model_copies, or "
                        "per CPU core if there are more), a request is answered 503 with Retry-After at once "
                        "(default: %(default)s)")
    p.add_argument("--request_timeout", type=positive_float, default=30.0,
                   help="seconds a request's headers, and then its body, may take to arrive; a slower client's "
                        "connection is closed (default: %(default)s)")
    p.add_argument("--allowed_hosts",
                   help="names and addresses clients may send as the Host header, comma-separated, or '*' for any "
                        "(behind a proxy that checks it); others are refused 421, which stops DNS rebinding "
                        "(default: the --host address, and localhost, 127.0.0.1 and ::1 when that is a loopback "
                        "address; required with --host 0.0.0.0)")
    p.add_argument("--token_file",
                   help=f"file holding a secret token that every API request must send as Authorization: Bearer "
                        f"<token> (the page asks for it); or set ${TOKEN_VARIABLE}. Never printed or logged. This is "
                        f"no substitute for TLS: see README, Security (default: no token)")
    args = p.parse_args(argv)
    if not args.model_dir and not args.model_file:
        p.error("give --model_dir (a deploy or run folder) or --model_file (a model file)")
    if args.max_image_pixels > MAX_PIXELS:
        p.error(f"argument --max_image_pixels: must be at most {MAX_PIXELS} (support/images.py's ceiling), "
                f"got {args.max_image_pixels}")
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
        self.copies = copies

    def predict(self, images):
        classifier = self.free.get()
        try:
            return classifier.predict(images)
        finally:
            self.free.put(classifier)


# --- requests ----------------------------------------------------------------------------------------------

def body_too_large(size, limit):
    """413 for a body that will not be read to its end: the answer closes the connection and says so, since the
    client must not send its next request on it."""
    return RequestError(413, f"request body {size} is over the limit of {limit} bytes (--max_request_bytes)",
                        {"Connection": "close"})


async def read_body(request, limit, seconds):
    """The request body, refused as soon as it is known to be over `limit`: before reading it when
    Content-Length says so, otherwise while it streams in; and 408 when it has not arrived within `seconds`."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise body_too_large(f"of {declared} bytes", limit)
    body = bytearray()
    try:
        async with asyncio.timeout(seconds):
            async for chunk in request.stream():
                body += chunk
                if len(body) > limit:
                    raise body_too_large("streamed in", limit)
    except TimeoutError:
        raise RequestError(408, f"the request body did not arrive within {seconds:g} s (--request_timeout)",
                           {"Connection": "close"}) from None
    return bytes(body)


def workers(copies):
    """How many requests decode and predict at once: one per model copy, or one per CPU core where there are more
    cores, since decoding is CPU work that goes on beside a busy copy (a request holds a copy only to predict)."""
    return max(copies, os.cpu_count() or 1)


class WorkQueue:
    """The bounded queue in front of the model copies: at most `workers` requests decode and predict at once, and
    at most `waiting` more wait for their turn, so a flood of requests costs neither memory nor a backlog its
    clients have long given up on. Past both, a request is answered 503 at once; a request whose client has gone
    by its turn is dropped unstarted."""

    def __init__(self, workers, waiting):
        self.turns = asyncio.Semaphore(workers)
        self.places, self.taken = workers + waiting, 0

    @contextlib.asynccontextmanager
    async def place(self):
        """A place in the queue, held from before the body is read (bodies in memory are bounded too) to the answer."""
        if self.taken >= self.places:
            raise RequestError(503, "the server is busy: every model copy is answering and the queue is full "
                                    "(--max_queue); try again shortly", {"Retry-After": "1"})
        self.taken += 1
        try:
            yield
        finally:
            self.taken -= 1

    async def run(self, request, work, *args):
        """work(*args) in a worker thread at this request's turn, unless its client has gone while it waited."""
        waits = self.turns.locked()
        async with self.turns:
            if waits and await request.is_disconnected():
                raise ClientDisconnect()
            return await run_in_threadpool(work, *args)


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


def build_app(name, pool, class_names, *, max_request_bytes, max_instances, max_image_pixels, max_request_pixels,
              max_queue, request_timeout, hosts, token):
    """The Starlette app: the REST API for one model, and the try-it page, each request past the gate (Host, token,
    content type) and each prediction through the bounded queue."""
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

    work = WorkQueue(workers(pool.copies), max_queue)

    def answer(body):
        start = time.perf_counter()
        images = request_images(body, pool.input_shape, max_instances, max_image_pixels, max_request_pixels)
        probabilities = pool.predict(images)
        milliseconds = (time.perf_counter() - start) * 1000
        return JSONResponse({"predictions": probabilities.tolist()},
                            headers={"Server-Timing": f"predict;dur={milliseconds:.2f}"})

    async def model_predict(request):
        known(request)
        async with work.place():
            body = await read_body(request, max_request_bytes, request_timeout)
            return await work.run(request, answer, body)

    async def index(request):
        return HTMLResponse(page)

    async def script(request):
        return FileResponse(os.path.join(PAGE_DIR, "app.js"), media_type="text/javascript")

    async def refused(request, error):
        return JSONResponse({"error": error.message}, status_code=error.status, headers=error.headers)

    async def http_error(request, error):
        message = http.HTTPStatus(error.status_code).phrase
        if error.status_code == 404:
            message = (f"no such path {request.url.path}; the API is /v1/models/{name}, "
                       f"/v1/models/{name}/metadata and /v1/models/{name}:predict")
        elif error.status_code == 405:
            message = f"{request.method} is not a method of {request.url.path}"
        return JSONResponse({"error": message}, status_code=error.status_code, headers=error.headers)

    async def client_gone(request, error):
        log.info("client gone before its answer: %s %s (not answered, no work started)", request.method,
                 request.url.path)
        return Response(status_code=400)  # sent nowhere: the connection is gone

    routes = [Route("/", index), Route("/app.js", script),
              Route("/v1/models/{name}:predict", model_predict, methods=["POST"]),
              Route("/v1/models/{name}/metadata", model_metadata),
              Route("/v1/models/{name}", model_status)]
    handlers = {RequestError: refused, HTTPException: http_error, ClientDisconnect: client_gone}
    return Starlette(routes=routes, exception_handlers=handlers,
                     middleware=[Middleware(InternalErrors),
                                 Middleware(RequestGate, allowed_hosts=hosts, token=token, open_paths=PAGE_PATHS)])


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
    hosts, token = allowed_hosts(args.host, args.allowed_hosts), read_token(args.token_file)
    name = args.model_name or os.path.basename(os.path.normpath(args.model_dir or os.path.splitext(path)[0]))
    pool = ClassifierPool(path, args.model_copies)
    # Beside the model file, or in the folder it was named from; a model file alone may carry them in its metadata.
    names_at = os.path.join(args.model_dir, LABELS) if args.model_dir else path
    class_names, names_from = class_names_beside(names_at, pool.num_classes)
    check_class_names(pool, class_names, names_from)
    sock = listening_socket(args.host, args.port)
    app = build_app(name, pool, class_names, max_request_bytes=args.max_request_bytes,
                    max_instances=args.max_instances, max_image_pixels=args.max_image_pixels,
                    max_request_pixels=args.max_request_pixels, max_queue=args.max_queue,
                    request_timeout=args.request_timeout, hosts=hosts, token=token)
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    print(f"serving {pool.kind} model {path} as {name!r} at http://{shown}:{port}/ "
          f"(REST: /v1/models/{name}:predict{'; a bearer token is required' if token else ''})", flush=True)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)  # a client gone or too slow is one line; a bug, its traceback
    log.propagate = False  # one line per failure, whatever handlers the libraries put on the root logger
    protocol = functools.partial(DeadlineProtocol, request_timeout=args.request_timeout)
    server = uvicorn.Server(uvicorn.Config(app, http=protocol, log_level="warning", access_log=False))
    server.run(sockets=[sock])


if __name__ == "__main__":
    main()
