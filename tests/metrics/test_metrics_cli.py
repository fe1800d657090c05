"""``brushwork evaluate`` and ``brushwork compare`` as a user runs them (the Inception forward pass
is replaced by a cheap stand-in here; the network itself is checked in test_metrics_parity.py)."""

from __future__ import annotations

import base64
import io
import json
import re
import sys
from pathlib import Path

import pytest
from metrics_helpers import write_images, write_tiny_release
from PIL import Image, ImageFilter

from brushwork.cli import main
from brushwork.metrics.weights import INCEPTION_FILENAME, file_sha256


def run_cli(args: list[object], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["brushwork", *map(str, args)])
    monkeypatch.setenv("COLUMNS", "200")
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def outputs_of_inputs(tmp_path: Path) -> tuple[Path, Path]:
    """6 inputs; a method folder with blurred outputs for 5 of them (as PNG) plus one stray file."""
    inputs = tmp_path / "inputs"
    files = write_images(inputs, 6, size=40, kind="stripes", seed=5)
    blur = tmp_path / "blur"
    blur.mkdir()
    for f in files[:5]:
        Image.open(f).filter(ImageFilter.GaussianBlur(1.5)).save(blur / f"{f.stem}.png")
    Image.open(files[0]).save(blur / "zzz.png")
    return inputs, blur


