"""Anti-aliased resampling with fixed binomial filters (Zhang, ICML 2019), as the CUT code uses it.

CUT's generator and discriminator replace strided convolutions by a stride-1 convolution
followed by :class:`BlurDownsample`, and transposed convolutions by :class:`BlurUpsample`
followed by a stride-1 convolution. The filters are fixed (no gradient) but registered as
buffers named ``filt``, one copy per channel, exactly as in the authors' code: their published
checkpoints contain ``model.<i>.filt`` entries, and keeping the name and shape lets those files
load with ``strict=True``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def binomial_filter(size: int) -> Tensor:
    """The ``size x size`` outer product of binomial row ``size - 1``, normalised to sum to 1.

    ``size=3`` is ``[1, 2, 1]^T [1, 2, 1] / 16``; ``size=4`` is ``[1, 3, 3, 1]^T [1, 3, 3, 1] / 64``.
    """
    if size < 1:
        raise ValueError(f"filter size must be >= 1, got {size}")
    row = torch.tensor([math.comb(size - 1, k) for k in range(size)], dtype=torch.float64)
    kernel = torch.outer(row, row)
    return (kernel / kernel.sum()).to(torch.float32)


class BlurDownsample(nn.Module):
    """Reflect-pad, blur with a binomial filter and keep every ``stride``-th sample (official ``Downsample``).

    With the defaults (filter 3, stride 2) an ``H x W`` map becomes ``ceil(H/2) x ceil(W/2)``,
    the size a stride-2 3x3 convolution with padding 1 gives, so it swaps in for one. Each
    channel is filtered separately (a depthwise convolution with the fixed ``filt`` buffer of
    shape ``(channels, 1, size, size)``).
    """

    filt: Tensor

    def __init__(self, channels: int, *, filter_size: int = 3, stride: int = 2) -> None:
        super().__init__()
        if filter_size < 2:
            raise ValueError(f"filter_size must be >= 2, got {filter_size} (1 would be plain subsampling)")
        self.channels = channels
        self.stride = stride
        # (left, right, top, bottom): the extra sample of an even filter goes right and bottom.
        low, high = (filter_size - 1) // 2, filter_size // 2
        self.pad = nn.ReflectionPad2d((low, high, low, high))
        self.register_buffer("filt", binomial_filter(filter_size)[None, None].repeat(channels, 1, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(self.pad(x), self.filt.to(x.dtype), stride=self.stride, groups=x.shape[1])

    def extra_repr(self) -> str:
        return f"{self.channels}, filter_size={self.filt.shape[-1]}, stride={self.stride}"


class BlurUpsample(nn.Module):
    """Replicate-pad by 1, then a transposed depthwise convolution with a binomial filter (official ``Upsample``).

    The filter is scaled by ``stride**2`` so that a constant map stays constant; the crops after
    the transposed convolution make the output exactly ``stride`` times the input. With the
    defaults (filter 4, stride 2) this is 2x bilinear upsampling (half-pixel centres, edges
    clamped): every output sample is ``3/4`` of its nearest input and ``1/4`` of the next one,
    per axis.
    """

    filt: Tensor

    def __init__(self, channels: int, *, filter_size: int = 4, stride: int = 2) -> None:
        super().__init__()
        if filter_size < 2:
            raise ValueError(f"filter_size must be >= 2, got {filter_size}")
        self.channels = channels
        self.stride = stride
        self.odd = filter_size % 2 == 1
        self.inner_padding = 1 + (filter_size - 1) // 2
        self.pad = nn.ReplicationPad2d(1)
        self.register_buffer("filt", binomial_filter(filter_size)[None, None].repeat(channels, 1, 1, 1) * stride**2)

    def forward(self, x: Tensor) -> Tensor:
        y = F.conv_transpose2d(
            self.pad(x), self.filt.to(x.dtype), stride=self.stride, padding=self.inner_padding, groups=x.shape[1]
        )
        y = y[:, :, 1:, 1:]
        return y if self.odd else y[:, :, :-1, :-1]

    def extra_repr(self) -> str:
        return f"{self.channels}, filter_size={self.filt.shape[-1]}, stride={self.stride}"
