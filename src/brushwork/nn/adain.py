"""Huang and Belongie (ICCV 2017), "Arbitrary Style Transfer in Real-time with Adaptive Instance
Normalization": a fixed VGG-19 encoder up to ``relu4_1``, the AdaIN operation, and a decoder.

- :func:`adain` (their eq. 8): ``AdaIN(x, y) = std(y) (x - mean(x)) / std(x) + mean(y)`` per
  channel over the spatial positions, ``std = sqrt(var + 1e-5)`` with the unbiased variance (as
  the authors' PyTorch port computes it).
- :class:`AdaINDecoder`: mirrors the encoder, nearest-neighbour upsampling instead of pooling,
  reflection padding everywhere, no normalisation layers, no output activation. It is an
  ``nn.Sequential`` in exactly the authors' layout, so their ``decoder.pth`` loads strictly:
  ``1, 5, 8, 11, 14, 18, 21, 25, 28`` (``.weight``/``.bias``) = Conv2d 512->256, 256->256 (x3),
  256->128, 128->128, 128->64, 64->64, 64->3, all 3x3; the other indices are ReflectionPad2d(1),
  ReLU and Upsample(x2, nearest) (at 3, 16, 23). 18 tensors, 3,505,219 parameters.
- :class:`AdaINNet`: encoder (:class:`~brushwork.nn.vgg.VGG19Features` with reflection padding
  and ceil-mode max pooling, as the authors' encoder) + decoder; ``forward(content, style,
  alpha)`` stylises, :meth:`AdaINNet.stylise` also mixes several styles. The release folder
  stores both (the decoder is only meaningful with the encoder it was trained on).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from brushwork.nn.style_networks import STYLE_NETWORKS
from brushwork.nn.vgg import VGG19Features

#: the layers the AdaIN style loss reads; the last is the one AdaIN works on
ENCODER_LAYERS: tuple[str, ...] = ("relu1_1", "relu2_1", "relu3_1", "relu4_1")
EPS = 1e-5
#: the decoder's convolutions: (index in the nn.Sequential, in channels, out channels)
DECODER_CONVS: tuple[tuple[int, int, int], ...] = (
    (1, 512, 256), (5, 256, 256), (8, 256, 256), (11, 256, 256), (14, 256, 128),
    (18, 128, 128), (21, 128, 64), (25, 64, 64), (28, 64, 3),
)  # fmt: skip
#: indices of the Upsample layers
DECODER_UPSAMPLES = (3, 16, 23)


def mean_std(features: Tensor, eps: float = EPS) -> tuple[Tensor, Tensor]:
    """Per-sample, per-channel mean and ``sqrt(unbiased var + eps)`` of (N, C, H, W), as (N, C, 1, 1), in fp32."""
    n, c = features.shape[:2]
    flat = features.float().reshape(n, c, -1)
    return flat.mean(2).view(n, c, 1, 1), (flat.var(2) + eps).sqrt().view(n, c, 1, 1)


def adain(content: Tensor, style: Tensor, eps: float = EPS) -> Tensor:
    """Adaptive instance normalisation: ``content`` features with ``style``'s channel means and stds.

    ``style`` has the content's batch size or 1 (one style for every content image).
    """
    if content.dim() != 4 or style.dim() != 4 or content.shape[1] != style.shape[1] or style.shape[0] not in (1, content.shape[0]):
        raise ValueError(f"AdaIN needs (N, C, H, W) features with the same C and a style batch of 1 or N; "
                         f"got {tuple(content.shape)} and {tuple(style.shape)}")  # fmt: skip
    cm, cs = mean_std(content, eps)
    sm, ss = mean_std(style, eps)
    return ((content.float() - cm) / cs * ss + sm).to(content.dtype)


def _conv(cin: int, cout: int) -> list[nn.Module]:
    return [nn.ReflectionPad2d(1), nn.Conv2d(cin, cout, 3)]


class AdaINDecoder(nn.Sequential):
    """The authors' decoder: relu4_1 features (N, 512, h, w) -> RGB (N, 3, 8h, 8w), about [0, 1]."""

    def __init__(self) -> None:
        relu, up = nn.ReLU, lambda: nn.Upsample(scale_factor=2, mode="nearest")
        super().__init__(
            *_conv(512, 256), relu(), up(),
            *_conv(256, 256), relu(), *_conv(256, 256), relu(), *_conv(256, 256), relu(), *_conv(256, 128), relu(), up(),
            *_conv(128, 128), relu(), *_conv(128, 64), relu(), up(),
            *_conv(64, 64), relu(), *_conv(64, 3),
        )  # fmt: skip


class AdaINNet(nn.Module):
    """VGG-19 encoder (frozen) + AdaIN + decoder.

    ``encoder_*`` arguments configure the encoder's layout; its weights (ImageNet VGG-19 converted
    by :mod:`brushwork.style.weights`, or the authors' normalised VGG) are loaded separately.
    """

    def __init__(self, *, encoder_padding: str = "reflect", encoder_pooling: str = "max", encoder_ceil_mode: bool = True) -> None:
        super().__init__()
        self.encoder = VGG19Features(layers=ENCODER_LAYERS, padding=encoder_padding, pooling=encoder_pooling,
                                     ceil_mode=encoder_ceil_mode)  # fmt: skip
        self.decoder = AdaINDecoder()

    def encode(self, x: Tensor) -> dict[str, Tensor]:
        """relu1_1 ... relu4_1 of RGB images in [0, 1]."""
        return self.encoder(x)

    def target(self, content: Tensor, styles: Sequence[Tensor], weights: Sequence[float] | None = None,
               alpha: float = 1.0) -> Tensor:
        """``t = alpha sum_k w_k AdaIN(f_c, f_s_k) + (1 - alpha) f_c`` from relu4_1 features; ``w`` normalised to sum 1."""
        if not styles:
            raise ValueError("AdaIN needs at least one style")
        w = [1.0] * len(styles) if weights is None else list(weights)
        if len(w) != len(styles) or sum(w) <= 0 or min(w) < 0:
            raise ValueError(f"style weights must be >= 0, one per style, not all 0; got {w}")
        total = sum(w)
        mixed = torch.zeros_like(content)
        for wk, s in zip(w, styles, strict=True):
            if wk > 0:
                mixed = mixed + (wk / total) * adain(content, s)
        return mixed if alpha == 1 else alpha * mixed + (1 - alpha) * content

    def decode(self, t: Tensor, size: tuple[int, int] | None = None) -> Tensor:
        """Decoder output, cropped to ``size`` (the content's; ceil-mode pooling may round up)."""
        out = self.decoder(t)
        return out[..., : size[0], : size[1]] if size is not None else out

    def stylise(self, content: Tensor, styles: Sequence[Tensor], weights: Sequence[float] | None = None,
                alpha: float = 1.0) -> Tensor:
        """Content images (N, 3, H, W) and style images (each (N or 1, 3, h, w)) -> (N, 3, H, W)."""
        fc = self.encode(content)[ENCODER_LAYERS[-1]]
        fs = [self.encode(s)[ENCODER_LAYERS[-1]] for s in styles]
        return self.decode(self.target(fc, fs, weights, alpha), content.shape[-2:])

    def forward(self, content: Tensor, style: Tensor, alpha: float = 1.0) -> Tensor:
        return self.stylise(content, [style], None, alpha)


@STYLE_NETWORKS.register("adain")
def _build_adain(**kwargs: object) -> nn.Module:
    return AdaINNet(**kwargs)  # type: ignore[arg-type]
