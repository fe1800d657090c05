"""What one request does to its image, as plain functions: decode, stylise, blend, encode.

Everything here runs in a worker thread (:mod:`brushwork.serve.pool`), never on the event loop.
"""

from __future__ import annotations

import io
from typing import Protocol

import numpy as np
from PIL import Image, features

from brushwork.data.imageio import LoadedImage, decode_image, probe_image


class Pipeline(Protocol):
    """What the service needs of a model: :class:`brushwork.inference.Stylizer` is one."""

    def __call__(self, image: Image.Image) -> Image.Image: ...

    def describe(self) -> str: ...


#: Image formats an upload may be in. Pillow's other readers (EPS through Ghostscript, PSD, ICO,
#: and dozens more) are never tried on bytes from strangers.
UPLOAD_FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF")
#: Output format names of the API -> (Pillow format, content type).
OUTPUT_FORMATS: dict[str, tuple[str, str]] = {
    "png": ("PNG", "image/png"),
    "jpeg": ("JPEG", "image/jpeg"),
    **({"webp": ("WEBP", "image/webp")} if features.check("webp") else {}),
}
JPEG_QUALITY = 92
WEBP_QUALITY = 90
#: Pixels blended per step, which bounds the float64 scratch memory of :func:`blend` (~100 MB).
_BLEND_ROWS_PIXELS = 4_000_000


def decode_upload(data: bytes, *, max_pixels: int) -> LoadedImage:
    """An uploaded file as RGB (+ alpha); :class:`brushwork.data.imageio.ImageReadError` subclasses say why not."""
    return decode_image(data, name="upload", max_pixels=max_pixels, formats=UPLOAD_FORMATS)


def probe_upload(data: bytes, *, max_pixels: int) -> None:
    """The header-only checks of :func:`decode_upload` (empty, not an image, too many pixels).

    Microseconds, so the service runs them before a request waits for a worker: junk is refused
    at once and never queues behind real work.
    """
    probe_image(data, name="upload", max_pixels=max_pixels, formats=UPLOAD_FORMATS)


def default_output_format(loaded: LoadedImage) -> str:
    """The upload's own format where the API can write it, else PNG."""
    fmt = (loaded.source_format or "").lower()
    return fmt if fmt in OUTPUT_FORMATS else "png"


def as_pil(loaded: LoadedImage) -> Image.Image:
    """The decoded upload as one PIL image: RGB, or RGBA when it had transparency."""
    if loaded.alpha is None:
        return loaded.rgb
    rgba = loaded.rgb.copy()
    rgba.putalpha(loaded.alpha)
    return rgba


def blend(source: Image.Image, styled: Image.Image, strength: float) -> Image.Image:
    """``source + strength * (styled - source)`` per RGB channel, rounded half to even; alpha from ``source``.

    The web page blends the same way (a ``Uint8ClampedArray`` rounds half to even too, and both
    compute in float64), so moving its slider shows what this function returns.
    """
    if styled.size != source.size:
        raise ValueError(f"the pipeline returned a {styled.size} image for a {source.size} input")
    if strength >= 1.0:
        mixed = styled.convert("RGB")
    else:
        a = np.asarray(source.convert("RGB"))
        b = np.asarray(styled.convert("RGB"))
        out = np.empty_like(a)
        step = max(1, _BLEND_ROWS_PIXELS // max(1, a.shape[1]))
        for top in range(0, a.shape[0], step):
            fa = a[top : top + step].astype(np.float64)
            fb = b[top : top + step].astype(np.float64)
            out[top : top + step] = np.clip(np.rint(fa + strength * (fb - fa)), 0, 255).astype(np.uint8)
        mixed = Image.fromarray(out, mode="RGB")
    if source.mode == "RGBA":
        mixed.putalpha(source.getchannel("A"))
    return mixed


def encode(image: Image.Image, fmt: str, *, icc_profile: bytes | None = None) -> bytes:
    """``image`` as ``fmt`` (a key of :data:`OUTPUT_FORMATS`); JPEG drops the alpha channel."""
    pil_format, _ = OUTPUT_FORMATS[fmt]
    kwargs: dict[str, object] = {}
    if pil_format == "JPEG":
        image = image.convert("RGB")
        kwargs["quality"] = JPEG_QUALITY
    elif pil_format == "WEBP":
        kwargs["quality"] = WEBP_QUALITY
    if icc_profile:
        kwargs["icc_profile"] = icc_profile
    buffer = io.BytesIO()
    image.save(buffer, format=pil_format, **kwargs)
    return buffer.getvalue()


def stylize_upload(pipeline: Pipeline, data: bytes, *, strength: float, fmt: str | None,
                   max_pixels: int) -> tuple[bytes, str]:
    """The whole job of one request: upload bytes -> (encoded result, content type).

    At ``strength`` 0 the model is not run: the result is the decoded upload itself (orientation
    applied), which is also how the web page gets the pixels of a file the browser cannot show.
    """
    loaded = decode_upload(data, max_pixels=max_pixels)
    source = as_pil(loaded)
    result = source if strength <= 0.0 else blend(source, pipeline(source), strength)
    out_format = fmt or default_output_format(loaded)
    return encode(result, out_format, icc_profile=loaded.icc_profile), OUTPUT_FORMATS[out_format][1]
