"""The reference preprocessing modes, split into a deterministic part and a random part.

``prepare`` (resize) is deterministic, so its uint8 result can be cached once per image;
``augment`` (random crop, flip, scale to [-1, 1]) is cheap and draws from a per-sample
``torch.Generator``, which keeps runs reproducible across worker processes and resumes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torch import Tensor


@dataclass(frozen=True)
class Preprocess:
    mode: str = "resize_and_crop"
    load_size: int = 286
    crop_size: int = 256
    flip: bool = True

    def prepared_size(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) after the deterministic resize of ``mode``."""
        if self.mode == "resize_and_crop":
            return self.load_size, self.load_size
        if self.mode in ("scale_width", "scale_width_and_crop"):
            if width == self.load_size and height >= self.crop_size:
                return width, height
            new_h = max(int(self.load_size * height / width), self.crop_size)
            return self.load_size, new_h
        if self.mode == "none":
            return _round_to(width, 4), _round_to(height, 4)
        return width, height  # crop

    def prepare(self, img: Image.Image) -> Tensor:
        """Deterministic resize, as uint8 CHW."""
        size = self.prepared_size(*img.size)
        if size != img.size:
            img = img.resize(size, Image.Resampling.BICUBIC)
        return pil_to_uint8(img)

    def augment(self, x: Tensor, generator: torch.Generator | None) -> Tensor:
        """Random crop and flip of a prepared uint8 CHW tensor -> float in [-1, 1]."""
        if self.mode in ("resize_and_crop", "crop", "scale_width_and_crop"):
            _, h, w = x.shape
            if h < self.crop_size or w < self.crop_size:
                raise ValueError(
                    f"image of {w}x{h} is smaller than crop_size={self.crop_size} for preprocess={self.mode!r}"
                )
            top = int(torch.randint(0, h - self.crop_size + 1, (1,), generator=generator))
            left = int(torch.randint(0, w - self.crop_size + 1, (1,), generator=generator))
            x = x[:, top : top + self.crop_size, left : left + self.crop_size]
        if self.flip and bool(torch.rand((), generator=generator) < 0.5):
            x = x.flip(-1)
        return uint8_to_unit(x)


def _round_to(value: int, base: int) -> int:
    return max(base, int(round(value / base) * base))


def pil_to_uint8(img: Image.Image) -> Tensor:
    """PIL RGB -> uint8 tensor (3, H, W)."""
    arr = np.asarray(img.convert("RGB"), dtype=np.uint8)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()


def uint8_to_unit(x: Tensor) -> Tensor:
    """uint8 [0, 255] -> float [-1, 1]."""
    return x.float().div_(127.5).sub_(1.0)


def unit_to_uint8(x: Tensor) -> Tensor:
    """float [-1, 1] -> uint8 [0, 255] (rounded)."""
    return x.detach().float().add(1.0).mul(127.5).round_().clamp_(0, 255).to(torch.uint8)


def tensor_to_pil(x: Tensor) -> Image.Image:
    """float (3, H, W) in [-1, 1] -> PIL RGB."""
    return Image.fromarray(unit_to_uint8(x).permute(1, 2, 0).cpu().numpy(), mode="RGB")
