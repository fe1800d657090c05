"""A streaming ``multipart/form-data`` reader that keeps every part in memory.

Starlette's own form parser spools file parts over 1 MB to temporary files; this one feeds the
body, chunk by chunk as it arrives, to python-multipart's push parser and keeps the bytes in
memory, so an upload never touches the disk and no client-supplied name (the part's
``filename``) is used for anything. The size of the whole body is bounded before it gets here
(:class:`brushwork.serve.limits.BodyLimitMiddleware`); this reader bounds the rest: the number
of parts, the size of the text fields, and one file part.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from brushwork.serve.errors import ApiError

#: Most parts one request may have (the API defines four fields).
MAX_PARTS = 16
#: Longest text field, in bytes (a model name, a number, a format name).
MAX_FIELD_BYTES = 1024
#: Longest header block of a part, in bytes.
MAX_PART_HEADER_BYTES = 8 * 1024


@dataclass
class FilePart:
    """A file part: its declared content type (may be empty) and its bytes."""

    content_type: str
    data: bytearray


@dataclass
class Form:
    """The text fields (last value wins) and the file parts, by field name."""

    fields: dict[str, str] = field(default_factory=dict)
    files: dict[str, list[FilePart]] = field(default_factory=dict)


def multipart_boundary(content_type: str | None) -> bytes:
    """The boundary of a ``multipart/form-data`` content type; 415 for any other type, 400 without one."""
    kind, params = parse_options_header(content_type or "")
    if kind != b"multipart/form-data":
        shown = kind.decode("latin-1") or "none"
        raise ApiError(415, "unsupported_media_type",
                       f"the request body must be multipart/form-data with the image in the field 'image' "
                       f"(got content type {shown})")
    boundary = params.get(b"boundary", b"")
    if not boundary:
        raise ApiError(400, "malformed_multipart", "the multipart/form-data content type has no boundary")
    return boundary


class _Collector:
    """python-multipart callbacks that build a :class:`Form`."""

    def __init__(self) -> None:
        self.form = Form()
        self.ended = False
        self.parts = 0
        self._header_name = bytearray()
        self._header_value = bytearray()
        self._headers: dict[str, str] = {}
        self._header_bytes = 0
        self._name = ""
        self._is_file = False
        self._content_type = ""
        self._data = bytearray()

    def on_part_begin(self) -> None:
        self.parts += 1
        if self.parts > MAX_PARTS:
            raise ApiError(413, "too_many_parts", f"the form has more than {MAX_PARTS} parts")
        self._headers = {}
        self._header_bytes = 0
        self._data = bytearray()

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._grow_headers(end - start)
        self._header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._grow_headers(end - start)
        self._header_value += data[start:end]

    def _grow_headers(self, n: int) -> None:
        self._header_bytes += n
        if self._header_bytes > MAX_PART_HEADER_BYTES:
            raise ApiError(400, "malformed_multipart", f"a form part's headers exceed {MAX_PART_HEADER_BYTES} bytes")

    def on_header_end(self) -> None:
        self._headers[self._header_name.decode("latin-1").strip().lower()] = self._header_value.decode("latin-1").strip()
        self._header_name = bytearray()
        self._header_value = bytearray()

    def on_headers_finished(self) -> None:
        disposition, params = parse_options_header(self._headers.get("content-disposition", ""))
        if disposition != b"form-data" or not params.get(b"name"):
            raise ApiError(400, "malformed_multipart", "a form part has no Content-Disposition: form-data; name=...")
        self._name = params[b"name"].decode("utf-8", "replace")
        # a part with a filename parameter is a file; the name itself is ignored, never used
        self._is_file = b"filename" in params
        self._content_type = self._headers.get("content-type", "")

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        self._data += data[start:end]
        if not self._is_file and len(self._data) > MAX_FIELD_BYTES:
            raise ApiError(413, "field_too_large", f"the form field {self._name[:40]!r} is longer than {MAX_FIELD_BYTES} bytes")

    def on_part_end(self) -> None:
        if self._is_file:
            self.form.files.setdefault(self._name, []).append(FilePart(self._content_type, self._data))
        else:
            self.form.fields[self._name] = self._data.decode("utf-8", "replace")
        self._data = bytearray()

    def on_end(self) -> None:
        self.ended = True


async def read_form(content_type: str | None, chunks: AsyncIterator[bytes]) -> Form:
    """Parse a multipart body from its chunks as they arrive; :class:`ApiError` for a malformed one."""
    boundary = multipart_boundary(content_type)
    collector = _Collector()
    callbacks = {name: getattr(collector, name) for name in (
        "on_part_begin", "on_header_field", "on_header_value", "on_header_end", "on_headers_finished",
        "on_part_data", "on_part_end", "on_end")}  # fmt: skip
    try:
        parser = MultipartParser(boundary, callbacks)  # type: ignore[arg-type]
        async for chunk in chunks:
            if chunk:
                parser.write(chunk)
        parser.finalize()
    except MultipartParseError as exc:
        raise ApiError(400, "malformed_multipart", f"the multipart/form-data body is malformed ({exc})") from None
    except ValueError as exc:  # a boundary python-multipart refuses (too long)
        raise ApiError(400, "malformed_multipart", f"the multipart/form-data boundary is unusable ({exc})") from None
    if not collector.ended:
        raise ApiError(400, "malformed_multipart", "the multipart/form-data body ends before its closing boundary")
    return collector.form
