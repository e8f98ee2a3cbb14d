"""serve.py under load: requests/s and p50/p99 latency for 1, 8 and 32 concurrent clients sending single-image
requests, against the same work called in-process; one model copy behind a lock against a pool of copies; and the
bad-input list sent under load, with the server's memory before and after.

    REAL_DATA_DIR=../shared/data .venv/bin/python bench/serve_load.py --model_dir deploy/serve_bench

The requests are base64 PNGs of real QuickDraw drawings (KMLC's validation records), as the try-it page and a
TF Serving client send them. The clients are threads with keep-alive connections in this process and the server
is its own process: both share this machine's cores. In-process, the same threads call request_images and the
model pool directly: the same decoding, preparing and model, without HTTP, so the ratio is HTTP's cost.
"""
import argparse
import base64
import http.client
import io
import json
import os
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

import serve  # noqa: E402
from reader import DataReader  # noqa: E402
from support.rest_request import request_images  # noqa: E402

MAX_INSTANCES, MAX_IMAGE_PIXELS, MAX_REQUEST_PIXELS = 8, 1_000_000, 8_000_000
LIMITS = ["--max_request_bytes", "1000000", "--max_instances", str(MAX_INSTANCES),
          "--max_image_pixels", str(MAX_IMAGE_PIXELS), "--max_request_pixels", str(MAX_REQUEST_PIXELS)]
JSON = {"Content-Type": "application/json"}


