"""DCGAN networks: the standard layout's shapes and parameter counts, initialisation, registry, latents."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from brushwork.inference.sampler import sample_latents
from brushwork.nn import (
    DCGANDiscriminator,
    DCGANGenerator,
    build_discriminator,
    build_generator,
    generator_input,
    init_weights,
)
from brushwork.registry import RegistryError


def generator_params(image_size: int, latent_dim: int = 100, ngf: int = 64, out_channels: int = 3) -> int:
    """Parameters of the standard DCGAN generator, by formula: bias-free 4x4 transposed convs, affine BN."""
    stages = image_size.bit_length() - 3  # stride-2 layers after the 4x4 projection
    channels = ngf * 2 ** (stages - 1)
    total = latent_dim * channels * 16 + 2 * channels
    for _ in range(stages - 1):
        total += channels * (channels // 2) * 16 + 2 * (channels // 2)
        channels //= 2
    return total + channels * out_channels * 16


def discriminator_params(image_size: int, ndf: int = 64, in_channels: int = 3) -> int:
    stages = image_size.bit_length() - 3
    total, channels = in_channels * ndf * 16, ndf  # the first conv has no norm
    for _ in range(stages - 1):
        total += channels * channels * 2 * 16 + 2 * channels * 2
        channels *= 2
    return total + channels * 16


def count(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


@pytest.mark.parametrize("size", [64, 128])
def test_shapes_and_parameter_counts(size: int) -> None:
    with torch.device("meta"):  # shapes only: nothing is allocated or initialised
        g, d = build_generator(f"dcgan_{size}"), build_discriminator(f"dcgan_{size}")
    assert count(g) == generator_params(size) and count(d) == discriminator_params(size)
    if size == 64:  # the totals the PyTorch DCGAN example's networks have (nz 100, ngf = ndf = 64)
        assert (count(g), count(d)) == (3_576_704, 2_765_568)
    g, d = build_generator(f"dcgan_{size}", ngf=8), build_discriminator(f"dcgan_{size}", ndf=8)
    with torch.no_grad():
        images = g.eval()(torch.randn(2, 100, 1, 1, generator=torch.Generator().manual_seed(0)))
        logits = d.eval()(images)
    assert images.shape == (2, 3, size, size) and images.abs().max() <= 1.0
    assert logits.shape == (2,)  # one logit per image; no sigmoid (the loss takes logits)


def test_layout_follows_the_paper() -> None:
    g, d = DCGANGenerator(), DCGANDiscriminator()
    convs_g = [m for m in g.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert [(m.in_channels, m.out_channels) for m in convs_g] == [(100, 512), (512, 256), (256, 128), (128, 64), (64, 3)]
    assert [(m.kernel_size, m.stride, m.padding) for m in convs_g] == [((4, 4), (1, 1), (0, 0))] + [((4, 4), (2, 2), (1, 1))] * 4
    assert all(m.bias is None for m in convs_g)
    assert [type(m) for m in g.model][-2:] == [type(convs_g[-1]), nn.Tanh]  # no norm on the output layer
    layers = list(d.model)
    assert isinstance(layers[0], nn.Conv2d) and isinstance(layers[1], nn.LeakyReLU)  # no norm on the first layer
    assert layers[1].negative_slope == 0.2
    assert sum(isinstance(m, nn.BatchNorm2d) for m in d.modules()) == 3
    last = layers[-1]
    assert isinstance(last, nn.Conv2d) and (last.kernel_size, last.stride, last.padding, last.out_channels) == ((4, 4), (1, 1), (0, 0), 1)
    assert not any(isinstance(m, nn.Sigmoid) for m in d.modules())


def test_init_statistics_are_the_papers() -> None:
    torch.manual_seed(0)
    for net in (init_weights(DCGANGenerator()), init_weights(DCGANDiscriminator())):
        weights = torch.cat([m.weight.detach().flatten() for m in net.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))])
        assert abs(float(weights.mean())) < 1e-4 and abs(float(weights.std()) - 0.02) < 2e-4
        gammas = torch.cat([m.weight.detach() for m in net.modules() if isinstance(m, nn.BatchNorm2d)])
        betas = torch.cat([m.bias.detach() for m in net.modules() if isinstance(m, nn.BatchNorm2d)])
        assert abs(float(gammas.mean()) - 1.0) < 0.005 and abs(float(gammas.std()) - 0.02) < 0.005
        assert torch.count_nonzero(betas) == 0


def test_registry_rebuilds_from_recorded_kwargs() -> None:
    arch = {"latent_dim": 16, "ngf": 4, "out_channels": 1, "image_size": 64}
    g = build_generator("dcgan_64", **arch)
    assert g(torch.randn(3, 16)).shape == (3, 1, 64, 64)  # (N, latent_dim) is taken as (N, latent_dim, 1, 1)
    assert build_discriminator("dcgan_128", ndf=4, in_channels=1, image_size=128)(torch.randn(3, 1, 128, 128)).shape == (3,)
    assert generator_input("dcgan_64") == generator_input("dcgan_128") == "noise"
    assert generator_input("unet_256") == generator_input("resnet_9blocks") == "image"
    with pytest.raises(ValueError, match="dcgan_64 makes 64x64 images, got image_size=128"):
        build_generator("dcgan_64", image_size=128)
    with pytest.raises(RegistryError, match="unknown generator 'dcgan_32'"):
        generator_input("dcgan_32")


def test_other_sizes_and_bad_inputs() -> None:
    assert DCGANGenerator(ngf=4, image_size=16)(torch.randn(1, 100, 1, 1)).shape == (1, 3, 16, 16)
    with pytest.raises(ValueError, match="power of two >= 8, got 48"):
        DCGANGenerator(image_size=48)
    with pytest.raises(ValueError, match=r"latents of shape \(N, 100, 1, 1\), got \(2, 64, 1, 1\)"):
        DCGANGenerator(ngf=4)(torch.randn(2, 64, 1, 1))
    with pytest.raises(ValueError, match=r"images of shape \(N, 3, 64, 64\), got \(2, 3, 128, 128\)"):
        DCGANDiscriminator(ndf=4)(torch.randn(2, 3, 128, 128))


def test_one_adversarial_step_reaches_every_parameter() -> None:
    torch.manual_seed(0)
    g, d = init_weights(DCGANGenerator(ngf=4)), init_weights(DCGANDiscriminator(ndf=4))
    fake = g(torch.randn(4, 100, 1, 1))
    loss = F.binary_cross_entropy_with_logits(d(fake), torch.ones(4))  # BCEWithLogits on (N,) logits
    loss.backward()
    assert all(p.grad is not None and torch.count_nonzero(p.grad) > 0 for p in [*g.parameters(), *d.parameters()])


def test_latents_are_deterministic_per_seed_and_feed_the_generator() -> None:
    g = init_weights(DCGANGenerator(ngf=4), gain=0.2).eval()
    a, b, c = sample_latents(6, 100, seed=0), sample_latents(6, 100, seed=0), sample_latents(6, 100, seed=1)
    assert a.shape == (6, 100, 1, 1) and torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(sample_latents(2, 100, seed=0), a[:2])  # image i does not depend on n
    with torch.no_grad():
        assert torch.equal(g(a), g(b))


def test_a_dcgan_release_rebuilds_and_samples(tmp_path: Path) -> None:
    from brushwork.inference import load_pipeline
    from brushwork.release import release_config_for, save_release

    arch = {"name": "dcgan_64", "latent_dim": 8, "ngf": 4, "out_channels": 3, "image_size": 64, "norm": "batch"}
    torch.manual_seed(0)
    net = init_weights(build_generator(**arch), gain=0.2)
    config = release_config_for(arch, direction="AtoB", source="noise", target="paintings", train_size=64, provenance={},
                                pipeline="noise-sampler")
    sampler = load_pipeline(save_release(net, tmp_path / "rel", config), device="cpu")
    images = sampler.generate(4, seed=0)
    assert images.shape == (4, 3, 64, 64) and images.dtype == torch.uint8
    assert torch.equal(images, sampler.generate(4, seed=0))
