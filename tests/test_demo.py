"""The built-in example: data built from scikit-image photos, a page of results, honest scores."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from brushwork.demo.run import DemoSettings, build_dataset, run_demo
from brushwork.demo.style import sepia_wash


def test_style_is_a_fixed_function() -> None:
    x = torch.randint(0, 256, (3, 20, 24), dtype=torch.uint8)
    y = sepia_wash(x)
    assert y.shape == x.shape and y.dtype == torch.uint8
    assert torch.equal(y, sepia_wash(x))
    assert torch.equal(sepia_wash(x[None])[0], y)
    r, g, b = sepia_wash(torch.full((3, 4, 4), 200, dtype=torch.uint8))[:, 0, 0].tolist()
    assert r > g > b  # sepia: warm


def test_dataset_is_unpaired_and_holds_out_test_photos(tmp_path: Path) -> None:
    tests = build_dataset(tmp_path, DemoSettings(crops_per_domain=12, crop=32, test_size=48))
    a = sorted(p.name for p in (tmp_path / "trainA").iterdir())
    b = sorted(p.name for p in (tmp_path / "trainB").iterdir())
    assert len(a) == len(b) == 12
    assert any(p.name == "chelsea.png" for p in tests)  # a photo never seen in training
    assert all(p.parent.name == "testA" for p in tests)


def test_short_demo_writes_its_page(tmp_path: Path) -> None:
    settings = DemoSettings(out=tmp_path / "demo", steps=6, crops_per_domain=8, crop=32, test_size=48, device="cpu", progress=False)
    scores, page = run_demo(settings)
    text = page.read_text()
    images = re.findall(r'src="(images/[^"]+)"', text)
    assert len(images) == 3 * scores.images
    assert all((page.parent / src).is_file() for src in images)
    saved = json.loads((tmp_path / "demo" / "scores.json").read_text())
    assert saved["psnr_baseline"] == pytest.approx(scores.psnr_baseline)
    assert 5 < scores.psnr_baseline < 40


def test_default_demo_beats_the_do_nothing_baseline(tmp_path: Path) -> None:
    """The README's first command, as shipped: the learnt style is closer to the truth than the photo."""
    scores, _ = run_demo(DemoSettings(out=tmp_path / "demo", device="cpu", progress=False))
    assert scores.psnr_model > scores.psnr_baseline + 2.0
    assert scores.ssim_model > scores.ssim_baseline
    assert scores.beats_baseline
