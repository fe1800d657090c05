"""The pixel limit: images whose header claims too many pixels are refused before decoding."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from brushwork.data.imageio import (
    DEFAULT_MAX_PIXELS,
    MAX_PIXELS_ENV,
    ImageReadError,
    ImageTooLargeError,
    PixelLimitError,
    read_image,
)
from tests._inference_helpers import cli_fixture, tiny_release

CLI = Callable[[list[str]], tuple[int, str, str]]
_ = cli_fixture  # the `cli` fixture


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_claiming(width: int, height: int) -> bytes:
    """A valid PNG signature and header claiming width x height RGB pixels, with one tiny IDAT:
    a few hundred bytes that would make a naive reader allocate width * height * 4 bytes."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB, no interlace
    idat = zlib.compress(b"\x00" * 1024, 9)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


@pytest.fixture
def no_decode(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record every attempt to decode pixel data (ImageFile.load); the tests expect none."""
    calls: list[str] = []
    original = ImageFile.ImageFile.load

    def load(self: ImageFile.ImageFile) -> object:
        calls.append(str(getattr(self, "filename", "?")))
        return original(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", load)
    return calls


@pytest.mark.parametrize(("width", "height"), [(100_000, 100_000), (25_000, 20_000)])
def test_decompression_bomb_header_is_refused_without_decoding(tmp_path: Path, no_decode: list[str], width: int, height: int) -> None:
    # 10 G pixels (far above Pillow's own error threshold) and 500 M pixels (between the old
    # 400 M setting and Pillow's 800 M error threshold, where Pillow only warned and decoded).
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_claiming(width, height))
    assert bomb.stat().st_size < 200
    with pytest.raises(ImageTooLargeError) as info:
        read_image(bomb)
    message = str(info.value)
    assert str(bomb) in message and f"{width}x{height} = {width * height:,} pixels" in message
    assert f"limit of {DEFAULT_MAX_PIXELS:,} pixels" in message and MAX_PIXELS_ENV in message
    assert "\n" not in message
    assert no_decode == []


def test_limit_is_configurable_and_checked_before_decoding(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_decode: list[str]) -> None:
    # A real, highly compressible 300x200 image stands in for a large one under a lowered limit.
    path = tmp_path / "flat.png"
    Image.new("RGB", (300, 200), (90, 120, 200)).save(path)
    monkeypatch.setenv(MAX_PIXELS_ENV, "59999")
    with pytest.raises(ImageTooLargeError, match=r"flat\.png: image is 300x200 = 60,000 pixels, above the limit of 59,999 pixels"):
        read_image(path)
    assert no_decode == []
    monkeypatch.setenv(MAX_PIXELS_ENV, "60000")  # exactly at the limit: allowed
    assert read_image(path).size == (300, 200)
    assert no_decode  # decoded this time
    assert read_image(path, max_pixels=60_000).size == (300, 200)  # the API's parameter
    with pytest.raises(ImageTooLargeError, match="limit of 59,999 pixels"):
        read_image(path, max_pixels=59_999)
    for bad in ("lots", "0", "-5", "1e6"):
        monkeypatch.setenv(MAX_PIXELS_ENV, bad)
        with pytest.raises(PixelLimitError, match=rf"\$BRUSHWORK_MAX_PIXELS must be a positive whole number.*{bad!r}"):
            read_image(path)


def test_stylize_reports_a_bomb_and_goes_on(tmp_path: Path, cli: CLI) -> None:
    src = tmp_path / "in"
    src.mkdir()
    (src / "bomb.png").write_bytes(png_claiming(60_000, 60_000))
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(src / "ok.png")
    model = tiny_release(tmp_path / "model")
    code, out, err = cli(["stylize", str(src), "-m", str(model), "-o", str(tmp_path / "out"), "--no-progress"])
    assert code == 1 and "1 written" in out and "1 failed" in out
    line = next(line for line in err.splitlines() if "bomb.png" in line)
    assert "60000x60000 = 3,600,000,000 pixels, above the limit of 400,000,000" in line
    assert not (tmp_path / "out" / "bomb.png").exists()


def test_bad_limit_setting_is_one_line_error(tmp_path: Path, cli: CLI, monkeypatch: pytest.MonkeyPatch) -> None:
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    monkeypatch.setenv(MAX_PIXELS_ENV, "big")
    code, _, err = cli(["stylize", str(tmp_path / "a.png"), "-m", str(tiny_release(tmp_path / "m")), "-o", str(tmp_path / "o"), "--no-progress"])
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines[-1] == "error: $BRUSHWORK_MAX_PIXELS must be a positive whole number of pixels (e.g. 400000000), got 'big'"


def test_too_large_is_a_read_error() -> None:
    assert issubclass(ImageTooLargeError, ImageReadError)  # reported per file like any unreadable image
