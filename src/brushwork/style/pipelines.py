"""The three style-from-one-example methods as inference pipelines, and :func:`from_style`.

    >>> pipe = from_style("painting.jpg", method="colour")            # instant, no weights
    >>> pipe = from_style([("monet.jpg", 0.7), ("turner.jpg", 0.3)], method="gatys", strength=0.8)
    >>> pipe = from_style("painting.jpg", method="adain", model="runs/adain/release")
    >>> out = pipe(Image.open("photo.jpg"))                           # like any ImagePipeline

Kinds (:class:`~brushwork.inference.pipeline.ImagePipeline` subclasses): ``colour-transfer``
(:class:`ColourTransferPipeline`), ``optimisation`` (:class:`GatysPipeline`) and
``reference-style`` (:class:`AdaINPipeline`). Only the last one has weights of its own, so only
it is registered in :data:`~brushwork.inference.pipeline.PIPELINES` (a release folder names it;
``load_pipeline(folder, style=...)`` builds it); the other two have no release folder and are
reached through :data:`STYLE_METHODS` by method name.

``strength`` (0..1) means the same for all three: how far the result moves from the photo. For
colour transfer and Gatys it blends the result with the photo in pixels; for AdaIN it is the
authors' alpha, the same blend on the relu4_1 features before decoding. 0 gives the photo back
(for AdaIN: the photo decoded, a close reconstruction). ``preserve_colour`` (Gatys, AdaIN)
transfers luminance only and keeps the photo's colours (Gatys et al. 2017).
"""

from __future__ import annotations

import copy
import inspect
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from brushwork.inference.pipeline import ImagePipeline, register_pipeline
from brushwork.inference.stylizer import ImageTooSmallError
from brushwork.nn.adain import ENCODER_LAYERS, AdaINNet
from brushwork.registry import Registry
from brushwork.release import ReleaseConfig
from brushwork.style.colour import (
    COLOUR_MODES,
    luminance_image,
    matched_luminance,
    transfer_colour,
    with_chroma_of,
)
from brushwork.style.gatys import GatysResult, GatysSettings, Progress, gatys_transfer, scaled_to
from brushwork.style.inputs import (
    MIN_STYLE_SIDE,
    StyleArg,
    StyleImage,
    StyleInputError,
    check_strength,
    load_styles,
)
from brushwork.style.weights import VGGWeights, pretrained_vgg19
from brushwork.tuning import choose_speed
from brushwork.utils.device import resolve_device

log = logging.getLogger(__name__)

#: The CNN methods need this many pixels on the short side of the photo (relu4_1 is 1/8 of it).
MIN_CONTENT_SIDE = 16
#: The AdaIN authors resize the style image's short side to 512 at test time.
ADAIN_STYLE_SIZE = 512
PRECISION_NAMES = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}


def _to_uint8(x: Tensor) -> Tensor:
    return x.clamp(0, 1).mul(255).round().to(torch.uint8)


def _style_names(styles: Sequence[StyleImage]) -> str:
    if len(styles) == 1:
        return styles[0].name
    total = sum(s.weight for s in styles)
    return " + ".join(f"{s.name} ({s.weight / total:.2f})" for s in styles)


