"""Image history buffer (Shrivastava et al. 2017) that feeds the discriminators older fakes."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


class ImagePool:
    """Holds up to ``size`` generated images.

    Until full, every new image is stored and returned. After that, each image is, with
    probability 0.5, swapped with a random stored one (the stored one is returned), else
    returned as is. ``size=0`` disables the pool. Randomness comes from torch's global
    generator, which checkpoints save and restore.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.images: list[Tensor] = []

    def query(self, images: Tensor) -> Tensor:
        if self.size == 0:
            return images
        out = []
        for image in images.detach():
            image = image.unsqueeze(0)
            if len(self.images) < self.size:
                self.images.append(image.clone())
                out.append(image)
            elif float(torch.rand(())) > 0.5:
                slot = int(torch.randint(0, self.size, ()))
                out.append(self.images[slot].clone())
                self.images[slot] = image.clone()
            else:
                out.append(image)
        return torch.cat(out, 0)

    def state_dict(self) -> dict[str, Any]:
        return {"size": self.size, "images": [t.cpu() for t in self.images]}

    def load_state_dict(self, state: dict[str, Any], device: torch.device | None = None) -> None:
        self.size = int(state["size"])
        self.images = [t.to(device) if device is not None else t for t in state["images"]]
