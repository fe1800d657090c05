"""The built-in example: data built from scikit-image photos, a page of results, honest scores."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

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


def _textured_patches(img: np.ndarray, k: int = 8, contrast: int = 32) -> set[bytes]:
    """Every k x k patch of an (H, W, 3) uint8 image whose values span at least ``contrast`` levels.

    Flat and nearly black patches (noise of 0s and 1s) recur by chance in unrelated photos;
    textured ones do not.
    """
    windows = np.lib.stride_tricks.sliding_window_view(img, (k, k, 3))[:, :, 0].reshape(-1, k * k * 3)
    textured = windows.max(axis=1).astype(int) - windows.min(axis=1) >= contrast
    return {w.tobytes() for w in windows[textured]}


def _pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def test_held_out_photos_share_no_pixels_with_training(tmp_path: Path) -> None:
    """No textured 8x8 patch of a test image (or of its true stylisation) occurs in any training image.

    Crops are exact slices of the same resized photos, so any overlap shows as identical patches
    (hundreds per photo when the test squares overlapped the training rows).
    """
    tests = build_dataset(tmp_path, DemoSettings(crops_per_domain=60, crop=32))  # the default 128-pixel tests
    seen_a = set().union(*(_textured_patches(_pixels(p)) for p in (tmp_path / "trainA").iterdir()))
    seen_b = set().union(*(_textured_patches(_pixels(p)) for p in (tmp_path / "trainB").iterdir()))
    assert len(seen_a) > 10_000 and len(tests) == 7
    for path in tests:
        img = _pixels(path)
        truth = sepia_wash(torch.from_numpy(img.copy()).permute(2, 0, 1)).permute(1, 2, 0).numpy()
        assert not _textured_patches(img) & seen_a, path.name
        assert not _textured_patches(truth) & seen_b, path.name


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


@pytest.mark.slow  # the 2000-step default demo: minutes on a CPU (run with -m slow)
def test_default_demo_beats_the_do_nothing_baseline(tmp_path: Path) -> None:
    """The README's first command, as shipped: the learnt style is closer to the truth than the photo."""
    scores, _ = run_demo(DemoSettings(out=tmp_path / "demo", device="cpu", progress=False))
    assert scores.psnr_model > scores.psnr_baseline + 2.0
    assert scores.ssim_model > scores.ssim_baseline
    assert scores.beats_baseline


def test_an_interrupted_demo_exits_130_with_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C or SIGTERM during the demo's training: a clear line and status 130, no traceback."""
    from typer.testing import CliRunner

    from brushwork.cli import app
    from brushwork.training import run as training_run
    from brushwork.training.trainer import TrainResult

    monkeypatch.setattr(training_run, "run_training", lambda config: TrainResult(tmp_path, 7, 0, True, {}, 0))
    result = CliRunner().invoke(app, ["demo", "--out", str(tmp_path / "demo"), "--steps", "10", "--crops", "4", "--no-progress"])
    assert result.exit_code == 130
    assert "stopped at step 7" in result.output and "Traceback" not in result.output
