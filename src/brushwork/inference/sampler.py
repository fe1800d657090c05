"""``NoiseSampler``: the ``noise-sampler`` pipeline kind, images from a generator of noise (DCGAN).

    >>> sampler = load_pipeline("runs/dcgan/release/generator")
    >>> images = sampler.generate(64, seed=0)        # (64, 3, 64, 64) uint8

The latents of image ``i`` for a seed are the same on every device and for every ``n`` (image
``i`` of 64 equals image ``i`` of 8), so a grid can be regenerated and extended.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from brushwork.data.transforms import unit_to_uint8
from brushwork.inference.pipeline import register_pipeline
from brushwork.release import ReleaseConfig
from brushwork.utils.device import resolve_device

log = logging.getLogger(__name__)


def sample_latents(n: int, latent_dim: int, seed: int, *, start: int = 0) -> Tensor:
    """(n, latent_dim, 1, 1) standard normal latents of images ``start`` .. ``start + n - 1``.

    Row ``k`` is image ``start + k`` and depends only on (seed, start + k), so a long run of
    images can be made in pieces.
    """
    if start < 0:
        raise ValueError(f"start must be >= 0, got {start}")
    rows = [torch.randn(latent_dim, generator=torch.Generator().manual_seed(seed * 1_000_003 + i)) for i in range(start, start + n)]
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

    @classmethod
    def from_pretrained(cls, source: str | Path, *, direction: str | None = None, checkpoint: Path | None = None,
                        download: bool = True, **options: Any) -> NoiseSampler:
        """Load a generator of noise from a release folder or a training run folder (DCGAN).

        Any other model (an image-to-image generator) is refused with a one-line
        :class:`~brushwork.inference.sources.ModelSourceError`. ``options`` go to the constructor.
        """
        from brushwork.inference.sources import (
            DirectionRequiredError,
            ModelSourceError,
            load_source,
        )

        try:
            model, config = load_source(source, direction=direction, checkpoint=checkpoint, download=download)
        except DirectionRequiredError as exc:
            raise ModelSourceError(
                f"{source} is a training run of image-to-image generators ({', '.join(exc.directions)}), not a generator "
                "of noise; use brushwork stylize for it"
            ) from None
        if config.pipeline != cls.kind:
            raise ModelSourceError(
                f"{source} is not a generator of noise (its pipeline is {config.pipeline}, {config.architecture.get('name', '?')}); "
                "brushwork generate needs one, such as a DCGAN run; use brushwork stylize for it"
            )
        return cls(model, config, **options)

    def describe(self) -> str:
        arch = self.config.architecture
        return f"{arch['name']} (latent {self.latent_dim}), noise -> {self.config.target_domain}, on {self.device}"

    @torch.inference_mode()
    def generate(self, n: int, *, seed: int = 0, start: int = 0) -> Tensor:
        """Images ``start`` .. ``start + n - 1`` of ``seed`` as (n, 3, H, W) uint8 on the CPU."""
        if n < 1:
            raise ValueError(f"the number of images must be >= 1, got {n}")
        z = sample_latents(n, self.latent_dim, seed, start=start)
        out = [unit_to_uint8(self.model(z[i : i + self.batch_size].to(self.device)).float().cpu())
               for i in range(0, n, self.batch_size)]  # fmt: skip
        return torch.cat(out)
