"""``Stylizer``: load a feed-forward generator once, translate images of any size and kind.

It is the ``image-to-image`` implementation of the one inference pipeline
(:mod:`brushwork.inference.pipeline`): the CLI, the Python API and the other front ends (web
service, video, ONNX) all call a pipeline, and this one runs CycleGAN, CUT and pix2pix releases.

    >>> stylizer = Stylizer.from_pretrained("runs/monet/release/BtoA")
    >>> painting = stylizer(Image.open("photo.jpg"))          # PIL in, PIL out
    >>> arrays = stylizer([np_image_a, np_image_b])            # numpy in, numpy out
    >>> y = stylizer(torch.rand(2, 3, 256, 256))               # tensor in [0, 1], tensor out

What it does for every input: EXIF orientation, grayscale/16-bit/CMYK conversion to 8-bit RGB
(alpha set aside and put back unchanged), reflection padding to the network's size multiple
(cropped back), batching of same-size images, reduced precision where it is the default
(bf16 on CPUs with native bf16, fp16 on GPUs), and tiling with whole-image norm statistics when
an image would not fit the memory budget.

The network itself runs through a backend (:class:`Backend`): :class:`TorchBackend` for a torch
module, or :class:`~brushwork.inference.onnx.OnnxBackend` for an exported ``.onnx`` file run by
onnxruntime (``Stylizer.from_pretrained("model.onnx")``). Everything above the forward pass
(padding, batching, tiling, input kinds) is the same for both.
"""

from __future__ import annotations

import copy
import logging
import os
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from brushwork.data.transforms import unit_to_uint8
from brushwork.inference.pipeline import ImagePipeline, register_pipeline
from brushwork.inference.sources import ModelSourceError
from brushwork.inference.tiling import TiledRunner, TileForward, frozen_forward, to_unit
from brushwork.nn.modes import apply_test_mode, check_test_mode
from brushwork.release import ReleaseConfig
from brushwork.tuning import choose_speed
from brushwork.utils.device import resolve_device

log = logging.getLogger(__name__)

#: The smallest side brushwork stylises: below this there is no picture to speak of.
MIN_SIDE = 4
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
GIB = 1 << 30


class ImageTooSmallError(ValueError):
    """An image is too small to stylise; the message names its size and the minimum."""


class ImageTooLargeForModeError(ValueError):
    """An image would need tiling, which the model's test mode does not allow."""


class PipelineKindError(ModelSourceError):
    """A model source is of another pipeline kind than asked for; ``pipeline`` names its kind."""

    def __init__(self, message: str, pipeline: str) -> None:
        super().__init__(message)
        self.pipeline = pipeline


