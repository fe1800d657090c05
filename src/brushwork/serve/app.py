"""The HTTP service: ``create_app(models)`` -> a FastAPI app with the JSON API and the web page.

    >>> from brushwork.inference import Stylizer
    >>> app = create_app({"monet": Stylizer.from_pretrained("runs/monet/release/BtoA")})
    >>> # uvicorn.run(app, host="127.0.0.1", port=8000)   (what ``brushwork serve`` does)

Models are loaded before the app is made (the CLI loads them; tests pass tiny ones) and stay
loaded for the life of the process. Endpoints:

- ``POST /v1/stylize``: multipart form, ``image`` (the file), ``model`` (a name; default the
  first), ``strength`` (0..1, blend with the input; default 1), ``format`` (png | jpeg | webp;
  default the upload's own format where possible, else png) -> the image bytes.
- ``GET /v1/models``: the names, their descriptions, which is the default, the upload limits.
- ``GET /healthz``: liveness plus the pool's load.
- ``GET /``: the web page (plain HTML, JS and CSS from this package); ``/docs``: the OpenAPI page.

Every refusal is a JSON body ``{"error", "detail", "request_id"}`` (:mod:`brushwork.serve.errors`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from brushwork.data.imageio import (
    EmptyImageError,
    ImageReadError,
    ImageTooLargeError,
    NotAnImageError,
    pixel_limit,
)
from brushwork.inference.stylizer import ImageTooSmallError
from brushwork.serve.errors import REQUEST_ID_KEY, ApiError, error_body
from brushwork.serve.form import Form, multipart_boundary, read_form
from brushwork.serve.imaging import (
    OUTPUT_FORMATS,
    UPLOAD_FORMATS,
    Pipeline,
    probe_upload,
    stylize_upload,
)
from brushwork.serve.limits import BodyLimitMiddleware, RequestGuardMiddleware
from brushwork.serve.pool import InferencePool, JobTimeoutError, QueueFullError

log = logging.getLogger(__name__)

MB = 1_000_000
DEFAULT_MAX_UPLOAD_BYTES = 20 * MB
#: A model name: what ``brushwork serve --model NAME=SOURCE`` accepts and the API echoes back.
MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
#: Declared content types an image part may have (besides none at all).
GENERIC_TYPES = ("application/octet-stream", "")
STATIC_FILES = {"app.js": "text/javascript; charset=utf-8", "style.css": "text/css; charset=utf-8"}
#: The page loads nothing from anywhere but this server; images are shown from blob: URLs.
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
                               "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


@dataclass(frozen=True)
class ServeConfig:
    """The service's limits; validated on construction.

    ``max_upload_bytes``: largest request body (the whole multipart form). ``workers``: inference
    threads. ``queue_size``: requests that may wait for a worker; beyond workers + queue_size
    requests in flight the service answers 503. ``request_timeout_s``: from the first byte of the
    request to the last of the result, upload and queueing included. ``max_pixels``: largest
    decoded image (width x height), checked from its header before decoding.
    """

    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES
    workers: int = 1
    queue_size: int = 8
    request_timeout_s: float = 60.0
    max_pixels: int = 400_000_000

    def __post_init__(self) -> None:
        if self.max_upload_bytes < 1:
            raise ValueError(f"max_upload_bytes must be >= 1, got {self.max_upload_bytes}")
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")
        if self.queue_size < 0:
            raise ValueError(f"queue_size must be >= 0, got {self.queue_size}")
        if not (self.request_timeout_s > 0 and math.isfinite(self.request_timeout_s)):
            raise ValueError(f"request_timeout_s must be a positive number of seconds, got {self.request_timeout_s}")
        if self.max_pixels < 1:
            raise ValueError(f"max_pixels must be >= 1, got {self.max_pixels}")


# ---------------------------------------------------------------------------------------------
# Response schemas (for the OpenAPI page)


class ErrorBody(BaseModel):
    error: str
    detail: str
    request_id: str | None


class ModelInfo(BaseModel):
    name: str
    description: str
    default: bool


class Limits(BaseModel):
    max_upload_bytes: int
    max_pixels: int
    upload_formats: list[str]
    output_formats: list[str]


class ModelsResponse(BaseModel):
    default: str
    models: list[ModelInfo]
    limits: Limits


class HealthResponse(BaseModel):
    status: str
    models: list[str]
    pool: dict[str, int | float | None]


_STYLIZE_BODY = {
    "requestBody": {
        "required": True,
        "content": {"multipart/form-data": {"schema": {
            "type": "object",
            "required": ["image"],
            "properties": {
                "image": {"type": "string", "format": "binary",
                          "description": f"The image: {', '.join(UPLOAD_FORMATS)}."},
                "model": {"type": "string", "description": "A name from GET /v1/models (default: the default model)."},
                "strength": {"type": "number", "minimum": 0, "maximum": 1, "default": 1,
                             "description": "Blend with the input: 0 returns the input, 1 the full style."},
                "format": {"type": "string", "enum": list(OUTPUT_FORMATS),
                           "description": "Output format (default: the upload's own where possible, else png)."},
            },
        }}},
    },
}
_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": text} for status, text in {
        400: "Empty image or malformed form", 408: "The upload was not received in time",
        413: "Upload over the size limit, or image over the pixel limit", 415: "Not multipart, or not an image",
        422: "Bad field (unknown model, strength outside 0..1, unknown format) or a corrupt image",
        503: "Queue full (see Retry-After)", 504: "The request ran past its timeout",
    }.items()
}
_ERRORS[200] = {"content": {ctype: {} for _, ctype in OUTPUT_FORMATS.values()}, "description": "The stylised image."}


# ---------------------------------------------------------------------------------------------


def create_app(
    models: Mapping[str, Pipeline],
    *,
    default: str | None = None,
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
    workers: int = 1,
    queue_size: int = 8,
    request_timeout_s: float = 60.0,
    max_pixels: int | None = None,
) -> FastAPI:
    """The service for already-loaded ``models`` (name -> pipeline); ``default`` is the first if not given.

    ``max_pixels`` None: :func:`brushwork.data.imageio.pixel_limit` (``$BRUSHWORK_MAX_PIXELS`` or
    400 M). The other arguments are those of :class:`ServeConfig`.
    """
    if not models:
        raise ValueError("create_app needs at least one model")
    for name in models:
        if not MODEL_NAME.fullmatch(name):
            raise ValueError(f"model name {name!r} must be 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit")
    default = next(iter(models)) if default is None else default
    if default not in models:
        raise ValueError(f"default model {default!r} is not one of {', '.join(models)}")
    config = ServeConfig(max_upload_bytes=max_upload_bytes, workers=workers, queue_size=queue_size,
                         request_timeout_s=request_timeout_s,
                         max_pixels=pixel_limit() if max_pixels is None else max_pixels)
    models = dict(models)
    pool = InferencePool(workers=config.workers, queue_size=config.queue_size)
    descriptions = {name: _describe(pipeline) for name, pipeline in models.items()}
    page = {name: _static(name) for name in ("index.html", *STATIC_FILES)}

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        log.info("serving %d model(s): %s (default %s)", len(models), ", ".join(models), default)
        yield
        pool.shutdown()

    app = FastAPI(title="brushwork", version=_version(), lifespan=lifespan,
                  description="Image style transfer: POST an image to /v1/stylize, get it back stylised.")
    app.state.config = config
    app.state.pool = pool
    app.state.models = models
    # added last = outermost: every response, the 413s included, gets a request id
    app.add_middleware(BodyLimitMiddleware, max_bytes=config.max_upload_bytes)
    app.add_middleware(RequestGuardMiddleware)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        rid = getattr(request.state, REQUEST_ID_KEY, None)
        log.info("request %s: %d %s: %s", rid, exc.status, exc.code, exc.detail)
        return JSONResponse(error_body(exc.code, exc.detail, rid, exc.extra), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        body = error_body(code, str(exc.detail), getattr(request.state, REQUEST_ID_KEY, None))
        return JSONResponse(body, status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(map(str, e.get('loc', ())))}: {e.get('msg')}" for e in exc.errors())
        body = error_body("invalid_request", problems or "invalid request", getattr(request.state, REQUEST_ID_KEY, None))
        return JSONResponse(body, status_code=422)

    # -----------------------------------------------------------------------------------------

    @app.get("/", include_in_schema=False)
    async def index() -> Response:
        return Response(page["index.html"], media_type="text/html; charset=utf-8", headers=PAGE_HEADERS)

    @app.get("/static/{name}", include_in_schema=False)
    async def static(name: str) -> Response:
        # a fixed table: the name from the URL is a key, never part of a file path
        if name not in STATIC_FILES:
            raise ApiError(404, "not_found", "no such file")
        return Response(page[name], media_type=STATIC_FILES[name], headers=PAGE_HEADERS)

    @app.get("/healthz", response_model=HealthResponse, tags=["service"])
    async def healthz() -> HealthResponse:
        """Liveness: 200 while the process serves; the pool's load for monitoring."""
        return HealthResponse(status="ok", models=list(models), pool=pool.stats())

    @app.get("/v1/models", response_model=ModelsResponse, tags=["stylize"])
    async def list_models() -> ModelsResponse:
        """The models this server has loaded, the default, and the upload limits."""
        return ModelsResponse(
            default=default,
            models=[ModelInfo(name=n, description=descriptions[n], default=n == default) for n in models],
            limits=Limits(max_upload_bytes=config.max_upload_bytes, max_pixels=config.max_pixels,
                          upload_formats=list(UPLOAD_FORMATS), output_formats=list(OUTPUT_FORMATS)),
        )

    @app.post("/v1/stylize", tags=["stylize"], response_class=Response, openapi_extra=_STYLIZE_BODY,
              responses=_ERRORS)
    async def stylize(request: Request) -> Response:
        """Stylise one uploaded image; the response body is the image (see the form fields below)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + config.request_timeout_s
        content_type = request.headers.get("content-type")
        multipart_boundary(content_type)  # 415 / 400 before taking a place in the queue
        try:
            slot = pool.reserve()
        except QueueFullError as exc:
            raise ApiError(503, "busy", str(exc), headers={"Retry-After": str(exc.retry_after)},
                           extra={"retry_after_s": exc.retry_after}) from None
        try:
            form = await _receive_form(request, content_type, deadline - loop.time())
            name, strength, fmt = _fields(form, models, default)
            data = _image_part(form)
            try:
                probe_upload(data, max_pixels=config.max_pixels)  # header only: junk never waits for a worker
            except ImageReadError as exc:
                raise _image_error(exc) from None
            job = functools.partial(stylize_upload, models[name], data, strength=strength, fmt=fmt,
                                    max_pixels=config.max_pixels)
            try:
                body, media_type = await pool.run(slot, job, timeout_s=deadline - loop.time())
            except JobTimeoutError as exc:
                state = "was still running; it finishes in the background and its result is dropped" if exc.started \
                    else "was still waiting for a worker and was cancelled"
                raise ApiError(504, "timeout", f"the request took longer than this server's limit of "
                                               f"{config.request_timeout_s:g} s; the job {state}") from None
            except ImageReadError as exc:
                raise _image_error(exc) from None
            except ImageTooSmallError as exc:
                raise ApiError(422, "image_too_small", str(exc)) from None
        finally:
            slot.release()  # no-op once the job holds it
        headers = {"Cache-Control": "no-store", "X-Model": name, "X-Strength": f"{strength:g}",
                   "Content-Disposition": f'inline; filename="stylized.{"jpg" if media_type == "image/jpeg" else media_type[6:]}"'}
        return Response(body, media_type=media_type, headers=headers)

    return app


async def _receive_form(request: Request, content_type: str | None, timeout_s: float) -> Form:
    try:
        return await asyncio.wait_for(read_form(content_type, request.stream()), timeout=max(timeout_s, 0.0))
    except asyncio.TimeoutError:
        raise ApiError(408, "upload_timeout", "the upload did not arrive within this server's request timeout") from None
    except ClientDisconnect:
        raise ApiError(400, "incomplete_body", "the client closed the connection before the body ended") from None


def _fields(form: Form, models: Mapping[str, Pipeline], default: str) -> tuple[str, float, str | None]:
    """The validated (model, strength, format) of a form."""
    name = form.fields.get("model", "").strip() or default
    if name not in models:
        raise ApiError(422, "unknown_model", f"no model named {name[:64]!r}; this server has {', '.join(models)}",
                       extra={"valid": list(models)})
    raw = form.fields.get("strength", "").strip()
    strength = 1.0
    if raw:
        try:
            strength = float(raw)
        except ValueError:
            strength = math.nan
        if not 0.0 <= strength <= 1.0:  # NaN fails too
            raise ApiError(422, "invalid_strength", f"strength must be a number from 0 to 1, got {raw[:32]!r}")
    fmt = form.fields.get("format", "").strip().lower() or None
    if fmt == "jpg":
        fmt = "jpeg"
    if fmt is not None and fmt not in OUTPUT_FORMATS:
        raise ApiError(422, "invalid_format", f"format must be one of {', '.join(OUTPUT_FORMATS)}, got {fmt[:16]!r}",
                       extra={"valid": list(OUTPUT_FORMATS)})
    return name, strength, fmt


def _image_part(form: Form) -> bytes:
    """The one file in the field ``image``, its declared type checked (415 for a non-image type)."""
    parts = form.files.get("image", [])
    if not parts:
        extra = " (it was sent as a text field: send it as a file)" if "image" in form.fields else ""
        raise ApiError(422, "missing_image", f"the form has no file in the field 'image'{extra}")
    if len(parts) > 1:
        raise ApiError(422, "too_many_images", f"the form has {len(parts)} files in the field 'image'; send one")
    part = parts[0]
    declared = part.content_type.split(";")[0].strip().lower()
    if not (declared.startswith("image/") or declared in GENERIC_TYPES):
        raise ApiError(415, "unsupported_media_type",
                       f"the upload is declared as {declared[:64]}, not an image; send {', '.join(UPLOAD_FORMATS)}")
    data = bytes(part.data)  # one copy, which Pillow then reads without copying again
    part.data = bytearray()
    return data


def _image_error(exc: ImageReadError) -> ApiError:
    if isinstance(exc, ImageTooLargeError):
        (w, h), limit = exc.size, exc.limit
        return ApiError(413, "too_many_pixels", f"the image is {w}x{h} = {w * h:,} pixels, above this server's limit "
                                                f"of {limit:,} pixels; it was not decoded", extra={"limit_pixels": limit})
    if isinstance(exc, EmptyImageError):
        return ApiError(400, "empty_image", "the uploaded image is empty (0 bytes)")
    if isinstance(exc, NotAnImageError):
        return ApiError(415, "not_an_image", f"the upload is not an image this server reads ({', '.join(UPLOAD_FORMATS)})")
    return ApiError(422, "corrupt_image", str(exc))


def _describe(pipeline: Pipeline) -> str:
    try:
        return str(pipeline.describe())
    except Exception:  # a description is a courtesy; a model without one is still served
        log.warning("describe() failed for %r", pipeline, exc_info=True)
        return type(pipeline).__name__


def _static(name: str) -> bytes:
    return (resources.files("brushwork.serve") / "static" / name).read_bytes()


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("brushwork")
    except PackageNotFoundError:
        return "0"
