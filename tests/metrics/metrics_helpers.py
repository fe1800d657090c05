"""Helpers for the metrics tests: a random-weight Inception file in torch-fidelity's format, small
image folders, a tiny release model, and a cheap stand-in for the Inception forward pass.

(A module of its own, not conftest.py: tests/conftest.py has helpers too, and ``from conftest
import ...`` would depend on which conftest pytest loaded last.)"""

from __future__ import annotations

import math
from pathlib import Path
from unittest import mock

import numpy as np
import torch
from PIL import Image


def inception_architecture() -> torch.nn.Module:
    """torch-fidelity's Inception-v3 module with PyTorch's default initialisation (no weights loaded)."""
    import torch_fidelity.feature_extractor_inceptionv3 as fe

    with (
        mock.patch.object(fe, "load_state_dict_from_url", lambda *a, **k: None),
        mock.patch.object(fe.FeatureExtractorInceptionV3, "load_state_dict", lambda self, *a, **k: None),
    ):
        return fe.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])


def write_random_inception_weights(path: Path, seed: int = 0) -> Path:
    """Same keys, shapes and dtypes as weights-inception-2015-12-05-6726825d.pth, random values.

    He-normal convolutions and identity batch-norm statistics keep activations at a useful scale
    through the ~90 layers, so the features differ from image to image like real ones do.
    """
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, value in inception_architecture().state_dict().items():
        if key.endswith("conv.weight"):
            value = torch.randn(value.shape, generator=g) * math.sqrt(2.0 / value[0].numel())
        elif key.endswith("bn.bias"):
            value = torch.randn(value.shape, generator=g) * 0.1
        elif key.endswith(("bn.weight", "running_var")):
            value = torch.ones_like(value)
        elif key.endswith("running_mean"):
            value = torch.zeros_like(value)
        elif key == "fc.weight":
            value = torch.randn(value.shape, generator=g) * (4.0 / math.sqrt(value.shape[1]))
        elif key == "fc.bias":
            value = torch.randn(value.shape, generator=g) * 0.1
        state[key] = value.contiguous()
    torch.save(state, path)
    return path


def write_images(folder: Path, count: int, *, size: int = 32, seed: int = 0, kind: str = "smooth", prefix: str = "img") -> list[Path]:
    """``count`` PNG images: smooth colour fields (``smooth``) or noisy stripes (``stripes``)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    paths = []
    for i in range(count):
        if kind == "smooth":
            c = rng.uniform(0, 1, (3, 3))
            arr = np.stack([c[k, 0] + c[k, 1] * xx + c[k, 2] * yy for k in range(3)], axis=-1) / 2.0
        else:
            freq = rng.uniform(2, 8)
            base = 0.5 + 0.5 * np.sin(2 * np.pi * freq * xx + rng.uniform(0, 6))
            arr = np.stack([base, base * rng.uniform(0.3, 1), 1 - base], axis=-1) + rng.normal(0, 0.15, (size, size, 3))
        img = Image.fromarray((np.clip(arr, 0, 1) * 255).astype(np.uint8), mode="RGB")
        path = folder / f"{prefix}{i:03d}.png"
        img.save(path)
        paths.append(path)
    return paths


def cheap_forward(self, batch: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """A deterministic stand-in for the Inception forward pass (pooled pixels through fixed random
    projections), for tests of the plumbing around the network; parity tests use the network."""
    g = torch.Generator().manual_seed(123)
    to_pool = torch.randn(3 * 8 * 8, 2048, generator=g) / 8
    to_logits = torch.randn(2048, 1008, generator=g) / 16
    x = torch.stack(batch).float() / 255.0
    small = torch.nn.functional.adaptive_avg_pool2d(x, 8).flatten(1)
    pool = torch.relu(small @ to_pool)
    type(self).forwarded.append(len(batch))
    return pool, pool @ to_logits


def write_tiny_release(folder: Path, *, seed: int = 0) -> Path:
    """A small brushwork release model (resnet_2blocks, ngf 4) with random weights."""
    from brushwork.nn.generators import build_generator
    from brushwork.release import release_config_for, save_release

    torch.manual_seed(seed)
    arch = {"name": "resnet_2blocks", "in_channels": 3, "out_channels": 3, "ngf": 4, "norm": "instance",
            "dropout": False, "padding": "reflect"}  # fmt: skip
    net = build_generator(arch["name"], **{k: v for k, v in arch.items() if k != "name"})
    config = release_config_for(arch, direction="AtoB", source="A", target="B", train_size=32, provenance={"test": True})
    return save_release(net, folder, config)
