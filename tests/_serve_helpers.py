"""Fake pipelines, request builders and a live uvicorn server for the service tests."""

from __future__ import annotations

import asyncio
import io
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest
from PIL import Image

BOUNDARY = "brushwork-test-boundary"


class Invert:
    """A pipeline whose output is known exactly: 255 - input per RGB channel, alpha kept."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, image: Image.Image) -> Image.Image:
        self.calls += 1
        out = Image.fromarray(255 - np.asarray(image.convert("RGB")), mode="RGB")
        if image.mode == "RGBA":
            out.putalpha(image.getchannel("A"))
        return out

    def describe(self) -> str:
        return "inverts every channel"


class Gate(Invert):
    """A pipeline that blocks each call until ``release`` is set; ``started`` is set when a call begins.

    Deterministic slowness: a test decides when the work ends instead of sleeping and hoping.
    """

    def __init__(self) -> None:
        super().__init__()
        self.entered = 0
        self.started = threading.Event()
        self.release = threading.Event()

    def __call__(self, image: Image.Image) -> Image.Image:
        self.entered += 1
        self.started.set()
        if not self.release.wait(timeout=60):
            raise RuntimeError("the test never released the gate")
        return super().__call__(image)

    def describe(self) -> str:
        return "waits for the test"


class Broken(Invert):
    """A pipeline that fails the way a bug would, with details no client should see."""

    def __call__(self, image: Image.Image) -> Image.Image:
        raise RuntimeError("secret internal detail at /srv/models/weights.bin")


def random_rgb(width: int, height: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), mode="RGB")


def encoded(image: Image.Image, fmt: str = "PNG", **kwargs: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def decoded(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img.convert("RGBA" if img.mode in ("RGBA", "LA", "P") else "RGB"))


def multipart(fields: dict[str, str] | None = None, files: Sequence[tuple[str, bytes, str]] = ()) -> tuple[bytes, str]:
    """A multipart/form-data body and its content type; ``files`` are (field, bytes, content type)."""
    out = io.BytesIO()
    for name, value in (fields or {}).items():
        out.write(f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    for name, data, ctype in files:
        out.write(f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"; filename="../../etc/x.png"\r\n'
                  f"Content-Type: {ctype}\r\n\r\n".encode())
        out.write(data + b"\r\n")
    out.write(f"--{BOUNDARY}--\r\n".encode())
    return out.getvalue(), f"multipart/form-data; boundary={BOUNDARY}"


class AsgiResult:
    def __init__(self, status: int, headers: dict[str, str], body: bytes, chunks_read: int) -> None:
        self.status, self.headers, self.body, self.chunks_read = status, headers, body, chunks_read

    def json(self) -> Any:
        import json

        return json.loads(self.body)


async def asgi_request(app: Any, method: str, path: str, *, headers: dict[str, str] | None = None,
                       chunks: Sequence[bytes] = ()) -> AsgiResult:
    """Call an ASGI app directly, the body arriving in ``chunks``; counts how many chunks it read."""
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
        "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
        "headers": [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()],
        "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 80),
    }  # fmt: skip
    read = 0
    finished = asyncio.Event()
    messages: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal read
        if read < len(chunks):
            read += 1
            return {"type": "http.request", "body": chunks[read - 1], "more_body": read < len(chunks)}
        if not chunks and read == 0:
            read = -1
            return {"type": "http.request", "body": b"", "more_body": False}
        await finished.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)
        if message["type"] == "http.response.body" and not message.get("more_body"):
            finished.set()

    await app(scope, receive, send)
    start = messages[0]
    head = {k.decode("latin-1"): v.decode("latin-1") for k, v in start.get("headers", [])}
    body = b"".join(m.get("body", b"") for m in messages[1:])
    return AsgiResult(start["status"], head, body, max(read, 0))


async def wait_until(condition: Any, what: str, timeout_s: float = 30.0) -> None:
    """Yield to the event loop until ``condition()`` holds (a failure, not a hang, if it never does)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


@contextmanager
def live_server(app: Any) -> Iterator[str]:
    """Run ``app`` under uvicorn on 127.0.0.1 on a free port in a thread; yields the base URL."""
    uvicorn = pytest.importorskip("uvicorn")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
