"""Dataset builders by kind, so that a method names the data it needs (``unpaired``, ...)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import Dataset

from brushwork.config import DataConfig
from brushwork.data.imageio import ImageReadError, list_images, read_rgb
from brushwork.data.transforms import Preprocess, pil_to_uint8, uint8_to_unit
from brushwork.data.unpaired import (
    ImageFolderCache,
    UnpairedDataset,
    UnpairedSampler,
    resolve_domain_folders,
)
from brushwork.registry import Registry

log = logging.getLogger(__name__)


@dataclass
class TrainingData:
    """What the trainer needs from a data set: items, their order, and a fixed sample batch."""

    dataset: Dataset[dict[str, Tensor]]
    sampler: UnpairedSampler
    sample_batch: dict[str, Tensor]
    description: str
    skipped: list[Path]


DATASETS: Registry[TrainingData] = Registry("dataset kind")


def _fixed_images(folder: Path, count: int, size: int) -> Tensor | None:
    """The first ``count`` readable images of ``folder`` resized to ``size`` (test-time preprocessing)."""
    tensors = []
    for path in list_images(folder)[: count * 3]:
        try:
            img = read_rgb(path).resize((size, size), resample=3)  # bicubic
        except ImageReadError:
            continue
        tensors.append(uint8_to_unit(pil_to_uint8(img)))
        if len(tensors) == count:
            break
    return torch.stack(tensors) if tensors else None


@DATASETS.register("unpaired")
def build_unpaired(*, config: DataConfig, seed: int, sample_count: int = 4) -> TrainingData:
    folders = resolve_domain_folders(config.root, config.dir_a, config.dir_b, "train")
    preprocess = Preprocess(config.preprocess, config.load_size, config.crop_size, config.flip)
    common = {"max_size": config.max_dataset_size, "cache": config.cache, "skip_bad_images": config.skip_bad_images}
    domain_a = ImageFolderCache("A", folders.a, preprocess, **common)
    domain_b = ImageFolderCache("B", folders.b, preprocess, **common)
    dataset = UnpairedDataset(domain_a, domain_b)
    sampler = UnpairedSampler(len(domain_a), len(domain_b), seed=seed, serial=config.serial_batches)

    # Samples come from the test split when there is one, else from the training images.
    sample: dict[str, Tensor] = {}
    test = None
    if config.root is not None and (Path(config.root) / "testA").is_dir() and (Path(config.root) / "testB").is_dir():
        test = resolve_domain_folders(config.root, None, None, "test")
    for key, train_folder, test_folder in (("A", folders.a, test and test.a), ("B", folders.b, test and test.b)):
        images = _fixed_images(test_folder, sample_count, config.crop_size) if test_folder else None
        if images is None:
            images = _fixed_images(train_folder, sample_count, config.crop_size)
        if images is None:
            raise ImageReadError(f"no readable image in {train_folder} for the sample grid")
        sample[key] = images
    n = min(sample["A"].shape[0], sample["B"].shape[0])
    sample = {k: v[:n] for k, v in sample.items()}
    description = (
        f"A: {len(domain_a)} images from {folders.a}, B: {len(domain_b)} images from {folders.b}"
        f"{' (decoded once, cached in RAM)' if domain_a.cached else ''}"
    )
    return TrainingData(dataset, sampler, sample, description, dataset.skipped)


def build_training_data(kind: str, config: DataConfig, seed: int) -> TrainingData:
    return DATASETS.build(kind, config=config, seed=seed)
