"""Inception-v3 features of image sets, computed the way published FID/KID/IS numbers are.

The network is torch-fidelity's ``inception-v3-compat`` extractor (a bit-faithful port of the
TensorFlow 2015-12-05 graph) built from a local weights file. It takes 8-bit RGB at any size and
resizes it to 299x299 itself with TensorFlow 1.x's bilinear resize (``align_corners=False``, no
antialias), so every image enters at its own size and no other resize touches it. Images are read
with :func:`brushwork.data.imageio.read_image` (EXIF orientation applied, grayscale, palette and
16-bit data converted to 8-bit RGB, alpha dropped).

Features of a reference ("real") set can be cached on disk: the key covers the protocol, the
weights file's SHA-256 and every file's absolute path, size and modification time, so a changed
folder or other weights never reuse stale features.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from brushwork.data.imageio import ImageReadError, read_image
from brushwork.data.transforms import pil_to_uint8
from brushwork.metrics.scores import MetricInputError
from brushwork.metrics.weights import (
    INCEPTION_FILENAME,
    InceptionWeightsError,
    file_sha256,
    find_inception_weights,
)
from brushwork.utils.cache import cache_dir
from brushwork.utils.files import atomic_path

log = logging.getLogger(__name__)

EXTRACTOR_NAME = "inception-v3-compat"
POOL_LAYER = "2048"  # pool3 features: FID and KID
LOGITS_LAYER = "logits_unbiased"  # 1008-way logits without the fc bias: Inception Score
PROTOCOL_ID = "inception-2015-12-05/tf1-bilinear-299-no-antialias/fp32/v1"
PROTOCOL = {
    "network": f"Inception-v3, TensorFlow graph of 2015-12-05 ({INCEPTION_FILENAME}, torch-fidelity {EXTRACTOR_NAME})",
    "resize": "each image at its own size -> 299x299, TensorFlow 1.x bilinear (align_corners=False), no antialias",
    "features": "pool3 (2048-d) for FID and KID; unbiased 1008-way logits for the Inception Score",
    "precision": "float32",
}

ProgressFn = Callable[[int], None]


@dataclass
class InceptionFeatures:
    """Per-image Inception features of one image set, in the set's order."""

    pool: Tensor  # (N, 2048) float32
    logits: Tensor  # (N, 1008) float32

    def __len__(self) -> int:
        return int(self.pool.shape[0])


def load_uint8(path: Path | str) -> Tensor:
    """An image file as a uint8 (3, H, W) tensor, read faithfully (see the module docstring)."""
    return pil_to_uint8(read_image(path).rgb)


def _mismatch_summary(message: str) -> str:
    """A one-line summary of a load_state_dict RuntimeError (which lists every key)."""
    parts = []
    for line in message.splitlines()[1:]:
        line = line.strip()
        for prefix, what in (("Missing key(s) in state_dict:", "missing"), ("Unexpected key(s) in state_dict:", "unexpected")):
            if line.startswith(prefix):
                keys = [k.strip().strip('"') for k in line[len(prefix) :].rstrip(". ").split(",") if k.strip()]
                parts.append(f"{len(keys)} {what} key(s) such as {keys[0]}")
        if line.startswith("size mismatch"):
            parts.append(line.rstrip("."))
    return "; ".join(parts[:3]) or message.splitlines()[0]


def load_inception(path: Path) -> nn.Module:
    """torch-fidelity's Inception-v3 from a local state-dict file, with clear errors for bad files."""
    expected = f"expected torch-fidelity's {INCEPTION_FILENAME}"
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # not a zip/pickle file, truncated, or pickled objects other than tensors
        raise InceptionWeightsError(f"{path}: not a readable PyTorch weights file ({type(exc).__name__}); {expected}") from None
    if not isinstance(state, dict) or not state or not all(isinstance(v, Tensor) for v in state.values()):
        raise InceptionWeightsError(f"{path}: does not hold a state dict of tensors; {expected}")
    del state
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    try:
        model = FeatureExtractorInceptionV3(EXTRACTOR_NAME, [POOL_LAYER, LOGITS_LAYER], feature_extractor_weights_path=str(path))
    except RuntimeError as exc:  # load_state_dict: missing/unexpected keys, size mismatches
        raise InceptionWeightsError(
            f"{path}: weights do not fit the Inception-v3 network ({_mismatch_summary(str(exc))}); {expected}"
        ) from None
    return model.eval()


