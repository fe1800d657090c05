"""``Stylizer``: load a generator once, translate images of any size."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn

from brushwork.data.transforms import pil_to_uint8, tensor_to_pil, uint8_to_unit
from brushwork.release import ReleaseConfig, load_release
from brushwork.utils.device import resolve_device


class Stylizer:
    """Translate images with one generator direction.

    >>> stylizer = Stylizer.from_pretrained("runs/monet/release/BtoA")
    >>> painting = stylizer(Image.open("photo.jpg"))
    """

    def __init__(self, model: nn.Module, config: ReleaseConfig, *, device: torch.device) -> None:
        self.model = model.to(device).eval()
        self.config = config
        self.device = device

    @classmethod
    def from_pretrained(cls, source: str | Path, *, device: str = "auto") -> Stylizer:
        dev = resolve_device(device)
        model, config = load_release(Path(source))
        return cls(model, config, device=dev)

    @torch.inference_mode()
    def translate_tensor(self, x: Tensor) -> Tensor:
        """(N, 3, H, W) in [-1, 1] -> same shape; sides are reflection-padded to the model's multiple."""
        m = self.config.preprocessing.size_multiple
        h, w = x.shape[-2:]
        pad_h, pad_w = (-h) % m, (-w) % m
        x = x.to(self.device)
        if pad_h or pad_w:
            mode = "reflect" if pad_h < h and pad_w < w else "replicate"
            x = F.pad(x, (0, pad_w, 0, pad_h), mode=mode)
        y = self.model(x)
        return y[..., :h, :w].float()

    def __call__(self, image: Image.Image) -> Image.Image:
        x = uint8_to_unit(pil_to_uint8(image.convert("RGB"))).unsqueeze(0)
        return tensor_to_pil(self.translate_tensor(x)[0])
