"""Temporally stable instance normalisation for video: statistics smoothed over frames, reset at cuts.

Per-frame stylisation flickers for one main reason. Every ``InstanceNorm2d`` of a generator
normalises a frame with that frame's own per-channel mean and variance; between two frames of one
shot those statistics move with small content changes (something entering the picture, noise,
compression), and because they scale and shift whole feature maps the entire frame changes colour
and contrast with them.

``stable`` mode swaps every instance norm for a :class:`SmoothedNorm` (through
:func:`brushwork.inference.tiling.swapped_instance_norms`, the mechanism tiling uses for its frozen
statistics, on a private copy of the network, so no network code changes). At each layer it
takes the frame's own statistics ``m_t``, ``v_t`` and smooths them with an exponential moving
average over the frames,

    m~_t = a * m~_{t-1} + (1 - a) * m_t,        v~_t = a * v~_{t-1} + (1 - a) * (v_t + eps),

(``a`` is ``smoothing``; the average reaches back about ``1 / (1 - a)`` frames), then normalises
the frame with the smoothed values. The first frame and every scene cut restart the average
from the frame's own statistics, so a new shot is not coloured by the last one.
:class:`SceneCutDetector` finds the cuts on the input frames, by the distance between the colour
histograms of consecutive frames.

The output is computed from the per-frame kernel's output ``y0`` (``native_group_norm``, the
kernel brushwork's ``InstanceNorm2d`` runs at inference) by one per-channel scale and shift,

    y = y0 * s + c,     s = sqrt((v_t + eps) / v~_t),     c = (m_t - m~_t) / sqrt(v~_t) * g + b * (1 - s)

(``g``, ``b``: the affine weight and bias, 1 and 0 without them), which is exact algebra for
``(x - m~_t) / sqrt(v~_t) * g + b``. A frame whose smoothed statistics are its own (the first
frame, a cut, ``smoothing=0``) keeps ``y0`` bit for bit, so ``smoothing=0`` *is* per-frame mode.
"""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from brushwork.inference.tiling import swapped_instance_norms

if TYPE_CHECKING:
    from brushwork.inference.pipeline import ImagePipeline

log = logging.getLogger(__name__)

TEMPORAL_MODES = ("stable", "per-frame")
#: EMA factor of stable mode (about 5 frames of memory): on a pan-and-zoom clip with a trained
#: CycleGAN it gets the motion-compensated error as low as 0.9 and 0.95 do, with less lag
#: behind the per-frame statistics (docs/deploy.md).
DEFAULT_SMOOTHING = 0.8
#: Histogram distance (0: same colours, 1: disjoint) above which two frames are a scene cut. On the
#: benchmark clip a slow pan and zoom moves it by at most 0.015 a frame and the cut between two
#: landscape photos by 0.30; a missed cut costs more (a few frames tinted by the last shot) than
#: a false one (one frame normalised on its own), hence a threshold nearer the low end.
DEFAULT_CUT_THRESHOLD = 0.2
HISTOGRAM_BINS = 32


class StableModeError(ValueError):
    """Stable mode cannot run as asked (frames too large for one pass); the message says what to do."""


class NormTrack:
    """What the smoothed norms of one network share: the smoothing factor and this pass's restarts.

    :meth:`begin` is called before each forward pass with one flag per frame (True: restart the
    average there). Every norm reads the flags of the frames it is given in order, with its own
    cursor, so a pass that the stylizer splits into smaller batches still lines up.
    """

    def __init__(self, smoothing: float) -> None:
        if not 0.0 <= smoothing < 1.0:
            raise ValueError(f"smoothing must be in [0, 1), got {smoothing}")
        self.smoothing = smoothing
        self.norms: list[SmoothedNorm] = []
        self.restarts = torch.zeros(0, dtype=torch.bool)

    def begin(self, restarts: Tensor) -> None:
        self.restarts = restarts.to(dtype=torch.bool, device="cpu")
        for norm in self.norms:
            norm.cursor = 0


