"""GEMM weight gradients (brushwork.nn.conv) against torch's convolution, within fp32's error bound."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from brushwork.nn.conv import (
    Conv2d,
    ConvTranspose2d,
    _GemmWeightGradConv,
    conv_weight_grad_gemm,
    gemm_weight_grad,
)

U = 2.0**-24  # unit roundoff of fp32


def _exact_weight_grad(
    x: torch.Tensor, gy: torch.Tensor, w: torch.Tensor, padding: int, stride: int = 1, transposed: bool = False, output_padding: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """The weight gradient in float64, and the fp32 rounding bound K * u * sum |x| |gy| of each entry.

    Every entry is a dot product of K = N * H_out * W_out terms; any fp32 summation order keeps
    it within gamma_K * sum |terms| of the exact value (Higham, Accuracy and Stability, 3.1).
    """
    def grad(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.ops.aten.convolution_backward(
            b, a, w.double(), None, [stride] * 2, [padding] * 2, [1, 1], transposed, [output_padding] * 2, 1, [False, True, False]
        )[1]

    small = x if transposed else gy  # the reduction runs over the smaller (output) grid of the pair
    k = small.shape[0] * small.shape[2] * small.shape[3]
    exact = grad(x.double(), gy.double())
    bound = grad(x.double().abs(), gy.double().abs()) * k * U / (1 - k * U)
    return exact, bound


@pytest.mark.parametrize(("n", "c_in", "c_out", "kernel", "size", "padding", "stride"), [
    (1, 16, 24, 3, 10, 0, 1), (2, 32, 16, 3, 9, 1, 1), (2, 16, 16, 4, 11, 1, 1), (1, 24, 32, 7, 14, 0, 1),
    (3, 16, 16, 1, 6, 0, 1), (2, 16, 32, 3, 12, 1, 2), (1, 16, 16, 3, 11, 1, 2), (2, 16, 24, 4, 13, 1, 2),
    (1, 16, 16, 3, 14, 0, 3),
])  # fmt: skip
def test_gemm_weight_gradient_is_within_fp32_error_of_the_exact_one(n, c_in, c_out, kernel, size, padding, stride) -> None:
    g = torch.Generator().manual_seed(kernel * 100 + c_in + n + stride)
    x = torch.randn(n, c_in, size, size, generator=g).contiguous(memory_format=torch.channels_last)
    w = torch.randn(c_out, c_in, kernel, kernel, generator=g)
    out = (size + 2 * padding - kernel) // stride + 1
    gy = torch.randn(n, c_out, out, out, generator=g).contiguous(memory_format=torch.channels_last)
    padded = F.pad(x, (padding,) * 4) if padding else x
    got = conv_weight_grad_gemm(padded, gy, (kernel, kernel), stride)
    exact, bound = _exact_weight_grad(x, gy, w, padding, stride)
    assert got.shape == w.shape
    assert ((got.double() - exact).abs() <= bound).all()


def _layer_grads(layer: torch.nn.Module, x: torch.Tensor, gy: torch.Tensor, *, gemm: bool) -> tuple[torch.Tensor, ...]:
    x = x.detach().clone().requires_grad_(True)
    layer.zero_grad(set_to_none=True)
    with gemm_weight_grad(gemm):
        y = layer(x)
    y.backward(gy)
    return y.detach(), x.grad, layer.weight.grad, layer.bias.grad, y.grad_fn


def test_layer_in_gemm_mode_matches_nn_conv2d() -> None:
    g = torch.Generator().manual_seed(0)
    layer = Conv2d(16, 32, 3, padding=1).to(memory_format=torch.channels_last)
    x = torch.randn(2, 16, 12, 12, generator=g).contiguous(memory_format=torch.channels_last)
    gy = torch.randn(2, 32, 12, 12, generator=g).contiguous(memory_format=torch.channels_last)
    y0, gx0, gw0, gb0, fn0 = _layer_grads(layer, x, gy, gemm=False)
    y1, gx1, gw1, gb1, fn1 = _layer_grads(layer, x, gy, gemm=True)
    assert "GemmWeightGrad" in type(fn1).__name__ and "GemmWeightGrad" not in type(fn0).__name__
    assert torch.equal(y0, y1)  # the forward pass is the same oneDNN call
    assert torch.equal(gx0, gx1)  # and so is the input gradient
    exact, bound = _exact_weight_grad(x, gy, layer.weight.detach(), 1)
    assert ((gw1.double() - exact).abs() <= bound).all()
    assert ((gw0.double() - exact).abs() <= bound).all()  # torch's own kernel meets the same bound
    assert gw1.stride() == layer.weight.stride()  # the gradient takes its parameter's layout
    torch.testing.assert_close(gb1, gb0, rtol=0, atol=gy.shape[0] * 144 * U * float(gy.abs().sum((0, 2, 3)).max()))


@pytest.mark.parametrize("case", ["nchw", "stride2", "thin", "no_grad", "bf16"])
def test_ineligible_layers_take_torchs_path(case: str) -> None:
    g = torch.Generator().manual_seed(1)
    layer = Conv2d(3 if case == "thin" else 16, 16, 3, stride=(2, 1) if case == "stride2" else 1)
    x = torch.randn(1, layer.in_channels, 9, 9, generator=g)
    if case != "nchw":
        layer = layer.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    if case == "no_grad":
        layer.requires_grad_(False)
    with gemm_weight_grad(True), torch.autocast("cpu", dtype=torch.bfloat16, enabled=case == "bf16"):
        y = layer(x.requires_grad_(True))
    assert not isinstance(y.grad_fn, _GemmWeightGradConv._backward_cls)
    assert "GemmWeightGrad" not in type(y.grad_fn).__name__


def test_mode_is_off_by_default_and_restored() -> None:
    layer = Conv2d(16, 16, 3).to(memory_format=torch.channels_last)
    x = torch.zeros(1, 16, 5, 5).contiguous(memory_format=torch.channels_last)
    with gemm_weight_grad(True):
        with gemm_weight_grad(False):
            assert "GemmWeightGrad" not in type(layer(x).grad_fn).__name__
        assert "GemmWeightGrad" in type(layer(x).grad_fn).__name__
    assert "GemmWeightGrad" not in type(layer(x).grad_fn).__name__


def test_state_dict_is_nn_conv2d_s() -> None:
    ours, theirs = Conv2d(16, 8, 3), torch.nn.Conv2d(16, 8, 3)
    assert ours.state_dict().keys() == theirs.state_dict().keys()
    theirs.load_state_dict(ours.state_dict())


@pytest.mark.parametrize(("n", "c_in", "c_out", "kernel", "padding", "output_padding"), [
    (1, 32, 16, 3, 1, 1), (2, 16, 24, 4, 1, 0), (2, 24, 16, 3, 0, 0),
])  # fmt: skip
def test_transposed_layer_in_gemm_mode_matches_nn_conv_transpose2d(n, c_in, c_out, kernel, padding, output_padding) -> None:
    """CycleGAN's upsampling (3x3, stride 2, padding 1, output padding 1) and the U-Net's (4x4)."""
    g = torch.Generator().manual_seed(c_in + kernel)
    layer = ConvTranspose2d(c_in, c_out, kernel, stride=2, padding=padding, output_padding=output_padding)
    layer = layer.to(memory_format=torch.channels_last)
    x = torch.randn(n, c_in, 7, 9, generator=g).contiguous(memory_format=torch.channels_last)
    out_shape = layer(x).shape
    gy = torch.randn(out_shape, generator=g).contiguous(memory_format=torch.channels_last)
    y0, gx0, gw0, gb0, fn0 = _layer_grads(layer, x, gy, gemm=False)
    y1, gx1, gw1, gb1, fn1 = _layer_grads(layer, x, gy, gemm=True)
    assert "GemmWeightGrad" in type(fn1).__name__ and "GemmWeightGrad" not in type(fn0).__name__
    assert torch.equal(y0, y1) and torch.equal(gx0, gx1)
    exact, bound = _exact_weight_grad(x, gy, layer.weight.detach(), padding, 2, transposed=True, output_padding=output_padding)
    assert ((gw1.double() - exact).abs() <= bound).all()
    assert ((gw0.double() - exact).abs() <= bound).all()
    assert gw1.stride() == layer.weight.stride()
    torch.testing.assert_close(gb1, gb0, rtol=0, atol=n * out_shape[2] * out_shape[3] * U * float(gy.abs().sum((0, 2, 3)).max()))


def test_strided_layer_in_gemm_mode_matches_nn_conv2d() -> None:
    g = torch.Generator().manual_seed(5)
    layer = Conv2d(16, 32, 3, stride=2, padding=1).to(memory_format=torch.channels_last)
    x = torch.randn(2, 16, 13, 12, generator=g).contiguous(memory_format=torch.channels_last)
    gy = torch.randn(layer(x).shape, generator=g).contiguous(memory_format=torch.channels_last)
    y0, gx0, _, _, _ = _layer_grads(layer, x, gy, gemm=False)
    y1, gx1, gw1, _, fn1 = _layer_grads(layer, x, gy, gemm=True)
    assert "GemmWeightGrad" in type(fn1).__name__
    assert torch.equal(y0, y1) and torch.equal(gx0, gx1)
    exact, bound = _exact_weight_grad(x, gy, layer.weight.detach(), 1, 2)
    assert ((gw1.double() - exact).abs() <= bound).all()