class StylePipeline(ImagePipeline):
    """What the three methods share: checked style images, ``strength`` and ``preserve_colour``."""

    method: str = ""
    #: the smallest short side of a photo this method can stylise
    min_side: int = 1
    #: whether ``strength`` blends the result with the photo in pixels (AdaIN blends features)
    blends_pixels: bool = True

    def __init__(self, styles: Sequence[StyleImage], *, strength: float = 1.0, preserve_colour: bool = False) -> None:
        self.styles = list(styles)
        self.strength = check_strength(strength)
        self.preserve_colour = bool(preserve_colour)

    def _check_size(self, x: Tensor) -> None:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"translate expects (N, 3, H, W) uint8, got shape {tuple(x.shape)}")
        h, w = x.shape[-2:]
        if min(h, w) < self.min_side:
            raise ImageTooSmallError(f"image of {w}x{h} pixels is too small for {self.method}; it needs at least {self.min_side}x{self.min_side}")

    def translate(self, x: Tensor) -> Tensor:
        """(N, 3, H, W) uint8 photos -> stylised uint8 of the same size, on the CPU."""
        self._check_size(x)
        photos = x.cpu().float() / 255.0
        out = self.stylise(photos)
        if self.strength < 1.0 and self.blends_pixels:
            out = self.strength * out + (1.0 - self.strength) * photos
        return _to_uint8(out)

    def stylise(self, photos: Tensor) -> Tensor:
        """(N, 3, H, W) float photos in [0, 1] -> results in [0, 1], before the strength blend."""
        return torch.stack([self.stylise_one(p) for p in photos])

    def stylise_one(self, photo: Tensor) -> Tensor:
        raise NotImplementedError

    def _settings_text(self) -> str:
        parts = [f"style {_style_names(self.styles)}", f"strength {self.strength:g}"]
        if self.preserve_colour:
            parts.append("colours of the photo kept")
        return ", ".join(parts)


# ---------------------------------------------------------------------------------------------
# Colour transfer


class ColourTransferPipeline(StylePipeline):
    """Reinhard / histogram / Monge-Kantorovich colour transfer from one style image (no weights)."""

    kind = "colour-transfer"
    method = "colour"
    batch_size = 8

    def __init__(self, styles: Sequence[StyleImage], *, mode: str = "reinhard", strength: float = 1.0) -> None:
        if mode not in COLOUR_MODES:
            raise StyleInputError(f"unknown colour transfer mode {mode!r}; expected one of {', '.join(COLOUR_MODES)}")
        if len(styles) != 1:
            raise StyleInputError(f"colour transfer takes one style image, got {len(styles)}; several styles are for gatys and adain")
        super().__init__(styles, strength=strength)
        self.mode = mode
        self._style = styles[0].unit()

    @classmethod
    def from_style(cls, styles: Sequence[StyleImage], *, strength: float = 1.0, colour_mode: str = "reinhard",
                   preserve_colour: bool = False) -> ColourTransferPipeline:
        if preserve_colour:
            raise StyleInputError("preserve_colour keeps the photo's colours, which is all that colour transfer changes; "
                                  "use it with gatys or adain")  # fmt: skip
        return cls(styles, mode=colour_mode, strength=strength)

    def stylise_one(self, photo: Tensor) -> Tensor:
        return transfer_colour(photo, self._style, self.mode)

    def describe(self) -> str:
        return f"colour transfer ({self.mode}), {self._settings_text()}, on cpu"


# ---------------------------------------------------------------------------------------------
# Gatys


def _speed(workload: str, device: torch.device, precision: str, channels_last: bool | None) -> tuple[torch.dtype, bool, str]:
    gemm = False if workload == "train" else None
    choice = choose_speed(workload, device, precision=precision, channels_last=channels_last, gemm=gemm)  # type: ignore[arg-type]
    return choice.setting.dtype, choice.setting.channels_last, choice.reason


