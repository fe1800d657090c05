"""Reading images faithfully, the preprocessing modes, and the unpaired dataset."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from brushwork.config import DataConfig
from brushwork.data.builders import build_unpaired
from brushwork.data.imageio import ImageReadError, read_image
from brushwork.data.transforms import Preprocess
from brushwork.data.unpaired import DatasetError, epoch_keys
from tests.conftest import write_images


def test_grayscale_palette_rgba_become_rgb(tmp_path: Path) -> None:
    gray = tmp_path / "g.png"
    Image.fromarray(np.full((4, 5), 77, np.uint8), "L").save(gray)
    loaded = read_image(gray)
    assert loaded.rgb.mode == "RGB" and loaded.rgb.getpixel((0, 0)) == (77, 77, 77)

    pal = Image.new("P", (3, 3))
    pal.putpalette([10, 20, 30] * 256)
    pal.save(tmp_path / "p.png")
    assert read_image(tmp_path / "p.png").rgb.getpixel((1, 1)) == (10, 20, 30)

    rgba = Image.new("RGBA", (3, 3), (200, 100, 50, 128))
    rgba.save(tmp_path / "a.png")
    loaded = read_image(tmp_path / "a.png")
    assert loaded.rgb.getpixel((0, 0)) == (200, 100, 50)
    assert loaded.alpha is not None and loaded.alpha.getpixel((0, 0)) == 128


def test_16_bit_png_keeps_its_range(tmp_path: Path) -> None:
    arr = np.array([[0, 32896, 65535]], dtype=np.uint16)
    Image.fromarray(arr).save(tmp_path / "deep.png")
    rgb = read_image(tmp_path / "deep.png").rgb
    assert [rgb.getpixel((i, 0))[0] for i in range(3)] == [0, 128, 255]


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    img = Image.new("RGB", (6, 2), (255, 0, 0))
    img.putpixel((0, 0), (0, 0, 255))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW to display
    img.save(tmp_path / "rot.jpg", exif=exif.tobytes(), quality=100)
    loaded = read_image(tmp_path / "rot.jpg").rgb
    assert loaded.size == (2, 6)


def test_cmyk_jpeg_is_converted(tmp_path: Path) -> None:
    Image.new("CMYK", (4, 4), (0, 255, 255, 0)).save(tmp_path / "cmyk.jpg")  # pure red in CMYK
    r, g, b = read_image(tmp_path / "cmyk.jpg").rgb.getpixel((1, 1))
    assert r > 200 and g < 60 and b < 60


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"", "file is empty"), (b"not an image at all", "not an image file"), (None, "corrupt or truncated")],
)
def test_unreadable_files_name_the_file(tmp_path: Path, content: bytes | None, message: str) -> None:
    path = tmp_path / "bad.jpg"
    if content is None:
        buf = io.BytesIO()
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buf, "JPEG")
        content = buf.getvalue()[: len(buf.getvalue()) // 2]
    path.write_bytes(content)
    with pytest.raises(ImageReadError, match=rf"bad.jpg: {message}"):
        read_image(path)


@pytest.mark.parametrize(
    ("mode", "size", "expected"),
    [
        ("resize_and_crop", (50, 40), (3, 32, 32)),
        ("crop", (50, 40), (3, 32, 32)),
        ("scale_width", (50, 40), (3, 32, 36)),  # width 36; height 28 raised to the crop size
        ("scale_width_and_crop", (50, 40), (3, 32, 32)),
        ("none", (50, 41), (3, 40, 48)),  # sides rounded to multiples of 4 (round half to even)
    ],
)
def test_preprocess_modes(mode: str, size: tuple[int, int], expected: tuple[int, int, int]) -> None:
    pre = Preprocess(mode, load_size=36, crop_size=32, flip=True)
    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))
    out = pre.augment(pre.prepare(img), torch.Generator().manual_seed(0))
    assert out.dtype == torch.float32 and out.min() >= -1 and out.max() <= 1
    assert tuple(out.shape) == expected  # (C, H, W)


def test_flip_and_crop_follow_the_generator() -> None:
    pre = Preprocess("crop", load_size=8, crop_size=4, flip=True)
    x = torch.arange(3 * 8 * 8, dtype=torch.uint8).reshape(3, 8, 8)
    a = pre.augment(x, torch.Generator().manual_seed(5))
    b = pre.augment(x, torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    outs = {pre.augment(x, torch.Generator().manual_seed(s)).sum().item() for s in range(20)}
    assert len(outs) > 3  # different crops and flips


def test_epoch_length_and_b_drawn_at_random() -> None:
    keys = epoch_keys(3, 7, seed=0, epoch=0)
    assert len(keys) == 7  # max(|A|, |B|)
    assert sorted(k[0] for k in keys) == sorted(i % 3 for i in range(7))  # every A image, in turn
    assert keys == epoch_keys(3, 7, seed=0, epoch=0)
    assert keys != epoch_keys(3, 7, seed=0, epoch=1)
    draws = [k[1] for e in range(30) for k in epoch_keys(3, 7, seed=0, epoch=e)]
    assert set(draws) == set(range(7))
    serial = epoch_keys(3, 7, seed=0, epoch=0, serial=True)
    assert [k[1] for k in serial] == list(range(7))


def test_unpaired_dataset_items(tiny_data: Path) -> None:
    data = build_unpaired(config=DataConfig(root=str(tiny_data), load_size=36, crop_size=32, num_workers=0), seed=0)
    assert len(data.dataset) == 9
    item = data.dataset[next(iter(data.sampler))]
    assert item["A"].shape == (3, 32, 32) and item["B"].shape == (3, 32, 32)
    assert data.sample_batch["A"].shape == (2, 3, 32, 32)  # from testA


def test_two_arbitrary_folders_and_size_limit(tmp_path: Path) -> None:
    write_images(tmp_path / "photos", 5)
    write_images(tmp_path / "paintings", 4, suffix=".jpg")
    cfg = DataConfig(dir_a=str(tmp_path / "photos"), dir_b=str(tmp_path / "paintings"), load_size=36, crop_size=32, max_dataset_size=3)
    data = build_unpaired(config=cfg, seed=0)
    assert len(data.dataset) == 3


def test_missing_and_empty_folders_are_explained(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"expected .*/nowhere/trainA and .*/nowhere/trainB"):
        build_unpaired(config=DataConfig(root=str(tmp_path / "nowhere")), seed=0)
    write_images(tmp_path / "d" / "trainA", 2)
    (tmp_path / "d" / "trainB").mkdir()
    with pytest.raises(DatasetError, match=r"domain B .*trainB\) holds no images"):
        build_unpaired(config=DataConfig(root=str(tmp_path / "d")), seed=0)


def test_bad_images_fail_or_are_skipped(tiny_data: Path) -> None:
    (tiny_data / "trainB" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    cfg = DataConfig(root=str(tiny_data), load_size=36, crop_size=32)
    with pytest.raises(DatasetError, match=r"broken.png.*--skip-bad-images"):
        build_unpaired(config=cfg, seed=0)
    data = build_unpaired(config=DataConfig(root=str(tiny_data), load_size=36, crop_size=32, skip_bad_images=True), seed=0)
    assert [p.name for p in data.skipped] == ["broken.png"]
    assert len(data.dataset) == 9
