"""Images from a generator of noise, written to a folder (what ``brushwork generate`` runs).

The folder receives ``00000.png``, ``00001.png``, ... (image ``i`` of a seed is the same for
any number of images and any batch size: :func:`~brushwork.inference.sampler.sample_latents`)
and, optionally, ``grid.png``. Every file is written atomically. A folder that already holds
earlier outputs of this kind is refused unless ``overwrite`` is given; then every earlier
output is removed first, so the folder never mixes two sets (two models or two seeds would
otherwise sit side by side unnoticed, and be scored together by ``brushwork evaluate``).
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image
from torch import Tensor
from torchvision.utils import make_grid

from brushwork.data.imageio import save_image
from brushwork.inference.io import OutputFolderError, check_output_folder
from brushwork.inference.sampler import NoiseSampler

log = logging.getLogger(__name__)

GRID_NAME = "grid.png"
#: at most this many images go into the grid (a 32 x 32 mosaic); the files hold all of them
GRID_MAX_IMAGES = 1024
_IMAGE_NAME = re.compile(r"\d{5,}\.png")


class ExistingOutputError(OutputFolderError):
    """The output folder already holds generated images and overwriting was not asked for."""


@dataclass
class GenerateReport:
    images: list[Path] = field(default_factory=list)
    grid: Path | None = None
    removed: list[Path] = field(default_factory=list)  # earlier outputs replaced (overwrite)
    seconds: float = 0.0

    @property
    def images_per_second(self) -> float:
        return len(self.images) / self.seconds if self.seconds > 0 else 0.0


def image_name(index: int, n: int) -> str:
    """``00042.png``: five digits, more when ``n`` needs them (so names sort in order)."""
    return f"{index:0{max(5, len(str(n - 1)))}d}.png"


def earlier_outputs(out_dir: Path) -> list[Path]:
    """Files in ``out_dir`` that an earlier generation wrote (numbered PNGs and the grid)."""
    if not out_dir.is_dir():
        return []
    return sorted(p for p in out_dir.iterdir() if p.is_file() and (_IMAGE_NAME.fullmatch(p.name) or p.name == GRID_NAME))


def image_grid(images: Tensor) -> Image.Image:
    """(N, 3, H, W) uint8 -> one PIL image, ``ceil(sqrt(N))`` images per row, 2 px white gaps."""
    grid = make_grid(images, nrow=math.ceil(math.sqrt(images.shape[0])), padding=2, pad_value=255)
    return Image.fromarray(grid.permute(1, 2, 0).numpy(), mode="RGB")


def generate_to_folder(
    sampler: NoiseSampler,
    out_dir: Path,
    n: int,
    *,
    seed: int = 0,
    grid: bool = True,
    overwrite: bool = False,
    progress: Callable[[int], None] | None = None,
) -> GenerateReport:
    """Write images ``0 .. n-1`` of ``seed`` to ``out_dir`` (and ``grid.png``); ``progress`` gets counts done."""
    if n < 1:
        raise ValueError(f"the number of images must be >= 1, got {n}")
    earlier = earlier_outputs(out_dir)
    if earlier and not overwrite:
        more = f" and {len(earlier) - 1} more" if len(earlier) > 1 else ""
        raise ExistingOutputError(
            f"output folder {out_dir} already holds generated images ({earlier[0].name}{more}); "
            "pass --overwrite to replace them or choose another --out"
        )
    check_output_folder(out_dir)
    report = GenerateReport()
    for path in earlier:  # before writing: a run stopped half-way leaves a prefix of one set, never a mix
        path.unlink(missing_ok=True)
        report.removed.append(path)
    if earlier:
        log.info("removed %d earlier output(s) from %s", len(earlier), out_dir)
    start = time.perf_counter()
    kept: list[Tensor] = []  # the grid's images
    for first in range(0, n, sampler.batch_size):
        images = sampler.generate(min(sampler.batch_size, n - first), seed=seed, start=first)
        for k, image in enumerate(images):
            path = out_dir / image_name(first + k, n)
            save_image(Image.fromarray(image.permute(1, 2, 0).numpy(), mode="RGB"), path)
            report.images.append(path)
        if grid and len(kept) < GRID_MAX_IMAGES:
            kept.extend(images[: GRID_MAX_IMAGES - len(kept)])
        if progress is not None:
            progress(len(report.images))
    if grid:
        if n > GRID_MAX_IMAGES:
            log.info("%s shows the first %d of the %d images", GRID_NAME, GRID_MAX_IMAGES, n)
        report.grid = out_dir / GRID_NAME
        save_image(image_grid(torch.stack(kept)), report.grid)
    report.seconds = time.perf_counter() - start
    return report