class InceptionExtractor:
    """Turns uint8 RGB images of any size into :class:`InceptionFeatures`.

    >>> extractor = InceptionExtractor()          # finds the weights, see brushwork.metrics.weights
    >>> feats = extractor.extract_files(paths)    # or extractor.extract(uint8_tensors)
    """

    def __init__(
        self,
        weights: str | Path | None = None,
        *,
        device: str | torch.device = "cpu",
        batch_size: int = 32,
        download: bool | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.weights_path = find_inception_weights(weights, download=download)
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.model = load_inception(self.weights_path).to(self.device)
        self._sha256: str | None = None

    @property
    def weights_sha256(self) -> str:
        if self._sha256 is None:
            self._sha256 = file_sha256(self.weights_path)
        return self._sha256

    @torch.inference_mode()
    def _forward(self, batch: list[Tensor]) -> tuple[Tensor, Tensor]:
        x = torch.stack(batch).to(self.device, non_blocking=True)
        pool, logits = self.model(x)
        return pool.float().cpu(), logits.float().cpu()

    def extract(self, images: Iterable[Tensor], *, progress: ProgressFn | None = None) -> InceptionFeatures:
        """Features of uint8 (3, H, W) images, in order; images of equal size are batched together."""
        pending: dict[tuple[int, int], list[tuple[int, Tensor]]] = {}
        pool: dict[int, Tensor] = {}
        logits: dict[int, Tensor] = {}

        def flush(size: tuple[int, int]) -> None:
            items = pending.pop(size, [])
            if not items:
                return
            p, lg = self._forward([img for _, img in items])
            for row, (i, _) in enumerate(items):
                pool[i], logits[i] = p[row], lg[row]
            if progress is not None:
                progress(len(items))

        count = 0
        for i, img in enumerate(images):
            if not isinstance(img, Tensor) or img.dtype != torch.uint8 or img.dim() != 3 or img.shape[0] != 3:
                raise TypeError(f"image {i}: expected a uint8 tensor of shape (3, H, W), got {getattr(img, 'dtype', type(img))} {tuple(getattr(img, 'shape', ()))}")
            size = (int(img.shape[1]), int(img.shape[2]))
            pending.setdefault(size, []).append((i, img))
            if len(pending[size]) >= self.batch_size:
                flush(size)
            count = i + 1
        for size in list(pending):
            flush(size)
        if count == 0:
            raise MetricInputError("no images to compute Inception features of")
        return InceptionFeatures(
            torch.stack([pool[i] for i in range(count)]), torch.stack([logits[i] for i in range(count)])
        )

    def extract_files(
        self,
        paths: Sequence[Path],
        *,
        cache: FeatureCache | None = None,
        progress: ProgressFn | None = None,
        on_unreadable: Callable[[Path, ImageReadError], None] | None = None,
    ) -> InceptionFeatures:
        """Features of image files; with ``cache``, reused while no file (or the weights) changed.

        An unreadable file raises :class:`ImageReadError`, or with ``on_unreadable`` is passed to
        it and left out (the features then cover the readable files, in order, and are not cached).
        """
        paths = list(paths)
        if not paths:
            raise MetricInputError("no images to compute Inception features of")
        key = cache.key(paths, self.weights_sha256) if cache is not None else None
        if cache is not None and key is not None:
            hit = cache.load(key, len(paths))
            if hit is not None:
                log.info("reusing cached Inception features of %d images (%s)", len(paths), cache.path(key))
                if progress is not None:
                    progress(len(paths))
                return hit
        skipped: list[Path] = []

        def images() -> Iterator[Tensor]:
            for p in paths:
                try:
                    yield load_uint8(p)
                except ImageReadError as exc:
                    if on_unreadable is None:
                        raise
                    skipped.append(p)
                    on_unreadable(p, exc)
                    if progress is not None:
                        progress(1)

        feats = self.extract(images(), progress=progress)
        if cache is not None and key is not None and not skipped:
            cache.save(key, feats)
        return feats


def default_cache_dir() -> Path:
    """``features/`` in brushwork's cache folder (``$BRUSHWORK_CACHE``, default ``~/.cache/brushwork``)."""
    return cache_dir("features")


class FeatureCache:
    """Inception features of image sets on disk, one file per (protocol, weights, file list)."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root) if root is not None else default_cache_dir()

    def key(self, paths: Sequence[Path], weights_sha256: str) -> str:
        digest = hashlib.sha256()
        digest.update(f"{PROTOCOL_ID}\n{weights_sha256}\n".encode())
        for p in paths:
            st = Path(p).stat()
            digest.update(f"{Path(p).resolve()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        return digest.hexdigest()[:32]

    def path(self, key: str) -> Path:
        return self.root / f"{key}.pt"

    def load(self, key: str, expected: int) -> InceptionFeatures | None:
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            data = torch.load(path, map_location="cpu", weights_only=True)
            feats = InceptionFeatures(data["pool"], data["logits"])
            if len(feats) != expected or feats.logits.shape[0] != expected:
                raise ValueError(f"holds {len(feats)} images, expected {expected}")
        except Exception as exc:  # a torn or foreign file: recompute and overwrite it
            log.warning("ignoring unreadable feature cache %s (%s)", path, exc)
            return None
        return feats

    def save(self, key: str, feats: InceptionFeatures) -> Path:
        path = self.path(key)
        try:
            with atomic_path(path) as tmp:
                torch.save({"protocol": PROTOCOL_ID, "pool": feats.pool, "logits": feats.logits}, tmp)
        except OSError as exc:  # a read-only cache must not stop an evaluation
            log.warning("could not write the feature cache %s (%s)", path, exc)
        return path
