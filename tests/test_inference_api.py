"""The Python API: PIL, numpy and tensors in, the same kind out; faithful pixels; precision."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from brushwork.inference import Stylizer
from brushwork.inference.stylizer import ImageTooSmallError
from tests._inference_helpers import tiny_generator, tiny_release


@pytest.fixture(scope="module")
def stylizer() -> Stylizer:
    net, config = tiny_generator(n_blocks=2, ngf=4)
    return Stylizer(net, config, device="cpu", precision="fp32")


def rgb_array(h: int = 20, w: int = 28, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_from_pretrained_round_trip_pil(tmp_path: Path) -> None:
    tiny_release(tmp_path / "rel")
    stylizer = Stylizer.from_pretrained(tmp_path / "rel", device="cpu", precision="fp32")
    img = Image.fromarray(rgb_array())
    out = stylizer(img)
    assert isinstance(out, Image.Image) and out.mode == "RGB" and out.size == img.size
    # the same pixels through the tensor core
    x = torch.from_numpy(rgb_array()).permute(2, 0, 1)[None]
    assert np.array_equal(np.asarray(out), stylizer.translate(x)[0].permute(1, 2, 0).numpy())


def test_path_input_gives_pil(tmp_path: Path, stylizer: Stylizer) -> None:
    Image.fromarray(rgb_array()).save(tmp_path / "a.png")
    assert isinstance(stylizer(tmp_path / "a.png"), Image.Image)
    assert isinstance(stylizer(str(tmp_path / "a.png")), Image.Image)


def test_alpha_is_carried_through_unchanged(stylizer: Stylizer) -> None:
    rgba = np.dstack([rgb_array(), np.arange(20 * 28, dtype=np.uint16).reshape(20, 28) % 256]).astype(np.uint8)
    out = stylizer(Image.fromarray(rgba, mode="RGBA"))
    assert out.mode == "RGBA" and np.array_equal(np.asarray(out)[:, :, 3], rgba[:, :, 3])
    out_arr = stylizer(rgba)
    assert out_arr.shape == rgba.shape and np.array_equal(out_arr[:, :, 3], rgba[:, :, 3])


def test_grayscale_and_16_bit_inputs(stylizer: Stylizer) -> None:
    gray = rgb_array()[:, :, 0]
    out = stylizer(Image.fromarray(gray, mode="L"))
    assert out.mode == "RGB" and out.size == (28, 20)
    out = stylizer(gray)
    assert out.shape == (20, 28, 3) and out.dtype == np.uint8
    wide = (rgb_array().astype(np.uint16) * 257)
    out16 = stylizer(wide)
    assert out16.dtype == np.uint16 and out16.shape == wide.shape
    # 16-bit in gives the same picture as its 8-bit version, scaled back to 16 bits
    assert np.array_equal(out16, stylizer(rgb_array()).astype(np.uint16) * 257)
    i16 = Image.fromarray(gray.astype(np.uint16) * 257)
    assert i16.mode.startswith("I;16") and stylizer(i16).size == (28, 20)


def test_float_and_tensor_inputs_keep_their_kind(stylizer: Stylizer) -> None:
    f = rgb_array().astype(np.float32) / 255
    out = stylizer(f)
    assert out.dtype == np.float32 and out.shape == f.shape and out.min() >= 0 and out.max() <= 1
    t = torch.from_numpy(f).permute(2, 0, 1)
    out_t = stylizer(t)
    assert out_t.dtype == torch.float32 and out_t.shape == t.shape
    batch = torch.stack([t, t.flip(-1)])
    out_b = stylizer(batch)
    assert out_b.shape == batch.shape
    torch.testing.assert_close(out_b[0], out_t, atol=1.01 / 255, rtol=0)  # batched kernels may round one level apart
    u8 = torch.from_numpy(rgb_array()).permute(2, 0, 1)
    assert stylizer(u8).dtype == torch.uint8


def test_lists_come_back_as_lists_in_order(stylizer: Stylizer) -> None:
    imgs = [Image.fromarray(rgb_array(seed=i, h=16 + 4 * (i % 2))) for i in range(5)]
    outs = stylizer(imgs)
    assert isinstance(outs, list) and [o.size for o in outs] == [i.size for i in imgs]
    alone = np.asarray(stylizer(imgs[3])).astype(int)
    assert np.abs(np.asarray(outs[3]).astype(int) - alone).max() <= 1  # batched == alone, to one 8-bit level


def test_exif_orientation_is_applied(stylizer: Stylizer, tmp_path: Path) -> None:
    img = Image.fromarray(rgb_array(h=20, w=40))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    img.save(tmp_path / "o.jpg", exif=exif.tobytes())
    assert stylizer(tmp_path / "o.jpg").size == (20, 40)
    with Image.open(tmp_path / "o.jpg") as opened:
        assert stylizer(opened).size == (20, 40)


@pytest.mark.parametrize("size", [(37, 53), (5, 7), (4, 4), (130, 6)])
def test_any_size_comes_back_the_same_size(stylizer: Stylizer, size: tuple[int, int]) -> None:
    h, w = size
    assert stylizer(rgb_array(h, w)).shape == (h, w, 3)


@pytest.mark.parametrize("size", [(1, 1), (3, 40)])
def test_too_small_images_are_refused(stylizer: Stylizer, size: tuple[int, int]) -> None:
    with pytest.raises(ImageTooSmallError, match=rf"{size[1]}x{size[0]} pixels is too small"):
        stylizer(rgb_array(*size))


def test_unsupported_inputs_say_what_they_got(stylizer: Stylizer) -> None:
    with pytest.raises(TypeError, match="cannot stylise a dict"):
        stylizer({"a": 1})
    with pytest.raises(ValueError, match=r"got shape \(5, 20, 28\)"):
        stylizer(np.zeros((5, 20, 28), dtype=np.uint8).transpose(1, 2, 0).transpose(2, 0, 1))


def test_caller_model_is_not_modified() -> None:
    net, config = tiny_generator()
    Stylizer(net, config, device="cpu", precision="bf16")
    assert next(net.parameters()).dtype == torch.float32


def test_precision_choice_and_bf16_quality() -> None:
    net, config = tiny_generator(n_blocks=3, ngf=8, gain=0.05)
    assert Stylizer(net, config, device="cpu", precision="fp32").dtype == torch.float32
    with pytest.raises(ValueError, match="fp16 is not supported on the CPU"):
        Stylizer(net, config, device="cpu", precision="fp16")
    x = torch.from_numpy(rgb_array(64, 64)).permute(2, 0, 1)[None]
    a = Stylizer(net, config, device="cpu", precision="fp32").translate(x).float()
    b = Stylizer(net, config, device="cpu", precision="bf16").translate(x).float()
    mse = float(((a - b) ** 2).mean())
    assert mse > 0  # bf16 really ran
    assert 10 * math.log10(255**2 / mse) > 35
