"""The pipeline interface: every way of producing a stylised image, behind one call.

A pipeline turns RGB images into stylised RGB images. :class:`ImagePipeline` owns everything
that does not depend on how (inputs of every kind: PIL images, paths, numpy arrays, tensors,
alpha carried through, same-size batching); an implementation supplies :meth:`translate` on
uint8 batches and :meth:`describe`. Implementations:

- ``image-to-image``: a feed-forward generator (:class:`~brushwork.inference.stylizer.Stylizer`,
  CycleGAN, CUT, pix2pix releases);
- ``noise-sampler``: a generator from noise (DCGAN), which has no input image and so is not an
  :class:`ImagePipeline` (:class:`~brushwork.inference.sampler.NoiseSampler`);
- ``reference-style`` and ``optimisation``: style from an example image (AdaIN, Gatys) and
  statistical colour transfer.

A release's ``config.json`` names its pipeline kind; :func:`load_pipeline` reads any model
source and builds the pipeline that kind registers in :data:`PIPELINES`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, overload

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from brushwork.data.imageio import read_image, to_rgb_alpha
from brushwork.data.transforms import pil_to_uint8
from brushwork.registry import Registry

if TYPE_CHECKING:
    from brushwork.release import ReleaseConfig

T = TypeVar("T")


class ImagePipeline(ABC):
    """Stylise one image or a list, of any kind; subclasses implement :meth:`translate`."""

    #: the pipeline kind, as a release's config.json names it
    kind: str = ""
    #: most same-size images per :meth:`translate` call
    batch_size: int = 1

    @abstractmethod
    def translate(self, x: Tensor) -> Tensor:
        """(N, 3, H, W) uint8 RGB on the CPU -> stylised (N, 3, H', W') uint8 on the CPU."""

    @abstractmethod
    def describe(self) -> str:
        """One line: what this pipeline runs, and where."""

    def stylize_rgb(self, images: Sequence[Image.Image]) -> list[Image.Image]:
        """8-bit RGB PIL images -> stylised RGB PIL images; same-size images share forward passes."""
        out: list[Image.Image | None] = [None] * len(images)
        groups: dict[tuple[int, int], list[int]] = {}
        for i, img in enumerate(images):
            groups.setdefault(img.size, []).append(i)
        for indices in groups.values():
            for start in range(0, len(indices), self.batch_size):
                chunk = indices[start : start + self.batch_size]
                batch = torch.stack([pil_to_uint8(images[i]) for i in chunk])
                result = self.translate(batch)
                for k, i in enumerate(chunk):
                    out[i] = Image.fromarray(result[k].permute(1, 2, 0).numpy(), mode="RGB")
        return [img for img in out if img is not None]

    @overload
    def __call__(self, images: Image.Image | str | Path) -> Image.Image: ...
    @overload
    def __call__(self, images: np.ndarray) -> np.ndarray: ...
    @overload
    def __call__(self, images: Tensor) -> Tensor: ...
    @overload
    def __call__(self, images: Sequence[T]) -> list[T]: ...

    def __call__(self, images: Any) -> Any:
        """Stylise one image or a list; the result is of the same kind as the input.

        - PIL image or file path -> PIL image (RGB, or RGBA with the input's alpha unchanged);
        - numpy array (H, W), (H, W, 1|3|4), uint8/uint16/float in [0, 1] -> same layout and dtype
          (grayscale input gives 3 channels);
        - tensor (C, H, W) or (N, C, H, W), uint8 or float in [0, 1] -> same shape, dtype, device.
        """
        if isinstance(images, (list, tuple)):
            return self._call_many(list(images))
        if isinstance(images, Tensor) and images.dim() == 4:  # a batch stays a batch
            return torch.stack(self._call_many(list(images.unbind(0))))
        return self._call_many([images])[0]

    def _call_many(self, items: list[Any]) -> list[Any]:
        prepared = [_Prepared.make(item) for item in items]
        rgb_out = self.stylize_rgb([p.rgb for p in prepared])
        return [p.finish(out) for p, out in zip(prepared, rgb_out, strict=True)]



class _Prepared:
    """An input of any kind as RGB + alpha, and how to turn the result back into that kind."""

    def __init__(self, rgb: Image.Image, alpha: Image.Image | None, kind: str, meta: dict[str, Any]) -> None:
        self.rgb, self.alpha, self.kind, self.meta = rgb, alpha, kind, meta

    @classmethod
    def make(cls, item: Any) -> _Prepared:
        if isinstance(item, (str, Path)):
            loaded = read_image(item)
            return cls(loaded.rgb, loaded.alpha, "pil", {})
        if isinstance(item, Image.Image):
            rgb, alpha = to_rgb_alpha(item)
            return cls(rgb, alpha, "pil", {})
        if isinstance(item, np.ndarray):
            return cls._from_array(item, "numpy", {"dtype": item.dtype, "squeeze_alpha": False})
        if isinstance(item, Tensor):
            if item.dim() == 4:
                raise ValueError("a 4-d tensor is handled by Stylizer.__call__ as a batch, not as one image")
            arr = item.detach().cpu()
            dtype = arr.dtype
            if arr.dim() != 3 or arr.shape[0] not in (1, 3, 4):
                raise ValueError(f"expected an image tensor (C, H, W) with C in 1, 3, 4; got shape {tuple(item.shape)}")
            return cls._from_array(arr.permute(1, 2, 0).numpy(), "tensor", {"torch_dtype": dtype, "device": item.device})
        raise TypeError(f"cannot stylise a {type(item).__name__}; give a PIL image, a numpy array, a tensor or a path")

    @classmethod
    def _from_array(cls, arr: np.ndarray, kind: str, meta: dict[str, Any]) -> _Prepared:
        if arr.ndim == 2:
            arr = arr[:, :, None]
        if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4):
            raise ValueError(f"expected an image array (H, W) or (H, W, C) with C in 1, 3, 4; got shape {arr.shape}")
        meta["scale"] = _array_scale(arr)
        u8 = _array_to_uint8(arr, meta["scale"])
        alpha = Image.fromarray(np.ascontiguousarray(u8[:, :, 3])) if u8.shape[2] == 4 else None
        meta["alpha_raw"] = arr[:, :, 3].copy() if arr.shape[2] == 4 else None
        rgb_arr = np.repeat(u8[:, :, :1], 3, axis=2) if u8.shape[2] == 1 else u8[:, :, :3]
        return cls(Image.fromarray(np.ascontiguousarray(rgb_arr), mode="RGB"), alpha, kind, meta)

    def finish(self, out: Image.Image) -> Any:
        if self.kind == "pil":
            if self.alpha is not None:
                out = out.copy()
                out.putalpha(self.alpha)
            return out
        arr = np.asarray(out, dtype=np.uint8)
        scaled = _uint8_to_scale(arr, self.meta["scale"])
        if self.meta["alpha_raw"] is not None:  # alpha carried through bit for bit
            scaled = np.concatenate([scaled, self.meta["alpha_raw"][:, :, None].astype(scaled.dtype)], axis=2)
        if self.kind == "numpy":
            return scaled.astype(self.meta["dtype"], copy=False)
        tensor = torch.from_numpy(np.array(scaled, copy=True)).permute(2, 0, 1)
        return tensor.to(device=self.meta["device"], dtype=self.meta["torch_dtype"])


def _array_scale(arr: np.ndarray) -> float:
    """The value of full white for an array: 255 (uint8), 65535 (uint16), 1.0 (float)."""
    if arr.dtype == np.uint8:
        return 255.0
    if arr.dtype == np.uint16:
        return 65535.0
    if np.issubdtype(arr.dtype, np.floating):
        return 1.0
    if arr.dtype == np.bool_:
        return 1.0
    raise ValueError(f"unsupported image array dtype {arr.dtype}; expected uint8, uint16 or float in [0, 1]")


def _array_to_uint8(arr: np.ndarray, scale: float) -> np.ndarray:
    if arr.dtype == np.uint8:
        return arr
    return np.clip(np.nan_to_num(arr.astype(np.float64)) / scale * 255.0 + 0.5, 0, 255).astype(np.uint8)


def _uint8_to_scale(arr: np.ndarray, scale: float) -> np.ndarray:
    if scale == 255.0:
        return arr
    out = arr.astype(np.float64) * (scale / 255.0)
    return np.round(out) if scale > 1 else out.astype(np.float32)


#: pipeline kind -> factory(model, release config, **options) -> pipeline
PipelineFactory = Callable[..., Any]
PIPELINES: Registry[Any] = Registry("pipeline kind")


def register_pipeline(kind: str) -> Callable[[T], T]:
    """Class decorator: ``cls.from_model(model, config, **options)`` builds pipelines of ``kind``."""

    def decorator(cls: T) -> T:
        cls.kind = kind  # type: ignore[attr-defined]
        PIPELINES.register(kind)(cls.from_model)  # type: ignore[attr-defined]
        return cls

    return decorator


def pipeline_for(model: Any, config: ReleaseConfig, **options: Any) -> Any:
    """The pipeline that ``config.pipeline`` names, around an already loaded ``model`` (a torch
    module, or a backend such as :class:`~brushwork.inference.onnx.OnnxBackend`)."""
    _import_builtin_pipelines()
    return PIPELINES.get(config.pipeline)(model, config, **options)


def load_pipeline(source: str | Path, *, direction: str | None = None, norm: str | None = None,
                  checkpoint: Path | None = None, download: bool = True, **options: Any) -> Any:
    """Any model source (release folder, run folder + direction, ``.pth``, published name) as its pipeline.

    ``options`` go to the pipeline (device, precision, ...). An exported ``.onnx`` (or its folder)
    runs through onnxruntime (:mod:`brushwork.inference.onnx`).
    """
    from brushwork.inference.onnx import is_onnx_source, load_onnx, split_options
    from brushwork.inference.sources import load_source

    if is_onnx_source(source):
        backend_options, options = split_options(options)
        backend, config = load_onnx(source, direction=direction, **backend_options)
        return pipeline_for(backend, config, **options)

    model, config = load_source(source, direction=direction, norm=norm, checkpoint=checkpoint, download=download)
    return pipeline_for(model, config, **options)


def _import_builtin_pipelines() -> None:
    """Importing the implementations registers them (kept lazy: each pulls in its own dependencies)."""
    import brushwork.inference.sampler
    import brushwork.inference.stylizer
    import brushwork.style.pipelines  # noqa: F401
