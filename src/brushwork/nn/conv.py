"""``Conv2d`` and ``ConvTranspose2d`` with an optional weight gradient computed as plain matrix products.

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
is exact: fp32, CPU, channels_last input, no dilation or groups, 16+ channels, outside
autocast and torch.compile. Strided and transposed convolutions take the same route
(:func:`conv_weight_grad_gemm`); their oneDNN weight-gradient kernels were the slowest of all
in channels_last on AVX2. Everywhere else, and always for inference, this is ``nn.Conv2d`` unchanged (the
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


def conv_weight_grad_gemm(x: Tensor, grad_out: Tensor, kernel: tuple[int, int], stride: int = 1) -> Tensor:
    """The weight gradient of an unpadded convolution of ``x`` (N, C, Hp, Wp) with ``stride``.

    ``grad_out`` is (N, C_out, H, W) with H = (Hp - kh) // stride + 1. Returns (C_out, C, kh, kw).
    A stride s > 1 splits ``x`` into s * s phases, ``x[:, :, a::s, b::s]`` (one copy of it in
    all): tap (i, j) reads phase (i % s, j % s) shifted by (i // s, j // s), which is the
    stride-1 case on the phase grid.
    """
    kh, kw = kernel
    n, c, hp, wp = x.shape
    c_out, h, w = grad_out.shape[1:]
    hq, wq = -(-hp // stride), -(-wp // stride)  # the phase grid
    grid = F.pad(grad_out.permute(0, 2, 3, 1), (0, 0, 0, wq - w, 0, hq - h)).reshape(n * hq * wq, c_out)
    total = grid.shape[0]
    taps = torch.empty(kh * kw, c_out, c, dtype=x.dtype, device=x.device)
    phases: dict[tuple[int, int], Tensor] = {}
    for t in range(kh * kw):
        i, j = divmod(t, kw)
        key = (i % stride, j % stride)
        if key not in phases:
            phase = x[:, :, key[0] :: stride, key[1] :: stride] if stride > 1 else x
            phase = F.pad(phase, (0, wq - phase.shape[3], 0, hq - phase.shape[2]))
            # a view when x is channels_last and stride 1; else one copy of the phase
            phases[key] = phase.permute(0, 2, 3, 1).reshape(n * hq * wq, c)
        offset = (i // stride) * wq + j // stride
        torch.mm(grid[: total - offset].t(), phases[key][offset:], out=taps[t])
    return taps.view(kh, kw, c_out, c).permute(2, 3, 0, 1)


class _GemmWeightGradConv(torch.autograd.Function):
    """A (transposed) convolution: forward and input gradient from oneDNN, weight gradient from
    :func:`conv_weight_grad_gemm`. ``output_padding`` is (0, 0) for a plain convolution."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor, bias: Tensor | None, stride: tuple[int, int], padding: tuple[int, int],
                output_padding: tuple[int, int], transposed: bool) -> Tensor:  # fmt: skip
        ctx.save_for_backward(x, weight)
        ctx.stride, ctx.padding, ctx.output_padding, ctx.transposed = stride, padding, output_padding, transposed
        ctx.has_bias = bias is not None
        if transposed:
            return F.conv_transpose2d(x, weight, bias, stride=stride, padding=padding, output_padding=output_padding)
        return F.conv2d(x, weight, bias, stride=stride, padding=padding)

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        x, weight = ctx.saved_tensors
        grad_out = grad_out.contiguous(memory_format=torch.channels_last)
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.ops.aten.convolution_backward(
                grad_out, x, weight, None, list(ctx.stride), list(ctx.padding), [1, 1], ctx.transposed,
                list(ctx.output_padding), 1, [True, False, False],
            )[0]  # fmt: skip
        if ctx.needs_input_grad[1]:
            (ph, pw), (oh, ow) = ctx.padding, ctx.output_padding
            if ctx.transposed:
                # y[s*h - p + i] += x[h] * W[i]: pad the output gradient by p on top and left (and
                # p - output_padding below and right, a crop if negative) and it is the input of a
                # stride-s convolution whose output gradient is x; the result is (C_in, C_out, kh, kw).
                gemm = conv_weight_grad_gemm(F.pad(grad_out, (pw, pw - ow, ph, ph - oh)), x, weight.shape[2:], ctx.stride[0])
            else:
                padded = F.pad(x, (pw, pw, ph, ph)) if ph or pw else x
                gemm = conv_weight_grad_gemm(padded, grad_out, weight.shape[2:], ctx.stride[0])
            grad_w = torch.empty_like(weight).copy_(gemm)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = grad_out.sum((0, 2, 3))
        return grad_x, grad_w, grad_b, None, None, None, None


def _gemm_eligible(layer: nn.Conv2d | nn.ConvTranspose2d, x: Tensor, weight: Tensor) -> bool:
    """Where the GEMM weight gradient is exact and measured faster (see the module docstring)."""
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
        and layer.stride[0] == layer.stride[1]
        and layer.dilation == (1, 1)
        and layer.groups == 1
        and layer.padding_mode == "zeros"
        and isinstance(layer.padding, tuple)  # not "same"/"valid" strings
        # With 3 channels (an RGB input or output layer) the products are too thin for BLAS:
        # measured up to 30x slower than oneDNN there, and equal at 16+ channels.
        and min(layer.in_channels, layer.out_channels) >= MIN_GEMM_CHANNELS
    )


class Conv2d(nn.Conv2d):
    """``nn.Conv2d`` (same arguments and state) that can take its weight gradient from GEMMs."""

    def _conv_forward(self, input: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        if _GEMM_WEIGHT_GRAD.get() and _gemm_eligible(self, input, weight):
            return _GemmWeightGradConv.apply(input, weight, bias, self.stride, self.padding, (0, 0), False)
        return super()._conv_forward(input, weight, bias)


class ConvTranspose2d(nn.ConvTranspose2d):
    """``nn.ConvTranspose2d`` (same arguments and state) that can take its weight gradient from GEMMs."""

    def forward(self, input: Tensor, output_size: list[int] | None = None) -> Tensor:
        if output_size is None and _GEMM_WEIGHT_GRAD.get() and _gemm_eligible(self, input, self.weight):
            return _GemmWeightGradConv.apply(input, self.weight, self.bias, self.stride, self.padding, self.output_padding, True)
        return super().forward(input, output_size)
