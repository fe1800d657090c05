"""Architecture of a CUT / FastCUT generator read from a bare state dict (the authors' ``latest_net_G.pth``).

The CUT code's default generator is the CycleGAN ResNet generator with anti-aliased sampling
(:class:`brushwork.nn.ResnetGenerator` with ``antialias=True``): each down-sampling stage ends
in a blur-downsample and each up-sampling stage starts with a blur-upsample, both holding a fixed
filter buffer saved as ``model.<i>.filt``. Those buffers are what tells a CUT checkpoint from a
CycleGAN one, and each anti-aliased stage shifts the later module indices by one:

==================  ==========================  ==============================
                    CycleGAN (no anti-aliasing)  CUT default (both anti-aliased)
==================  ==========================  ==============================
down convolutions   model.4, model.7            model.4, model.8 (filt at 7, 11)
residual blocks     model.10 ...                model.12 ...
up convolutions     model.(10+n), (13+n)         model.(13+n), (17+n) (filt at 12+n, 16+n)
output convolution  model.(17+n)                model.(21+n)
==================  ==========================  ==============================

A CUT generator trained with both ``--no_antialias`` and ``--no_antialias_up`` has CycleGAN's
layout exactly; :func:`infer_cut_architecture` leaves it (returns ``None``) to the CycleGAN
reader, which builds the same network.
"""

from __future__ import annotations

import re
from typing import Any

import torch
from torch import Tensor

from brushwork.nn.antialias import binomial_filter

_KEY = re.compile(r"model\.(\d+)\.(?:conv_block\.(\d+)\.)?(weight|bias|filt|running_mean|running_var|num_batches_tracked)")
_NORM_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")
DOWN_FILTER, UP_FILTER = 3, 4  # the official Downsample / Upsample defaults, the only sizes its flags build
# Second convolution of a residual block: (first, second) conv_block positions -> (padding, dropout).
_BLOCK_LAYOUTS = {(1, 5): ("reflect", False), (1, 6): ("reflect", True), (0, 3): ("zero", False), (0, 4): ("zero", True)}


class CutCheckpointError(ValueError):
    """A state dict has CUT's anti-aliasing buffers but not a layout a CUT ResNet generator produces."""


def _shape(state: dict[str, Tensor], key: str) -> tuple[int, ...] | None:
    value = state.get(key)
    return tuple(value.shape) if isinstance(value, Tensor) else None