class SmoothedNorm(nn.Module):
    """Instance norm with statistics averaged over consecutive frames (see the module docstring).

    The batch dimension is time: frame ``t`` of a batch follows frame ``t - 1``, and the first
    frame of a batch follows the last frame of the previous one (kept in ``state``, fp32).
    """

    def __init__(self, original: nn.InstanceNorm2d, track: NormTrack) -> None:
        super().__init__()
        self.original = original  # holds the affine weight and bias when there are any
        self.eps = original.eps
        self.track = track
        self.cursor = 0
        self.state: tuple[Tensor, Tensor] | None = None  # (mean, var + eps) of the last frame seen
        track.norms.append(self)

    def forward(self, x: Tensor) -> Tensor:
        n, c, h, w = x.shape
        weight, bias = (self.original.weight, self.original.bias) if self.original.affine else (None, None)
        y, mean, rstd = torch.native_group_norm(x, weight, bias, n, c, h * w, c, self.eps)
        restart = self.track.restarts[self.cursor : self.cursor + n]
        if restart.numel() != n:
            raise RuntimeError(f"smoothed norm got {n} frames but only {restart.numel()} restart flags")
        self.cursor += n
        a = self.track.smoothing
        own = torch.ones(n, dtype=torch.bool) if a == 0.0 else restart.clone()
        if self.state is None:
            own[0] = True
        m, ve = mean.float(), rstd.float().pow(-2)  # ve: the frame's variance + eps
        sm, sv = m.clone(), ve.clone()
        for t in range(n):
            if own[t]:
                continue
            prev_m, prev_v = (sm[t - 1], sv[t - 1]) if t > 0 else self.state  # type: ignore[misc]
            sm[t] = a * prev_m + (1.0 - a) * m[t]
            sv[t] = a * prev_v + (1.0 - a) * ve[t]
        self.state = (sm[-1].clone(), sv[-1].clone())
        if bool(own.all()):
            return y
        scale = torch.sqrt(ve / sv)
        shift = (m - sm) * sv.rsqrt()
        if weight is not None and bias is not None:
            shift = shift * weight.float() + bias.float() * (1.0 - scale)
        keep = own.to(x.device)[:, None]
        scale = torch.where(keep, torch.ones_like(scale), scale)
        shift = torch.where(keep, torch.zeros_like(shift), shift)
        return torch.addcmul(shift.to(x.dtype)[:, :, None, None], y, scale.to(x.dtype)[:, :, None, None])


def colour_histograms(frames: Tensor) -> Tensor:
    """(N, 3, H, W) uint8 -> (N, 3, bins) per-channel colour histograms, each summing to 1.

    Frames above 256 pixels a side are subsampled first (every second or fourth pixel): a
    histogram needs no more to see a cut.
    """
    step = max(1, min(frames.shape[-2:]) // 256)
    sub = frames[..., ::step, ::step]
    n, ch = sub.shape[:2]
    offsets = torch.arange(n * ch).view(n, ch, 1) * HISTOGRAM_BINS
    index = ((sub.reshape(n, ch, -1).long() * HISTOGRAM_BINS) >> 8) + offsets  # 256 levels -> bins
    counts = torch.bincount(index.flatten(), minlength=n * ch * HISTOGRAM_BINS).view(n, ch, HISTOGRAM_BINS).float()
    return counts / counts.sum(-1, keepdim=True)


def histogram_distance(a: Tensor, b: Tensor) -> Tensor:
    """Total-variation distance between histograms, averaged over channels: 0 (same) to 1 (disjoint)."""
    return 0.5 * (a - b).abs().sum(-1).mean(-1)


class SceneCutDetector:
    """Flags the frames that start a new shot: the first one, and each whose colour histogram is
    more than ``threshold`` (total-variation distance, 0 to 1) from the previous frame's.

    A histogram ignores where things are, so a pan, a zoom or a person walking through the picture
    moves it little, while a cut to another shot usually moves it a lot. Cuts between two shots
    of the same colours are missed (the average then carries over, as within a shot), and a
    sudden flash may count as a cut (the average restarts: one frame of per-frame behaviour).
    """

    def __init__(self, threshold: float = DEFAULT_CUT_THRESHOLD) -> None:
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"scene-cut threshold must be in (0, 1], got {threshold}")
        self.threshold = threshold
        self.previous: Tensor | None = None
        self.distances: list[float] = []  # to the previous frame, for every frame after the first

    def __call__(self, frames: Tensor) -> Tensor:
        """(N, 3, H, W) uint8 consecutive frames -> (N,) bool, True where a shot starts."""
        hist = colour_histograms(frames)
        before = hist[:-1] if self.previous is None else torch.cat([self.previous[None], hist[:-1]])
        dist = histogram_distance(hist[1:] if self.previous is None else hist, before)
        cuts = dist > self.threshold
        if self.previous is None:
            cuts = torch.cat([torch.ones(1, dtype=torch.bool), cuts])
        self.distances += dist.tolist()
        self.previous = hist[-1]
        return cuts


