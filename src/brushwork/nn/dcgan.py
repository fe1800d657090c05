"""DCGAN networks (Radford, Metz and Chintala, ICLR 2016): noise -> image, and image -> one logit.

The layout is the one the PyTorch DCGAN example made standard (bias-free convolutions, the
4x4 projection done by a stride-1 transposed convolution of the latent seen as a 1x1 map):

    generator, 64x64:   z (N, 100, 1, 1) -> ConvT 4x4 s1 p0 -> 4x4 x 8ngf, BN, ReLU
                        -> ConvT 4x4 s2 p1 -> 8x8 x 4ngf -> 16x16 x 2ngf -> 32x32 x ngf (BN, ReLU each)
                        -> ConvT 4x4 s2 p1 -> 64x64 x 3, tanh
    discriminator:      Conv 4x4 s2 p1 + LeakyReLU 0.2 (no norm on the first layer),
                        Conv 4x4 s2 p1 + BN + LeakyReLU 0.2 until 4x4 x 8ndf,
                        Conv 4x4 s1 p0 -> one logit

Each doubling of ``image_size`` adds one stage at the wide end (128x128: 4x4 x 16ngf, the
paper's 1024 channels at ngf 64). The discriminator returns logits of shape ``(N,)``, not the
paper's sigmoid probability: the loss takes logits (``BCEWithLogits``, numerically stable), and
one value per image needs no (N, 1, 1, 1) bookkeeping.

Initialise with :func:`brushwork.nn.init.init_weights` and its defaults: weights N(0, 0.02),
batch-norm scales N(1, 0.02) and shifts 0, as the paper prescribes.
"""

from __future__ import annotations

from torch import Tensor, nn

from brushwork.nn.conv import Conv2d, ConvTranspose2d
from brushwork.nn.layers import conv_bias, norm_factory

MIN_IMAGE_SIZE = 8


def _stages(image_size: int) -> int:
    """Stride-2 layers between the 4x4 map and ``image_size`` (a power of two >= 8)."""
    if image_size < MIN_IMAGE_SIZE or image_size & (image_size - 1):
        raise ValueError(f"image_size must be a power of two >= {MIN_IMAGE_SIZE}, got {image_size}")
    return image_size.bit_length() - 3  # log2(image_size / 4)


class DCGANGenerator(nn.Module):
    """Latent ``(N, latent_dim, 1, 1)`` (or ``(N, latent_dim)``) -> images ``(N, out_channels, S, S)`` in [-1, 1]."""

    def __init__(
        self,
        *,
        latent_dim: int = 100,
        ngf: int = 64,
        out_channels: int = 3,
        image_size: int = 64,
        norm: str = "batch",
    ) -> None:
        super().__init__()
        if latent_dim < 1:
            raise ValueError(f"latent_dim must be >= 1, got {latent_dim}")
        stages = _stages(image_size)
        make_norm = norm_factory(norm)
        bias = conv_bias(norm)
        channels = ngf * 2 ** (stages - 1)
        layers: list[nn.Module] = [ConvTranspose2d(latent_dim, channels, 4, 1, 0, bias=bias), make_norm(channels), nn.ReLU(True)]
        for _ in range(stages - 1):
            layers += [ConvTranspose2d(channels, channels // 2, 4, 2, 1, bias=bias), make_norm(channels // 2), nn.ReLU(True)]
            channels //= 2
        # the output layer has no norm and, as in the paper's and the PyTorch example's code, no bias
        layers += [ConvTranspose2d(channels, out_channels, 4, 2, 1, bias=False), nn.Tanh()]
        self.model = nn.Sequential(*layers)
        self.latent_dim = latent_dim
        self.image_size = image_size

    def forward(self, z: Tensor) -> Tensor:
        if z.dim() == 2:
            z = z[:, :, None, None]
        if z.dim() != 4 or z.shape[1:] != (self.latent_dim, 1, 1):
            raise ValueError(f"DCGAN generator expects latents of shape (N, {self.latent_dim}, 1, 1), got {tuple(z.shape)}")
        return self.model(z)


class DCGANDiscriminator(nn.Module):
    """Images ``(N, in_channels, S, S)`` -> real/fake logits ``(N,)``."""

    def __init__(self, *, in_channels: int = 3, ndf: int = 64, image_size: int = 64, norm: str = "batch") -> None:
        super().__init__()
        stages = _stages(image_size)
        make_norm = norm_factory(norm)
        bias = conv_bias(norm)
        layers: list[nn.Module] = [Conv2d(in_channels, ndf, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, True)]
        channels = ndf
        for _ in range(stages - 1):
            layers += [Conv2d(channels, channels * 2, 4, 2, 1, bias=bias), make_norm(channels * 2), nn.LeakyReLU(0.2, True)]
            channels *= 2
        layers.append(Conv2d(channels, 1, 4, 1, 0, bias=False))
        self.model = nn.Sequential(*layers)
        self.in_channels = in_channels
        self.image_size = image_size

    def forward(self, x: Tensor) -> Tensor:
        expected = (self.in_channels, self.image_size, self.image_size)
        if x.dim() != 4 or x.shape[1:] != expected:
            raise ValueError(
                f"DCGAN discriminator expects images of shape (N, {', '.join(map(str, expected))}), got {tuple(x.shape)}"
            )
        return self.model(x).view(x.shape[0])