class GatysPipeline(StylePipeline):
    """Gatys et al. 2016: optimise each photo's pixels (one image at a time).

    ``settings`` holds the losses, the optimiser, the iterations and the coarse-to-fine schedule
    (:class:`~brushwork.style.gatys.GatysSettings`); ``weights`` the VGG-19 source
    (:func:`~brushwork.style.weights.load_vgg19_weights`). ``progress(done, total)`` is called after
    every iteration. Device and precision: on the CPU the speed setting measured for training
    (:mod:`brushwork.tuning`, forward and backward passes like these), bf16/fp16 as autocast with
    the Gram matrices and losses in fp32; on CUDA bf16 autocast and channels_last.
    """

    kind = "optimisation"
    method = "gatys"
    min_side = MIN_CONTENT_SIDE

    def __init__(self, styles: Sequence[StyleImage], *, settings: GatysSettings | None = None, strength: float = 1.0,
                 preserve_colour: bool = False, weights: str | Path | VGGWeights = "auto", vgg: nn.Module | None = None,
                 device: str | torch.device = "auto", precision: str = "auto", channels_last: bool | None = None,
                 progress: Progress | None = None) -> None:
        super().__init__(styles, strength=strength, preserve_colour=preserve_colour)
        self.settings = settings or GatysSettings()
        self.device = device if isinstance(device, torch.device) else resolve_device(device)
        dtype, self.channels_last, reason = _speed("train", self.device, precision, channels_last)
        self.autocast_dtype = None if dtype == torch.float32 else dtype
        log.debug("gatys speed setting: %s%s (%s)", PRECISION_NAMES[dtype], ", channels_last" if self.channels_last else "", reason)
        if vgg is None:
            vgg, self.weights_source = pretrained_vgg19(self.settings.layers, weights=weights, pooling=self.settings.pooling)
        else:
            self.weights_source = "VGG-19 given by the caller"
        vgg = vgg.eval().requires_grad_(False).to(self.device)
        self.vgg = vgg.to(memory_format=torch.channels_last) if self.channels_last else vgg
        self.progress = progress
        self.last_result: GatysResult | None = None

    @classmethod
    def from_style(cls, styles: Sequence[StyleImage], *, strength: float = 1.0, preserve_colour: bool = False,
                   settings: GatysSettings | None = None, iterations: int | None = None, max_side: int | None = None,
                   weights: str | Path | VGGWeights = "auto", device: str | torch.device = "auto", precision: str = "auto",
                   channels_last: bool | None = None, progress: Progress | None = None) -> GatysPipeline:
        """``iterations`` and ``max_side`` replace those of ``settings`` (:class:`~brushwork.style.gatys.GatysSettings`)."""
        settings = settings or GatysSettings()
        changes = {k: v for k, v in (("iterations", iterations), ("max_side", max_side)) if v is not None}
        if changes:
            settings = GatysSettings(**{**settings.__dict__, **changes})
        return cls(styles, settings=settings, strength=strength, preserve_colour=preserve_colour, weights=weights,
                   device=device, precision=precision, channels_last=channels_last, progress=progress)  # fmt: skip

    def stylise_one(self, photo: Tensor) -> Tensor:
        if self.strength == 0.0:
            return photo
        content = luminance_image(photo) if self.preserve_colour else photo
        styles = [(matched_luminance(s.unit(), photo) if self.preserve_colour else s.unit(), s.weight) for s in self.styles]
        result = gatys_transfer(content, styles, self.vgg, self.settings, autocast_dtype=self.autocast_dtype,  # type: ignore[arg-type]
                                channels_last=self.channels_last, progress=self.progress)  # fmt: skip
        self.last_result = result
        return with_chroma_of(result.image, photo) if self.preserve_colour else result.image

    def total_iterations(self, height: int, width: int) -> int:
        """Iterations over every coarse-to-fine level for a photo of this size (for progress bars)."""
        from brushwork.style.gatys import level_sizes

        levels = level_sizes(height, width, self.settings.first_side, self.settings.max_side)
        return sum(self.settings.level_iterations(i) for i in range(len(levels)))

    def describe(self) -> str:
        s = self.settings
        dtype = PRECISION_NAMES[self.autocast_dtype] if self.autocast_dtype is not None else "fp32"
        return (f"Gatys ({s.optimiser}, {s.iterations} iterations, style weight {s.style_weight:g}, {s.pooling} pooling; "
                f"VGG-19: {self.weights_source}), {self._settings_text()}, on {self.device}, {dtype}"
                f"{', channels_last' if self.channels_last else ''}")  # fmt: skip


# ---------------------------------------------------------------------------------------------
# AdaIN


