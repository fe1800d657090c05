"""Reading and writing images faithfully.

Every reader goes through :func:`read_image`, which turns whatever Pillow can open into 8-bit RGB
(with EXIF orientation applied, palette and grayscale expanded, 16-bit and float data scaled,
CMYK converted through its ICC profile when it has one) and keeps the alpha channel and ICC
profile aside so that a writer can carry them through.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import warnings
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from brushwork.utils.files import atomic_path

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (
    ".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm", ".tga",
)  # fmt: skip

#: Largest image (width x height) :func:`read_image` decodes: about 20000 x 20000, 1.2 GB as RGB.
DEFAULT_MAX_PIXELS = 400_000_000
#: Environment variable that overrides :data:`DEFAULT_MAX_PIXELS` (a positive whole number).
MAX_PIXELS_ENV = "BRUSHWORK_MAX_PIXELS"

# read_image checks every file's header against pixel_limit() before decoding it. Pillow's own
# check would warn between its limit and twice that, then refuse with a message naming neither
# the file nor a setting, so it is switched off in favour of the one explicit limit.
Image.MAX_IMAGE_PIXELS = None


class ImageReadError(ValueError):
    """An image file could not be read; the message names the file and the reason."""


class ImageTooLargeError(ImageReadError):
    """An image's header claims more pixels than the limit; it was refused without decoding.

    ``size`` is the (width, height) the header claims and ``limit`` the limit it is over.
    """

    def __init__(self, message: str, *, size: tuple[int, int] = (0, 0), limit: int = 0) -> None:
        super().__init__(message)
        self.size = size
        self.limit = limit


class EmptyImageError(ImageReadError):
    """An image file or upload has no bytes at all."""


class NotAnImageError(ImageReadError):
    """The bytes are not in any image format Pillow can read (text, a PDF, random data)."""


class PixelLimitError(ValueError):
    """``$BRUSHWORK_MAX_PIXELS`` (or a ``max_pixels`` argument) is not a positive whole number."""


def pixel_limit() -> int:
    """The pixel limit of :func:`read_image`: ``$BRUSHWORK_MAX_PIXELS`` if set, else the default."""
    raw = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_PIXELS
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise PixelLimitError(f"${MAX_PIXELS_ENV} must be a positive whole number of pixels (e.g. 400000000), got {raw!r}")
    return value


def check_pixel_count(path: Path | str, size: tuple[int, int], limit: int) -> None:
    """Refuse an image whose header says it has more than ``limit`` pixels (a decompression bomb)."""
    w, h = size
    if w * h > limit:
        raise ImageTooLargeError(
            f"{path}: image is {w}x{h} = {w * h:,} pixels, above the limit of {limit:,} pixels; "
            f"not decoded (set ${MAX_PIXELS_ENV} to raise the limit)",
            size=(w, h), limit=limit,
        )


class ImageWriteError(OSError):
    """An image could not be written; the message names the path and the reason."""


@dataclass
class LoadedImage:
    """An image as 8-bit RGB plus what a faithful writer needs to restore."""

    rgb: Image.Image  # mode "RGB"
    alpha: Image.Image | None  # mode "L", when the source had transparency
    icc_profile: bytes | None
    source_mode: str
    source_format: str | None
    frames: int = 1

    @property
    def size(self) -> tuple[int, int]:
        return self.rgb.size


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS


def nested_folder(inner: Path, outer: Path) -> Path | None:
    """``inner`` relative to ``outer`` when it lies strictly inside it (symlinks resolved), else None."""
    try:
        rel = inner.resolve().relative_to(outer.resolve())
    except ValueError:
        return None
    return rel if rel.parts else None


def list_images(folder: Path, *, recursive: bool = False, exclude: Collection[Path] = ()) -> list[Path]:
    """Image files under ``folder``, sorted by path; hidden files are skipped.

    Files below any folder of ``exclude`` that lies inside ``folder`` (e.g. an output folder
    inside an input folder) are left out, so that a tool never reads its own earlier outputs.
    """
    pattern = "**/*" if recursive else "*"
    skip = [rel.parts for rel in (nested_folder(e, folder) for e in exclude) if rel is not None]
    found = []
    for p in folder.glob(pattern):
        parts = p.relative_to(folder).parts
        if any(part.startswith(".") for part in parts) or any(parts[: len(s)] == s for s in skip):
            continue
        if p.is_file() and is_image_file(p):
            found.append(p)
    return sorted(found)


def _scale_to_uint8(arr: np.ndarray) -> np.ndarray:
    """16-bit / 32-bit integer or float pixel data -> uint8, preserving the full range."""
    if arr.dtype == np.uint8:
        return arr
    if np.issubdtype(arr.dtype, np.floating):
        peak = 1.0 if float(np.nanmax(arr, initial=0.0)) <= 1.0 else 255.0
        return np.clip(np.nan_to_num(arr) / peak * 255.0 + 0.5, 0, 255).astype(np.uint8)
    # Integer data: 16-bit PNG/TIFF arrive as I;16 or I (int32). Anything above 255 is 16-bit.
    peak = 65535.0 if int(arr.max(initial=0)) > 255 or arr.dtype == np.uint16 else 255.0
    return np.clip(arr.astype(np.float64) / peak * 255.0 + 0.5, 0, 255).astype(np.uint8)


def _cmyk_to_rgb(img: Image.Image, icc: bytes | None) -> Image.Image:
    if icc:
        try:
            from PIL import ImageCms

            src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            dst = ImageCms.createProfile("sRGB")
            return ImageCms.profileToProfile(img, src, dst, outputMode="RGB")
        except Exception:  # a broken profile: fall back to the plain formula below
            log.debug("ICC conversion of a CMYK image failed; using the naive conversion")
    return img.convert("RGB")


def _to_rgb(img: Image.Image, icc: bytes | None) -> tuple[Image.Image, Image.Image | None]:
    mode = img.mode
    if mode == "RGB":
        return img, None
    if mode == "CMYK":
        return _cmyk_to_rgb(img, icc), None
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        return rgba.convert("RGB"), rgba.getchannel("A")
    if mode == "P":
        if "transparency" in img.info:
            rgba = img.convert("RGBA")
            return rgba.convert("RGB"), rgba.getchannel("A")
        return img.convert("RGB"), None
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        gray = _scale_to_uint8(np.asarray(img))
        return Image.fromarray(gray, mode="L").convert("RGB"), None
    if mode in ("1", "L"):
        return img.convert("RGB"), None
    return img.convert("RGB"), None  # YCbCr, LAB, HSV and other modes Pillow can convert


def to_rgb_alpha(img: Image.Image) -> tuple[Image.Image, Image.Image | None]:
    """An in-memory image as 8-bit RGB and its alpha (or None), EXIF orientation applied.

    The same conversions as :func:`read_image` (grayscale, palette, 16-bit, CMYK through ICC).
    """
    icc = img.info.get("icc_profile")
    img = ImageOps.exif_transpose(img) or img
    return _to_rgb(img, icc)


def read_image(path: Path | str, *, max_pixels: int | None = None) -> LoadedImage:
    """Read ``path`` as 8-bit RGB; raise :class:`ImageReadError` naming the file on any failure.

    An image of more than ``max_pixels`` (default :func:`pixel_limit`) is refused from its header,
    before any pixel data is decoded (:class:`ImageTooLargeError`).
    """
    path = Path(path)
    limit = _resolve_limit(max_pixels)
    try:
        if path.is_dir():
            raise ImageReadError(f"{path}: is a folder, not an image file")
        if path.stat().st_size == 0:
            raise EmptyImageError(f"{path}: file is empty (0 bytes)")
    except FileNotFoundError:
        raise ImageReadError(f"{path}: file does not exist") from None
    return _decode(path, path, limit)


def decode_image(data: bytes, *, name: str = "image", max_pixels: int | None = None,
                 formats: Collection[str] | None = None) -> LoadedImage:
    """Decode an image held in memory (an HTTP upload, say) exactly as :func:`read_image` reads a file.

    The same conversions and the same pixel limit, checked from the header before decoding.
    ``formats`` (Pillow names such as ``"PNG"``) restricts the readers tried; None tries them all.
    ``name`` only labels the error messages: nothing is read from or written to any path.
    """
    limit = _resolve_limit(max_pixels)
    if not data:
        raise EmptyImageError(f"{name}: image is empty (0 bytes)")
    return _decode(io.BytesIO(data), name, limit, formats=formats)


def probe_image(data: bytes, *, name: str = "image", max_pixels: int | None = None,
                formats: Collection[str] | None = None) -> tuple[str | None, tuple[int, int]]:
    """The format and (width, height) of an in-memory image, from its header alone.

    The checks of :func:`decode_image` that need no pixel data (empty, not an image, over the
    pixel limit), cheap enough to run before a request waits for a worker; a truncated image is
    found only by decoding it.
    """
    limit = _resolve_limit(max_pixels)
    if not data:
        raise EmptyImageError(f"{name}: image is empty (0 bytes)")
    with _read_errors(name, formats), Image.open(io.BytesIO(data), formats=_formats(formats)) as opened:
        check_pixel_count(name, opened.size, limit)
        return opened.format, opened.size


def _resolve_limit(max_pixels: int | None) -> int:
    limit = pixel_limit() if max_pixels is None else max_pixels
    if limit < 1:
        raise PixelLimitError(f"max_pixels must be a positive whole number, got {limit}")
    return limit


def _formats(formats: Collection[str] | None) -> list[str] | None:
    return None if formats is None else list(formats)


@contextlib.contextmanager
def _read_errors(label: Path | str, formats: Collection[str] | None) -> Iterator[None]:
    """Pillow's and the OS's errors while reading ``label`` -> :class:`ImageReadError` naming it."""
    try:
        yield
    except ImageReadError:
        raise
    except FileNotFoundError:
        raise ImageReadError(f"{label}: file does not exist") from None
    except UnidentifiedImageError:
        accepted = "" if formats is None else f" (accepted: {', '.join(formats)})"
        raise NotAnImageError(f"{label}: not an image file Pillow can read{accepted}") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageReadError(f"{label}: corrupt or truncated image ({exc})") from None


def _decode(source: Path | IO[bytes], label: Path | str, limit: int, *,
            formats: Collection[str] | None = None) -> LoadedImage:
    """Open ``source`` (a file or an in-memory buffer), check its size, decode it to RGB + alpha."""
    with _read_errors(label, formats), Image.open(source, formats=_formats(formats)) as opened:  # reads the header only
        check_pixel_count(label, opened.size, limit)
        frames = int(getattr(opened, "n_frames", 1) or 1)
        if frames > 1:
            opened.seek(0)
            warnings.warn(f"{label}: has {frames} frames; using the first", stacklevel=3)
        fmt = opened.format
        opened.load()  # decode now so truncated files fail here, not later
        icc = opened.info.get("icc_profile")
        img = ImageOps.exif_transpose(opened) or opened
        source_mode = opened.mode
        rgb, alpha = _to_rgb(img, icc)
        rgb.load()
    if source_mode == "CMYK":
        icc = None  # the pixels are sRGB now; the CMYK profile no longer describes them
    return LoadedImage(rgb=rgb, alpha=alpha, icc_profile=icc, source_mode=source_mode, source_format=fmt, frames=frames)


def read_rgb(path: Path | str) -> Image.Image:
    return read_image(path).rgb


FORMAT_BY_SUFFIX = {
    ".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".bmp": "BMP", ".tif": "TIFF", ".tiff": "TIFF",
    ".webp": "WEBP", ".gif": "GIF", ".ppm": "PPM", ".tga": "TGA",
}  # fmt: skip


def save_image(
    img: Image.Image,
    path: Path | str,
    *,
    alpha: Image.Image | None = None,
    icc_profile: bytes | None = None,
    quality: int = 95,
) -> None:
    """Write ``img`` atomically; the format follows the suffix. Alpha is kept where it fits."""
    path = Path(path)
    fmt = FORMAT_BY_SUFFIX.get(path.suffix.lower())
    if fmt is None:
        raise ImageWriteError(f"{path}: unknown image suffix {path.suffix!r}; use one of {', '.join(sorted(FORMAT_BY_SUFFIX))}")
    out = img
    if alpha is not None and fmt in ("PNG", "WEBP", "TIFF", "TGA"):
        if alpha.size != img.size:
            alpha = alpha.resize(img.size, Image.Resampling.BICUBIC)
        out = img.convert("RGB")
        out.putalpha(alpha)
    kwargs: dict[str, object] = {}
    if fmt in ("JPEG", "WEBP"):
        kwargs["quality"] = quality
    if icc_profile and fmt in ("JPEG", "PNG", "TIFF", "WEBP"):
        kwargs["icc_profile"] = icc_profile
    try:
        with atomic_path(path) as tmp:
            out.save(tmp, format=fmt, **kwargs)
    except OSError as exc:
        raise ImageWriteError(f"{path}: cannot write image ({exc.strerror or exc})") from exc
