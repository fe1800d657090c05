"""Discriminators: PatchGAN (Isola et al. 2017; n-layer, 70x70 for n_layers=3, and 1x1 pixel), DCGAN."""

from __future__ import annotations

import re

from torch import Tensor, nn

from brushwork.nn.antialias import BlurDownsample
from brushwork.nn.conv import Conv2d
from brushwork.nn.dcgan import DCGANDiscriminator
from brushwork.nn.layers import conv_bias, norm_factory
from brushwork.registry import Registry, RegistryError

DISCRIMINATORS: Registry[nn.Module] = Registry("discriminator")


class NLayerDiscriminator(nn.Module):
    """Fully convolutional PatchGAN: one real/fake logit per overlapping input patch.

    With ``n_layers=3`` each output sees a 70x70 patch, and a 256x256 input gives 30x30 logits.
    ``antialias`` is the CUT code's default discriminator (``no_antialias`` unset): each stride-2
    convolution becomes a stride-1 convolution, its norm and LeakyReLU, then
    :class:`BlurDownsample` (one more module per stage, ``filt`` buffers in the state dict).
    A 256x256 input still gives 30x30 logits.
    """

    def __init__(
        self, *, in_channels: int = 3, ndf: int = 64, n_layers: int = 3, norm: str = "instance", antialias: bool = False
    ) -> None:
        super().__init__()
        if n_layers < 1:
            raise ValueError(f"n_layers must be >= 1, got {n_layers}")
        make_norm = norm_factory(norm)
        bias = conv_bias(norm)
        stride = 1 if antialias else 2
        layers: list[nn.Module] = [Conv2d(in_channels, ndf, 4, stride=stride, padding=1), nn.LeakyReLU(0.2, True)]
        if antialias:
            layers.append(BlurDownsample(ndf))
        mult = 1
        for n in range(1, n_layers + 1):
            prev, mult = mult, min(2**n, 8)
            last = n == n_layers
            layers += [
                Conv2d(ndf * prev, ndf * mult, 4, stride=1 if last else stride, padding=1, bias=bias),
                make_norm(ndf * mult),
                nn.LeakyReLU(0.2, True),
            ]
            if antialias and not last:
                layers.append(BlurDownsample(ndf * mult))
        layers.append(Conv2d(ndf * mult, 1, 4, stride=1, padding=1))
        self.model = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)


class PixelDiscriminator(nn.Module):
    """1x1 PatchGAN: classifies every pixel independently (colour statistics only)."""

    def __init__(self, *, in_channels: int = 3, ndf: int = 64, norm: str = "instance") -> None:
        super().__init__()
        make_norm = norm_factory(norm)
        bias = conv_bias(norm)
        self.net = nn.Sequential(
            Conv2d(in_channels, ndf, 1),
            nn.LeakyReLU(0.2, True),
            Conv2d(ndf, ndf * 2, 1, bias=bias),
            make_norm(ndf * 2),
            nn.LeakyReLU(0.2, True),
            Conv2d(ndf * 2, 1, 1, bias=bias),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


@DISCRIMINATORS.register("basic")
def _basic(**kwargs: object) -> nn.Module:
    kwargs.setdefault("n_layers", 3)
    return NLayerDiscriminator(**kwargs)  # type: ignore[arg-type]


@DISCRIMINATORS.register("n_layers")
def _n_layers(**kwargs: object) -> nn.Module:
    return NLayerDiscriminator(**kwargs)  # type: ignore[arg-type]


@DISCRIMINATORS.register("pixel")
def _pixel(**kwargs: object) -> nn.Module:
    kwargs.pop("n_layers", None)
    return PixelDiscriminator(**kwargs)  # type: ignore[arg-type]


def _dcgan(size: int, kwargs: dict[str, object]) -> nn.Module:
    image_size = kwargs.pop("image_size", size)
    if image_size != size:
        raise ValueError(f"dcgan_{size} judges {size}x{size} images, got image_size={image_size}")
    return DCGANDiscriminator(image_size=size, **kwargs)  # type: ignore[arg-type]


@DISCRIMINATORS.register("dcgan_64")
def _dcgan_64(**kwargs: object) -> nn.Module:
    return _dcgan(64, kwargs)


@DISCRIMINATORS.register("dcgan_128")
def _dcgan_128(**kwargs: object) -> nn.Module:
    return _dcgan(128, kwargs)


_NLAYER_NAME = re.compile(r"n_layers_(\d+)")


def build_discriminator(name: str, **kwargs: object) -> nn.Module:
    """Build a discriminator by name: ``basic`` (3 layers), ``n_layers`` (give n_layers), ``pixel``, ``dcgan_64``, ``dcgan_128``."""
    match = _NLAYER_NAME.fullmatch(name)
    if match:
        kwargs["n_layers"] = int(match.group(1))
        name = "n_layers"
    if name not in DISCRIMINATORS:
        valid = ", ".join(DISCRIMINATORS.names())
        raise RegistryError(f"unknown discriminator {name!r}; valid names: {valid} (or n_layers_<N>)")
    return DISCRIMINATORS.build(name, **kwargs)
