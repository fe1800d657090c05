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
    # every thumbnail is embedded and decodes: 6 inputs + 5 + 6 + 6 outputs + 6 of the colour baseline
    thumbs = re.findall(r"src='data:image/jpeg;base64,([^']+)'", page)
    assert len(thumbs) == 6 + 5 + 6 + 6 + 6
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
    # no style method: the baseline matches the inputs to the pooled colours of --real
    mosaic = report.parent / "report_files" / "baseline-real-colours.png"
    assert by_name["colour baseline"]["source"] == f"colour with style {mosaic}, colour_mode reinhard"
    assert len(list((report.parent / "report_files" / "04_colour_baseline").glob("*.png"))) == 6
    grid = Image.open(report.with_suffix(".png"))
    assert grid.size == (5 * 256 + 6 * 4, 32 + 4 * 256 + 5 * 4)  # input + 4 methods, 4 rows, labels


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


# ---------------------------------------------------------------------------------------------
# Nested folders, standard output, unreadable files


def _nested_inputs(root: Path) -> list[Path]:
    """inputs/top/..., inputs/a/img000.png and inputs/b/img000.png (the same file name twice)."""
    files = write_images(root / "a", 2, size=40, kind="stripes", seed=11)
    files += write_images(root / "b", 2, size=40, kind="stripes", seed=12)
    files += write_images(root, 1, size=40, kind="smooth", seed=13, prefix="top")
    return files


def test_evaluate_reads_subfolders_and_pairs_by_relative_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from brushwork.metrics.features import load_uint8
    from brushwork.metrics.scores import ssim

    inputs = tmp_path / "inputs"
    files = _nested_inputs(inputs)
    outs = tmp_path / "outs"
    for f in files:  # a/ copied exactly, b/ and the top level blurred
        target = outs / f.relative_to(inputs)
        target.parent.mkdir(parents=True, exist_ok=True)
        img = Image.open(f)
        (img if f.parent.name == "a" else img.filter(ImageFilter.GaussianBlur(1.5))).save(target)
    out = tmp_path / "r.json"
    code, _, stderr = run_cli(["evaluate", "--real", inputs, "--fake", outs, "--source", inputs, "--metrics", "ssim",
                               "--json", out, "--no-progress"], capsys, monkeypatch)  # fmt: skip
    assert code == 0, stderr
    result = json.loads(out.read_text())
    assert sorted(result["per_image"]) == ["a/img000", "a/img001", "b/img000", "b/img001", "top000"]
    assert result["missing"] == [] and result["extra"] == [] and result["fake"]["n"] == 5
    for name, scores in result["per_image"].items():
        expected = ssim(load_uint8(inputs / f"{name}.png"), load_uint8(outs / f"{name}.png"))
        assert scores["ssim"] == pytest.approx(expected, abs=1e-12), name
    assert result["per_image"]["a/img000"]["ssim"] == pytest.approx(1.0)
    assert result["per_image"]["b/img000"]["ssim"] < 0.99


