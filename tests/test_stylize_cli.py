"""``brushwork stylize`` as a user runs it: folders, formats, bad files, overwrite, faithful pixels."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests._inference_helpers import cli_fixture, tiny_release

CLI = Callable[[list[str]], tuple[int, str, str]]
_ = cli_fixture  # the `cli` fixture


def photo(h: int = 24, w: int = 32, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (h // 4 + 1, w // 4 + 1, 3), dtype=np.uint8)
    return Image.fromarray(small).resize((w, h), Image.Resampling.BICUBIC)


@pytest.fixture
def model(tmp_path: Path) -> Path:
    return tiny_release(tmp_path / "model")


def test_folder_keeps_relative_paths_and_formats(tmp_path: Path, model: Path, cli: CLI) -> None:
    src = tmp_path / "in"
    (src / "sub" / "deeper").mkdir(parents=True)
    photo().save(src / "a.jpg")
    photo(30, 30).save(src / "sub" / "b.png")
    photo(17, 23).save(src / "sub" / "deeper" / "c.webp")
    code, out, err = cli(["stylize", str(src), "-m", str(model), "-o", str(tmp_path / "out"), "--no-progress"])
    assert code == 0, err
    assert "3 written, 0 skipped" in out
    for rel, size in (("a.jpg", (32, 24)), ("sub/b.png", (30, 30)), ("sub/deeper/c.webp", (23, 17))):
        with Image.open(tmp_path / "out" / rel) as im:
            assert im.size == size
    code, out, _ = cli(["stylize", str(src / "sub" / "*.png"), str(src / "a.jpg"), "-m", str(model), "-o",
                        str(tmp_path / "out2"), "--format", "png", "--size", "16", "--no-progress"])
    assert code == 0
    assert sorted(p.name for p in (tmp_path / "out2").rglob("*.png")) == ["a.png", "b.png"]
    with Image.open(tmp_path / "out2" / "a.png") as im:
        assert min(im.size) == 16


def test_side_by_side_writes_pairs(tmp_path: Path, model: Path, cli: CLI) -> None:
    photo().save(tmp_path / "a.png")
    code, _, _ = cli(["stylize", str(tmp_path / "a.png"), "-m", str(model), "-o", str(tmp_path / "out"), "--side-by-side", "--no-progress"])
    assert code == 0
    with Image.open(tmp_path / "out" / "a.png") as im:
        assert im.size == (64, 24)
        assert np.array_equal(np.asarray(im.convert("RGB"))[:, :32], np.asarray(photo()))


def test_official_pth_is_used_directly(tmp_path: Path, cli: CLI) -> None:
    import torch

    from tests._inference_helpers import tiny_generator

    torch.save(tiny_generator(n_blocks=3)[0].state_dict(), tmp_path / "latest_net_G_A.pth")
    photo().save(tmp_path / "a.png")
    code, _out, err = cli(["stylize", str(tmp_path / "a.png"), "-m", str(tmp_path / "latest_net_G_A.pth"), "-o", str(tmp_path / "out"), "--no-progress"])
    assert code == 0, err
    assert "resnet_3blocks" in err and (tmp_path / "out" / "a.png").is_file()


def _bad_inputs(folder: Path) -> dict[str, str]:
    """Write every kind of bad input; returns file name -> expected words in its message."""
    folder.mkdir()
    photo().save(folder / "good.jpg")
    (folder / "text.png").write_text("this is not an image\n")
    buf = io.BytesIO()
    photo(64, 64).save(buf, format="JPEG")
    (folder / "truncated.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    buf = io.BytesIO()
    photo(64, 64).save(buf, format="PNG")
    (folder / "truncated.png").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    (folder / "zero.jpg").write_bytes(b"")
    Image.new("RGB", (1, 1), (200, 10, 10)).save(folder / "one.png")
    return {"text.png": "not an image file", "truncated.jpg": "corrupt or truncated", "truncated.png": "corrupt or truncated",
            "zero.jpg": "empty (0 bytes)", "one.png": "1x1 pixels"}


def test_bad_files_fail_one_by_one_and_the_run_goes_on(tmp_path: Path, model: Path, cli: CLI) -> None:
    expected = _bad_inputs(tmp_path / "in")
    cmyk = photo().convert("CMYK")
    cmyk.save(tmp_path / "in" / "cmyk.jpg")
    frames = [photo(seed=1), photo(seed=2)]
    frames[0].save(tmp_path / "in" / "anim.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    code, out, err = cli(["stylize", str(tmp_path / "in"), str(tmp_path / "missing.jpg"), "-m", str(model),
                          "-o", str(tmp_path / "out"), "--no-progress"])
    assert code == 1
    assert "3 written" in out and "6 failed" in out
    failures = err.split("failed:", 1)[1]
    for name, words in expected.items():
        line = next(line for line in failures.splitlines() if name in line)
        assert words in line, line
    assert "missing.jpg: file does not exist" in failures
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == ["anim.png", "cmyk.jpg", "good.jpg"]  # CMYK converted; GIF -> first frame as PNG
    assert "has 2 frames; using the first" in err
    with Image.open(tmp_path / "out" / "cmyk.jpg") as im:
        assert im.mode == "RGB"


def test_unwritable_output_folder_is_one_clear_error(tmp_path: Path, model: Path, cli: CLI) -> None:
    photo().save(tmp_path / "a.png")
    (tmp_path / "blocker").write_text("a file where the output folder should go")
    code, _out, err = cli(["stylize", str(tmp_path / "a.png"), "-m", str(model), "-o", str(tmp_path / "blocker" / "out")])
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines[-1].startswith("error: output folder") and "blocker/out cannot be written" in lines[-1]


def test_existing_outputs_are_kept_unless_overwrite(tmp_path: Path, model: Path, cli: CLI) -> None:
    photo().save(tmp_path / "a.png")
    out_file = tmp_path / "out" / "a.png"
    assert cli(["stylize", str(tmp_path / "a.png"), "-m", str(model), "-o", str(tmp_path / "out"), "--no-progress"])[0] == 0
    first = out_file.read_bytes()
    other = tiny_release(tmp_path / "other", seed=9)
    code, out, _ = cli(["stylize", str(tmp_path / "a.png"), "-m", str(other), "-o", str(tmp_path / "out"), "--no-progress"])
    assert code == 0 and "0 written, 1 skipped" in out and out_file.read_bytes() == first
    code, out, _ = cli(["stylize", str(tmp_path / "a.png"), "-m", str(other), "-o", str(tmp_path / "out"), "--overwrite", "--no-progress"])
    assert code == 0 and "1 written" in out and out_file.read_bytes() != first


def test_alpha_icc_exif_gray_and_16_bit_files(tmp_path: Path, model: Path, cli: CLI) -> None:
    src = tmp_path / "in"
    src.mkdir()
    rgba = photo().convert("RGBA")
    alpha = Image.fromarray((np.arange(24 * 32).reshape(24, 32) % 256).astype(np.uint8))
    rgba.putalpha(alpha)
    from PIL import ImageCms

    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    rgba.save(src / "alpha.png", icc_profile=icc)
    exif = Image.Exif()
    exif[0x0112] = 6
    photo(20, 40).save(src / "rotated.jpg", exif=exif.tobytes())
    photo().convert("L").save(src / "gray.jpg")
    Image.fromarray(np.asarray(photo().convert("L")).astype(np.uint16) * 257).save(src / "deep.png")
    code, _, err = cli(["stylize", str(src), "-m", str(model), "-o", str(tmp_path / "out"), "--no-progress"])
    assert code == 0, err
    with Image.open(tmp_path / "out" / "alpha.png") as im:
        assert im.mode == "RGBA" and np.array_equal(np.asarray(im)[:, :, 3], np.asarray(alpha))
        assert im.info.get("icc_profile") == icc
    with Image.open(tmp_path / "out" / "rotated.jpg") as im:
        assert im.size == (20, 40)
    with Image.open(tmp_path / "out" / "gray.jpg") as im:
        assert im.mode == "RGB"
    with Image.open(tmp_path / "out" / "deep.png") as im:
        assert im.mode == "RGB" and im.size == (32, 24)


def test_bad_model_and_options_are_one_line_errors(tmp_path: Path, cli: CLI) -> None:
    photo().save(tmp_path / "a.png")
    (tmp_path / "notes.pth").write_text("not a model")
    code, _, err = cli(["stylize", str(tmp_path / "a.png"), "-m", str(tmp_path / "notes.pth")])
    assert code == 2 and "notes.pth is not a readable PyTorch state dict" in err
    code, _, err = cli(["stylize", str(tmp_path / "a.png"), "-m", "no_such_model"])
    assert code == 2 and "published names" in err
    model = tiny_release(tmp_path / "m")
    code, _, err = cli(["stylize", str(tmp_path / "a.png"), "-m", str(model), "--format", "gif"])
    assert code == 2 and "--format" in err


def direct_forward(img: Image.Image, seed: int = 0) -> np.ndarray:
    """What the release made by ``tiny_release(seed=seed)`` should write for ``img``, computed
    without the pipeline: the same network called on the plain NCHW fp32 tensor, reflection-padded
    to a multiple of 4 and cropped back, mapped [0, 255] -> [-1, 1] and back, rounded."""
    import torch
    import torch.nn.functional as F

    from tests._inference_helpers import tiny_generator

    net, _ = tiny_generator(seed)
    x = torch.from_numpy(np.asarray(img.convert("RGB"), dtype=np.float32)).permute(2, 0, 1)[None] / 127.5 - 1
    h, w = x.shape[-2:]
    x = F.pad(x, (0, -w % 4, 0, -h % 4), mode="reflect")
    with torch.no_grad():
        y = net(x)[0, :, :h, :w]
    return ((y + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()


def assert_within_one_level(got: np.ndarray, expected: np.ndarray, what: str) -> None:
    """fp32 forward passes that differ only in summation order (channels_last, batching) differ by
    ~1e-6 in [-1, 1], i.e. ~1e-4 of an 8-bit level: rounding can move a value by at most one
    level, and only when it lies within that distance of a .5 boundary (a tiny fraction)."""
    assert got.shape == expected.shape, what
    diff = np.abs(got.astype(np.int16) - expected.astype(np.int16))
    assert diff.max() <= 1, f"{what}: {diff.max()} levels apart"
    assert (diff > 0).mean() < 0.01, f"{what}: {(diff > 0).mean():.2%} of the values differ"


def test_written_pixels_equal_the_api_and_a_direct_forward_pass(tmp_path: Path, model: Path, cli: CLI) -> None:
    from brushwork.inference import Stylizer

    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    images = {"a.png": photo(24, 32, seed=1), "sub/b.png": photo(30, 45, seed=2), "c.jpg": photo(36, 28, seed=3)}
    for rel, img in images.items():
        img.save(src / rel)
    code, _, err = cli(["stylize", str(src), "-m", str(model), "-o", str(tmp_path / "out"), "--format", "png",
                        "--precision", "fp32", "--no-progress"])  # fmt: skip
    assert code == 0, err
    api = Stylizer.from_pretrained(model, device="cpu", precision="fp32")
    for rel in images:
        with Image.open(src / rel) as im:
            source = im.convert("RGB")  # the decoded input (JPEG included), as the CLI read it
        with Image.open((tmp_path / "out" / rel).with_suffix(".png")) as im:
            written = np.asarray(im.convert("RGB"))
        assert np.array_equal(written, np.asarray(api(source))), rel  # the CLI is a thin wrapper of the API
        assert_within_one_level(written, direct_forward(source), rel)
        assert written.std() > 5  # a textured output, not a flat one that would match anything


def test_real_photos_at_several_sizes(tmp_path: Path, model: Path, cli: CLI, shared_data: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    photos = sorted((shared_data / "testB").glob("*.jpg"))[:2] + sorted((shared_data / "testA").glob("*.jpg"))[:1]
    for i, path in enumerate(photos):
        with Image.open(path) as im:
            im.resize((im.width * (i + 1) // 2 + 3, im.height * (i + 2) // 3 + 1)).save(src / f"p{i}.jpg")
    code, _out, err = cli(["stylize", str(src), "-m", str(model), "-o", str(tmp_path / "out"), "--no-progress"])
    assert code == 0, err
    for i in range(len(photos)):
        with Image.open(src / f"p{i}.jpg") as a, Image.open(tmp_path / "out" / f"p{i}.jpg") as b:
            assert a.size == b.size
    # the same photos, written losslessly in fp32: the pixels of a direct forward pass
    code, _out, err = cli(["stylize", str(src), "-m", str(model), "-o", str(tmp_path / "png"), "--format", "png",
                           "--precision", "fp32", "--no-progress"])  # fmt: skip
    assert code == 0, err
    for i in range(len(photos)):
        with Image.open(src / f"p{i}.jpg") as a, Image.open(tmp_path / "png" / f"p{i}.png") as b:
            assert_within_one_level(np.asarray(b.convert("RGB")), direct_forward(a.convert("RGB")), f"p{i}")


def test_output_folder_inside_the_input_folder_is_never_an_input(tmp_path: Path, model: Path, cli: CLI,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "400")  # log lines unwrapped
    photos = tmp_path / "photos"
    (photos / "sub").mkdir(parents=True)
    photo(seed=1).save(photos / "a.png")
    photo(seed=2).save(photos / "sub" / "b.png")
    styled = photos / "styled"
    args = ["stylize", str(photos), "-m", str(model), "-o", str(styled), "--no-progress"]
    code, out, err = cli(args)
    assert code == 0, err
    assert "2 written, 0 skipped" in out
    code, out, err = cli(args)  # the second run sees styled/ but must not stylise it again
    assert code == 0, err
    assert "0 written, 2 skipped" in out
    assert f"leaving out {styled}: it is the output folder, inside the input folder {photos}" in out + err
    assert sorted(p.relative_to(styled).as_posix() for p in styled.rglob("*.png")) == ["a.png", "sub/b.png"]
    # a recursive glob below the input folder leaves the outputs out too
    code, out, err = cli(["stylize", str(photos / "**" / "*.png"), "-m", str(model), "-o", str(styled), "--overwrite", "--no-progress"])
    assert code == 0, err
    assert "2 written" in out and "leaving out 2 file(s)" in out + err
    assert not (styled / "styled").exists()