class FrameStylizer:
    """Stylise the frames of one video in order: ``per-frame``, or ``stable`` (smoothed statistics).

        >>> with FrameStylizer(stylizer, temporal="stable") as frames:
        ...     for batch in batches:            # (N, 3, H, W) uint8, consecutive frames
        ...         out = frames(batch)          # (N, 3, H, W) uint8

    Per-frame mode is ``pipeline.translate`` itself, for any image pipeline. Stable mode runs a
    private copy of a :class:`~brushwork.inference.Stylizer` whose instance norms are
    :class:`SmoothedNorm`, so the caller's stylizer (perhaps serving other requests) is not
    touched. Where there is nothing to smooth (a pipeline that is not a generator, a network
    without instance norms) or the model's test mode is ``train_like`` (hooks that a copy would
    duplicate), stable mode runs per-frame and says so in ``warnings``. ``cuts`` lists the frame
    indices where the average restarted (the first frame included).
    """

    def __init__(self, pipeline: ImagePipeline, *, temporal: str = "stable", smoothing: float = DEFAULT_SMOOTHING,
                 cut_threshold: float = DEFAULT_CUT_THRESHOLD) -> None:
        if temporal not in TEMPORAL_MODES:
            raise ValueError(f"unknown temporal mode {temporal!r}; expected one of {', '.join(TEMPORAL_MODES)}")
        self.track = NormTrack(smoothing)
        self.detector = SceneCutDetector(cut_threshold)
        self.frames_seen = 0
        self.cuts: list[int] = []
        self.warnings: list[str] = []
        self._stack = contextlib.ExitStack()
        self.pipeline = pipeline
        self.temporal = temporal
        if temporal == "stable":
            self._make_stable(pipeline)

    def _make_stable(self, pipeline: ImagePipeline) -> None:
        from brushwork.inference.stylizer import Stylizer

        why = None
        if not isinstance(pipeline, Stylizer):
            why = f"a {pipeline.kind or type(pipeline).__name__} pipeline has no instance norms to smooth"
        elif pipeline.test_mode != "eval":
            why = f"the model's test mode is {pipeline.test_mode}"
        elif not any(isinstance(m, nn.InstanceNorm2d) and not m.track_running_stats for m in pipeline.model.modules()):
            why = "the network has no instance norms"
        if why is not None:
            self.warnings.append(f"stable normalisation does not apply ({why}): frames are stylised one by one")
            log.warning("%s", self.warnings[-1])
            self.temporal = "per-frame"
            return
        assert isinstance(pipeline, Stylizer)
        self.pipeline = Stylizer(
            pipeline.model, pipeline.config, device=pipeline.device, precision=pipeline.precision,
            channels_last=pipeline.channels_last, batch_size=pipeline.batch_size,
            memory_budget=pipeline.memory_budget, tile_size=pipeline.tile_size,
            tile_overlap=pipeline.tile_overlap, stats_size=pipeline.stats_size, copy_model=True, test_mode="eval",
        )  # fmt: skip
        self._stack.enter_context(swapped_instance_norms(self.pipeline.model, lambda norm: SmoothedNorm(norm, self.track)))

    def __enter__(self) -> FrameStylizer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._stack.close()

    def __call__(self, frames: Tensor) -> Tensor:
        """(N, 3, H, W) uint8 frames that follow the previous call's -> stylised (N, 3, H, W) uint8."""
        if frames.dim() != 4 or frames.dtype != torch.uint8:
            raise ValueError(f"expected uint8 frames (N, 3, H, W), got {frames.dtype} {tuple(frames.shape)}")
        if self.temporal == "per-frame":
            self.frames_seen += frames.shape[0]
            return self.pipeline.translate(frames)
        cuts = self.detector(frames)
        self.cuts += [self.frames_seen + int(i) for i in cuts.nonzero().flatten()]
        self.frames_seen += frames.shape[0]
        h, w = frames.shape[-2:]
        if not self.pipeline.fits(1, h, w):  # type: ignore[attr-defined]
            raise StableModeError(
                f"frames of {w}x{h} do not fit the memory budget in one pass, and stable mode needs whole "
                "frames; raise the budget (--memory-gb) or use --temporal per-frame (tiled frames)")
        self.track.begin(cuts)
        return self.pipeline.translate(frames)
