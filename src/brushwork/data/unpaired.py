"""Unpaired two-domain dataset (CycleGAN): A in a shuffled order, B drawn at random.

An epoch has max(|A|, |B|) samples, as in the reference. All randomness (the order of A, the
draw of B, crop offsets and flips) comes from generators seeded by (seed, epoch, position), so a
run is reproducible with any number of worker processes and resumes mid-epoch exactly.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from brushwork.data.imageio import ImageReadError, list_images, read_rgb
from brushwork.data.sampling import EpochSampler
from brushwork.data.transforms import Preprocess

log = logging.getLogger(__name__)

# Decode-once caching is used automatically while the prepared images fit in this many bytes.
AUTO_CACHE_BYTES = 4 * 1024**3


class DatasetError(ValueError):
    """The data folders are missing, empty or unreadable; the message says what was expected."""


@dataclass(frozen=True)
class DomainFolders:
    a: Path
    b: Path


def resolve_domain_folders(root: str | None, dir_a: str | None, dir_b: str | None, split: str = "train") -> DomainFolders:
    """``root/{split}A`` and ``root/{split}B``, or two explicit folders."""
    if dir_a is not None and dir_b is not None:
        folders = DomainFolders(Path(dir_a), Path(dir_b))
        layout = "the folders given as dir_a and dir_b"
    elif root is not None:
        base = Path(root)
        if not base.is_dir():
            raise DatasetError(
                f"data folder {base} does not exist; expected {base}/{split}A and {base}/{split}B "
                "holding the images of domains A and B"
            )
        folders = DomainFolders(base / f"{split}A", base / f"{split}B")
        layout = f"{base}/{split}A and {base}/{split}B"
    else:
        raise DatasetError("no data given: pass a data folder (with trainA/ and trainB/) or two folders")
    for name, folder in (("A", folders.a), ("B", folders.b)):
        if not folder.is_dir():
            raise DatasetError(f"domain {name} folder {folder} does not exist; expected {layout}")
    return folders


class ImageFolderCache:
    """The prepared (resized, uint8) images of one domain, decoded once or on demand."""

    def __init__(
        self,
        name: str,
        folder: Path,
        preprocess: Preprocess,
        *,
        max_size: int | None = None,
        cache: str = "auto",
        skip_bad_images: bool = False,
        paths: list[Path] | None = None,
        part: str | None = None,
    ) -> None:
        self.name = name
        self.folder = folder
        self.preprocess = preprocess
        self.part = part  # "left" / "right": that half of each (aligned AB) image
        paths = list_images(folder) if paths is None else paths
        if max_size is not None:
            paths = paths[:max_size]
        if not paths:
            raise DatasetError(f"domain {name} ({folder}) holds no images; expected .jpg, .png or similar files")
        self.skipped: list[Path] = []
        self._tensors: list[Tensor] | None = None
        if cache == "ram" or (cache == "auto" and self._estimate_bytes(len(paths)) <= AUTO_CACHE_BYTES):
            paths, self._tensors = self._decode_all(paths, skip_bad_images)
        elif skip_bad_images:
            paths, _ = self._decode_all(paths, skip_bad_images, keep=False)
        if not paths:
            raise DatasetError(f"domain {name} ({folder}): none of its images could be read")
        self.paths = paths

    def _estimate_bytes(self, count: int) -> int:
        side = max(self.preprocess.load_size, self.preprocess.crop_size)
        return count * 3 * side * side * (2 if self.preprocess.mode in ("crop", "none") else 1)

    def _decode_all(self, paths: list[Path], skip_bad: bool, keep: bool = True) -> tuple[list[Path], list[Tensor]]:
        def load(path: Path) -> Tensor | ImageReadError:
            try:
                return self._read(path)
            except ImageReadError as exc:
                return exc

        with ThreadPoolExecutor(max_workers=4) as pool:
            results = list(pool.map(load, paths))
        good_paths: list[Path] = []
        tensors: list[Tensor] = []
        for path, result in zip(paths, results, strict=True):
            if isinstance(result, ImageReadError):
                if not skip_bad:
                    raise DatasetError(f"{result} (pass --skip-bad-images to skip unreadable files)")
                log.warning("skipping unreadable image: %s", result)
                self.skipped.append(path)
                continue
            good_paths.append(path)
            if keep:
                tensors.append(result)
        return good_paths, tensors

    @property
    def cached(self) -> bool:
        return self._tensors is not None

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> Tensor:
        if self._tensors is not None:
            return self._tensors[index]
        return self._read(self.paths[index])

    def _read(self, path: Path) -> Tensor:
        return self.preprocess.prepare(read_part(path, self.part))


def read_part(path: Path, part: str | None) -> Image.Image:
    """An RGB image, or its left or right half (pix2pix's aligned A|B files)."""
    img = read_rgb(path)
    if part is None:
        return img
    w, h = img.size
    if w < 2:
        raise ImageReadError(f"{path}: {w}x{h} pixels is too narrow to split into A|B halves")
    half = w // 2
    return img.crop((0, 0, half, h) if part == "left" else (half, 0, 2 * half, h))


class UnpairedDataset(Dataset[dict[str, Tensor]]):
    """Indexed by ``(index_a, index_b, aug_seed)`` triples from :class:`UnpairedSampler`."""

    def __init__(self, a: ImageFolderCache, b: ImageFolderCache) -> None:
        self.a = a
        self.b = b

    def __len__(self) -> int:
        return max(len(self.a), len(self.b))

    def __getitem__(self, key: tuple[int, int, int]) -> dict[str, Tensor]:
        index_a, index_b, seed = key
        gen = torch.Generator().manual_seed(seed)
        return {
            "A": self.a.preprocess.augment(self.a[index_a], gen),
            "B": self.b.preprocess.augment(self.b[index_b], gen),
        }

    @property
    def skipped(self) -> list[Path]:
        return self.a.skipped + self.b.skipped


def epoch_keys(len_a: int, len_b: int, *, seed: int, epoch: int, serial: bool = False) -> list[tuple[int, int, int]]:
    """The (index_a, index_b, aug_seed) keys of one epoch, a pure function of its arguments."""
    n = max(len_a, len_b)
    gen = torch.Generator().manual_seed((seed * 1_000_003 + epoch) % 2**63)
    order = torch.arange(n) if serial else torch.randperm(n, generator=gen)
    index_b = (torch.arange(n) % len_b) if serial else torch.randint(0, len_b, (n,), generator=gen)
    seeds = torch.randint(0, 2**62, (n,), generator=gen)
    return [(int(i) % len_a, int(b), int(s)) for i, b, s in zip(order, index_b, seeds, strict=True)]


class UnpairedSampler(EpochSampler):
    """Yields one epoch's (index_a, index_b, aug_seed) keys; max(|A|, |B|) per epoch."""

    def __init__(self, len_a: int, len_b: int, *, seed: int, serial: bool = False) -> None:
        super().__init__(max(len_a, len_b), seed=seed)
        self.len_a, self.len_b, self.serial = len_a, len_b, serial

    def epoch_keys(self, epoch: int) -> list[tuple[int, int, int]]:
        return epoch_keys(self.len_a, self.len_b, seed=self.seed, epoch=epoch, serial=self.serial)
