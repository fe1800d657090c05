"""``Conv2d`` with an optional weight gradient computed as plain matrix products.

On CPUs without AVX-512 (most laptops and desktops: AVX2 only), oneDNN's backward-weights
kernel for a 3x3 convolution runs at a quarter to a third of the machine's GEMM speed, and it
is the largest single cost of a CycleGAN iteration (docs/benchmarks.md, "AVX2 CPUs"). For a
stride-1 convolution over a channels_last input the weight gradient is exactly a sum of
``kh * kw`` matrix products, one per kernel tap, with no im2col copy:

    dW[:, :, i, j] = dY_grid[0 : L - o]^T @ X[o : L],   o = i * Wp + j

where ``X`` is the (padded) input viewed as an ``(N * Hp * Wp, C_in)`` matrix and ``dY_grid``
is the output gradient laid on the same ``Hp x Wp`` grid, zero outside the ``H x W`` output
(so products that would straddle a row or image boundary are multiplied by zero). Each product
is one large BLAS call near the GEMM roofline. The forward pass and the input gradient stay
with oneDNN, which is fast for both.

The GEMM path is used only inside :func:`gemm_weight_grad` (the trainer enters it when the
speed probe measured it faster on this machine, see :mod:`brushwork.tuning`) and only where it
is exact: fp32, CPU, channels_last input, stride 1, no dilation or groups, outside autocast and
torch.compile. Everywhere else, and always for inference, this is ``nn.Conv2d`` unchanged (the
same state dict).
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

MIN_GEMM_CHANNELS = 16

_GEMM_WEIGHT_GRAD: contextvars.ContextVar[bool] = contextvars.ContextVar("brushwork_gemm_weight_grad", default=False)


@contextlib.contextmanager
def gemm_weight_grad(enabled: bool = True) -> Iterator[None]:
    """Within this block, eligible :class:`Conv2d` layers take their weight gradient from GEMMs."""
    token = _GEMM_WEIGHT_GRAD.set(enabled)
    try:
        yield
    finally:
        _GEMM_WEIGHT_GRAD.reset(token)


def conv_weight_grad_gemm(x: Tensor, grad_out: Tensor, kernel: tuple[int, int]) -> Tensor:
    """The weight gradient of a stride-1, unpadded convolution of ``x`` (N, C, Hp, Wp).

    ``grad_out`` is (N, C_out, Hp - kh + 1, Wp - kw + 1). Returns (C_out, C, kh, kw).
    """
    kh, kw = kernel
    n, c, hp, wp = x.shape
    c_out, h, w = grad_out.shape[1:]
    rows = x.permute(0, 2, 3, 1).reshape(n * hp * wp, c)  # a view when x is channels_last
    grid = F.pad(grad_out.permute(0, 2, 3, 1), (0, 0, 0, wp - w, 0, hp - h)).reshape(n * hp * wp, c_out)
    total = rows.shape[0]
    taps = torch.empty(kh * kw, c_out, c, dtype=x.dtype, device=x.device)
    for t in range(kh * kw):
        offset = (t // kw) * wp + t % kw
        torch.mm(grid[: total - offset].t(), rows[offset:], out=taps[t])
    return taps.view(kh, kw, c_out, c).permute(2, 3, 0, 1)


class _GemmWeightGradConv(torch.autograd.Function):
    """F.conv2d forward; input gradient from oneDNN, weight gradient from :func:`conv_weight_grad_gemm`."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor, bias: Tensor | None, padding: tuple[int, int]) -> Tensor:
        ctx.save_for_backward(x, weight)
        ctx.padding = padding
        ctx.has_bias = bias is not None
        return F.conv2d(x, weight, bias, padding=padding)

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        x, weight = ctx.saved_tensors
        grad_out = grad_out.contiguous(memory_format=torch.channels_last)
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.ops.aten.convolution_backward(
                grad_out, x, weight, None, [1, 1], list(ctx.padding), [1, 1], False, [0, 0], 1, [True, False, False]
            )[0]
        if ctx.needs_input_grad[1]:
            ph, pw = ctx.padding
            padded = F.pad(x, (pw, pw, ph, ph)) if ph or pw else x
            grad_w = torch.empty_like(weight).copy_(conv_weight_grad_gemm(padded, grad_out, weight.shape[2:]))
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = grad_out.sum((0, 2, 3))
        return grad_x, grad_w, grad_b, None


class Conv2d(nn.Conv2d):
    """``nn.Conv2d`` (same arguments and state) that can take its weight gradient from GEMMs."""

    def _conv_forward(self, input: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        if _GEMM_WEIGHT_GRAD.get() and self._gemm_eligible(input, weight):
            return _GemmWeightGradConv.apply(input, weight, bias, self.padding)
        return super()._conv_forward(input, weight, bias)

    def _gemm_eligible(self, x: Tensor, weight: Tensor) -> bool:
        return (
            weight.requires_grad
            and torch.is_grad_enabled()
            and not torch.compiler.is_compiling()
            and x.device.type == "cpu"
            and x.dtype == torch.float32
            and weight.dtype == torch.float32
            and not torch.is_autocast_enabled("cpu")
            and x.dim() == 4
            and x.is_contiguous(memory_format=torch.channels_last)
            and self.stride == (1, 1)
            and self.dilation == (1, 1)
            and self.groups == 1
            and self.padding_mode == "zeros"
            and isinstance(self.padding, tuple)  # not "same"/"valid" strings
            # With 3 channels (an RGB input or output layer) the products are too thin for BLAS:
            # measured up to 30x slower than oneDNN there, and equal at 16+ channels.
            and min(self.in_channels, self.out_channels) >= MIN_GEMM_CHANNELS
        )
