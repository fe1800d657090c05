"""Intermediate features of a network, for losses that compare activations (PatchNCE, VGG losses).

A :class:`FeatureNetwork` returns the outputs of chosen layers. For networks built as one
``nn.Sequential`` (the ResNet generator's ``model``, torchvision VGG's ``features``) a layer is
an index into that sequence, and :func:`sequential_features` is the shared implementation: the
output of module ``i`` for every requested ``i``, stopping after the last one (so an encoder
loss never runs the decoder), as the CUT code's ``forward(x, layers, encode_only=True)`` does.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor, nn


@runtime_checkable
class FeatureNetwork(Protocol):
    """A network that can return the outputs of the layers numbered ``layers`` (increasing)."""

    def encode(self, x: Tensor, layers: Sequence[int]) -> list[Tensor]: ...


def check_layers(layers: Sequence[int], count: int) -> tuple[int, ...]:
    """Validate layer indices for a sequence of ``count`` modules: non-empty, strictly increasing, in range."""
    chosen = tuple(int(i) for i in layers)
    if not chosen:
        raise ValueError("no layers requested; give at least one module index")
    if any(b <= a for a, b in pairwise(chosen)):
        raise ValueError(f"layers must be strictly increasing, got {list(chosen)}")
    if chosen[0] < 0 or chosen[-1] >= count:
        raise ValueError(f"layers {list(chosen)} out of range: the network has modules 0..{count - 1}")
    return chosen


def sequential_features(model: nn.Sequential, x: Tensor, layers: Sequence[int]) -> list[Tensor]:
    """Outputs of ``model[i]`` for each ``i`` in ``layers``, running ``model`` only up to the last one.

    A feature whose next module works in place (``nn.ReLU(inplace=True)``) is copied first, so
    every returned tensor equals ``model[: i + 1](x)``. The CUT code keeps no copy, so there a
    layer followed by an in-place ReLU comes back rectified; its default layers (0, 4, 8, 12,
    16 of the anti-aliased generator) are not followed by one, and agree either way.
    """
    chosen = check_layers(layers, len(model))
    wanted = set(chosen)
    feats: list[Tensor] = []
    for i, module in enumerate(model):
        x = module(x)
        if i in wanted:
            follower = model[i + 1] if i + 1 < len(model) else None
            feats.append(x.clone() if getattr(follower, "inplace", False) else x)
            if i == chosen[-1]:
                break
    return feats


def feature_channels(net: nn.Module, layers: Sequence[int], *, in_channels: int = 3, size: int = 32) -> list[int]:
    """Channel count of each requested layer, from one dry run on a ``size x size`` zero image.

    This is what a projection head needs at construction (CUT's head is otherwise built lazily
    from the first batch). The dry run has no side effects: it runs without gradients and in
    eval mode (batch-norm statistics untouched), and restores every module's training flag.
    """
    if not isinstance(net, FeatureNetwork):
        raise TypeError(f"{type(net).__name__} has no encode(x, layers): it is not a FeatureNetwork")
    reference = next(iter(net.parameters()), None)
    device = reference.device if reference is not None else torch.device("cpu")
    dtype = reference.dtype if reference is not None and reference.is_floating_point() else torch.float32
    modes = [(m, m.training) for m in net.modules()]
    try:
        net.eval()
        with torch.no_grad():
            feats = net.encode(torch.zeros(1, in_channels, size, size, device=device, dtype=dtype), layers)
    finally:
        for module, training in modes:
            module.training = training
    return [int(f.shape[1]) for f in feats]
