"""Statistical colour transfer: each mode reaches the statistics it promises; identity, strength, kinds."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from brushwork.style import from_style
from brushwork.style.colour import (
    COLOUR_MODES,
    histogram_match,
    lab_to_rgb,
    mk_matrix,
    monge_kantorovich,
    reinhard,
    rgb_to_lab,
    rgb_to_yiq,
    transfer_colour,
    with_chroma_of,
)
from brushwork.style.inputs import StyleInputError
from tests._style_helpers import no_downloads, one_torch_thread, smooth_image

_ = (one_torch_thread, no_downloads)


def unit(arr: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).double() / 255


@pytest.fixture
def pair() -> tuple[torch.Tensor, torch.Tensor]:
    """A photo and a differently coloured 'painting' (float64, so the checks below are at 1e-10)."""
    photo = unit(smooth_image(40, 52, seed=1))
    painting = unit(smooth_image(36, 30, seed=2)) * torch.tensor([0.9, 0.5, 0.3], dtype=torch.float64).view(3, 1, 1) + 0.05
    return photo, painting


def test_lab_round_trip_is_exact() -> None:
    x = unit(smooth_image(16, 16, seed=3))
    torch.testing.assert_close(lab_to_rgb(rgb_to_lab(x)), x, atol=1e-12, rtol=0)


def test_reinhard_matches_mean_and_std_in_lab(pair: tuple[torch.Tensor, torch.Tensor]) -> None:
    photo, painting = pair
    out = reinhard(photo, painting)  # unclipped: clipping to [0, 1] would move the statistics
    lab_out, lab_style = rgb_to_lab(out).reshape(3, -1), rgb_to_lab(painting).reshape(3, -1)
    # float64 through two 3x3 maps, a log and an exp: errors of order 1e-15 per value
    torch.testing.assert_close(lab_out.mean(1), lab_style.mean(1), atol=1e-10, rtol=0)
    torch.testing.assert_close(lab_out.std(1, correction=0), lab_style.std(1, correction=0), atol=1e-10, rtol=0)


def test_mk_matches_mean_and_covariance_exactly(pair: tuple[torch.Tensor, torch.Tensor]) -> None:
    photo, painting = pair
    out = monge_kantorovich(photo, painting).reshape(3, -1)
    style = painting.reshape(3, -1)
    torch.testing.assert_close(out.mean(1), style.mean(1), atol=1e-12, rtol=0)
    # cov(out) = T (S + eps I) T - eps T^2 ... = Ss up to eps * |T|^2 (eps 1e-10) and float64 rounding
    torch.testing.assert_close(torch.cov(out, correction=0), torch.cov(style, correction=0), atol=1e-9, rtol=0)


def test_mk_matrix_is_the_symmetric_solution() -> None:
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(3, 3, generator=gen, dtype=torch.float64), torch.randn(3, 3, generator=gen, dtype=torch.float64)
    sc, ss = a @ a.T + 0.1 * torch.eye(3, dtype=torch.float64), b @ b.T + 0.1 * torch.eye(3, dtype=torch.float64)
    t = mk_matrix(sc, ss)
    torch.testing.assert_close(t, t.T, atol=1e-10, rtol=0)
    torch.testing.assert_close(t @ sc @ t, ss, atol=1e-9, rtol=0)
    assert torch.linalg.eigvalsh(t).min() > 0  # positive definite: the map that moves pixels least


def test_histogram_matching_is_exact_without_ties() -> None:
    gen = torch.Generator().manual_seed(0)
    photo, painting = torch.rand(3, 20, 25, generator=gen, dtype=torch.float64), torch.rand(3, 25, 20, generator=gen, dtype=torch.float64) ** 3
    out = histogram_match(photo, painting)
    for c in range(3):  # equal sizes, distinct values: every value lands on one of the style's (up to the
        # rounding of the interpolation weight, ~1e-16), in rank order
        torch.testing.assert_close(out[c].flatten().sort().values, painting[c].flatten().sort().values, atol=1e-14, rtol=0)
        assert torch.equal(out[c].flatten().argsort(), photo[c].flatten().argsort())


def test_histogram_matching_keeps_ties_together_and_matches_quantiles(pair: tuple[torch.Tensor, torch.Tensor]) -> None:
    photo, painting = pair  # 8-bit values: many ties
    out = histogram_match(photo, painting)
    for c in range(3):
        x, y = photo[c].flatten(), out[c].flatten()
        for v in x.unique()[:20]:
            assert y[x == v].unique().numel() == 1  # equal inputs stay equal
        # monotone: a larger input never gets a smaller output
        order = x.argsort()
        assert bool((y[order].diff() >= -1e-12).all())
        # quantiles close to the style's (ties make steps of at most one input level's share)
        q = torch.linspace(0.05, 0.95, 19, dtype=torch.float64)
        assert torch.quantile(y, q).sub(torch.quantile(painting[c].flatten(), q)).abs().max() < 0.05


@pytest.mark.parametrize("mode", COLOUR_MODES)
def test_style_equal_to_content_is_the_identity(mode: str) -> None:
    arr = smooth_image(24, 31, seed=4)
    img = Image.fromarray(arr)
    pipe = from_style(img, method="colour", colour_mode=mode)
    assert np.array_equal(np.asarray(pipe(img)), arr)


@pytest.mark.parametrize("mode", COLOUR_MODES)
def test_kinds_shapes_and_strength(mode: str) -> None:
    photo, painting = smooth_image(20, 28, seed=5), smooth_image(30, 30, seed=6)
    pipe = from_style(Image.fromarray(painting), method="colour", colour_mode=mode)
    out = pipe(photo)
    assert out.shape == photo.shape and out.dtype == np.uint8 and not np.array_equal(out, photo)
    as_float = pipe(photo.astype(np.float32) / 255)
    assert as_float.dtype == np.float32 and as_float.shape == photo.shape
    assert np.array_equal(from_style(Image.fromarray(painting), method="colour", colour_mode=mode, strength=0.0)(photo), photo)
    half = from_style(Image.fromarray(painting), method="colour", colour_mode=mode, strength=0.5)(photo)
    # a blend of the (rounded) full result and the photo, itself rounded: within one level
    assert np.abs(half.astype(int) * 2 - out.astype(int) - photo.astype(int)).max() <= 2


def test_transfer_colour_clips_and_names_bad_modes(pair: tuple[torch.Tensor, torch.Tensor]) -> None:
    photo, painting = pair
    out = transfer_colour(photo, painting * 1.5, "mk")
    assert out.min() >= 0 and out.max() <= 1
    with pytest.raises(ValueError, match="reinhard, histogram, mk"):
        transfer_colour(photo, painting, "lab")
    with pytest.raises(StyleInputError, match="reinhard, histogram, mk"):
        from_style(Image.fromarray(smooth_image(20, 20)), method="colour", colour_mode="lab")


def test_colour_rejects_several_styles_and_preserve_colour() -> None:
    a, b = Image.fromarray(smooth_image(20, 20, seed=1)), Image.fromarray(smooth_image(20, 20, seed=2))
    with pytest.raises(StyleInputError, match="one style image"):
        from_style([a, b], method="colour")
    with pytest.raises(StyleInputError, match="preserve_colour"):
        from_style(a, method="colour", preserve_colour=True)
    with pytest.raises(StyleInputError, match="no option 'iterations'"):
        from_style(a, method="colour", iterations=3)


def test_with_chroma_of_keeps_the_photo_colours() -> None:
    photo, other = unit(smooth_image(16, 16, seed=7)).float(), unit(smooth_image(16, 16, seed=8)).float()
    torch.testing.assert_close(with_chroma_of(photo, photo), photo, atol=1e-6, rtol=0)
    mixed = with_chroma_of(other, photo)
    inside = ((mixed > 0) & (mixed < 1)).all(0)  # where nothing was clipped
    torch.testing.assert_close(rgb_to_yiq(mixed)[1:, inside], rgb_to_yiq(photo)[1:, inside], atol=1e-5, rtol=0)
    torch.testing.assert_close(rgb_to_yiq(mixed)[0, inside], rgb_to_yiq(other)[0, inside], atol=1e-5, rtol=0)


@pytest.mark.parametrize("on_grid", [True, False])
def test_histogram_paths_equal_the_definition(on_grid: bool) -> None:
    """The 8-bit histogram path (photos) and the sorting path give numpy's mid-rank + interp definition."""
    from brushwork.style.colour import match_channel

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, 5000) / 255.0
    ref = (rng.integers(0, 256, 3000) ** 2 // 255) / 255.0
    if not on_grid:
        x, ref = x + rng.uniform(0, 1e-3, x.shape), ref + rng.uniform(0, 1e-3, ref.shape)
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    quantile = (np.cumsum(counts) - counts / 2) / x.size
    expected = np.interp(quantile, (np.arange(ref.size) + 0.5) / ref.size, np.sort(ref))[inverse]
    got = match_channel(torch.from_numpy(x), torch.from_numpy(ref)).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-12, rtol=0)


def test_stylizer_from_style_and_method_names() -> None:
    from brushwork.inference import Stylizer
    from brushwork.registry import RegistryError
    from brushwork.style import ColourTransferPipeline

    painting = Image.fromarray(smooth_image(20, 20, seed=9))
    pipe = Stylizer.from_style(painting, method="colour", colour_mode="histogram")
    assert isinstance(pipe, ColourTransferPipeline) and pipe.kind == "colour-transfer" and "histogram" in pipe.describe()
    with pytest.raises(RegistryError, match="adain, colour, gatys"):
        Stylizer.from_style(painting, method="cezanne")
