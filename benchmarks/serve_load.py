"""Load on ``brushwork serve``: concurrent clients on 127.0.0.1, good and hostile uploads mixed.

    PYTHONPATH=src python benchmarks/serve_load.py                       # 8 clients, 60 s, 256 px
    PYTHONPATH=src python benchmarks/serve_load.py --clients 16 --queue 4 --duration 30   # overload: 503s

Starts ``python -m brushwork serve`` as a child process with a real-size generator
(resnet_9blocks, ngf 64; random weights unless ``--model SOURCE`` is given), sends three warm-up
requests, then runs ``--clients`` threads for ``--duration`` seconds. Each client sends one
request at a time: a good upload (a 256 x 256 photo from ../shared/data, JPEG) or, with
probability ``--bad``, one of the hostile kinds below in turn. Prints throughput, latency
percentiles (good requests, and every request), the count of each status per kind, and the
server's memory (VmRSS sampled every half second from /proc, VmHWM at the end).

What it checks (exit status 1 if not): no good request fails and every bad request gets a 4xx,
except that with more clients than the server has places (workers + queue) a 503 is accepted for
any request (a full server refuses before reading the upload; the refused client waits its
Retry-After), and the server is still healthy at the end.
"""

from __future__ import annotations

import argparse
import http.client
import io
import itertools
import json
import os
import platform
import random
import select
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from _machine import cpu_name  # benchmarks/_machine.py (scripts run from this folder)

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "monet2photo-small" / "testB"
BOUNDARY = "brushwork-load-boundary"
MB = 1_000_000


# ---------------------------------------------------------------------------------------------
# Payloads


def photos(size: int, count: int) -> list[bytes]:
    """``count`` real photos (centre-cropped to size x size) as JPEG, or smooth noise without the data."""
    files = sorted(DATA.glob("*.jpg"))[:count] if DATA.is_dir() else []
    out = []
    for path in files:
        with Image.open(path) as img:
            img = img.convert("RGB")
            side = min(img.size)
            left, top = (img.width - side) // 2, (img.height - side) // 2
            img = img.crop((left, top, left + side, top + side)).resize((size, size), Image.Resampling.LANCZOS)
        out.append(_jpeg(img))
    rng = np.random.default_rng(0)
    while len(out) < count:
        base = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        out.append(_jpeg(Image.fromarray(base).resize((size, size), Image.Resampling.BICUBIC)))
    return out


def _jpeg(img: Image.Image) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def bomb_png(width: int = 100_000, height: int = 100_000) -> bytes:
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 1024)) + chunk(b"IEND", b"")


