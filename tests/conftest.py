"""Shared fixtures: tiny configs, generated image folders, the optional real data set."""

from __future__ import annotations

import contextlib
import os
import random
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data" / "monet2photo-small"

torch.set_num_threads(min(2, torch.get_num_threads()))
# The speed probe (brushwork.tuning) picks the fastest setting by timing, so its choice could
# differ between two runs on a busy machine: tests take the plain setting unless they set one,
# and tests/test_tuning.py checks the probe itself. Subprocesses inherit this.
os.environ["BRUSHWORK_SPEED_PROBE"] = "0"


@pytest.fixture(autouse=True)
def _seeded() -> None:
    """Every test starts from the same random state, whatever ran before it (the suite runs in
    random order under pytest-randomly): a test's unseeded draw is then still the same each run."""
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


@pytest.fixture
def shared_data() -> Path:
    if not (SHARED_DATA / "trainA").is_dir():
        pytest.skip(f"shared data set not present at {SHARED_DATA}")
    return SHARED_DATA


def write_images(folder: Path, count: int, size: tuple[int, int] = (40, 36), seed: int = 0, suffix: str = ".png") -> list[Path]:
    """``count`` random RGB images of ``size`` (w, h) in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        arr = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        path = folder / f"img_{i:03d}{suffix}"
        Image.fromarray(arr).save(path)
        paths.append(path)
    return paths


def write_tiny_data(root: Path) -> Path:
    """A two-domain data folder: trainA (6), trainB (9), testA (2), testB (2) small images."""
    write_images(root / "trainA", 6, seed=1)
    write_images(root / "trainB", 9, seed=2)
    write_images(root / "testA", 2, seed=3)
    write_images(root / "testB", 2, seed=4)
    return root


@pytest.fixture
def tiny_data(tmp_path: Path) -> Path:
    """:func:`write_tiny_data` in a fresh temporary folder."""
    return write_tiny_data(tmp_path / "data")


def tiny_overrides(data: Path, out: Path, **run: object) -> dict[str, object]:
    """Settings for a CycleGAN small enough to train a few steps in well under a second each."""
    return {
        "data": {"root": str(data), "load_size": 36, "crop_size": 32, "num_workers": 0},
        "model": {"generator": "resnet_2blocks", "ngf": 8, "ndf": 8},
        "optim": {"epochs": 1, "epochs_decay": 2},
        "run": {"out": str(out), "progress": False, "tensorboard": False, "log_every": 1,
                "sample_every": 1000, "checkpoint_every": 1000, **run},
    }  # fmt: skip


def torchrun_brushwork(args: list[str], *, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    """``brushwork ARGS`` in 2 processes under torchrun (gloo, one thread each, the plain speed setting)."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1", "BRUSHWORK_SPEED_PROBE": "0"}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "TORCHELASTIC_RESTART_COUNT"):
        env.pop(name, None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "brushwork", *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """torch at one intra-op thread inside the block, as it was after. Fixtures of tests with many
    small operations use it: on a busy 2-core machine two OpenMP threads wait on each other
    (measured: VGG-19 passes about 3x, the Inception forward pass up to 25x slower)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
