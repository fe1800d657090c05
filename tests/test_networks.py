"""Networks: registry coverage, the official CycleGAN key layout, shapes, initialisation."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from brushwork.nn import (
    DISCRIMINATORS,
    GENERATORS,
    build_discriminator,
    build_generator,
    generator_input,
    init_weights,
)
from brushwork.registry import RegistryError


def official_resnet_layout(n_blocks: int, ngf: int = 64, dropout: bool = False) -> dict[str, tuple[int, ...]]:
    """Key -> shape of the authors' resnet generator, written out from REFERENCE.md's table."""
    layout: dict[str, tuple[int, ...]] = {
        "model.1.weight": (ngf, 3, 7, 7), "model.1.bias": (ngf,),
        "model.4.weight": (ngf * 2, ngf, 3, 3), "model.4.bias": (ngf * 2,),
        "model.7.weight": (ngf * 4, ngf * 2, 3, 3), "model.7.bias": (ngf * 4,),
    }  # fmt: skip
    second = 6 if dropout else 5
    for b in range(n_blocks):
        for conv in (1, second):
            layout[f"model.{10 + b}.conv_block.{conv}.weight"] = (ngf * 4, ngf * 4, 3, 3)
            layout[f"model.{10 + b}.conv_block.{conv}.bias"] = (ngf * 4,)
    up = 10 + n_blocks
    layout[f"model.{up}.weight"] = (ngf * 4, ngf * 2, 3, 3)
    layout[f"model.{up}.bias"] = (ngf * 2,)
    layout[f"model.{up + 3}.weight"] = (ngf * 2, ngf, 3, 3)
    layout[f"model.{up + 3}.bias"] = (ngf,)
    layout[f"model.{up + 7}.weight"] = (3, ngf, 7, 7)
    layout[f"model.{up + 7}.bias"] = (3,)
    return layout


@pytest.mark.parametrize(
    ("name", "n_blocks", "keys", "params"),
    [("resnet_9blocks", 9, 48, 11_378_179), ("resnet_6blocks", 6, 36, 7_837_699)],
)
def test_resnet_matches_official_layout(name: str, n_blocks: int, keys: int, params: int) -> None:
    net = build_generator(name)
    state = net.state_dict()
    assert len(state) == keys
    assert sum(p.numel() for p in net.parameters()) == params
    assert list(net.buffers()) == []
    assert {k: tuple(v.shape) for k, v in state.items()} == official_resnet_layout(n_blocks)


def test_dropout_moves_second_conv() -> None:
    net = build_generator("resnet_9blocks", dropout=True)
    assert {k: tuple(v.shape) for k, v in net.state_dict().items()} == official_resnet_layout(9, dropout=True)


def test_official_state_dict_file_loads_strictly(tmp_path: Path) -> None:
    """A randomly initialised state dict in the official layout, saved as .pth, loads with strict=True."""
    torch.manual_seed(0)
    official = {k: torch.randn(shape) for k, shape in official_resnet_layout(9).items()}
    path = tmp_path / "latest_net_G_A.pth"
    torch.save(official, path)
    net = build_generator("resnet_9blocks")
    net.load_state_dict(torch.load(path, weights_only=True), strict=True)
    assert torch.equal(net.state_dict()["model.26.weight"], official["model.26.weight"])


def test_patchgan_layout_and_output() -> None:
    net = build_discriminator("basic")
    assert sorted({k.rsplit(".", 1)[0] for k in net.state_dict()}) == sorted(f"model.{i}" for i in (0, 2, 5, 8, 11))
    assert sum(p.numel() for p in net.parameters()) == 2_764_737
    assert net(torch.zeros(1, 3, 256, 256)).shape == (1, 1, 30, 30)


IMAGE_GENERATORS = [name for name in GENERATORS.names() if generator_input(name) == "image"]
PATCH_DISCRIMINATORS = [name for name in DISCRIMINATORS.names() if not name.startswith("dcgan_")]  # DCGAN: test_dcgan_nets.py


@pytest.mark.parametrize("name", [*IMAGE_GENERATORS, "resnet_2blocks"])
def test_every_generator_keeps_shape(name: str) -> None:
    net = build_generator(name, ngf=4)
    side = 256 if name == "unet_256" else 128 if name == "unet_128" else 36
    x = torch.randn(2, 3, side, side)
    y = net(x)
    assert y.shape == x.shape
    assert y.abs().max() <= 1.0  # tanh output


@pytest.mark.parametrize("norm", ["instance", "batch", "none"])
@pytest.mark.parametrize("padding", ["reflect", "replicate", "zero"])
def test_resnet_norms_and_paddings(norm: str, padding: str) -> None:
    net = build_generator("resnet_2blocks", ngf=4, norm=norm, padding=padding)
    assert net(torch.randn(2, 3, 20, 28)).shape == (2, 3, 20, 28)
    block_convs = [m for m in net.model[10].modules() if isinstance(m, nn.Conv2d)]
    assert len(block_convs) == 2
    assert all((conv.bias is not None) == (norm != "batch") for conv in block_convs)


@pytest.mark.parametrize("name", PATCH_DISCRIMINATORS)
def test_every_discriminator(name: str) -> None:
    net = build_discriminator(name, ndf=4, n_layers=2)
    out = net(torch.randn(2, 3, 64, 64))
    assert out.shape[:2] == (2, 1)


def test_n_layers_depth_changes_receptive_field() -> None:
    assert build_discriminator("n_layers", ndf=4, n_layers=5)(torch.zeros(1, 3, 256, 256)).shape == (1, 1, 6, 6)
    assert build_discriminator("pixel", ndf=4)(torch.zeros(1, 3, 16, 16)).shape == (1, 1, 16, 16)


def test_unknown_names_list_valid_ones() -> None:
    with pytest.raises(RegistryError, match=r"unknown generator 'resnet_nine'.*resnet_9blocks"):
        build_generator("resnet_nine")
    with pytest.raises(RegistryError, match=r"unknown discriminator 'patch'.*basic.*pixel"):
        build_discriminator("patch")


@pytest.mark.parametrize("init_type", ["normal", "xavier", "kaiming", "orthogonal"])
def test_init_weights(init_type: str) -> None:
    torch.manual_seed(0)
    net = build_generator("resnet_2blocks", ngf=8)
    init_weights(net, init_type=init_type, gain=0.02)
    conv = net.model[1]
    assert isinstance(conv, nn.Conv2d)
    assert torch.count_nonzero(conv.bias) == 0
    if init_type == "normal":
        assert abs(float(conv.weight.detach().std()) - 0.02) < 0.004
    if init_type == "orthogonal":
        w = net.model[4].weight.flatten(1)  # 16 x 72: rows are orthogonal with norm = gain
        gram = w @ w.T
        assert torch.allclose(gram, 0.02**2 * torch.eye(16), atol=1e-6)


def test_batchnorm_init_and_unknown_type() -> None:
    net = build_generator("resnet_2blocks", ngf=8, norm="batch")
    init_weights(net, init_type="normal", gain=0.02)
    bn = net.model[2]
    assert isinstance(bn, nn.BatchNorm2d)
    assert abs(float(bn.weight.mean()) - 1.0) < 0.05 and torch.count_nonzero(bn.bias) == 0
    with pytest.raises(ValueError, match="unknown init_type 'uniform'"):
        init_weights(net, init_type="uniform")


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("affine", [False, True])
def test_instance_norm_keeps_channels_last_and_matches_torch(batch: int, affine: bool) -> None:
    from brushwork.nn.layers import InstanceNorm2d

    torch.manual_seed(batch)
    ref = nn.InstanceNorm2d(8, affine=affine)
    if affine:
        with torch.no_grad():
            ref.weight.normal_(), ref.bias.normal_()
    ours = InstanceNorm2d(8, affine=affine)
    ours.load_state_dict(ref.state_dict())  # same state: published weights load unchanged
    grad = torch.randn(batch, 8, 5, 7)
    for layout in (torch.channels_last, torch.contiguous_format):
        x = torch.randn(batch, 8, 5, 7).to(memory_format=layout)
        x_ours, x_ref = x.clone().requires_grad_(), x.clone().requires_grad_()
        y = ours(x_ours)
        y.backward(grad)
        ref(x_ref).backward(grad)
        torch.testing.assert_close(y, ref(x_ref), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(x_ours.grad, x_ref.grad, rtol=1e-5, atol=1e-5)
        assert y.is_contiguous(memory_format=layout)


@pytest.mark.parametrize("grad_mode", ["no_grad", "inference_mode"])
@pytest.mark.parametrize("layout", [torch.channels_last, torch.contiguous_format])
def test_instance_norm_without_gradients_matches_torch(grad_mode: str, layout: torch.memory_format) -> None:
    """Inference takes group_norm (one group per channel): the same statistics, within fp32 rounding."""
    from brushwork.nn.layers import InstanceNorm2d

    g = torch.Generator().manual_seed(7)
    ref = nn.InstanceNorm2d(16, affine=True)
    with torch.no_grad():
        ref.weight.normal_(generator=g), ref.bias.normal_(generator=g)
    ours = InstanceNorm2d(16, affine=True)
    ours.load_state_dict(ref.state_dict())
    mean, std, h, w = 5.0, 3.0, 9, 11
    x = (torch.randn(2, 16, h, w, generator=g) * std + mean).to(memory_format=layout)
    ctx = torch.no_grad() if grad_mode == "no_grad" else torch.inference_mode()
    with ctx:
        got, expected = ours(x), ref(x)
    # A one-pass variance (E[x^2] - E[x]^2, as torch's channels_last group norm may take) over
    # K = H * W values errs by about K * u * (1 + mean^2 / var) relative; the affine scale (|w| < 4) on top.
    tol = 4 * h * w * 2.0**-24 * (1 + (mean / std) ** 2) * float(ref.weight.detach().abs().max())
    torch.testing.assert_close(got, expected, rtol=0, atol=tol)
    assert got.is_contiguous(memory_format=layout)