def form(fields: dict[str, str], image: bytes | None, ctype: str = "image/jpeg") -> bytes:
    out = io.BytesIO()
    for name, value in fields.items():
        out.write(f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    if image is not None:
        out.write(f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="image"; filename="x"\r\n'
                  f"Content-Type: {ctype}\r\n\r\n".encode() + image + b"\r\n")
    out.write(f"--{BOUNDARY}--\r\n".encode())
    return out.getvalue()


FORM_TYPE = f"multipart/form-data; boundary={BOUNDARY}"


@dataclass
class Request:
    kind: str
    body: bytes = b""
    content_type: str = FORM_TYPE
    declared_length: int | None = None  # send this Content-Length and no body (refused from the header)
    stream_bytes: int = 0  # send this many bytes chunked (refused while streaming)


def bad_requests(photo: bytes, max_upload: int) -> list[Request]:
    return [
        Request("empty", form({}, b"")),
        Request("text", form({}, b"a plain text file\n" * 20, "text/plain")),
        Request("not_image", form({}, b"%PDF-1.4\n" + bytes(range(256)) * 4, "image/png")),
        Request("truncated", form({}, photo[: len(photo) // 2])),
        Request("bomb", form({}, bomb_png(), "image/png")),
        Request("unknown_model", form({"model": "no-such-model"}, photo)),
        Request("bad_strength", form({"strength": "1.7"}, photo)),
        Request("json_body", b'{"image": "..."}', "application/json"),
        Request("oversize_declared", declared_length=max_upload + 1),
        Request("oversize_chunked", stream_bytes=max_upload + MB),
    ]


# ---------------------------------------------------------------------------------------------
# One request


def send(host: str, port: int, request: Request, timeout: float) -> tuple[int | str, float]:
    """(status or an error name, the Retry-After of a 503 in seconds, else 0)."""
    if request.stream_bytes:
        return _send_chunked(host, port, request, timeout)
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        if request.declared_length is not None:
            conn.putrequest("POST", "/v1/stylize")
            conn.putheader("Content-Type", request.content_type)
            conn.putheader("Content-Length", str(request.declared_length))
            conn.endheaders()  # and not a byte of the promised body
        else:
            conn.request("POST", "/v1/stylize", body=request.body, headers={"Content-Type": request.content_type})
        response = conn.getresponse()
        data = response.read()
        if response.status == 200 and (not data or not (response.getheader("Content-Type") or "").startswith("image/")):
            return "200-not-an-image", 0
        return response.status, float(response.getheader("Retry-After") or 0)
    except (OSError, http.client.HTTPException) as exc:
        return type(exc).__name__, 0
    finally:
        conn.close()


def _send_chunked(host: str, port: int, request: Request, timeout: float) -> tuple[int | str, float]:
    """Stream a body with no Content-Length, watching for the server's answer between chunks."""
    sock = socket.create_connection((host, port), timeout=timeout)
    try:
        sock.sendall(f"POST /v1/stylize HTTP/1.1\r\nHost: {host}\r\nContent-Type: {FORM_TYPE}\r\n"
                     f"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n".encode())
        head = form({}, None)[: -len(f"--{BOUNDARY}--\r\n")] + (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="image"; filename="x"\r\n'
            "Content-Type: image/jpeg\r\n\r\n").encode()
        piece = b"\xff" * (64 * 1024)
        sent = 0
        first = True
        while sent < request.stream_bytes:
            readable, _, _ = select.select([sock], [], [], 0)
            if readable:
                break  # the server has answered (413) before the end of the body
            data = head + piece if first else piece
            first = False
            try:
                sock.sendall(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            except OSError:
                break  # the server closed its side: read what it said
            sent += len(data)
        reply = b""
        try:
            while chunk := sock.recv(65536):
                reply += chunk
        except OSError:
            pass
        if not reply.startswith(b"HTTP/1.1 "):
            return "reset-before-reply", 0
        return int(reply[9:12]), 0
    finally:
        sock.close()


# ---------------------------------------------------------------------------------------------
# The run


@dataclass
class Results:
    latency: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    status: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, kind: str, status: int | str, seconds: float) -> None:
        with self.lock:
            self.latency[kind].append(seconds)
            self.status[kind][status] += 1


def proc_memory(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) of ``pid`` in kB, from /proc (no psutil needed)."""
    out = {}
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0])
    return out


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def random_release(folder: Path) -> Path:
    import torch

    from brushwork.nn import build_generator, init_weights
    from brushwork.release import release_config_for, save_release

    arch = {"name": "resnet_9blocks", "ngf": 64, "norm": "instance", "dropout": False, "padding": "reflect",
            "in_channels": 3, "out_channels": 3}
    torch.manual_seed(0)
    net = init_weights(build_generator(**arch)).eval()  # the reference initialisation, N(0, 0.02)
    config = release_config_for(arch, direction="AtoB", source="A", target="B", train_size=256,
                                provenance={"note": "random weights for the load benchmark"})
    return save_release(net, folder, config)


def wait_healthy(host: str, port: int, server: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the server exited with status {server.returncode} before it was ready")
        try:
            conn = http.client.HTTPConnection(host, port, timeout=2)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit("the server did not become healthy in time")


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)



def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load after the warm-up")
    parser.add_argument("--size", type=int, default=256, help="side of the good uploads")
    parser.add_argument("--bad", type=float, default=0.25, help="share of hostile requests")
    parser.add_argument("--model", help="a model source (default: a random resnet_9blocks ngf 64)")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--queue", type=int, default=8)
    parser.add_argument("--timeout", type=float, default=60.0, help="the server's request timeout")
    parser.add_argument("--max-upload-mb", type=float, default=20.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the figures here (atomically)")
    args = parser.parse_args()

    host, port = "127.0.0.1", free_port()
    good = photos(args.size, 8)
    bad = bad_requests(good[0], int(args.max_upload_mb * MB))
    with tempfile.TemporaryDirectory(prefix="brushwork-load-") as tmp:
        source = args.model or str(random_release(Path(tmp) / "bench"))
        command = [sys.executable, "-m", "brushwork", "serve", "--model", f"bench={source}", "--host", host,
                   "--port", str(port), "--workers", str(args.workers), "--queue", str(args.queue),
                   "--timeout", str(args.timeout), "--max-upload-mb", str(args.max_upload_mb)]
        log_path = Path(tmp) / "server.log"
        with open(log_path, "wb") as log:
            server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ})
        try:
            wait_healthy(host, port, server)
            for body in good[:3]:  # warm-up: first passes, the speed probe on a fresh machine
                status, _ = send(host, port, Request("good", form({}, body)), timeout=300)
                if status != 200:
                    raise SystemExit(f"warm-up request failed: {status}; see the server log")
            results, samples = run_load(args, host, port, server.pid, good, bad)
            health = send_health(host, port)
            memory_end = proc_memory(server.pid)
        finally:
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
        server_log = log_path.read_text(errors="replace")
    report(args, results, samples, memory_end, health, server_log)


def send_health(host: str, port: int) -> dict | None:
    """The server's /healthz body, or None if it does not answer 200 with status ok."""
    try:
        conn = http.client.HTTPConnection(host, port, timeout=10)
        conn.request("GET", "/healthz")
        response = conn.getresponse()
        body = json.loads(response.read())
        return body if response.status == 200 and body.get("status") == "ok" else None
    except (OSError, ValueError):
        return None


def run_load(args: argparse.Namespace, host: str, port: int, pid: int, good: list[bytes],
             bad: list[Request]) -> tuple[Results, list[tuple[float, int]]]:
    results = Results()
    samples: list[tuple[float, int]] = []
    stop = threading.Event()
    t0 = time.monotonic()

    def sampler() -> None:
        while not stop.is_set():
            samples.append((time.monotonic() - t0, proc_memory(pid)["VmRSS"]))
            stop.wait(0.5)

    turn = itertools.count()  # the clients take the hostile kinds in turn, so every kind is sent
    turn_lock = threading.Lock()

    def client(index: int) -> None:
        rng = random.Random(args.seed * 1000 + index)
        while time.monotonic() - t0 < args.duration:
            if rng.random() < args.bad:
                with turn_lock:
                    request = bad[next(turn) % len(bad)]
            else:
                request = Request("good", form({}, good[rng.randrange(len(good))]))
            started = time.perf_counter()
            status, retry_after = send(host, port, request, timeout=args.timeout + 30)
            results.add(request.kind, status, time.perf_counter() - started)
            if status == 503:  # a polite client waits as told
                time.sleep(min(retry_after, max(0.0, args.duration - (time.monotonic() - t0))))

    threads = [threading.Thread(target=sampler, daemon=True)]
    threads += [threading.Thread(target=client, args=(i,), daemon=True) for i in range(args.clients)]
    for thread in threads:
        thread.start()
    for thread in threads[1:]:
        thread.join()
    stop.set()
    threads[0].join()
    samples.append((time.monotonic() - t0, proc_memory(pid)["VmRSS"]))
    results.latency["_wall"] = [time.monotonic() - t0]
    return results, samples


def report(args: argparse.Namespace, results: Results, samples: list[tuple[float, int]], memory_end: dict[str, int],
           health: dict | None, server_log: str) -> None:
    wall = results.latency.pop("_wall")[0]
    good_lat = results.latency.get("good", [])
    good_status = results.status.get("good", Counter())
    all_lat = [s for values in results.latency.values() for s in values]
    capacity = args.workers + args.queue
    overloaded = args.clients > capacity  # then 503 is the right answer to any multipart request
    print(f"machine: {cpu_name()}, {os.cpu_count()} cores; python {platform.python_version()}")
    print(f"load: {args.clients} clients for {wall:.1f} s, {args.size} px JPEG uploads, {args.bad:.0%} hostile; "
          f"server: {args.workers} worker(s), queue {args.queue}, model {args.model or 'random resnet_9blocks ngf 64'}")
    n_good = sum(good_status.values())
    print(f"throughput: {good_status[200] / wall:.2f} images/s, {len(all_lat) / wall:.2f} requests/s "
          f"({n_good} good, {len(all_lat) - n_good} hostile)")
    print("latency (s)      p50     p95     p99     max")
    for label, values in (("good", good_lat), ("all", all_lat)):
        print(f"  {label:<10} {percentile(values, 0.5):7.3f} {percentile(values, 0.95):7.3f} "
              f"{percentile(values, 0.99):7.3f} {max(values, default=float('nan')):7.3f}")
    print("status by kind:")
    failures = []
    for kind in sorted(results.status):
        counts = results.status[kind]
        shown = ", ".join(f"{status}: {n}" for status, n in sorted(counts.items(), key=lambda kv: str(kv[0])))
        lat = results.latency[kind]
        print(f"  {kind:<18} {shown}   (median {statistics.median(lat):.3f} s)")
        for status, n in counts.items():
            if status == 503 and overloaded:
                continue  # refused before the upload was read, whatever it held: what a full server does
            if kind == "good" and status != 200:
                failures.append(f"{n} good request(s) got {status}")
            if kind != "good" and not (isinstance(status, int) and 400 <= status < 500):
                failures.append(f"{n} {kind} request(s) got {status}, not a 4xx")
    rss = [kb for _, kb in samples]
    first = [kb for t, kb in samples if t <= 10] or rss[:1]
    last = [kb for t, kb in samples if t >= samples[-1][0] - 10] or rss[-1:]
    marks = [samples[min(len(samples) - 1, round(q * (len(samples) - 1)))] for q in (0, 0.25, 0.5, 0.75, 1)]
    print("server RSS over the run (MB): " + ", ".join(f"{t:.0f} s: {kb / 1024:.0f}" for t, kb in marks))
    print(f"server memory (MB): RSS at start {rss[0] / 1024:.0f}, at end {rss[-1] / 1024:.0f}, "
          f"max in the first 10 s {max(first) / 1024:.0f}, max in the last 10 s {max(last) / 1024:.0f}, "
          f"peak sampled {max(rss) / 1024:.0f}, VmHWM {memory_end.get('VmHWM', 0) / 1024:.0f}")
    mean_job = (health or {}).get("pool", {}).get("mean_job_s")
    print(f"server time per job (moving average from /healthz): {mean_job} s; "
          f"latency beyond it is waiting in the queue")
    print(f"server healthy at the end: {health is not None}; tracebacks in its log: {server_log.count('Traceback')}")
    if health is None:
        failures.append("the server was not healthy at the end")
    if args.json:
        from brushwork.utils.files import atomic_write_json

        atomic_write_json(args.json, {
            "clients": args.clients, "seconds": wall, "mean_job_s": mean_job, "images_per_s": good_status[200] / wall,
            "good_latency_s": {q: percentile(good_lat, p) for q, p in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99))},
            "status": {k: {str(s): n for s, n in v.items()} for k, v in results.status.items()},
            "rss_mb": {"start": rss[0] / 1024, "end": rss[-1] / 1024, "peak": max(rss) / 1024,
                       "hwm": memory_end.get("VmHWM", 0) / 1024},
            "rss_samples": samples,
        })
    if failures:
        print("FAILED: " + "; ".join(failures))
        raise SystemExit(1)
    print("ok: no good request failed, every hostile one got a 4xx" + (" (or a 503: overloaded)" if overloaded else ""))


if __name__ == "__main__":
    main()
