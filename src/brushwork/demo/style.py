""""Sepia wash": a procedural painting style whose ground truth is known exactly.

Softens the image (3x3 box blur), tones it towards sepia and lifts the mid-tones with a gentle
S-curve. Being a fixed function, it lets the demo measure how close a CycleGAN trained on
*unpaired* photos and styled images gets to the true stylisation.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

_SEPIA = torch.tensor(
    [[0.393, 0.769, 0.189], [0.349, 0.686, 0.168], [0.272, 0.534, 0.131]], dtype=torch.float32
)
STRENGTH = 0.8


def sepia_wash(x: Tensor) -> Tensor:
    """uint8 (3, H, W) or (N, 3, H, W) -> the same, styled."""
    single = x.dim() == 3
    f = (x[None] if single else x).float() / 255.0
    f = F.avg_pool2d(F.pad(f, (1, 1, 1, 1), mode="reflect"), 3, stride=1)
    matrix = STRENGTH * _SEPIA + (1 - STRENGTH) * torch.eye(3)
    f = torch.einsum("ij,njhw->nihw", matrix, f).clamp(0, 1)
    f = f - 0.06 * torch.sin(2 * math.pi * f)  # S-curve: darker shadows, brighter highlights
    out = (f.clamp(0, 1) * 255).round().to(torch.uint8)
    return out[0] if single else out