@register_pipeline("reference-style")
class AdaINPipeline(StylePipeline):
    """AdaIN with a trained decoder: one forward pass per photo; ``strength`` is the authors' alpha.

    Style images are resized so that their short side is ``style_size`` (512, the authors'
    test-time default; None keeps them as they are). Photos keep their size.
    """

    method = "adain"
    min_side = MIN_CONTENT_SIDE
    blends_pixels = False

    def __init__(self, net: AdaINNet, config: ReleaseConfig, styles: Sequence[StyleImage] = (), *, strength: float = 1.0,
                 preserve_colour: bool = False, style_size: int | None = ADAIN_STYLE_SIZE, device: str | torch.device = "auto",
                 precision: str = "auto", channels_last: bool | None = None, batch_size: int = 4, copy_model: bool = True) -> None:
        super().__init__(styles, strength=strength, preserve_colour=preserve_colour)
        if style_size is not None and style_size < MIN_STYLE_SIDE:
            raise StyleInputError(f"style_size must be at least {MIN_STYLE_SIDE}, got {style_size}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.config = config
        self.style_size = style_size
        self.batch_size = batch_size
        self.device = device if isinstance(device, torch.device) else resolve_device(device)
        self.dtype, self.channels_last, reason = _speed("infer", self.device, precision, channels_last)
        log.debug("adain speed setting: %s (%s)", PRECISION_NAMES[self.dtype], reason)
        if copy_model:  # casting and moving are in place; the caller's network stays as it was
            net = copy.deepcopy(net)
        net = net.eval().requires_grad_(False).to(device=self.device, dtype=self.dtype)
        self.net = net.to(memory_format=torch.channels_last) if self.channels_last else net
        self._style_features: list[Tensor] | None = None

    @classmethod
    def from_model(cls, model: nn.Module, config: ReleaseConfig, *, style: StyleArg | None = None, **options: Any) -> AdaINPipeline:
        """The pipeline factory of the ``reference-style`` kind; ``style`` may also come later (:meth:`with_style`)."""
        if not isinstance(model, AdaINNet):
            raise StyleInputError(f"a reference-style pipeline needs an AdaIN network, got {type(model).__name__}")
        return cls(model, config, load_styles(style) if style is not None else (), **{"copy_model": False, **options})

    @classmethod
    def from_style(cls, styles: Sequence[StyleImage], *, model: str | Path | None = None, encoder: str | Path | None = None,
                   strength: float = 1.0, preserve_colour: bool = False, style_size: int | None = ADAIN_STYLE_SIZE,
                   device: str | torch.device = "auto", precision: str = "auto", channels_last: bool | None = None,
                   batch_size: int = 4) -> AdaINPipeline:
        from brushwork.style.adain import AdaINModelError, load_adain_model

        if model is None:
            raise AdaINModelError(
                "AdaIN needs a trained decoder: give model= a run or release folder of the adain training method "
                "or the authors' decoder.pth (github.com/naoto0804/pytorch-AdaIN, releases) with their "
                "vgg_normalised.pth beside it; gatys and colour need no model"
            )
        net, config = load_adain_model(model, encoder=encoder)
        return cls(net, config, styles, strength=strength, preserve_colour=preserve_colour, style_size=style_size,
                   device=device, precision=precision, channels_last=channels_last, batch_size=batch_size,
                   copy_model=False)  # fmt: skip

    def with_style(self, style: StyleArg, *, strength: float | None = None, preserve_colour: bool | None = None) -> AdaINPipeline:
        """A pipeline with other style images, sharing this one's network."""
        clone = object.__new__(AdaINPipeline)
        clone.__dict__.update(self.__dict__)
        StylePipeline.__init__(clone, load_styles(style), strength=self.strength if strength is None else strength,
                               preserve_colour=self.preserve_colour if preserve_colour is None else preserve_colour)  # fmt: skip
        clone._style_features = None
        return clone

    def _prepare(self, x: Tensor) -> Tensor:
        x = x.to(device=self.device, dtype=self.dtype)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def _style_image(self, style: StyleImage, photo: Tensor | None) -> Tensor:
        image = style.unit()
        if photo is not None:  # preserve_colour: the style's luminance, matched to this photo's
            image = matched_luminance(image, photo)
        if self.style_size is not None:
            h, w = image.shape[-2:]
            image = scaled_to(image[None], round(self.style_size * max(h, w) / min(h, w)))[0]
        return image

    def _encode_styles(self, photo: Tensor | None) -> list[Tensor]:
        last = ENCODER_LAYERS[-1]
        return [self.net.encode(self._prepare(self._style_image(s, photo)[None]))[last] for s in self.styles]

    @torch.inference_mode()
    def stylise(self, photos: Tensor) -> Tensor:
        if not self.styles:
            raise StyleInputError("this AdaIN pipeline has no style image; build it with style=... or call with_style()")
        weights = [s.weight for s in self.styles]
        if self.preserve_colour:  # the style's luminance is matched to each photo: encode per photo
            return torch.cat([self._stylise_batch(luminance_image(p)[None], self._encode_styles(p), weights, p[None])
                              for p in photos])  # fmt: skip
        if self._style_features is None:
            self._style_features = self._encode_styles(None)
        return self._stylise_batch(photos, self._style_features, weights, None)

    def _stylise_batch(self, content: Tensor, style_feats: list[Tensor], weights: list[float], photo: Tensor | None) -> Tensor:
        fc = self.net.encode(self._prepare(content))[ENCODER_LAYERS[-1]]
        t = self.net.target(fc, style_feats, weights, alpha=self.strength)
        out = self.net.decode(t, content.shape[-2:]).float().cpu().clamp(0, 1)
        if photo is not None:
            out = torch.stack([with_chroma_of(o, p) for o, p in zip(out, photo, strict=True)])
        return out

    def describe(self) -> str:
        prov = self.config.provenance
        origin = prov.get("decoder_file") or prov.get("run") or "release"
        styles = self._settings_text() if self.styles else "no style image yet"
        return (f"AdaIN (decoder: {origin}; encoder: {prov.get('encoder_weights', '?')}), {styles}, on {self.device}, "
                f"{PRECISION_NAMES[self.dtype]}{', channels_last' if self.channels_last else ''}")  # fmt: skip


# ---------------------------------------------------------------------------------------------
# By method name


#: method name -> builder(styles, **options) -> StylePipeline
STYLE_METHODS: Registry[StylePipeline] = Registry("style method")
STYLE_METHODS.register("colour")(ColourTransferPipeline.from_style)
STYLE_METHODS.register("gatys")(GatysPipeline.from_style)
STYLE_METHODS.register("adain")(AdaINPipeline.from_style)


def from_style(style: StyleArg, method: str = "adain", **options: Any) -> StylePipeline:
    """A pipeline that gives photos the style of ``style`` (a path or PIL image, or a list of them
    and (image, weight) pairs) by ``method``: ``adain`` (needs ``model=``), ``gatys`` or ``colour``.

    Common options: ``strength`` (0..1), ``preserve_colour`` (gatys, adain), ``device``,
    ``precision``. Method options: ``colour_mode`` (reinhard | histogram | mk); ``iterations``,
    ``settings`` (:class:`~brushwork.style.gatys.GatysSettings`), ``weights`` (VGG-19 source),
    ``progress`` for gatys; ``model``, ``encoder``, ``style_size``, ``batch_size`` for adain.
    """
    builder: Callable[..., StylePipeline] = STYLE_METHODS.get(method)
    accepted = set(inspect.signature(builder).parameters) - {"styles"}
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise StyleInputError(f"method {method} takes no option {unknown[0]!r}; its options: {', '.join(sorted(accepted))}")
    if "strength" in options:
        check_strength(options["strength"])
    return builder(load_styles(style), **options)
