"""``NoiseSampler``: the ``noise-sampler`` pipeline kind, images from a generator of noise (DCGAN).

    >>> sampler = load_pipeline("runs/dcgan/release/generator")
    >>> images = sampler.generate(64, seed=0)        # (64, 3, 64, 64) uint8

The latents of image ``i`` for a seed are the same on every device and for every ``n`` (image
``i`` of 64 equals image ``i`` of 8), so a grid can be regenerated and extended.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import Tensor, nn

from brushwork.data.transforms import unit_to_uint8
from brushwork.inference.pipeline import register_pipeline
from brushwork.release import ReleaseConfig
from brushwork.utils.device import resolve_device

log = logging.getLogger(__name__)


def sample_latents(n: int, latent_dim: int, seed: int) -> Tensor:
    """(n, latent_dim, 1, 1) standard normal latents; row ``i`` depends only on (seed, i)."""
    rows = [torch.randn(latent_dim, generator=torch.Generator().manual_seed(seed * 1_000_003 + i)) for i in range(n)]
    return torch.stack(rows).view(n, latent_dim, 1, 1) if rows else torch.empty(0, latent_dim, 1, 1)


@register_pipeline("noise-sampler")
class NoiseSampler:
    """Generate images from a noise -> image generator; batches of ``batch_size`` per forward pass."""

    kind = "noise-sampler"

    def __init__(self, model: nn.Module, config: ReleaseConfig, *, device: str | torch.device = "auto",
                 batch_size: int = 64, **unused: Any) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        ignored = sorted(k for k, v in unused.items() if v not in (None, "auto", False))
        if ignored:
            log.info("noise sampler: ignoring image options %s", ", ".join(ignored))
        self.device = device if isinstance(device, torch.device) else resolve_device(device)
        self.config = config
        self.latent_dim = int(config.architecture["latent_dim"])
        self.model = model.eval().requires_grad_(False).to(self.device)
        self.batch_size = batch_size

    @classmethod
    def from_model(cls, model: nn.Module, config: ReleaseConfig, **options: Any) -> NoiseSampler:
        return cls(model, config, **options)

    def describe(self) -> str:
        arch = self.config.architecture
        return f"{arch['name']} (latent {self.latent_dim}), noise -> {self.config.target_domain}, on {self.device}"

    @torch.inference_mode()
    def generate(self, n: int, *, seed: int = 0) -> Tensor:
        """``n`` images as (n, 3, H, W) uint8 on the CPU."""
        if n < 1:
            raise ValueError(f"the number of images must be >= 1, got {n}")
        z = sample_latents(n, self.latent_dim, seed)
        out = [unit_to_uint8(self.model(z[i : i + self.batch_size].to(self.device)).float().cpu())
               for i in range(0, n, self.batch_size)]  # fmt: skip
        return torch.cat(out)
