"""The large-image check (slow): 8000 x 6000 within a small memory budget, no seams.

Run by hand with ``pytest -m slow tests/test_inference_large.py``; the figures for the full-size
network are measured with ``benchmarks/large_image.py`` (docs/inference.md).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))


@pytest.mark.slow
def test_8000x6000_in_tiles_without_seams() -> None:
    from large_image import run

    stats = run(8000, 6000, ngf=8, memory_gb=0.5)
    assert stats["tiles"] > 1
    assert stats["seam_score"] < 1.1
