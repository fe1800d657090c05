"""Fixtures for the metrics tests. Nothing here downloads anything."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from metrics_helpers import cheap_forward, write_images, write_random_inception_weights
from tests.conftest import one_thread


@pytest.fixture(scope="session")
def inception_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_random_inception_weights(tmp_path_factory.mktemp("weights") / "random-inception.pth")


@pytest.fixture(scope="session")
def image_sets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two small sets of different character: ``real`` (8 smooth) and ``fake`` (20 striped; the
    Inception Score needs 2 images per split)."""
    root = tmp_path_factory.mktemp("images")
    write_images(root / "real", 8, seed=1, kind="smooth")
    write_images(root / "fake", 20, seed=2, kind="stripes")
    return {"real": root / "real", "fake": root / "fake"}


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """One intra-op thread for these tests: on a shared 2-core machine, OpenMP threads that spin
    while another process holds the other core made the Inception forward pass ~25x slower
    (5.6 s instead of 0.22 s per image, measured); one thread is never far from the best.
    Per test, not per session: a session-wide setting leaked into every test that ran after
    the first metrics test, so their arithmetic depended on the order."""
    with one_thread():
        yield


@pytest.fixture(autouse=True)
def _isolated_caches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test reads or writes the user's caches, and none may download."""
    monkeypatch.setenv("BRUSHWORK_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.setenv("BRUSHWORK_OFFLINE", "1")
    monkeypatch.delenv("BRUSHWORK_INCEPTION_WEIGHTS", raising=False)


@pytest.fixture
def cheap_inception(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Replace the Inception forward pass by a cheap one; returns the list of batch sizes it saw."""
    from brushwork.metrics.features import InceptionExtractor

    seen: list[int] = []
    monkeypatch.setattr(InceptionExtractor, "forwarded", seen, raising=False)
    monkeypatch.setattr(InceptionExtractor, "_forward", cheap_forward)
    return seen
