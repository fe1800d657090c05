"""``brushwork stylize --style`` and ``brushwork compare`` with style methods, as a user runs them.

Gatys runs on a randomly initialised VGG-19 here (the weights lookup is replaced), AdaIN on a
random decoder: these tests check the plumbing and the errors, not the pictures.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from brushwork.nn.adain import AdaINNet
from brushwork.style import from_style
from brushwork.style import weights as vgg_weights
from brushwork.style.adain import save_adain_release
from brushwork.style.weights import VGGWeights, load_into
from tests._inference_helpers import cli_fixture
from tests._style_helpers import (
    kaiming_,
    no_downloads,
    one_torch_thread,
    random_vgg_state,
    save_image,
    smooth_image,
)

CLI = Callable[[list[str]], tuple[int, str, str]]
_ = (cli_fixture, one_torch_thread, no_downloads)


@pytest.fixture(scope="module")
def random_weights() -> VGGWeights:
    return VGGWeights(random_vgg_state(0), "random VGG-19 (test)")


@pytest.fixture(autouse=True)
def _random_vgg(monkeypatch: pytest.MonkeyPatch, random_weights: VGGWeights) -> None:
    monkeypatch.setattr(vgg_weights, "load_vgg19_weights", lambda source="auto", download=None: random_weights)


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    d = tmp_path / "in"
    alpha = np.dstack([smooth_image(32, 32, 3), np.full((32, 32), 200, np.uint8)])
    (d / "text.png").parent.mkdir(parents=True)
    (d / "text.png").write_text("not an image\n")
    return {
        "photo": save_image(d / "photo.png", smooth_image(24, 32, 1)),
        "painting": save_image(d / "painting.png", smooth_image(40, 40, 2)),
        "other": save_image(d / "other.jpg", smooth_image(36, 30, 4)),
        "gray": save_image(d / "gray.png", smooth_image(32, 32, 5, channels=1)),
        "tiny": save_image(d / "tiny.png", smooth_image(10, 12, 6)),
        "alpha": save_image(d / "alpha.png", alpha),
        "text": d / "text.png",
    }


@pytest.fixture
def adain_release(tmp_path: Path, random_weights: VGGWeights) -> Path:
    torch.manual_seed(0)
    net = AdaINNet()
    kaiming_(net.decoder)
    load_into(net.encoder, random_weights)
    return save_adain_release(net, tmp_path / "adain", encoder_source=random_weights.source)


def stylize(cli: CLI, files: dict[str, Path], out: Path, *extra: str) -> tuple[int, str, str]:
    return cli(["stylize", str(files["photo"]), "--out", str(out), *extra])


def test_colour_gatys_and_adain_write_their_outputs(tmp_path: Path, files: dict[str, Path], adain_release: Path, cli: CLI) -> None:
    runs = {
        "colour": ["--style", str(files["painting"]), "--method", "colour", "--colour-mode", "mk", "--no-progress"],
        "gatys": ["--style", f"{files['painting']}:0.7", "--style", f"{files['other']}:0.3", "--method", "gatys",
                  "--iterations", "2", "--preserve-colour", "--strength", "0.8"],  # with the progress bars
        "adain": ["--style", str(files["painting"]), "--model", str(adain_release), "--no-progress"],
    }  # fmt: skip
    for name, extra in runs.items():
        code, out, err = stylize(cli, files, tmp_path / name, *extra)
        assert code == 0, (name, err)
        assert "1 written" in out
        with Image.open(tmp_path / name / "photo.png") as im:
            assert im.size == (32, 24)
    _, _, err = stylize(cli, files, tmp_path / "gatys2", *runs["gatys"], "--no-progress")
    assert "method: Gatys" in err and "random VGG-19 (test)" in err and "painting.png (0.70)" in err

    # --max-side: optimised at 21x16 (16 long would make the short side too small for relu5_1), written at 32x24
    code, _, err = stylize(cli, files, tmp_path / "capped", "--style", str(files["painting"]), "--method", "gatys",
                           "--iterations", "1", "--max-side", "16", "--no-progress")  # fmt: skip
    assert code == 0, err
    with Image.open(tmp_path / "capped" / "photo.png") as im:
        assert im.size == (32, 24)


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["--style", "{text}", "--method", "colour"], "style image {text}: not an image file"),
        (["--style", "{tiny}", "--method", "colour"], "is 12x10 pixels"),
        (["--style", "{gray}", "--method", "gatys"], "is grayscale"),
        (["--style", "{alpha}", "--method", "gatys"], "transparent pixels"),
        (["--style", "{nowhere}", "--method", "colour"], "does not exist"),
        (["--style", "{painting}", "--method", "colour", "--strength", "1.5"], "--strength must be from 0 to 1"),
        (["--style", "{painting}", "--method", "gatys", "--strength", "-0.1"], "--strength must be from 0 to 1"),
        (["--style", "{painting}:x", "--method", "gatys"], "must be a number"),
        (["--style", "{painting}:-1", "--method", "gatys"], "must be a finite number >= 0"),
        (["--style", "{painting}:0", "--method", "gatys"], "weights are all 0"),
        (["--style", "{painting}", "--style", "{other}", "--method", "colour"], "takes one --style image"),
        (["--style", "{painting}"], "--method adain needs a trained decoder"),
        (["--style", "{painting}", "--method", "gatys", "--model", "{painting}"], "takes no --model"),
        (["--style", "{painting}", "--method", "gatys", "--iterations", "0"], "at least 1"),
        (["--style", "{painting}", "--method", "gatys", "--max-side", "8"], "--max-side must be at least 16 pixels"),
        (["--style", "{painting}", "--method", "colour", "--max-side", "64"], "--max-side is for --method gatys"),
        (["--style", "{painting}", "--method", "colour", "--preserve-colour"], "--preserve-colour"),
        (["--style", "{painting}", "--method", "cyclegan"], "not a style method"),
        (["--strength", "0.5", "--model", "{painting}"], "--strength needs --style"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(tmp_path: Path, files: dict[str, Path], cli: CLI, extra: list[str],
                                                  expected: str) -> None:  # fmt: skip
    names = {**{k: str(v) for k, v in files.items()}, "nowhere": str(tmp_path / "nowhere.png")}
    code, out, err = stylize(cli, files, tmp_path / "out", *(e.format(**names) for e in extra), "--no-progress")
    assert code == 2, (out, err)
    assert err.startswith("error: ") and err.strip().count("\n") == 0, err
    assert expected.format(**names) in err
    assert not (tmp_path / "out").exists()


def test_an_adain_model_without_style_says_so(tmp_path: Path, files: dict[str, Path], adain_release: Path, cli: CLI) -> None:
    code, _, err = stylize(cli, files, tmp_path / "out", "--model", str(adain_release), "--no-progress")
    assert code == 2 and "--style" in err and err.strip().count("\n") == 0
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------------------------
# compare


def compare(cli: CLI, inputs: Path, report: Path, *methods: str) -> tuple[int, str, str]:
    args = ["compare", "--inputs", str(inputs), "--metrics", "ssim", "--out", str(report), "--no-progress", "--device", "cpu"]
    for m in methods:
        args += ["--method", m]
    return cli(args)


@pytest.fixture
def inputs(tmp_path: Path) -> Path:
    for i in range(2):
        save_image(tmp_path / "photos" / f"p{i}.png", smooth_image(32, 40, 10 + i))
    return tmp_path / "photos"


def test_compare_runs_the_style_methods(tmp_path: Path, inputs: Path, files: dict[str, Path], adain_release: Path, cli: CLI) -> None:
    report = tmp_path / "report" / "r.html"
    painting = files["painting"]
    code, _, err = compare(cli, inputs, report, f"colour=style:{painting}", f"colour mk=style:{painting},method:colour,mode:mk",
                           f"gatys=style:{painting}:0.5,style:{files['other']}:0.5,iterations:1,strength:0.9",
                           f"adain=style:{painting},model:{adain_release}")  # fmt: skip
    assert code == 0, err
    result = json.loads(report.with_suffix(".json").read_text())
    sources = {m["name"]: m["source"] for m in result["methods"]}
    assert sources["colour mk"] == f"colour with style {painting}, colour_mode mk"
    assert sources["gatys"].startswith("gatys with style") and "iterations 1" in sources["gatys"]
    assert f"model {adain_release}" in sources["adain"]
    for i, name in enumerate(["colour", "colour_mk", "gatys", "adain"]):
        assert len(list((report.parent / "r_files" / f"{i + 1:02d}_{name}").glob("*.png"))) == 2, name


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("x=style:{painting}", "name the style method"),
        ("colour=style:{painting},iterations:3", "colour takes no iterations"),
        ("adain=style:{painting}", "adain needs a trained decoder"),
        ("colour=style:{gray}", "is grayscale"),
        ("gatys=style:{painting},strength:2", "strength must be a number from 0 to 1"),
        ("gatys=style:{painting}:abc", "must be a number"),
        ("gatys=style:{painting},foo:1", "unknown key 'foo'"),
        ("gatys=style:{painting},max-side:8", "max-side must be at least 16"),
        ("colour=style:{painting},max-side:64", "colour takes no max-side"),
        ("gatys=style:", "not KEY:VALUE"),
    ],
)
def test_compare_bad_style_specs(tmp_path: Path, inputs: Path, files: dict[str, Path], cli: CLI, spec: str, expected: str) -> None:
    report = tmp_path / "report" / "r.html"
    code, _, err = compare(cli, inputs, report, spec.format(**{k: str(v) for k, v in files.items()}))
    assert code == 2 and expected in err and err.strip().count("\n") == 0, err
    assert not report.parent.exists() or not any(report.parent.iterdir())


def test_every_report_carries_a_colour_baseline(tmp_path: Path, inputs: Path, files: dict[str, Path], cli: CLI) -> None:
    """Reinhard colour transfer to the first style method's image, or else to the pooled colours
    of --real; none when the report has a colour method already, or with --no-baseline."""
    def methods(report: Path) -> dict[str, str]:
        return {m["name"]: m["source"] for m in json.loads(report.with_suffix(".json").read_text())["methods"]}

    painting = files["painting"]
    code, _, err = compare(cli, inputs, tmp_path / "a" / "r.html", f"gatys=style:{painting}:0.5,style:{files['other']}:0.5,iterations:1")
    assert code == 0, err
    assert methods(tmp_path / "a" / "r.html")["colour baseline"] == f"colour with style {painting}, colour_mode reinhard"
    with Image.open(tmp_path / "a" / "r_files" / "02_colour_baseline" / "p0.png") as im:
        expected = from_style(painting, "colour")(Image.open(inputs / "p0.png"))
        assert np.array_equal(np.asarray(im.convert("RGB")), np.asarray(expected))

    code, _, err = compare(cli, inputs, tmp_path / "b" / "r.html", f"mine=style:{painting},method:colour,mode:mk")
    assert code == 0, err
    assert set(methods(tmp_path / "b" / "r.html")) == {"mine"}

    real = tmp_path / "real"
    for i in range(3):
        save_image(real / f"r{i}.png", smooth_image(30 + 10 * i, 40, 20 + i))
    code, _, err = cli(["compare", "--inputs", str(inputs), "--metrics", "ssim", "--out", str(tmp_path / "c" / "r.html"),
                        "--no-progress", "--method", f"copy={inputs}", "--real", str(real)])  # fmt: skip
    assert code == 0, err
    mosaic = tmp_path / "c" / "r_files" / "baseline-real-colours.png"
    assert methods(tmp_path / "c" / "r.html")["colour baseline"] == f"colour with style {mosaic}, colour_mode reinhard"
    with Image.open(mosaic) as im:  # each real image once, resized to one tile
        assert im.size == (3 * 96, 96)

    code, _, err = cli(["compare", "--inputs", str(inputs), "--metrics", "ssim", "--out", str(tmp_path / "d" / "r.html"),
                        "--no-progress", "--method", f"copy={inputs}", "--real", str(real), "--no-baseline"])  # fmt: skip
    assert code == 0, err
    assert set(methods(tmp_path / "d" / "r.html")) == {"copy"}


def test_domain_mosaic_takes_evenly_spaced_readable_images(tmp_path: Path) -> None:
    from brushwork.style.inputs import StyleInputError, domain_mosaic

    paths = [save_image(tmp_path / f"{i:02d}.png", np.full((20, 30, 3), i * 10, np.uint8)) for i in range(10)]
    (tmp_path / "bad.png").write_text("not an image\n")
    strip = np.asarray(domain_mosaic([*paths[:3], tmp_path / "bad.png", *paths[3:]], tile=8, limit=100))
    assert strip.shape == (8, 10 * 8, 3)
    assert [int(strip[0, 8 * i, 0]) for i in range(10)] == [i * 10 for i in range(10)]  # each image's own colour, in order
    strip = np.asarray(domain_mosaic(paths, tile=8, limit=5))
    assert [int(strip[0, 8 * i, 0]) for i in range(5)] == [0, 20, 40, 60, 80]  # every second one
    with pytest.raises(StyleInputError, match="could be read"):
        domain_mosaic([tmp_path / "bad.png"])