def png_b64(array):
    buffer = io.BytesIO()
    Image.fromarray(array.squeeze()).save(buffer, "PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def start_server(model_dir, copies):
    """serve.py in its own process on a free port: (process, port)."""
    process = subprocess.Popen([sys.executable, os.path.join(ROOT, "serve.py"), "--model_dir", model_dir, "--port",
                                "0", "--model_copies", str(copies), *LIMITS], stdout=subprocess.PIPE, text=True)
    banner = process.stdout.readline()
    if "http://127.0.0.1:" not in banner:
        sys.exit(f"error: serve.py did not start: {banner.strip() or 'no output'}")
    return process, int(banner.split("http://127.0.0.1:")[1].split("/")[0])


def rss_mb(process):
    with open(f"/proc/{process.pid}/status") as f:
        return next(int(line.split()[1]) / 1024 for line in f if line.startswith("VmRSS:"))


def http_call(port):
    """A client's call: one keep-alive connection per thread, reopened after the server closes it."""
    local = threading.local()

    def call(request):
        method, path, body, headers, status = request
        if getattr(local, "connection", None) is None:
            local.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        try:
            local.connection.request(method, path, body=body, headers=headers)
            response = local.connection.getresponse()
            answer = json.loads(response.read())
        except (OSError, http.client.HTTPException, ValueError):
            local.connection.close()
            local.connection = None
            return False
        return response.status == status and ("predictions" in answer) == (status == 200)

    return call


def in_process_call(pool, shape):
    def call(request):
        pool.predict(request_images(request[2], shape, MAX_INSTANCES, MAX_IMAGE_PIXELS, MAX_REQUEST_PIXELS))
        return True

    return call


def load(call, requests, clients, seconds):
    """`clients` threads calling `call` on the requests in turn for `seconds`: (requests/s, latencies in ms,
    failures)."""
    latencies, failures = [[] for _ in range(clients)], [0] * clients
    deadline = time.perf_counter() + seconds

    def client(k):
        n = k
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            ok = call(requests[n % len(requests)])
            latencies[k].append(time.perf_counter() - start)
            failures[k] += not ok
            n += clients

    start = time.perf_counter()
    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    times = np.concatenate([np.array(t) for t in latencies]) * 1000
    return len(times) / (time.perf_counter() - start), times, sum(failures)


def summary(rounds):
    """(median requests/s over the rounds, p50 ms, p99 ms over all their requests, requests, failures)."""
    times = np.concatenate([r[1] for r in rounds])
    p50, p99 = np.percentile(times, [50, 99])
    return float(np.median([r[0] for r in rounds])), p50, p99, len(times), sum(r[2] for r in rounds)


def bad_requests(path, good):
    """The bad-input list, each with the status it must get; sent among good requests."""
    side = int(MAX_IMAGE_PIXELS ** 0.5) + 1
    big = png_b64(np.zeros((side, side), np.uint8))

    def instances(*items):
        return json.dumps({"instances": list(items)})

    return [("POST", path, '{"instances": [', JSON, 400),  # malformed JSON
            ("POST", path, '{"inputs": []}', JSON, 400),  # no "instances"
            ("POST", path, instances([[0] * 28] * 28), JSON, 400),  # wrong pixel shape
            ("POST", path, instances({"b64": base64.b64encode(b"not an image").decode()}), JSON, 400),
            ("POST", path, instances({"b64": big}), JSON, 413),  # image over the limit
            ("POST", path, None, {**JSON, "Content-Length": str(10 ** 9)}, 413),  # body over the limit
            ("POST", path, instances(*[{"b64": good}] * (MAX_INSTANCES + 1)), JSON, 413),  # too many instances
            ("POST", "/v1/models/no_such_model:predict", instances({"b64": good}), JSON, 404)]  # unknown model


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model_dir", required=True, help="deploy folder of a QuickDraw model (deploy.py --save_to)")
    p.add_argument("--data", help="drawings to send (default: $REAL_DATA_DIR/quickdraw_tfrecord/validation)")
    p.add_argument("--seconds", type=float, default=1.0, help="seconds per round (default: %(default)s)")
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds per load level (default: %(default)s)")
    p.add_argument("--clients", default="1,8,32", help="concurrent clients per level (default: %(default)s)")
    p.add_argument("--copies", default="1,2", help="model copies to compare; 1 is a lock (default: %(default)s)")
    args = p.parse_args()
    data = args.data or (os.environ.get("REAL_DATA_DIR") and
                         os.path.join(os.environ["REAL_DATA_DIR"], "quickdraw_tfrecord", "validation"))
    if not data:
        sys.exit("error: set REAL_DATA_DIR to the folder holding quickdraw_tfrecord/, or give --data")
    levels, copies = [int(c) for c in args.clients.split(",")], [int(c) for c in args.copies.split(",")]
    reader = DataReader(data)
    drawings = [png_b64(image) for image in reader.load_many(range(min(64, len(reader))))]
    model_path = serve.chosen_model(args.model_dir, None)
    name = os.path.basename(os.path.normpath(args.model_dir))
    path = f"/v1/models/{name}:predict"
    good = [("POST", path, json.dumps({"instances": [{"b64": d}]}), JSON, 200) for d in drawings]

    servers = {count: start_server(args.model_dir, count) for count in copies}
    calls = {}
    for count, (_, port) in servers.items():
        pool = serve.ClassifierPool(model_path, count)
        calls["in-process", count], calls["http", count] = in_process_call(pool, pool.input_shape), http_call(port)
    for call in calls.values():
        load(call, good, 4, 0.5)  # warm up: connections, the interpreters' first runs
    results = {}
    print(f"{'mode':<12}{'copies':>7}{'clients':>8}{'requests':>10}{'rps':>9}{'p50 ms':>9}{'p99 ms':>9}{'failed':>8}")
    for clients in levels:
        rounds = {key: [] for key in calls}
        for _ in range(args.rounds):  # alternating, so that other work on the machine hits every mode alike
            for key, call in calls.items():
                rounds[key].append(load(call, good, clients, args.seconds))
        for (mode, count), measured in rounds.items():
            results[mode, count, clients] = rps, p50, p99, sent, failed = summary(measured)
            print(f"{mode:<12}{count:>7}{clients:>8}{sent:>10}{rps:>9.0f}{p50:>9.2f}{p99:>9.2f}{failed:>8}",
                  flush=True)

    best, lock = copies[-1], copies[0]
    process, port = servers[best]
    bad = bad_requests(path, drawings[0])
    mixed = [request for pair in zip(bad, good) for request in pair]
    before, rounds, after = rss_mb(process), [], []
    for _ in range(2):  # the second round shows whether memory keeps growing
        rounds.append(load(calls["http", best], mixed, 8, args.seconds * 3))
        after.append(rss_mb(process))
    sent, failed = sum(len(r[1]) for r in rounds), sum(r[2] for r in rounds)
    alive = calls["http", best](good[0])
    for server, _ in servers.values():
        server.terminate()
        server.wait()
    print(f"bad input under load: {sent} requests (half of them bad, {len(bad)} kinds) from 8 clients, {failed} not "
          f"answered as expected; server RSS {before:.0f} MB before, {after[0]:.0f} MB after, {after[1]:.0f} MB "
          f"after a second round; serving afterwards: {alive}")

    for clients in levels:
        http_figures, direct = results["http", best, clients], results["in-process", best, clients]
        print(f"http_{clients}_clients: {http_figures[0]:.0f} rps, p50 {http_figures[1]:.2f} ms, "
              f"p99 {http_figures[2]:.2f} ms, {http_figures[4]} failed (goal 0 failed)")
        print(f"in_process_{clients}_clients: {direct[0]:.0f} rps, p50 {direct[1]:.2f} ms, p99 {direct[2]:.2f} ms")
        print(f"http_overhead_{clients}_clients: in-process/http rps {direct[0] / http_figures[0]:.2f}×, "
              f"http/in-process p50 {http_figures[1] / direct[1]:.2f}×")
        print(f"pool_vs_lock_{clients}_clients: http rps with {best} copies / {lock} "
              f"{http_figures[0] / results['http', lock, clients][0]:.2f}×, in-process "
              f"{direct[0] / results['in-process', lock, clients][0]:.2f}× (goal ≥ 1: the pool is the faster)")
    print(f"bad_input_under_load: {sent - failed}/{sent} answered as expected (goal all), server RSS "
          f"{after[1] - after[0]:+.1f} MB over the second round (goal flat)")


if __name__ == "__main__":
    main()
