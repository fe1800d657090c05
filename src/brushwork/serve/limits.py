"""Two ASGI middlewares at the edge of the service: request ids and a last-resort 500, and the body size limit.

They work on raw ASGI messages rather than on a parsed request, so that the size limit holds
while the body streams in (a chunked upload has no ``Content-Length`` to check up front) and so
that no exception, from any layer, reaches the client as anything but a JSON error.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from brushwork.serve.errors import REQUEST_ID_KEY, error_bytes

log = logging.getLogger(__name__)


async def send_json(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    """A complete JSON response in two ASGI messages."""
    head = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *(headers or [])]
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": body})


def request_id(scope: Scope) -> str | None:
    state: dict[str, Any] = scope.get("state") or {}
    return state.get(REQUEST_ID_KEY)


class RequestGuardMiddleware:
    """Give every request an id (``X-Request-ID`` on the response) and turn any uncaught
    exception into a generic 500 JSON body naming that id; the traceback goes to the log only."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = uuid.uuid4().hex[:16]
        scope.setdefault("state", {})[REQUEST_ID_KEY] = rid
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message = {**message, "headers": [*message.get("headers", []), (b"x-request-id", rid.encode())]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            log.exception("request %s (%s %r) failed", rid, scope.get("method"), scope.get("path"))
            if started:  # the status line is out; all that can be done is to end the connection
                raise
            await send_json(send_with_id, 500, error_bytes(
                "internal_error", "the server could not handle this request; quote the request id when reporting it", rid))


class _BodyTooLarge(Exception):
    pass


class BodyLimitMiddleware:
    """Refuse a request body over ``max_bytes`` with 413, without reading the rest of it.

    A ``Content-Length`` over the limit is refused before a byte of the body is read (a client
    that sent ``Expect: 100-continue`` never sends it); a body without one (chunked) is counted as
    it streams in and refused the moment it passes the limit. What was read so far is dropped and
    the server closes the connection rather than drain the remainder.
    """

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _too_large(self, scope: Scope, send: Send, what: str) -> Any:
        mb = self.max_bytes / 1e6
        return send_json(send, 413, error_bytes(
            "upload_too_large", f"{what} is over this server's limit of {self.max_bytes:,} bytes ({mb:g} MB)",
            request_id(scope), {"limit_bytes": self.max_bytes}), [(b"connection", b"close")])

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = [v for k, v in scope.get("headers", []) if k == b"content-length"]
        if declared:
            try:
                length = int(declared[0])
                if length < 0:
                    raise ValueError
            except ValueError:
                await send_json(send, 400, error_bytes("bad_content_length", "the Content-Length header is not a whole number",
                                                       request_id(scope)))
                return
            if length > self.max_bytes:
                await self._too_large(scope, send, f"the request body ({length:,} bytes by its Content-Length)")
                return

        received = 0
        started = False

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _BodyTooLarge
            return message

        async def watched_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, watched_send)
        except _BodyTooLarge:
            if started:
                raise
            await self._too_large(scope, send, f"the request body (more than {received:,} bytes so far)")
