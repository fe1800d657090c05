"""Images larger than a memory budget: overlapping tiles, blended, with whole-image norm statistics.

Two things make tiled output differ from untiled output, and each has its fix here:

1. **Borders.** A tile's edge pixels see reflection padding where the whole image has real
   neighbours. Tiles therefore overlap, start on multiples of the network's total stride (so
   every tile's feature grid lines up with the untiled one), and are blended with weights that
   ramp linearly from ~0 at a tile's inner edges to 1 inside, normalised by their sum. Image
   borders get no ramp, since there the untiled network sees the same padding.
2. **Instance norm.** Each ``InstanceNorm2d`` normalises with the mean and variance of the
   *whole* feature map, so a tile of sky and a tile of forest would be normalised differently
   and show as patches. :func:`frozen_norm_statistics` swaps every instance norm of a network
   for a :class:`StatsNorm` that records its per-channel statistics in one pass over a smaller
   version of the whole image (the largest that fits the budget), then applies those frozen
   statistics to every tile. The generator classes are untouched: the swap happens on a private
   copy of the network. (Statistics pooled over full-resolution crops were tried and were
   clearly worse: docs/inference.md.)

Tiles are accumulated band by band (a row of tiles at a time), so beyond one tile's forward pass
the extra memory is one float band of the output; the input and output stay uint8.
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from brushwork.data.transforms import uint8_to_unit, unit_to_uint8


class StatsNorm(nn.Module):
    """Instance norm with statistics that are recorded once, then reused for every input.

    In ``record`` mode it normalises with the per-channel mean and (biased) variance pooled over
    the batch and all positions, and keeps them; in ``frozen`` mode it uses the kept values. Both
    run through the native batch-norm kernel (training mode pools over batch and space, exactly
    what is needed here; eval mode applies given statistics), which keeps the statistics in fp32
    for bf16/fp16 inputs without materialising an fp32 copy of a full-resolution feature map.
    """

    def __init__(self, original: nn.InstanceNorm2d) -> None:
        super().__init__()
        self.eps = original.eps
        self.original = original  # holds the affine weight and bias when there are any
        self.mode = "record"
        self.mean: Tensor | None = None
        self.var: Tensor | None = None

    def forward(self, x: Tensor) -> Tensor:
        weight = self.original.weight.float() if self.original.affine else None
        bias = self.original.bias.float() if self.original.affine else None
        if self.mode == "record":
            channels = x.shape[1]
            mean = torch.zeros(channels, device=x.device)
            var = torch.ones(channels, device=x.device)
            y = F.batch_norm(x, mean, var, weight, bias, training=True, momentum=1.0, eps=self.eps)
            n = x.numel() // channels  # the kernel keeps the unbiased variance; instance norm uses the biased one
            self.mean, self.var = mean, var * ((n - 1) / n)
            return y
        if self.mean is None or self.var is None:
            raise RuntimeError("StatsNorm is frozen before any statistics were recorded")
        return F.batch_norm(x, self.mean, self.var, weight, bias, training=False, eps=self.eps)


def _instance_norms(model: nn.Module) -> list[tuple[nn.Module, str, nn.InstanceNorm2d]]:
    found = []
    for parent in model.modules():
        for name, child in parent.named_children():
            if isinstance(child, nn.InstanceNorm2d) and not child.track_running_stats:
                found.append((parent, name, child))
    return found


N = TypeVar("N", bound=nn.Module)


@contextlib.contextmanager
def swapped_instance_norms(model: nn.Module, make: Callable[[nn.InstanceNorm2d], N]) -> Iterator[list[N]]:
    """Swap each instance norm of ``model`` for ``make(norm)`` and put the originals back after.

    The one mechanism behind every norm that takes its statistics from elsewhere: frozen
    whole-image statistics for tiles (:func:`frozen_norm_statistics`) and statistics smoothed over
    video frames (:mod:`brushwork.inference.temporal`). The network classes are untouched. This
    edits ``model`` in place while the context is open, so pass a copy when other threads may use
    the network meanwhile (:class:`TiledRunner` does).
    """
    swaps = [(parent, name, child, make(child)) for parent, name, child in _instance_norms(model)]
    for parent, name, _, norm in swaps:
        setattr(parent, name, norm)
    try:
        yield [norm for *_, norm in swaps]
    finally:
        for parent, name, child, _ in swaps:
            setattr(parent, name, child)


def frozen_norm_statistics(model: nn.Module) -> contextlib.AbstractContextManager[list[StatsNorm]]:
    """Swap ``model``'s instance norms for :class:`StatsNorm` (record mode) and restore them after."""
    return swapped_instance_norms(model, StatsNorm)


