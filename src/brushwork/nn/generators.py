"""Generators: the CycleGAN/CUT ResNet generator and the pix2pix U-Net (image -> image), DCGAN (noise -> image).

The image-to-image ones keep the module layout of the authors' reference implementation (an
``nn.Sequential`` called ``model``), so that published state dicts load with ``strict=True``.
:func:`generator_input` says which kind of input a registered generator takes.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from brushwork.nn.antialias import BlurDownsample, BlurUpsample
from brushwork.nn.conv import Conv2d, ConvTranspose2d
from brushwork.nn.dcgan import DCGANGenerator
from brushwork.nn.features import sequential_features
from brushwork.nn.layers import conv_bias, norm_factory, padding_layers
from brushwork.registry import Registry, RegistryError

GENERATORS: Registry[nn.Module] = Registry("generator")


class ResnetBlock(nn.Module):
    """Residual block: x + [pad, conv3x3, norm, relu, (dropout), pad, conv3x3, norm](x)."""

    def __init__(self, dim: int, *, norm: str, padding: str, dropout: bool) -> None:
        super().__init__()
        make_norm = norm_factory(norm)
        bias = conv_bias(norm)
        layers: list[nn.Module] = []
        pads, p = padding_layers(padding, 1)
        layers += [*pads, Conv2d(dim, dim, 3, padding=p, bias=bias), make_norm(dim), nn.ReLU(True)]
        if dropout:
            layers.append(nn.Dropout(0.5))
        pads, p = padding_layers(padding, 1)
        layers += [*pads, Conv2d(dim, dim, 3, padding=p, bias=bias), make_norm(dim)]
        self.conv_block = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv_block(x)


class ResnetGenerator(nn.Module):
    """Johnson et al. style encoder / residual blocks / decoder used by CycleGAN (G and F) and CUT.

    c7s1-ngf, d(2ngf), d(4ngf), n_blocks x R(4ngf), u(2ngf), u(ngf), c7s1-out, tanh.
    The outer 7x7 convolutions always use reflection padding, as in the reference.

    ``antialias`` selects the CUT code's down-sampling stages (its default, ``no_antialias``
    unset): conv3x3 stride 1, norm, ReLU, :class:`BlurDownsample` instead of a stride-2 conv.
    ``antialias_up`` (default: same as ``antialias``; the CUT flag ``no_antialias_up``) selects
    its up-sampling stages: :class:`BlurUpsample`, conv3x3 stride 1, norm, ReLU instead of a
    transposed conv. Each anti-aliased stage holds one more module, which shifts the indices of
    ``model`` exactly as in the CUT code, so its checkpoints load; with both off the layout is
    CycleGAN's. Module indices of ``model`` are the layer numbers of :meth:`encode`.
    """

    def __init__(
        self,
        *,
        in_channels: int = 3,
        out_channels: int = 3,
        ngf: int = 64,
        n_blocks: int = 9,
        norm: str = "instance",
        dropout: bool = False,
        padding: str = "reflect",
        antialias: bool = False,
        antialias_up: bool | None = None,
    ) -> None:
        super().__init__()
        if n_blocks < 0:
            raise ValueError(f"n_blocks must be >= 0, got {n_blocks}")
        if antialias_up is None:
            antialias_up = antialias
        make_norm = norm_factory(norm)
        bias = conv_bias(norm)
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3),
            Conv2d(in_channels, ngf, 7, bias=bias),
            make_norm(ngf),
            nn.ReLU(True),
        ]
        channels = ngf
        for _ in range(2):  # downsampling
            out = channels * 2
            if antialias:
                layers += [
                    Conv2d(channels, out, 3, padding=1, bias=bias),
                    make_norm(out),
                    nn.ReLU(True),
                    BlurDownsample(out),
                ]
            else:
                layers += [Conv2d(channels, out, 3, stride=2, padding=1, bias=bias), make_norm(out), nn.ReLU(True)]
            channels = out
        layers += [ResnetBlock(channels, norm=norm, padding=padding, dropout=dropout) for _ in range(n_blocks)]
        for _ in range(2):  # upsampling
            out = channels // 2
            if antialias_up:
                layers += [
                    BlurUpsample(channels),
                    Conv2d(channels, out, 3, padding=1, bias=bias),
                    make_norm(out),
                    nn.ReLU(True),
                ]
            else:
                layers += [
                    ConvTranspose2d(channels, out, 3, stride=2, padding=1, output_padding=1, bias=bias),
                    make_norm(out),
                    nn.ReLU(True),
                ]
            channels = out
        layers += [nn.ReflectionPad2d(3), Conv2d(channels, out_channels, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)

    def encode(self, x: Tensor, layers: Sequence[int]) -> list[Tensor]:
        """Outputs of ``model[i]`` for each ``i`` in ``layers`` (increasing); stops after the last.

        CUT's ``nce_layers`` 0, 4, 8, 12, 16 on the anti-aliased layout are the padded input,
        the first and second down-sampling convolutions (before their norm), and the outputs of
        residual blocks 1 and 5.
        """
        return sequential_features(self.model, x, layers)


class UnetBlock(nn.Module):
    """One level of the U-Net: down, (inner levels), up, with a skip connection around it."""

    def __init__(
        self,
        outer_channels: int,
        inner_channels: int,
        *,
        in_channels: int | None = None,
        submodule: nn.Module | None = None,
        outermost: bool = False,
        norm: str = "batch",
        dropout: bool = False,
    ) -> None:
        super().__init__()
        self.outermost = outermost
        innermost = submodule is None
        make_norm = norm_factory(norm)
        bias = conv_bias(norm)
        in_channels = outer_channels if in_channels is None else in_channels
        down_conv = Conv2d(in_channels, inner_channels, 4, stride=2, padding=1, bias=bias)
        up_in = inner_channels if innermost else inner_channels * 2
        if outermost:
            up_conv = ConvTranspose2d(up_in, outer_channels, 4, stride=2, padding=1)
            layers = [down_conv, submodule, nn.ReLU(True), up_conv, nn.Tanh()]
        elif innermost:
            up_conv = ConvTranspose2d(up_in, outer_channels, 4, stride=2, padding=1, bias=bias)
            layers = [nn.LeakyReLU(0.2, True), down_conv, nn.ReLU(True), up_conv, make_norm(outer_channels)]
        else:
            up_conv = ConvTranspose2d(up_in, outer_channels, 4, stride=2, padding=1, bias=bias)
            layers = [
                nn.LeakyReLU(0.2, True),
                down_conv,
                make_norm(inner_channels),
                submodule,
                nn.ReLU(True),
                up_conv,
                make_norm(outer_channels),
            ]
            if dropout:
                layers.append(nn.Dropout(0.5))
        self.model = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        if self.outermost:
            return self.model(x)
        return torch.cat([x, self.model(x)], 1)


class UnetGenerator(nn.Module):
    """pix2pix U-Net: ``num_downs`` stride-2 levels, so inputs must be multiples of 2**num_downs."""

    def __init__(
        self,
        *,
        in_channels: int = 3,
        out_channels: int = 3,
        num_downs: int = 8,
        ngf: int = 64,
        norm: str = "batch",
        dropout: bool = False,
    ) -> None:
        super().__init__()
        if num_downs < 5:
            raise ValueError(f"num_downs must be >= 5, got {num_downs}")
        block = UnetBlock(ngf * 8, ngf * 8, norm=norm)
        for _ in range(num_downs - 5):
            block = UnetBlock(ngf * 8, ngf * 8, submodule=block, norm=norm, dropout=dropout)
        block = UnetBlock(ngf * 4, ngf * 8, submodule=block, norm=norm)
        block = UnetBlock(ngf * 2, ngf * 4, submodule=block, norm=norm)
        block = UnetBlock(ngf, ngf * 2, submodule=block, norm=norm)
        self.model = UnetBlock(out_channels, ngf, in_channels=in_channels, submodule=block, outermost=True, norm=norm)
        self.num_downs = num_downs

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)


_RESNET_NAME = re.compile(r"resnet_(\d+)blocks")
_UNET_NAME = re.compile(r"unet_(\d+)")


@GENERATORS.register("resnet_9blocks")
def _resnet_9blocks(**kwargs: object) -> nn.Module:
    return ResnetGenerator(n_blocks=9, **kwargs)  # type: ignore[arg-type]


@GENERATORS.register("resnet_6blocks")
def _resnet_6blocks(**kwargs: object) -> nn.Module:
    return ResnetGenerator(n_blocks=6, **kwargs)  # type: ignore[arg-type]


@GENERATORS.register("unet_256")
def _unet_256(**kwargs: object) -> nn.Module:
    kwargs.pop("padding", None)  # U-Net convolutions use zero padding only
    return UnetGenerator(num_downs=8, **kwargs)  # type: ignore[arg-type]


@GENERATORS.register("unet_128")
def _unet_128(**kwargs: object) -> nn.Module:
    kwargs.pop("padding", None)
    return UnetGenerator(num_downs=7, **kwargs)  # type: ignore[arg-type]


def _dcgan(size: int, kwargs: dict[str, object]) -> nn.Module:
    image_size = kwargs.pop("image_size", size)
    if image_size != size:
        raise ValueError(f"dcgan_{size} makes {size}x{size} images, got image_size={image_size}")
    return DCGANGenerator(image_size=size, **kwargs)  # type: ignore[arg-type]


@GENERATORS.register("dcgan_64")
def _dcgan_64(**kwargs: object) -> nn.Module:
    return _dcgan(64, kwargs)


@GENERATORS.register("dcgan_128")
def _dcgan_128(**kwargs: object) -> nn.Module:
    return _dcgan(128, kwargs)


#: Generators that take a latent vector (N, latent_dim, 1, 1) rather than an image.
NOISE_GENERATORS = ("dcgan_64", "dcgan_128")


def build_generator(name: str, **kwargs: object) -> nn.Module:
    """Build a generator by registry name; ``resnet_<N>blocks`` works for any N."""
    if name in GENERATORS:
        return GENERATORS.build(name, **kwargs)
    match = _RESNET_NAME.fullmatch(name)
    if match:
        return ResnetGenerator(n_blocks=int(match.group(1)), **kwargs)  # type: ignore[arg-type]
    match = _UNET_NAME.fullmatch(name)
    if match and int(match.group(1)) >= 32 and (int(match.group(1)) & (int(match.group(1)) - 1)) == 0:
        kwargs.pop("padding", None)
        return UnetGenerator(num_downs=int(match.group(1)).bit_length() - 1, **kwargs)  # type: ignore[arg-type]
    valid = ", ".join(GENERATORS.names())
    raise RegistryError(
        f"unknown generator {name!r}; valid names: {valid} (or resnet_<N>blocks, unet_<2^k>)"
    )


def is_valid_generator_name(name: str) -> bool:
    return name in GENERATORS or bool(_RESNET_NAME.fullmatch(name) or _UNET_NAME.fullmatch(name))


def generator_input(name: str) -> str:
    """What generator ``name`` takes: ``"image"`` (image-to-image) or ``"noise"`` (latents, DCGAN).

    A noise generator's release records ``latent_dim`` in its architecture; its inputs come from
    :func:`brushwork.inference.sampler.sample_latents`, not from image preprocessing.
    """
    if name in NOISE_GENERATORS:
        return "noise"
    if is_valid_generator_name(name):
        return "image"
    valid = ", ".join(GENERATORS.names())
    raise RegistryError(f"unknown generator {name!r}; valid names: {valid} (or resnet_<N>blocks, unet_<2^k>)")


def generator_multiple(name: str) -> int:
    """Input sides must be a multiple of this for the generator to return the same size.

    Meaningless for noise generators (see :func:`generator_input`), which take no image.
    """
    match = _UNET_NAME.fullmatch(name)
    if match:
        return int(match.group(1))
    return 4
