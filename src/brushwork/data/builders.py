"""Data kinds, so that a method names the data it needs and the trainer handles any of them.

- ``unpaired`` (CycleGAN, CUT): two folders, A in a shuffled order, B drawn at random
  (``trainA/`` and ``trainB/`` of ``data.root``, or ``data.dir_a`` and ``data.dir_b``);
- ``paired`` (pix2pix): aligned images, either pix2pix's A|B files side by side in
  ``data.root/train/`` or two folders whose files are matched by name (``trainA/`` and
  ``trainB/``, or ``data.dir_a`` and ``data.dir_b``); A and B of a pair get the same crop and flip;
- ``single`` (DCGAN): one folder of images, ``data.root`` (its ``train/`` if it has one).

Every kind yields batches of named image tensors in [-1, 1] (``A``, ``B``, or ``images``) in an
order an :class:`~brushwork.data.sampling.EpochSampler` fixes, and says which image files
evaluation compares against (:func:`evaluation_domains`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from brushwork.config import DataConfig
from brushwork.data.imageio import ImageReadError, list_images
from brushwork.data.sampling import EpochSampler, ShuffledSampler
from brushwork.data.transforms import Preprocess, pil_to_uint8, uint8_to_unit
from brushwork.data.unpaired import (
    DatasetError,
    ImageFolderCache,
    UnpairedDataset,
    UnpairedSampler,
    read_part,
    resolve_domain_folders,
)
from brushwork.registry import Registry

log = logging.getLogger(__name__)


@dataclass
class TrainingData:
    """What the trainer needs from a data set: items, their order, and a fixed sample batch."""

    dataset: Dataset[dict[str, Tensor]]
    sampler: EpochSampler
    sample_batch: dict[str, Tensor]
    description: str
    skipped: list[Path]


@dataclass(frozen=True)
class EvalDomain:
    """The image files of one domain for evaluation (``part``: a half of aligned A|B files)."""

    files: list[Path]
    part: str | None = None

    def load(self, path: Path) -> Image.Image:
        return read_part(path, self.part)


@dataclass(frozen=True)
class DataKind:
    build: Callable[..., TrainingData]
    evaluation: Callable[[DataConfig], dict[str, EvalDomain]]
    domains: tuple[str, ...]


DATASETS: Registry[DataKind] = Registry("data kind")


def _fixed(images: list[Image.Image], size: int) -> Tensor | None:
    tensors = [uint8_to_unit(pil_to_uint8(img.resize((size, size), resample=Image.Resampling.BICUBIC))) for img in images]
    return torch.stack(tensors) if tensors else None


def _first_readable(files: list[Path], count: int, part: str | None = None) -> list[Image.Image]:
    """The first ``count`` readable images of ``files`` (test-time preprocessing happens later)."""
    out = []
    for path in files[: count * 3]:
        try:
            out.append(read_part(path, part))
        except ImageReadError:
            continue
        if len(out) == count:
            break
    return out


def _sample_batch(domains: dict[str, EvalDomain], size: int, count: int = 4) -> dict[str, Tensor]:
    sample: dict[str, Tensor] = {}
    for key, domain in domains.items():
        images = _fixed(_first_readable(domain.files, count, domain.part), size)
        if images is None:
            raise ImageReadError(f"no readable image among {domain.files[0].parent} for the sample grid")
        sample[key] = images
    n = min(v.shape[0] for v in sample.values())
    return {k: v[:n] for k, v in sample.items()}


def _common(config: DataConfig) -> dict[str, object]:
    return {"max_size": config.max_dataset_size, "cache": config.cache, "skip_bad_images": config.skip_bad_images}


def _preprocess(config: DataConfig) -> Preprocess:
    return Preprocess(config.preprocess, config.load_size, config.crop_size, config.flip)


# ---------------------------------------------------------------------------------------------
# unpaired


def _unpaired_eval(config: DataConfig) -> dict[str, EvalDomain]:
    """The test split when there is one, else the training folders (warned)."""
    try:
        folders = resolve_domain_folders(config.root, config.dir_a, config.dir_b, "test")
        if config.root is None:
            log.warning("evaluating on the training folders %s and %s (no test split with data.dir_a/dir_b)", config.dir_a, config.dir_b)
    except DatasetError:
        folders = resolve_domain_folders(config.root, config.dir_a, config.dir_b, "train")
        log.warning("no testA/ and testB/ in %s: evaluating on the training images", config.root)
    return {"A": EvalDomain(list_images(folders.a)), "B": EvalDomain(list_images(folders.b))}


def build_unpaired(*, config: DataConfig, seed: int) -> TrainingData:
    folders = resolve_domain_folders(config.root, config.dir_a, config.dir_b, "train")
    preprocess = _preprocess(config)
    domain_a = ImageFolderCache("A", folders.a, preprocess, **_common(config))  # type: ignore[arg-type]
    domain_b = ImageFolderCache("B", folders.b, preprocess, **_common(config))  # type: ignore[arg-type]
    dataset = UnpairedDataset(domain_a, domain_b)
    sampler = UnpairedSampler(len(domain_a), len(domain_b), seed=seed, serial=config.serial_batches)
    sample = _sample_batch(_samples_from(config, _unpaired_eval, {"A": domain_a, "B": domain_b}), config.crop_size)
    description = (
        f"A: {len(domain_a)} images from {folders.a}, B: {len(domain_b)} images from {folders.b}"
        f"{' (decoded once, cached in RAM)' if domain_a.cached else ''}"
    )
    return TrainingData(dataset, sampler, sample, description, dataset.skipped)


def _samples_from(config: DataConfig, evaluation: Callable[[DataConfig], dict[str, EvalDomain]],
                  train: dict[str, ImageFolderCache]) -> dict[str, EvalDomain]:
    """Sample-grid images: the test split when ``data.root`` has one, else the training images."""
    has_test = config.root is not None and any((Path(config.root) / name).is_dir() for name in ("testA", "test", "val"))
    if has_test:
        try:
            return evaluation(config)
        except DatasetError:
            pass
    return {k: EvalDomain(v.paths, v.part) for k, v in train.items()}


DATASETS.add("unpaired", DataKind(build_unpaired, _unpaired_eval, ("A", "B")))


# ---------------------------------------------------------------------------------------------
# paired


class PairedDataset(Dataset[dict[str, Tensor]]):
    """Indexed by ``(index, aug_seed)``: item ``index`` of A and of B, with the same crop and flip."""

    def __init__(self, a: ImageFolderCache, b: ImageFolderCache) -> None:
        self.a, self.b = a, b

    def __len__(self) -> int:
        return len(self.a)

    def __getitem__(self, key: tuple[int, int]) -> dict[str, Tensor]:
        index, seed = key
        x_a, x_b = self.a[index], self.b[index]
        if x_a.shape != x_b.shape:
            raise DatasetError(
                f"pair {self.a.paths[index].name}: A is {x_a.shape[2]}x{x_a.shape[1]} but B is {x_b.shape[2]}x{x_b.shape[1]} "
                "after resizing; paired images must have the same size"
            )
        return {
            "A": self.a.preprocess.augment(x_a, torch.Generator().manual_seed(seed)),
            "B": self.b.preprocess.augment(x_b, torch.Generator().manual_seed(seed)),
        }

    @property
    def skipped(self) -> list[Path]:
        return self.a.skipped + self.b.skipped


def _paired_files(config: DataConfig, split: str) -> dict[str, EvalDomain]:
    """A and B files of ``split``: aligned A|B files in ``root/<split>/``, or two folders matched by name."""
    if config.dir_a is None and config.root is not None and (Path(config.root) / split).is_dir():
        files = list_images(Path(config.root) / split)
        if not files:
            raise DatasetError(f"{Path(config.root) / split} holds no images; expected aligned A|B images side by side")
        return {"A": EvalDomain(files, "left"), "B": EvalDomain(files, "right")}
    if config.dir_a is None and config.root is not None and not (Path(config.root) / f"{split}A").is_dir():
        raise DatasetError(
            f"no paired data in {config.root}: expected {config.root}/{split}/ holding aligned A|B images, "
            f"or {config.root}/{split}A and {config.root}/{split}B with files matched by name"
        )
    folders = resolve_domain_folders(config.root, config.dir_a, config.dir_b, split)
    a = {p.stem: p for p in list_images(folders.a)}
    b = {p.stem: p for p in list_images(folders.b)}
    names = sorted(set(a) & set(b))
    unmatched = sorted(set(a) ^ set(b))
    if not names:
        raise DatasetError(f"no file names appear in both {folders.a} and {folders.b}; paired images are matched by name")
    if unmatched:
        log.warning("%d image(s) without a partner of the same name are left out (e.g. %s)", len(unmatched), unmatched[0])
    return {"A": EvalDomain([a[n] for n in names]), "B": EvalDomain([b[n] for n in names])}


def _paired_eval(config: DataConfig) -> dict[str, EvalDomain]:
    for split in ("test", "val"):
        try:
            return _paired_files(config, split)
        except DatasetError:
            continue
    log.warning("no test or val split of the paired data: evaluating on the training pairs")
    return _paired_files(config, "train")


def build_paired(*, config: DataConfig, seed: int) -> TrainingData:
    files = _paired_files(config, "train")
    preprocess = _preprocess(config)
    first = files["A"].files[0].parent
    if config.skip_bad_images:
        raise DatasetError("data.skip_bad_images is not supported for paired data: a skipped image would break its pair")
    common = {"max_size": config.max_dataset_size, "cache": config.cache}
    a = ImageFolderCache("A", first, preprocess, paths=files["A"].files, part=files["A"].part, **common)  # type: ignore[arg-type]
    b = ImageFolderCache("B", files["B"].files[0].parent, preprocess, paths=files["B"].files, part=files["B"].part, **common)  # type: ignore[arg-type]
    dataset = PairedDataset(a, b)
    sampler = ShuffledSampler(len(a), seed=seed, serial=config.serial_batches)
    sample = _sample_batch(_samples_from(config, _paired_eval, {"A": a, "B": b}), config.crop_size)
    layout = f"aligned A|B images from {first}" if files["A"].part else f"pairs matched by name from {first} and {b.folder}"
    return TrainingData(dataset, sampler, sample, f"{len(a)} {layout}", dataset.skipped)


DATASETS.add("paired", DataKind(build_paired, _paired_eval, ("A", "B")))


# ---------------------------------------------------------------------------------------------
# single


class SingleDataset(Dataset[dict[str, Tensor]]):
    def __init__(self, images: ImageFolderCache) -> None:
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, key: tuple[int, int]) -> dict[str, Tensor]:
        index, seed = key
        return {"images": self.images.preprocess.augment(self.images[index], torch.Generator().manual_seed(seed))}


def _single_folder(config: DataConfig) -> Path:
    if config.root is None:
        raise DatasetError("this method trains on one folder of images: give --data FOLDER (data.root)")
    root = Path(config.root)
    if not root.is_dir():
        raise DatasetError(f"data folder {root} does not exist; expected a folder of images")
    return root / "train" if (root / "train").is_dir() else root


def _single_eval(config: DataConfig) -> dict[str, EvalDomain]:
    root = Path(config.root or ".")
    folder = root / "test" if (root / "test").is_dir() else _single_folder(config)
    return {"images": EvalDomain(list_images(folder))}


def build_single(*, config: DataConfig, seed: int) -> TrainingData:
    folder = _single_folder(config)
    images = ImageFolderCache("images", folder, _preprocess(config), **_common(config))  # type: ignore[arg-type]
    sample = _sample_batch({"images": EvalDomain(images.paths)}, config.crop_size, count=8)
    return TrainingData(SingleDataset(images), ShuffledSampler(len(images), seed=seed, serial=config.serial_batches),
                        sample, f"{len(images)} images from {folder}", images.skipped)  # fmt: skip


DATASETS.add("single", DataKind(build_single, _single_eval, ("images",)))


def build_training_data(kind: str, config: DataConfig, seed: int) -> TrainingData:
    return DATASETS.entry(kind).build(config=config, seed=seed)


def evaluation_domains(kind: str, config: DataConfig) -> dict[str, EvalDomain]:
    return DATASETS.entry(kind).evaluation(config)