def infer_cut_architecture(state: dict[str, Tensor], *, norm: str | None = None, where: str = "state dict") -> dict[str, Any] | None:
    """``{"name": "resnet_<N>blocks", **ResnetGenerator kwargs}`` for a CUT generator's state dict, else ``None``.

    ``None`` means "not an anti-aliased ResNet generator" (no ``model.<i>.filt`` key, or keys of
    another layout); pass the state dict on to the CycleGAN reader then. A state dict that has
    the buffers but not a consistent layout raises :class:`CutCheckpointError` naming what is
    wrong. Instance norm (no parameters, so invisible) is assumed unless running statistics and
    bias-free convolutions show batch norm; ``norm`` overrides the assumption, as for CycleGAN.
    The filter buffers are checked against the binomial filters.
    """
    if not state or not all(_KEY.fullmatch(k) for k in state):
        return None
    filters = {int(m.group(1)) for k in state if (m := _KEY.fullmatch(k)) and m.group(3) == "filt" and m.group(2) is None}
    if not filters:
        return None

    def fail(message: str) -> CutCheckpointError:
        return CutCheckpointError(f"{where}: looks like a CUT generator (anti-aliasing buffers at model.{sorted(filters)}.filt) but {message}")

    blocks: dict[int, set[int]] = {}  # residual block index -> its convolutions' conv_block positions
    convs: set[int] = set()  # top-level convolutions (4-d weights; norm weights are 1-d)
    for key in state:
        m = _KEY.fullmatch(key)
        assert m is not None
        if m.group(3) != "weight" or len(state[key].shape) != 4:
            continue
        if m.group(2) is not None:
            blocks.setdefault(int(m.group(1)), set()).add(int(m.group(2)))
        else:
            convs.add(int(m.group(1)))

    first = _shape(state, "model.1.weight")
    if first is None or len(first) != 4 or first[2:] != (7, 7):
        raise fail(f"has no 7x7 input convolution at model.1.weight (found shape {first})")
    ngf, in_channels = first[0], first[1]
    antialias = 7 in filters  # the first down stage's blur follows its conv, norm and ReLU
    block_start = 12 if antialias else 10
    n_blocks = len(blocks)
    if sorted(blocks) != list(range(block_start, block_start + n_blocks)):
        raise fail(f"has residual blocks at model indices {sorted(blocks)}; expected them from model.{block_start} on")
    positions = {tuple(sorted(js)) for js in blocks.values()}
    padding, dropout = "reflect", False
    if n_blocks:
        if len(positions) != 1 or next(iter(positions)) not in _BLOCK_LAYOUTS:
            raise fail(f"has residual-block convolutions at conv_block positions {sorted(positions)}; expected (1, 5) or (1, 6)")
        padding, dropout = _BLOCK_LAYOUTS[next(iter(positions))]
    up_start = block_start + n_blocks
    antialias_up = up_start in filters
    down_stage, up_stage = (4 if antialias else 3), (4 if antialias_up else 3)
    up_convs = [up_start + s * up_stage + (1 if antialias_up else 0) for s in range(2)]
    last = up_start + 2 * up_stage + 1
    expected_convs = {1, 4, 4 + down_stage, *up_convs, last}
    expected_filters = ({7, 11} if antialias else set()) | ({up_start, up_start + up_stage} if antialias_up else set())
    if filters != expected_filters or convs != expected_convs:
        raise fail(
            f"its modules do not line up for {n_blocks} residual blocks: filters at {sorted(filters)} "
            f"(expected {sorted(expected_filters)}), convolutions at {sorted(convs)} (expected {sorted(expected_convs)})"
        )
    channels = [2 * ngf, 4 * ngf] if antialias else []
    channels += [4 * ngf, 2 * ngf] if antialias_up else []
    for index, c in zip(sorted(expected_filters), channels, strict=True):
        size = DOWN_FILTER if index in (7, 11) and antialias else UP_FILTER
        scale = 1.0 if size == DOWN_FILTER else 4.0
        expected = binomial_filter(size)[None, None].repeat(c, 1, 1, 1) * scale
        found = state[f"model.{index}.filt"]
        if found.shape != expected.shape or not torch.allclose(found.float(), expected, rtol=0, atol=1e-6):
            raise fail(f"model.{index}.filt is not the {size}x{size} binomial filter for {c} channels (shape {tuple(found.shape)})")
    output = _shape(state, f"model.{last}.weight")
    if output is None or len(output) != 4 or output[2:] != (7, 7):
        raise fail(f"has no 7x7 output convolution at model.{last}.weight (found shape {output})")

    has_buffers = any(k.rsplit(".", 1)[-1] in _NORM_BUFFERS for k in state)
    found_norm = "batch" if has_buffers and "model.1.bias" not in state else "instance"
    if norm is None:
        norm = found_norm
    elif norm != found_norm and found_norm == "batch":
        raise fail(f"holds batch-norm statistics and bias-free convolutions, while norm={norm!r} was given")
    return {
        "name": f"resnet_{n_blocks}blocks",
        "in_channels": int(in_channels),
        "out_channels": int(output[0]),
        "ngf": int(ngf),
        "norm": norm,
        "dropout": dropout,
        "padding": padding,
        "antialias": antialias,
        "antialias_up": antialias_up,
    }


__all__ = ["CutCheckpointError", "infer_cut_architecture"]
