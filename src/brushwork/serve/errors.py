"""The service's one error shape: ``{"error": CODE, "detail": MESSAGE, "request_id": ID}``.

Every refusal the service makes is an :class:`ApiError` with a status, a stable machine-readable
code and a one-line message for people; anything else that goes wrong becomes a generic 500
whose request id points to the full traceback in the server's log, never to the client.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

#: The ``scope["state"]`` key holding the request id.
REQUEST_ID_KEY = "request_id"


class ApiError(Exception):
    """A refusal: HTTP ``status``, a ``code`` such as ``"upload_too_large"``, a message for people.

    ``extra`` adds fields to the JSON body (e.g. the valid model names); ``headers`` adds
    response headers (e.g. ``Retry-After``).
    """

    def __init__(self, status: int, code: str, detail: str, *, extra: Mapping[str, Any] | None = None,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.extra = dict(extra or {})
        self.headers = dict(headers or {})


def error_body(code: str, detail: str, request_id: str | None, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"error": code, "detail": detail}
    body.update(extra or {})
    body["request_id"] = request_id
    return body


def error_bytes(code: str, detail: str, request_id: str | None, extra: Mapping[str, Any] | None = None) -> bytes:
    return json.dumps(error_body(code, detail, request_id, extra)).encode()
