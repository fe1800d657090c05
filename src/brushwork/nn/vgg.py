"""VGG-19 as a feature extractor: named activations of its 16 convolutions, truncated where asked.

The layer names are the paper's (Simonyan and Zisserman 2015) as the style-transfer papers use
them: ``conv{b}_{i}`` is the ``i``-th convolution of block ``b`` before its ReLU and ``relu{b}_{i}``
after it. In the Caffe models that Gatys et al. and Huang and Belongie used, ReLU runs in place,
so the blob those papers call ``conv4_2`` holds the rectified values: our ``relu4_2``.

Input is RGB in [0, 1]; the ImageNet normalisation ``(x - mean) / std`` happens inside, from the
``mean`` and ``std`` buffers (torchvision's values by default). Weights in other conventions are
converted to this one when they are loaded (:mod:`brushwork.style.weights`): Caffe-style BGR
0-255 weights fold their channel order and scale into ``conv1_1``; the AdaIN authors' leading
1x1 convolution folds into ``conv1_1`` too. Modules past the deepest requested layer are not
built, so a truncated network holds only the weights it uses.

Options: ``pooling`` ``"max"`` (the network as trained; default) or ``"avg"`` (Gatys et al. 2016
replace max pooling by average pooling, "slightly more appealing results"); ``padding``
``"zero"`` (as trained) or ``"reflect"`` (the AdaIN encoder); ``ceil_mode`` for pooling (the
AdaIN authors' encoder rounds odd sides up).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: torchvision's ImageNet statistics (RGB, [0, 1]).
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

#: The 16 convolutions: (name, in channels, out channels), in order.
CONVS: tuple[tuple[str, int, int], ...] = (
    ("conv1_1", 3, 64), ("conv1_2", 64, 64),
    ("conv2_1", 64, 128), ("conv2_2", 128, 128),
    ("conv3_1", 128, 256), ("conv3_2", 256, 256), ("conv3_3", 256, 256), ("conv3_4", 256, 256),
    ("conv4_1", 256, 512), ("conv4_2", 512, 512), ("conv4_3", 512, 512), ("conv4_4", 512, 512),
    ("conv5_1", 512, 512), ("conv5_2", 512, 512), ("conv5_3", 512, 512), ("conv5_4", 512, 512),
)  # fmt: skip
CONV_NAMES: tuple[str, ...] = tuple(name for name, _, _ in CONVS)
#: Every layer a :class:`VGG19Features` can return, in network order.
LAYER_NAMES: tuple[str, ...] = tuple(n for conv in CONV_NAMES for n in (conv, conv.replace("conv", "relu")))
#: A 2x2 pooling follows the last convolution of blocks 1-4 (pool5 is never needed for features).
POOL_AFTER: frozenset[str] = frozenset({"conv1_2", "conv2_2", "conv3_4", "conv4_4"})
#: Index of each convolution in ``torchvision.models.vgg19().features``.
TORCHVISION_INDEX: dict[str, int] = {
    name: index for name, index in zip(CONV_NAMES, (0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34), strict=True)
}

POOLINGS = ("max", "avg")
PADDINGS = ("zero", "reflect")


def conv_of(layer: str) -> str:
    """The convolution a layer name belongs to (``relu4_1`` -> ``conv4_1``)."""
    if layer not in LAYER_NAMES:
        raise ValueError(f"unknown VGG-19 layer {layer!r}; valid names: conv1_1 ... conv5_4 and relu1_1 ... relu5_4")
    return layer.replace("relu", "conv")


class VGG19Features(nn.Module):
    """VGG-19's convolutional part returning ``{layer name: activation}`` for ``layers``.

    ``forward(x)`` takes (N, 3, H, W) RGB in [0, 1] and returns a dict with exactly the layers
    given at construction. Parameters are frozen (``requires_grad`` False): the network is a
    fixed measuring instrument in every method that uses it.
    """

    def __init__(
        self,
        *,
        layers: Sequence[str] = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"),
        pooling: str = "max",
        padding: str = "zero",
        ceil_mode: bool = False,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
    ) -> None:
        super().__init__()
        if not layers:
            raise ValueError("VGG19Features needs at least one layer to return")
        if pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {pooling!r}; expected one of {', '.join(POOLINGS)}")
        if padding not in PADDINGS:
            raise ValueError(f"unknown padding {padding!r}; expected one of {', '.join(PADDINGS)}")
        self.layers: tuple[str, ...] = tuple(dict.fromkeys(layers))
        deepest = max(CONV_NAMES.index(conv_of(layer)) for layer in self.layers)
        self.pooling, self.padding, self.ceil_mode = pooling, padding, ceil_mode
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))
        mode = "zeros" if padding == "zero" else "reflect"
        self.convs = nn.ModuleDict(
            {name: nn.Conv2d(cin, cout, 3, padding=1, padding_mode=mode) for name, cin, cout in CONVS[: deepest + 1]}
        )
        self.requires_grad_(False)

    @property
    def deepest(self) -> str:
        return next(reversed(self.convs.keys()))

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        wanted = set(self.layers)
        out: dict[str, Tensor] = {}
        h = (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)
        for name, conv in self.convs.items():
            h = conv(h)
            if name in wanted:
                out[name] = h
            h = F.relu(h)
            relu = name.replace("conv", "relu")
            if relu in wanted:
                out[relu] = h
            if len(out) == len(wanted):
                break
            if name in POOL_AFTER:
                h = (F.max_pool2d(h, 2, 2, ceil_mode=self.ceil_mode) if self.pooling == "max"
                     else F.avg_pool2d(h, 2, 2, ceil_mode=self.ceil_mode))  # fmt: skip
        return out

    def extra_repr(self) -> str:
        return f"layers={list(self.layers)}, pooling={self.pooling!r}, padding={self.padding!r}, ceil_mode={self.ceil_mode}"