def default_memory_budget(device: torch.device) -> int:
    """Bytes one forward pass may use: a quarter of RAM (at most 8 GiB) on the CPU, 60 % of free GPU memory."""
    if device.type == "cuda" and torch.cuda.is_available():  # (onnxruntime can run on CUDA under a CPU-only torch)
        free, _ = torch.cuda.mem_get_info(device)
        return int(free * 0.6)
    if device.type != "cpu":
        return 4 * GIB
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        total = 16 * GIB
    return int(min(total // 4, 8 * GIB))


def _bytes_per_pixel(config: ReleaseConfig, dtype: torch.dtype, factor: int = 5) -> int:
    """Peak bytes per input pixel of one forward pass: ``factor`` x ngf x element size + 32
    (measured for torch: ~4 x ngf x element size, budgeted 5; docs/inference.md)."""
    ngf = int(config.architecture.get("ngf", 64))
    element = torch.empty((), dtype=dtype).element_size()
    return factor * ngf * element + 32


def _ceil_to(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def _pad_index(size: int, target: int) -> Tensor:
    """Indices that extend ``range(size)`` to ``target`` by reflection (replication if too short)."""
    idx = torch.arange(target)
    extra = idx[size:]
    if target - size < size:
        idx[size:] = 2 * (size - 1) - extra  # reflect, edge not repeated
    else:
        idx[size:] = size - 1  # too small to reflect: repeat the edge
    return idx


def _pad(x: Tensor, height: int, width: int) -> Tensor:
    """Pad the bottom/right of (..., H, W) to (height, width); works for uint8 too (no float copy)."""
    h, w = x.shape[-2:]
    if height > h:
        x = x.index_select(-2, _pad_index(h, height))
    if width > w:
        x = x.index_select(-1, _pad_index(w, width))
    return x


class Backend(Protocol):
    """What runs the network for a :class:`Stylizer`: a torch module or an onnxruntime session.

    Inputs are float (N, C, H, W) tensors in [-1, 1] on the CPU, padded to the size multiple;
    outputs may be on any device and of any float dtype (the Stylizer takes them to fp32 on the
    CPU).
    """

    device: torch.device
    dtype: torch.dtype
    channels_last: bool
    #: one forward pass peaks at about memory_factor x ngf x element size bytes per input pixel
    memory_factor: int

    def forward(self, x: Tensor) -> Tensor:
        """One untiled pass (instance norms use each image's own statistics)."""
        ...

    def with_statistics(self, whole: Tensor) -> AbstractContextManager[TileForward]:
        """Record the norm statistics of ``whole`` (the downscaled image) and yield a forward pass
        that normalises tiles with them (:class:`~brushwork.inference.tiling.TiledRunner`)."""
        ...

    def describe(self) -> str:
        """Where and how it runs, e.g. ``on cpu, fp32, channels_last``."""
        ...


class TorchBackend:
    """A generator as a torch module: device, precision, memory format and ``torch.compile``.

    ``precision="auto"`` and ``channels_last=None`` on the CPU take the setting
    :mod:`brushwork.tuning` measured fastest on this machine; on CUDA fp16 and channels_last.
    """

    memory_factor = 5

    def __init__(self, model: nn.Module, *, device: str | torch.device = "auto", precision: str = "auto",
                 channels_last: bool | None = None, compile: bool = False, copy_model: bool = True) -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"unknown precision {precision!r}; expected one of {', '.join(PRECISIONS)}")
        self.device = device if isinstance(device, torch.device) else resolve_device(device)
        speed = choose_speed("infer", self.device, precision=precision, channels_last=channels_last)
        self.dtype = speed.setting.dtype
        self.channels_last = speed.setting.channels_last
        log.debug("stylizer speed setting: %s (%s)", speed.setting.name, speed.reason)
        if copy_model:  # casting and moving are in place; the caller's network stays as it was
            model = copy.deepcopy(model)
        model = model.eval().requires_grad_(False).to(device=self.device, dtype=self.dtype)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model
        self._forward: nn.Module = torch.compile(model) if compile else model  # type: ignore[assignment]

    def prepare(self, x: Tensor) -> Tensor:
        """A float CPU batch as the network's input: its device, dtype and memory format."""
        x = x.to(device=self.device, dtype=self.dtype, non_blocking=True)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def forward(self, x: Tensor) -> Tensor:
        return self._forward(self.prepare(x))

    def with_statistics(self, whole: Tensor) -> AbstractContextManager[TileForward]:
        return frozen_forward(self.model, whole, prepare=self.prepare)

    def describe(self) -> str:
        precision = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.dtype]
        return f"on {self.device}, {precision}{', channels_last' if self.channels_last else ''}"


@register_pipeline("image-to-image")
class Stylizer(ImagePipeline):
    """Translate images with one generator direction.

    ``model`` is a torch module (run by a :class:`TorchBackend` built from ``device``,
    ``precision``, ``channels_last``, ``compile`` and ``copy_model``) or a ready :class:`Backend`
    (an exported ``.onnx`` run by onnxruntime, which runs as exported: those options must keep their
    defaults). Arguments after ``config`` are keyword-only and all have sensible defaults: ``device``
    (``auto``: CUDA, then MPS, then CPU), ``precision`` (``auto``, ``fp32``, ``bf16``, ``fp16``),
    ``channels_last`` (None: auto; on the CPU the precision and layout that
    :mod:`brushwork.tuning` measured fastest on this machine, on CUDA fp16 and channels_last), ``batch_size`` (most images per
    forward pass), ``memory_budget`` (bytes for one forward pass; None: :func:`default_memory_budget`),
    ``tile_size`` (force tiles of this side), ``tile_overlap``, ``stats_size`` (long side of the
    downscaled copy that gives tiled images their instance-norm statistics; None: the largest
    that fits the budget, see :mod:`brushwork.inference.tiling`),
    ``compile`` (``torch.compile`` the network; pays back only over many images), ``copy_model``
    (work on a copy, so that the network passed in is not cast or moved), ``test_mode`` (how
    batch norm and dropout behave: None takes the release's, ``eval`` or ``train_like``, see
    :mod:`brushwork.nn.modes`) and ``seed`` (of train_like's dropout noise).
    """

    def __init__(
        self,
        model: nn.Module | Backend,
        config: ReleaseConfig,
        *,
        device: str | torch.device = "auto",
        precision: str = "auto",
        channels_last: bool | None = None,
        batch_size: int = 4,
        memory_budget: int | None = None,
        tile_size: int | None = None,
        tile_overlap: int = 160,
        stats_size: int | None = None,
        compile: bool = False,
        copy_model: bool = True,
        test_mode: str | None = None,
        seed: int = 0,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if isinstance(model, nn.Module):
            self.backend: Backend = TorchBackend(model, device=device, precision=precision, channels_last=channels_last,
                                                 compile=compile, copy_model=copy_model)
        else:
            given = {"device": device != "auto" and torch.device(device).type != model.device.type,
                     "precision": precision not in ("auto", "fp32"), "channels_last": bool(channels_last), "compile": compile}
            wrong = [name for name, bad in given.items() if bad]
            if wrong:
                raise ValueError(f"{model.describe()}: {', '.join(wrong)} cannot be chosen for it (it runs as loaded)")
            self.backend = model
        self.device, self.dtype, self.channels_last = self.backend.device, self.backend.dtype, self.backend.channels_last
        self.config = config
        self.multiple = int(config.preprocessing.size_multiple)
        # batch norm and dropout as the authors test (pix2pix: per-image statistics, seeded dropout)
        self.test_mode = check_test_mode(test_mode or config.test_mode)
        if isinstance(self.backend, TorchBackend):
            self.test_time = apply_test_mode(self.backend.model, self.test_mode, seed=seed)
        elif self.test_mode != "eval":
            if test_mode is not None:
                raise ValueError(f"{self.backend.describe()}: test_mode={test_mode!r} needs the torch model; an export runs as eval")
            log.warning("%s runs in eval mode (the release's %s test mode needs the torch model)", self.backend.describe(), self.test_mode)
            self.test_mode = "eval"
        self.batch_size = batch_size
        self.memory_budget = memory_budget if memory_budget is not None else default_memory_budget(self.device)
        self.bytes_per_pixel = _bytes_per_pixel(config, self.dtype, self.backend.memory_factor)
        self.tile_size = tile_size
        self.tile_overlap = tile_overlap
        self.stats_size = stats_size
        log.debug("stylizer: %s, budget %.1f GiB", self.backend.describe(), self.memory_budget / GIB)

    @property
    def model(self) -> nn.Module:
        """The torch module (of a torch backend; an ONNX backend has none)."""
        if not isinstance(self.backend, TorchBackend):
            raise AttributeError(f"this Stylizer runs {self.backend.describe()}; it has no torch module")
        return self.backend.model

    @classmethod
    def from_pretrained(
        cls,
        source: str | Path,
        *,
        direction: str | None = None,
        norm: str | None = None,
        checkpoint: Path | None = None,
        download: bool = True,
        **kwargs: Any,
    ) -> Stylizer:
        """Load from a release folder, a run folder (+ ``direction``), an official ``.pth`` or a published name.

        ``norm`` overrides the norm assumed for a ``.pth`` (instance); other keyword arguments go to
        the constructor (device, precision, ...). An exported ``.onnx`` file (or the folder holding it
        and its ``config.json``) runs through onnxruntime (:mod:`brushwork.inference.onnx`; its
        extra option: ``threads``).
        """
        from brushwork.inference.onnx import is_onnx_source, load_onnx, split_options
        from brushwork.inference.sources import load_source

        if is_onnx_source(source):
            backend_options, kwargs = split_options(kwargs)
            backend, config = load_onnx(source, direction=direction, **backend_options)
            return cls(backend, config, **kwargs)
        model, config = load_source(source, direction=direction, norm=norm, checkpoint=checkpoint, download=download)
        if config.pipeline != cls.kind:
            hints = {"noise-sampler": " or run: brushwork generate",
                     "reference-style": " with style=..., or Stylizer.from_style(style, method='adain', model=...)"}  # fmt: skip
            raise PipelineKindError(
                f"{source} is a {config.pipeline} model, not an image-to-image generator; load it with "
                "brushwork.inference.load_pipeline" + hints.get(config.pipeline, ""), config.pipeline
            )
        return cls(model, config, copy_model=False, **kwargs)

    @classmethod
    def from_style(cls, style: Any, method: str = "adain", **options: Any) -> ImagePipeline:
        """Style from one example image, without a trained generator: Gatys, AdaIN or colour transfer.

        A thin door to :func:`brushwork.style.pipelines.from_style` (see there for the options);
        the pipeline it returns is an :class:`ImagePipeline` like this one, not a ``Stylizer``.
        """
        from brushwork.style.pipelines import from_style

        return from_style(style, method, **options)

    @classmethod
    def from_model(cls, model: nn.Module | Backend, config: ReleaseConfig, **kwargs: Any) -> Stylizer:
        """The pipeline factory of the ``image-to-image`` kind (a freshly loaded ``model`` is used in place)."""
        return cls(model, config, **{"copy_model": False, **kwargs})

    @property
    def precision(self) -> str:
        return {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.dtype]

    def describe(self) -> str:
        arch = self.config.architecture
        return f"{arch['name']} (ngf {arch.get('ngf', '?')}), {self.config.direction}, {self.backend.describe()}"

    # -----------------------------------------------------------------------------------------
    # Tensor core: everything below ends here

    def _padded_size(self, h: int, w: int) -> tuple[int, int]:
        # the residual blocks reflection-pad a (side / 4) map by 1, so sides below 8 are padded up
        least = _ceil_to(8, self.multiple)
        return max(_ceil_to(h, self.multiple), least), max(_ceil_to(w, self.multiple), least)

    def fits(self, n: int, h: int, w: int) -> bool:
        """Whether ``n`` images of ``h`` x ``w`` fit the memory budget in one untiled pass."""
        ph, pw = self._padded_size(h, w)
        return n * ph * pw * self.bytes_per_pixel <= self.memory_budget and (self.tile_size is None or max(ph, pw) <= self.tile_size)

    def tile_side(self) -> int:
        """Side of the square tiles used for images that do not fit."""
        if self.tile_size is not None:
            return max(self.multiple, (self.tile_size // self.multiple) * self.multiple)
        side = int((self.memory_budget / self.bytes_per_pixel) ** 0.5)
        return max(2 * self.multiple, 256, (side // self.multiple) * self.multiple)

    @torch.inference_mode()
    def translate(self, x: Tensor) -> Tensor:
        """(N, C, H, W) uint8 [0, 255] or float [-1, 1] -> the same dtype, on the CPU.

        Batches are split to fit the memory budget; an image that does not fit alone is tiled.
        """
        if x.dim() != 4:
            raise ValueError(f"translate expects an (N, C, H, W) tensor, got shape {tuple(x.shape)}")
        n, _, h, w = x.shape
        if min(h, w) < MIN_SIDE:
            raise ImageTooSmallError(f"image of {w}x{h} pixels is too small; brushwork needs at least {MIN_SIDE}x{MIN_SIDE}")
        x = x.cpu()
        if not self.fits(1, h, w):
            return torch.stack([self._translate_tiled(x[i]) for i in range(n)])
        per_pass = max(1, min(self.batch_size, n))
        while per_pass > 1 and not self.fits(per_pass, h, w):
            per_pass //= 2
        return torch.cat([self._translate_untiled(x[i : i + per_pass]) for i in range(0, n, per_pass)])

    def _translate_untiled(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        ph, pw = self._padded_size(h, w)
        y = self.backend.forward(_pad(to_unit(x), ph, pw))
        y = y[..., :h, :w].float().cpu()
        return unit_to_uint8(y) if x.dtype == torch.uint8 else y.contiguous()

    def _translate_tiled(self, x: Tensor) -> Tensor:
        """One (C, H, W) image (uint8, or float in [-1, 1]) in tiles; the result has the input's dtype."""
        h, w = x.shape[-2:]
        if self.test_mode == "train_like":
            raise ImageTooLargeForModeError(
                f"image of {w}x{h} pixels does not fit the memory budget, and this model's test mode (train_like: "
                "per-image batch-norm statistics and dropout, as its authors test) cannot be tiled; give a larger "
                "memory budget, resize the image, or use test_mode='eval'"
            )
        ph, pw = self._padded_size(h, w)
        tile = self.tile_side()
        # statistics from the largest version of the whole image that fits the budget
        stats_size = self.stats_size or max(tile, int(tile * (max(h, w) / min(h, w)) ** 0.5))
        runner = TiledRunner(self.backend.with_statistics, multiple=self.multiple, tile=tile, overlap=self.tile_overlap,
                             stats_size=stats_size)
        log.info("image of %dx%d does not fit the memory budget (%.1f GiB): %d-pixel tiles", w, h,
                 self.memory_budget / GIB, tile)
        return runner(_pad(x, ph, pw))[:, :h, :w]