def test_evaluate_prints_a_table_writes_json_and_caches_the_real_set(
    image_sets: dict[str, Path], inception_weights: Path, cheap_inception: list[int], tmp_path: Path,
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    out = tmp_path / "result.json"
    args = ["evaluate", "--real", image_sets["real"], "--fake", image_sets["fake"], "--json", out,
            "--inception-weights", inception_weights, "--device", "cpu", "--no-progress"]  # fmt: skip
    code, stdout, stderr = run_cli(args, capsys, monkeypatch)
    assert code == 0, stderr
    assert "FID" in stdout and "KID" in stdout and "IS" in stdout
    assert "biased upward" in stdout  # the small-N warning
    result = json.loads(out.read_text())
    assert result["fake"]["n"] == 20 and result["real"]["n"] == 8
    for key in ("is", "fid", "kid"):
        assert isinstance(result["metrics"][key]["value"], float)
    assert result["metrics"]["kid"]["subset_size"] == 8
    assert result["protocol"]["weights_sha256"] == file_sha256(inception_weights)
    assert "no antialias" in result["protocol"]["resize"]
    assert sum(cheap_inception) == 28
    code, _, stderr = run_cli(args, capsys, monkeypatch)
    assert code == 0, stderr
    assert sum(cheap_inception) == 28 + 20  # the real set came from the cache
    assert json.loads(out.read_text())["metrics"] == result["metrics"]


def test_evaluate_content_preservation_reports_missing_and_extra_names(
    outputs_of_inputs: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    inputs, blur = outputs_of_inputs
    out = tmp_path / "r.json"
    # SSIM alone needs no Inception weights at all
    code, stdout, stderr = run_cli(["evaluate", "--real", inputs, "--fake", blur, "--source", inputs, "--metrics", "ssim",
                                    "--json", out, "--no-progress"], capsys, monkeypatch)  # fmt: skip
    assert code == 0, stderr
    result = json.loads(out.read_text())
    assert sorted(result["per_image"]) == ["img000", "img001", "img002", "img003", "img004"]
    assert all(0 < v["ssim"] < 1 for v in result["per_image"].values())
    assert result["missing"] == ["img005"] and result["extra"] == ["zzz"]
    assert "img005" in stdout + stderr and "zzz" in stdout + stderr  # logged as warnings
    assert 0 < result["metrics"]["ssim"]["value"] < 1 and result["metrics"]["ssim"]["n"] == 5
    # LPIPS asked for explicitly, without its backbone weights: a clear error
    code, _, stderr = run_cli(["evaluate", "--real", inputs, "--fake", blur, "--source", inputs, "--metrics", "ssim,lpips"],
                              capsys, monkeypatch)  # fmt: skip
    assert code == 2 and "alexnet-owt-7be5be79.pth" in stderr


def test_evaluate_user_errors_are_one_line(
    image_sets: dict[str, Path], inception_weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    few = tmp_path / "few"
    write_images(few, 5)
    cases = [
        (["--fake", few, "--inception-weights", inception_weights], "needs at least 20 images"),
        (["--fake", image_sets["fake"]], INCEPTION_FILENAME),  # offline, no weights anywhere
        (["--fake", tmp_path / "missing"], "does not exist"),
        (["--fake", image_sets["fake"], "--metrics", "fid,psnr"], "unknown metric 'psnr'"),
    ]
    (tmp_path / "empty").mkdir()
    cases.append((["--fake", tmp_path / "empty"], "holds no images"))
    for extra, expected in cases:
        code, _, stderr = run_cli(["evaluate", "--real", image_sets["real"], *extra, "--no-progress"], capsys, monkeypatch)
        assert code == 2, (extra, stderr)
        assert expected in stderr and stderr.startswith("error: ") and stderr.count("\n") == 1, stderr
    code, _, stderr = run_cli(["evaluate", "--real", image_sets["real"], "--fake", few, "--inception-weights", inception_weights],
                              capsys, monkeypatch)  # fmt: skip
    assert "--metrics fid,kid" in stderr  # says how to go on without IS


def test_compare_writes_report_grid_and_json(
    outputs_of_inputs: tuple[Path, Path], image_sets: dict[str, Path], inception_weights: Path,
    cheap_inception: list[int], tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    inputs, blur = outputs_of_inputs
    model = write_tiny_release(tmp_path / "model")
    report = tmp_path / "out" / "report.html"
    code, stdout, stderr = run_cli([
        "compare", "--inputs", inputs, "--method", f"blur={blur}", "--method", f"tiny gan=model:{model}",
        "--method", f"copy={inputs}", "--real", image_sets["real"], "--out", report,
        "--inception-weights", inception_weights, "--device", "cpu", "--no-progress",
    ], capsys, monkeypatch)  # fmt: skip
    assert code == 0, stderr
    assert "img005" in stdout + stderr
    page = report.read_text()
    # every thumbnail is embedded and decodes: 6 inputs + 5 + 6 + 6 outputs
    thumbs = re.findall(r"src='data:image/jpeg;base64,([^']+)'", page)
    assert len(thumbs) == 6 + 5 + 6 + 6
    for data in thumbs:
        Image.open(io.BytesIO(base64.b64decode(data))).verify()
    # every thumbnail links to a full-size copy beside the report
    links = re.findall(r"href='([^']+)'", page)
    assert len(links) == len(thumbs) and all((report.parent / link).is_file() for link in links)
    assert page.count(">missing</div>") == 1
    assert "class='best'" in page and "tiny gan" in page
    assert "img005" in page and "zzz" in page  # missing and extra names are shown
    # copying the inputs preserves content perfectly: its SSIM (1.0) is the one marked best
    row = re.search(r">copy</td>(.*?)</tr>", page, re.S)
    assert row is not None and "<td class='best'>1.000</td>" in row.group(1)
    result = json.loads(report.with_suffix(".json").read_text())
    by_name = {m["name"]: m for m in result["methods"]}
    assert by_name["blur"]["missing"] == ["img005"] and by_name["blur"]["extra"] == ["zzz"]
    assert by_name["copy"]["metrics"]["ssim"]["value"] == pytest.approx(1.0)
    assert "unavailable" in by_name["tiny gan"]["metrics"]["is"]  # 6 images < 20
    assert "alexnet" in by_name["tiny gan"]["metrics"]["lpips"]["unavailable"]
    assert isinstance(by_name["tiny gan"]["metrics"]["kid"]["value"], float)
    assert len(list((report.parent / "report_files" / "02_tiny_gan").glob("*.png"))) == 6
    grid = Image.open(report.with_suffix(".png"))
    assert grid.size == (4 * 256 + 5 * 4, 32 + 4 * 256 + 5 * 4)  # input + 3 methods, 4 rows, labels


def test_compare_bad_methods(
    outputs_of_inputs: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    inputs, blur = outputs_of_inputs
    other = tmp_path / "other"
    write_images(other, 3, prefix="photo")
    base = ["compare", "--inputs", inputs, "--metrics", "ssim", "--out", tmp_path / "r.html", "--no-progress"]
    cases = [
        (["--method", str(blur)], "NAME=DIR"),
        (["--method", f"a={blur}", "--method", f"a={blur}"], "given twice"),
        (["--method", f"a={other}"], "named like an input"),
        (["--method", f"a={blur}", "--strict"], "img005"),
        (["--method", f"a={tmp_path / 'nowhere'}"], "does not exist"),
    ]
    for extra, expected in cases:
        code, _, stderr = run_cli([*base, *extra], capsys, monkeypatch)
        assert code == 2 and expected in stderr, (extra, stderr)
    # a bad folder fails before a model method listed first has run at all
    model = write_tiny_release(tmp_path / "model")
    code, _, stderr = run_cli([*base, "--method", f"m=model:{model}", "--method", f"a={other}"], capsys, monkeypatch)
    assert code == 2 and "named like an input" in stderr and not (tmp_path / "r_files").exists()
    suffixed = tmp_path / "suffixed"
    suffixed.mkdir()
    for f in sorted(inputs.glob("*.png")):
        (suffixed / f"{f.stem}_fake.png").write_bytes(f.read_bytes())
    code, _, stderr = run_cli([*base, "--method", f"ref={suffixed}"], capsys, monkeypatch)
    assert code == 2 and "try --strip-suffix" in stderr
    code, _, stderr = run_cli([*base, "--method", f"ref={suffixed}", "--strip-suffix", "_fake"], capsys, monkeypatch)
    assert code == 0, stderr