@dataclass(frozen=True)
class TilePlan:
    """Where tiles go along both axes of a (padded) image."""

    tile_h: int
    tile_w: int
    rows: tuple[int, ...]  # top of each tile row
    cols: tuple[int, ...]  # left of each tile column
    overlap: int

    @property
    def count(self) -> int:
        return len(self.rows) * len(self.cols)


def tile_starts(length: int, tile: int, overlap: int, multiple: int) -> list[int]:
    """Tile offsets covering ``[0, length)`` with at least ``overlap`` shared pixels, on multiples."""
    if length <= tile:
        return [0]
    stride = tile - overlap
    if stride < multiple:
        raise ValueError(f"tile {tile} with overlap {overlap} leaves no stride (multiple {multiple})")
    n = math.ceil((length - tile) / stride) + 1
    last = length - tile
    starts = sorted({(round(i * last / (n - 1)) // multiple) * multiple for i in range(n)})
    starts[-1] = last  # lengths and tiles are multiples already, so this is one too
    return starts


def plan_tiles(height: int, width: int, *, tile: int, overlap: int, multiple: int) -> TilePlan:
    """A tile grid for a ``height`` x ``width`` image (both multiples of ``multiple``)."""
    tile = max(multiple, (tile // multiple) * multiple)
    overlap = min((overlap // multiple) * multiple, tile // 2)
    tile_h, tile_w = min(tile, height), min(tile, width)
    rows = tile_starts(height, tile_h, overlap, multiple)
    cols = tile_starts(width, tile_w, overlap, multiple)
    return TilePlan(tile_h, tile_w, tuple(rows), tuple(cols), overlap)


def _ramp(starts: tuple[int, ...], index: int, size: int, overlap: int, length: int, margin_frac: float = 0.375) -> Tensor:
    """Blend weights of one tile along one axis.

    At an inner edge the outermost ``margin_frac * overlap`` pixels (the ones most affected by the
    tile's own padding) get no weight, then the weight ramps linearly to 1 across half the overlap.
    Image borders keep full weight: the untiled network sees the same padding there.
    """
    pos = torch.arange(size, dtype=torch.float32) + 0.5
    w = torch.ones(size)
    margin = margin_frac * overlap
    ramp = max(overlap - 2 * margin, 1.0)
    if starts[index] > 0:
        w = torch.minimum(w, ((pos - margin) / ramp).clamp(min=0.0))
    if starts[index] + size < length:
        w = torch.minimum(w, ((size - pos - margin) / ramp).clamp(min=0.0))
    return w




#: A forward pass over tiles: float (1, C, h, w) in [-1, 1] on the CPU -> the network output.
TileForward = Callable[[Tensor], Tensor]
#: Given the whole image (downscaled), record its norm statistics and yield a :data:`TileForward`
#: that normalises every tile with them: :func:`frozen_forward` for a torch module, the
#: onnxruntime backend's own for an exported graph (:mod:`brushwork.inference.onnx`).
WithStatistics = Callable[[Tensor], AbstractContextManager[TileForward]]


@contextlib.contextmanager
def frozen_forward(model: nn.Module, whole: Tensor, *, prepare: Callable[[Tensor], Tensor] = lambda t: t) -> Iterator[TileForward]:
    """Record the instance-norm statistics of ``whole`` on a private copy of ``model``; yield a
    forward pass that reuses them (swapping norms must not disturb other callers of ``model``)."""
    model = copy.deepcopy(model)
    with frozen_norm_statistics(model) as norms:
        model(prepare(whole))
        for norm in norms:
            norm.mode = "frozen"
        yield lambda x: model(prepare(x))


class TiledRunner:
    """Run a generator over a large uint8 image in tiles with frozen whole-image norm statistics.

    ``with_statistics`` says how the network takes the statistics (:data:`WithStatistics`): the
    tiling, blending and banding here are the same for every backend.
    """

    def __init__(self, with_statistics: WithStatistics, *, multiple: int, tile: int, overlap: int = 64,
                 stats_size: int = 1024) -> None:
        self.with_statistics = with_statistics
        self.multiple = multiple
        self.tile = tile
        self.overlap = overlap
        self.stats_size = stats_size

    def _stats_input(self, image: Tensor) -> Tensor:
        """The whole image, downscaled (antialiased) so that its long side is ``stats_size``."""
        _, h, w = image.shape
        m = self.multiple
        scale = min(1.0, self.stats_size / max(h, w))
        sh, sw = max(m, round(h * scale / m) * m), max(m, round(w * scale / m) * m)
        x = to_unit(image).unsqueeze(0)
        if (sh, sw) != (h, w):
            x = F.interpolate(x, size=(sh, sw), mode="bilinear", antialias=True, align_corners=False)
        return x

    @torch.inference_mode()
    def __call__(self, image: Tensor) -> Tensor:
        """(C, H, W) uint8, or float in [-1, 1], with H and W multiples of ``multiple`` -> (C_out, H, W) of the same dtype."""
        _, height, width = image.shape
        if height % self.multiple or width % self.multiple:
            raise ValueError(f"tiled input must be padded to a multiple of {self.multiple}, got {width}x{height}")
        plan = plan_tiles(height, width, tile=self.tile, overlap=self.overlap, multiple=self.multiple)
        with self.with_statistics(self._stats_input(image)) as forward:
            return self._run_tiles(image, plan, forward)

    def _run_tiles(self, image: Tensor, plan: TilePlan, forward: TileForward) -> Tensor:
        _, height, width = image.shape
        out: Tensor | None = None
        acc = wsum = None
        band_top = 0  # image row of acc[:, 0]
        wx = [_ramp(plan.cols, j, plan.tile_w, plan.overlap, width) for j in range(len(plan.cols))]
        for i, top in enumerate(plan.rows):
            wy = _ramp(plan.rows, i, plan.tile_h, plan.overlap, height)
            if acc is not None and out is not None and wsum is not None and top > band_top:
                done = top - band_top  # rows no later tile touches
                out[:, band_top:top] = _finish(acc[:, :done] / wsum[:, :done], out.dtype)
                acc, wsum = acc[:, done:], wsum[:, done:]
                band_top = top
            for j, left in enumerate(plan.cols):
                x = to_unit(image[:, top : top + plan.tile_h, left : left + plan.tile_w]).unsqueeze(0)
                y = forward(x)[0].float().cpu()
                if out is None:
                    out = torch.empty((y.shape[0], height, width), dtype=image.dtype if image.dtype == torch.uint8 else torch.float32)
                if acc is None or wsum is None:
                    acc = torch.zeros((y.shape[0], plan.tile_h, width))
                    wsum = torch.zeros((1, plan.tile_h, width))
                need = top + plan.tile_h - band_top
                if acc.shape[1] < need:
                    grow = need - acc.shape[1]
                    acc = torch.cat([acc, acc.new_zeros((acc.shape[0], grow, width))], 1)
                    wsum = torch.cat([wsum, wsum.new_zeros((1, grow, width))], 1)
                w = wy[:, None] * wx[j][None, :]
                r0 = top - band_top
                acc[:, r0 : r0 + plan.tile_h, left : left + plan.tile_w].addcmul_(y, w.expand_as(y))
                wsum[:, r0 : r0 + plan.tile_h, left : left + plan.tile_w] += w
        assert out is not None and acc is not None and wsum is not None
        out[:, band_top:] = _finish(acc[:, : height - band_top] / wsum[:, : height - band_top], out.dtype)
        return out


def to_unit(x: Tensor) -> Tensor:
    """uint8 [0, 255] -> float [-1, 1]; float input is taken to be in [-1, 1] already."""
    return uint8_to_unit(x) if x.dtype == torch.uint8 else x.float()


def _finish(x: Tensor, dtype: torch.dtype) -> Tensor:
    return unit_to_uint8(x) if dtype == torch.uint8 else x
