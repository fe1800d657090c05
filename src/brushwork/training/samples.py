"""Sample grids: one row per example, one column per visual (real, fake, reconstruction, ...)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor
from torchvision.utils import make_grid

from brushwork.data.imageio import save_image
from brushwork.data.transforms import tensor_to_pil


def save_sample_grid(visuals: dict[str, Tensor], path: Path) -> None:
    """Lay out ``visuals`` (each (N, C, H, W) in [-1, 1]) as rows of examples, columns of names."""
    columns = list(visuals.values())
    n = columns[0].shape[0]
    tiles = []
    for i in range(n):
        for column in columns:
            tile = column[i].detach().float().cpu()
            if tile.shape[0] == 1:
                tile = tile.expand(3, -1, -1)
            tiles.append(tile)
    grid = make_grid(torch.stack(tiles), nrow=len(columns), padding=2, pad_value=1.0)
    save_image(tensor_to_pil(grid), path)
