"""Style images and their weights, checked before any work starts.

A style image must be readable, at least :data:`MIN_STYLE_SIDE` pixels on its short side, in
colour, and without transparent pixels (a transparent region has no colour to transfer, and
flattening it onto some background would invent one). Each failure is a :class:`StyleInputError`
naming the image. A fully opaque alpha channel is accepted (and dropped).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from torch import Tensor

from brushwork.data.imageio import ImageReadError, read_image, to_rgb_alpha
from brushwork.data.transforms import pil_to_uint8

#: The smallest short side of a style image: VGG-19's relu5_1 is 1/16 of the input.
MIN_STYLE_SIDE = 16
_GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})
#: "PATH:WEIGHT" with a number after the last colon
_WEIGHTED = re.compile(r"^(?P<path>.+):(?P<weight>[-+]?[0-9.]*(?:[eE][-+]?[0-9]+)?|[a-zA-Z]*)$")

ImageSource = str | Path | Image.Image
#: one image, or a list of images or (image, weight) pairs
StyleArg = ImageSource | Sequence[ImageSource | tuple[ImageSource, float]]


class StyleInputError(ValueError):
    """A style image, weight or strength is not usable; the message names it."""


@dataclass(frozen=True)
class StyleImage:
    """A checked style image: (3, H, W) uint8 RGB, its weight, and a name for messages."""

    pixels: Tensor
    weight: float
    name: str

    def unit(self) -> Tensor:
        """(3, H, W) float in [0, 1]."""
        return self.pixels.float() / 255.0


def check_strength(strength: float) -> float:
    if not (isinstance(strength, (int, float)) and math.isfinite(strength) and 0.0 <= strength <= 1.0):
        raise StyleInputError(f"strength must be a number from 0 to 1, got {strength!r}")
    return float(strength)


def parse_weighted(text: str, label: str = "style") -> tuple[str, float]:
    """``"a.jpg:0.7"`` -> (``"a.jpg"``, 0.7); ``"a.jpg"`` -> (``"a.jpg"``, 1.0).

    Whatever follows the last colon is a weight when it is empty, a number or a word without a
    dot or slash (``a.jpg:x``): it must then parse as a finite number >= 0. Otherwise the whole
    text is a path (``C:/paintings/a.jpg``). ``label`` starts the error messages.
    """
    match = _WEIGHTED.match(text)
    if match is None:
        return text, 1.0
    path, raw = match.group("path"), match.group("weight")
    try:
        weight = float(raw)
    except ValueError:
        raise StyleInputError(f"{label} {text!r}: the weight after ':' must be a number >= 0 (e.g. {path}:0.5), got {raw!r}") from None
    if not math.isfinite(weight) or weight < 0:
        raise StyleInputError(f"{label} {text!r}: the weight must be a finite number >= 0, got {raw}")
    return path, weight


def _check_pixels(rgb: Image.Image, alpha: Image.Image | None, mode: str, name: str) -> Tensor:
    w, h = rgb.size
    if min(w, h) < MIN_STYLE_SIDE:
        raise StyleInputError(f"style image {name} is {w}x{h} pixels; a style image needs at least {MIN_STYLE_SIDE}x{MIN_STYLE_SIDE}")
    if alpha is not None and alpha.getextrema()[0] < 255:
        raise StyleInputError(f"style image {name} has transparent pixels (an alpha channel); flatten it onto a background first")
    pixels = pil_to_uint8(rgb)
    if mode in _GRAY_MODES or (torch.equal(pixels[0], pixels[1]) and torch.equal(pixels[1], pixels[2])):
        raise StyleInputError(f"style image {name} is grayscale (mode {mode}); style transfer needs a colour image")
    return pixels


def load_style_image(source: ImageSource, weight: float = 1.0) -> StyleImage:
    """Read and check one style image (a path or a PIL image)."""
    if not (math.isfinite(weight) and weight >= 0):
        raise StyleInputError(f"style weight must be a finite number >= 0, got {weight}")
    if isinstance(source, Image.Image):
        name = f"<{source.mode} image {source.width}x{source.height}>"
        rgb, alpha = to_rgb_alpha(source)
        return StyleImage(_check_pixels(rgb, alpha, source.mode, name), weight, name)
    if not isinstance(source, (str, Path)):
        raise StyleInputError(f"a style image is a path or a PIL image, not a {type(source).__name__}")
    try:
        loaded = read_image(source)
    except ImageReadError as exc:
        raise StyleInputError(f"style image {exc}") from None
    return StyleImage(_check_pixels(loaded.rgb, loaded.alpha, loaded.source_mode, str(source)), weight, str(source))


def load_styles(style: StyleArg) -> list[StyleImage]:
    """One image, or a list of images and (image, weight) pairs, checked; weights not all 0."""
    items: list[ImageSource | tuple[ImageSource, float]]
    items = [style] if isinstance(style, (str, Path, Image.Image)) else list(style)
    if not items:
        raise StyleInputError("no style image given")
    styles = []
    for item in items:
        if isinstance(item, tuple):
            if len(item) != 2:
                raise StyleInputError(f"a weighted style is (image, weight), got a tuple of {len(item)}")
            source, weight = item
            try:
                weight = float(weight)
            except (TypeError, ValueError):
                raise StyleInputError(f"style weight {weight!r} is not a number") from None
            styles.append(load_style_image(source, weight))
        else:
            styles.append(load_style_image(item))
    if sum(s.weight for s in styles) <= 0:
        raise StyleInputError("the style weights are all 0; give at least one style a weight > 0")
    return styles


#: a domain mosaic's tiles: enough pixels per image for its colour statistics, few enough for 100 of them
MOSAIC_TILE = 96
MOSAIC_LIMIT = 100


def domain_mosaic(files: Sequence[Path], *, tile: int = MOSAIC_TILE, limit: int = MOSAIC_LIMIT) -> Image.Image:
    """One style image standing for a set of images: up to ``limit`` of them (evenly spaced over
    the sorted list) resized to ``tile`` x ``tile`` and laid side by side in one row.

    Colour transfer to it matches a photo to the statistics of the whole set (Reinhard: the pooled
    lαβ means and deviations; mk: the pooled covariance; histogram: the pooled histograms), up to
    the smoothing of the resize. Unreadable files are skipped; none readable is a StyleInputError.
    """
    if not files:
        raise StyleInputError("a domain mosaic needs at least one image")
    step = max(1, math.ceil(len(files) / limit))
    tiles = []
    for path in list(files)[::step][:limit]:
        try:
            loaded = read_image(path)
        except ImageReadError:
            continue
        tiles.append(loaded.rgb.resize((tile, tile), Image.Resampling.BICUBIC))
    if not tiles:
        raise StyleInputError(f"none of the {len(files)} images (e.g. {files[0]}) could be read for a domain mosaic")
    strip = Image.new("RGB", (len(tiles) * tile, tile))  # one row: every image's pixels count exactly once
    for i, img in enumerate(tiles):
        strip.paste(img, (i * tile, 0))
    return strip