def test_stylize_then_evaluate_and_compare_see_the_same_tree(
    tmp_path: Path, image_sets: dict[str, Path], inception_weights: Path, cheap_inception: list[int],
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    inputs = tmp_path / "inputs"
    _nested_inputs(inputs)
    model = write_tiny_release(tmp_path / "model")
    styled = inputs / "styled"  # inside the inputs: left out of them by stylize, evaluate and compare
    code, _, stderr = run_cli(["stylize", inputs, "-m", model, "-o", styled, "--format", "png", "--precision", "fp32",
                               "--no-progress"], capsys, monkeypatch)  # fmt: skip
    assert code == 0, stderr
    out = tmp_path / "e.json"
    code, _, stderr = run_cli(["evaluate", "--real", image_sets["real"], "--fake", styled, "--source", inputs,
                               "--metrics", "fid,kid,ssim", "--json", out, "--inception-weights", inception_weights,
                               "--device", "cpu", "--no-progress"], capsys, monkeypatch)  # fmt: skip
    assert code == 0, stderr
    result = json.loads(out.read_text())
    assert result["fake"]["n"] == 5 and result["source"]["n"] == 5 and result["missing"] == []
    assert sorted(result["per_image"]) == ["a/img000", "a/img001", "b/img000", "b/img001", "top000"]
    report = tmp_path / "rep" / "report.html"
    code, _, stderr = run_cli(["compare", "--inputs", inputs, "--method", f"folder={styled}", "--method", f"live=model:{model}",
                               "--metrics", "ssim", "--out", report, "--no-progress"], capsys, monkeypatch)  # fmt: skip
    assert code == 0, stderr
    by_name = {m["name"]: m for m in json.loads(report.with_suffix(".json").read_text())["methods"]}
    for name in ("folder", "live"):
        assert sorted(by_name[name]["per_image"]) == ["a/img000", "a/img001", "b/img000", "b/img001", "top000"], name
        assert by_name[name]["missing"] == [] and by_name[name]["extra"] == []
    # the model run now mirrors the tree, and the full-size copies of same-named inputs do not clash
    assets = report.parent / "report_files"
    assert sorted(p.relative_to(assets / "02_live").as_posix() for p in (assets / "02_live").rglob("*.png")) == [
        "a/img000.png", "a/img001.png", "b/img000.png", "b/img001.png", "top000.png"]
    assert (assets / "inputs" / "a" / "img000.png").read_bytes() == (inputs / "a" / "img000.png").read_bytes()
    assert (assets / "inputs" / "b" / "img000.png").read_bytes() == (inputs / "b" / "img000.png").read_bytes()


def test_evaluate_json_to_standard_output(
    image_sets: dict[str, Path], inception_weights: Path, cheap_inception: list[int], tmp_path: Path,
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    code, stdout, stderr = run_cli(["evaluate", "--real", image_sets["real"], "--fake", image_sets["fake"], "--json", "-",
                                    "--inception-weights", inception_weights, "--device", "cpu"], capsys, monkeypatch)  # fmt: skip
    assert code == 0, stderr
    result = json.loads(stdout)  # standard output is exactly the JSON document
    assert result["fake"]["n"] == 20 and isinstance(result["metrics"]["kid"]["value"], float)
    assert "KID" in stderr and "biased upward" in stderr  # the table and notes went to stderr
    assert list(work.iterdir()) == []  # no file named "-"


def _corrupt(path: Path) -> Path:
    """Truncate a PNG to half its bytes: the header reads, the pixels do not."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def test_evaluate_skips_and_reports_unreadable_images(
    image_sets: dict[str, Path], inception_weights: Path, cheap_inception: list[int], tmp_path: Path,
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    import shutil

    real, fake, source = tmp_path / "real", tmp_path / "fake", tmp_path / "source"
    shutil.copytree(image_sets["real"], real)
    shutil.copytree(image_sets["fake"], fake)
    shutil.copytree(image_sets["fake"], source)
    bad = [_corrupt(real / "img003.png"), _corrupt(fake / "img007.png"), _corrupt(source / "img011.png")]
    (fake / "notes.png").write_text("not an image")
    bad.append(fake / "notes.png")
    out = tmp_path / "r.json"
    code, _, stderr = run_cli(["evaluate", "--real", real, "--fake", fake, "--source", source, "--metrics", "fid,kid,ssim",
                                    "--json", out, "--inception-weights", inception_weights, "--device", "cpu",
                                    "--no-progress"], capsys, monkeypatch)  # fmt: skip
    assert code == 1, stderr  # scores written, but not every file could be read
    assert "4 unreadable file(s) skipped" in stderr
    listed = stderr.split("unreadable file(s) skipped", 1)[1]
    for path in bad:
        assert str(path) in listed
    assert "Traceback" not in stderr
    result = json.loads(out.read_text())
    assert sorted(u["path"] for u in result["unreadable"]) == sorted(map(str, bad))
    assert result["n_outputs"] == 19 and result["metrics"]["fid"]["n"] == 19 and result["metrics"]["fid"]["n_real"] == 7
    assert result["metrics"]["ssim"]["n"] == 18  # img007 (bad output) and img011 (bad input) left out
    assert "img007" not in result["per_image"] and "img011" not in result["per_image"]
    assert sum(cheap_inception) == 19 + 7


def test_compare_skips_and_reports_unreadable_images(
    outputs_of_inputs: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    inputs, blur = outputs_of_inputs
    _corrupt(inputs / "img002.png")
    _corrupt(blur / "img004.png")
    model = write_tiny_release(tmp_path / "model")
    report = tmp_path / "report.html"
    code, _, stderr = run_cli(["compare", "--inputs", inputs, "--method", f"blur={blur}", "--method", f"gan=model:{model}",
                               "--metrics", "ssim", "--out", report, "--no-progress"], capsys, monkeypatch)  # fmt: skip
    assert code == 1, stderr
    assert "2 unreadable file(s) skipped" in stderr and "Traceback" not in stderr
    listed = stderr.split("unreadable file(s) skipped", 1)[1]
    assert str(inputs / "img002.png") in listed and str(blur / "img004.png") in listed
    result = json.loads(report.with_suffix(".json").read_text())
    assert sorted(u["path"] for u in result["unreadable"]) == sorted([str(inputs / "img002.png"), str(blur / "img004.png")])
    by_name = {m["name"]: m for m in result["methods"]}
    assert sorted(by_name["blur"]["per_image"]) == ["img000", "img001", "img003"]
    assert sorted(by_name["gan"]["per_image"]) == ["img000", "img001", "img003", "img004", "img005"]
    assert report.is_file() and report.with_suffix(".png").is_file()


def test_compare_names_what_it_accepts_for_a_run_folder(
    outputs_of_inputs: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from brushwork.checkpoints import save_checkpoint
    from brushwork.config import resolve_train_config
    from brushwork.methods import build_method

    inputs, _ = outputs_of_inputs
    run = tmp_path / "run"
    run.mkdir()
    cfg = resolve_train_config(overrides={"data": {"root": str(tmp_path)}, "model": {"generator": "resnet_2blocks", "ngf": 4, "ndf": 4},
                                          "run": {"out": str(run)}})  # fmt: skip
    cfg.save(run / "config.yaml")
    method = build_method(cfg)
    save_checkpoint(run, 1, {"networks": {k: v.state_dict() for k, v in method.networks.items()}, "step": 1}, keep=1)
    code, _, stderr = run_cli(["compare", "--inputs", inputs, "--method", f"r=model:{run}", "--metrics", "ssim",
                               "--out", tmp_path / "r.html", "--no-progress"], capsys, monkeypatch)  # fmt: skip
    assert code == 2 and stderr.count("\n") == 1, stderr
    assert "--direction" not in stderr  # compare has no such flag
    assert f"model:{run / 'release' / 'AtoB'}" in stderr and f"brushwork export {run}" in stderr
    # stylize has the flag, and says so
    code, _, stderr = run_cli(["stylize", inputs, "-m", run, "-o", tmp_path / "s", "--no-progress"], capsys, monkeypatch)
    assert code == 2 and "(use --direction AtoB|BtoA)" in stderr
