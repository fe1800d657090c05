"""Feature extraction (mixed sizes, order, cache) and the content-preservation scores."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from metrics_helpers import write_images
from PIL import Image, ImageFilter

from brushwork.metrics import (
    LPIPS,
    FeatureCache,
    InceptionExtractor,
    MetricUnavailable,
    load_uint8,
    ssim,
)
from brushwork.metrics.evaluate import MetricInputError, by_name, images_in, match_by_name
from brushwork.metrics.scores import lpips_unavailable_reason, match_size


def test_mixed_sizes_run_through_the_real_network_in_order(inception_weights: Path) -> None:
    extractor = InceptionExtractor(inception_weights, batch_size=4)
    g = torch.Generator().manual_seed(0)
    images = [torch.randint(0, 256, size, dtype=torch.uint8, generator=g) for size in [(3, 32, 32), (3, 40, 56), (3, 32, 32)]]
    together = extractor.extract(images)
    alone = [extractor.extract([img]) for img in images]
    for i, single in enumerate(alone):
        assert torch.allclose(together.pool[i], single.pool[0], rtol=1e-4, atol=1e-5)
        assert torch.allclose(together.logits[i], single.logits[0], rtol=1e-4, atol=1e-4)
    assert not torch.allclose(together.pool[0], together.pool[2])


def test_batches_group_sizes_and_keep_order(inception_weights: Path, cheap_inception: list[int]) -> None:
    extractor = InceptionExtractor(inception_weights, batch_size=2)
    sizes = [(3, 8, 8), (3, 9, 8), (3, 8, 8), (3, 8, 8), (3, 9, 8)]
    images = [torch.full(s, i * 20, dtype=torch.uint8) for i, s in enumerate(sizes)]
    feats = extractor.extract(images)
    assert sorted(cheap_inception) == [1, 2, 2]  # (8x8, 8x8), (9x8, 9x8), (8x8)
    for i, img in enumerate(images):
        assert torch.allclose(feats.pool[i], extractor.extract([img]).pool[0], rtol=1e-5, atol=1e-6)
    with pytest.raises(TypeError, match="uint8"):
        extractor.extract([torch.zeros(3, 8, 8)])
    with pytest.raises(MetricInputError, match="no images"):
        extractor.extract([])


def test_feature_cache_reuses_and_invalidates(tmp_path: Path, inception_weights: Path, cheap_inception: list[int]) -> None:
    files = write_images(tmp_path / "real", 5)
    cache = FeatureCache(tmp_path / "cache")
    extractor = InceptionExtractor(inception_weights)
    first = extractor.extract_files(files, cache=cache)
    assert sum(cheap_inception) == 5 and len(list(cache.root.glob("*.pt"))) == 1
    again = extractor.extract_files(files, cache=cache)
    assert sum(cheap_inception) == 5  # no forward pass: served from the cache
    assert torch.equal(first.pool, again.pool) and torch.equal(first.logits, again.logits)
    os.utime(files[2], ns=(1, 1))  # a changed file means new features
    extractor.extract_files(files, cache=cache)
    assert sum(cheap_inception) == 10
    assert cache.key(files, "a" * 64) != cache.key(files, "b" * 64)  # other weights, other entry
    for entry in cache.root.glob("*.pt"):
        entry.write_bytes(b"torn")
    extractor.extract_files(files, cache=cache)  # a corrupt entry is recomputed, not trusted
    assert sum(cheap_inception) == 15


def test_images_and_names(tmp_path: Path) -> None:
    with pytest.raises(MetricInputError, match="does not exist"):
        images_in(tmp_path / "nope", "--real")
    (tmp_path / "empty").mkdir()
    with pytest.raises(MetricInputError, match="holds no images"):
        images_in(tmp_path / "empty", "--fake")
    inputs = [Path("in/a.jpg"), Path("in/b.jpg"), Path("in/c.jpg"), Path("in/sub/a.jpg")]
    outputs = [Path("out/a_fake.png"), Path("out/c_fake.png"), Path("out/d_fake.png"), Path("out/a_real.png"),
               Path("out/sub/a_fake.png")]  # fmt: skip
    m = match_by_name(inputs, outputs, input_root=Path("in"), output_root=Path("out"), strip_suffixes=["_fake"])
    assert [(n, i.as_posix(), o.as_posix()) for n, i, o in m.pairs] == [
        ("a", "in/a.jpg", "out/a_fake.png"), ("c", "in/c.jpg", "out/c_fake.png"), ("sub/a", "in/sub/a.jpg", "out/sub/a_fake.png")]
    assert m.missing == ["b"] and m.extra == ["d", "a_real"]
    with pytest.raises(MetricInputError, match="both have the name 'x'"):
        by_name([Path("in/x.png"), Path("in/x.jpg")], Path("in"))


def test_ssim_identity_degradation_and_size_mismatch(tmp_path: Path) -> None:
    path = write_images(tmp_path, 1, size=48, kind="stripes")[0]
    img = load_uint8(path)
    assert ssim(img, img) == pytest.approx(1.0, abs=1e-9)
    blurred = Image.open(path).filter(ImageFilter.GaussianBlur(2))
    blurred.save(tmp_path / "blur.png")
    low = ssim(img, load_uint8(tmp_path / "blur.png"))
    assert 0 < low < 0.9
    Image.open(path).resize((96, 96), Image.Resampling.BICUBIC).save(tmp_path / "big.png")
    assert ssim(img, load_uint8(tmp_path / "big.png")) > low  # resized back to the input's size first


def test_lpips_unavailable_without_backbone_weights() -> None:
    reason = lpips_unavailable_reason("alex")
    assert reason is not None and "alexnet-owt-7be5be79.pth" in reason and "torch-home" in reason
    with pytest.raises(MetricUnavailable, match="alexnet"):
        LPIPS("alex")


# LPIPS (Zhang et al. 2018) as defined for the SqueezeNet-1.1 backbone: inputs in [-1, 1] shifted
# and scaled per channel, features taken after torchvision's squeezenet1_1().features[i] for these
# i (the 7 ReLU outputs), unit-normalised over channels, squared difference, a non-negative 1x1
# linear head per layer, mean over space, sum over layers.
LPIPS_SHIFT = (-0.030, -0.088, -0.188)
LPIPS_SCALE = (0.458, 0.448, 0.450)
SQUEEZE_TAPS = (1, 4, 7, 9, 10, 11, 12)


def lpips_by_hand(backbone: torch.nn.Module, heads: list[torch.Tensor], a: torch.Tensor, b: torch.Tensor) -> float:
    """LPIPS of two uint8 (3, H, W) images, written out from the definition above, in float64."""
    shift = torch.tensor(LPIPS_SHIFT, dtype=torch.float64).view(1, 3, 1, 1)
    scale = torch.tensor(LPIPS_SCALE, dtype=torch.float64).view(1, 3, 1, 1)
    layers = backbone.features.double().eval()

    def features(img: torch.Tensor) -> list[torch.Tensor]:
        h = ((img[None].double() / 255 * 2 - 1) - shift) / scale
        taps = []
        for i, layer in enumerate(layers):
            h = layer(h)
            if i in SQUEEZE_TAPS:
                taps.append(h / (h.pow(2).sum(dim=1, keepdim=True) + 1e-8).sqrt())
        return taps

    with torch.no_grad():
        total = sum(
            ((fa - fb) ** 2 * w.double().view(1, -1, 1, 1)).sum(dim=1).mean()
            for fa, fb, w in zip(features(a), features(b), heads, strict=True)
        )
    return float(total)


def test_lpips_equals_its_definition_on_a_seeded_random_backbone(tmp_path: Path) -> None:
    # A seeded random SqueezeNet in the hub cache stands in for the ImageNet weights (5 MB);
    # LPIPS loads it from there like the real file, and the linear heads ship with torchmetrics.
    import torchmetrics.functional.image.lpips as tm_lpips
    import torchvision

    from brushwork.metrics.weights import hub_checkpoint_dir

    url = torchvision.models.SqueezeNet1_1_Weights.DEFAULT.url
    target = hub_checkpoint_dir() / url.rsplit("/", 1)[-1]
    target.parent.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    backbone = torchvision.models.squeezenet1_1(weights=None)
    torch.save(backbone.state_dict(), target)
    heads_file = Path(tm_lpips.__file__).parent / "lpips_models" / "squeeze.pth"
    heads_state = torch.load(heads_file, map_location="cpu", weights_only=True)
    heads = [heads_state[f"lin{i}.model.1.weight"] for i in range(len(SQUEEZE_TAPS))]
    assert all(bool((w >= 0).all()) for w in heads)  # LPIPS heads are non-negative weights
    assert lpips_unavailable_reason("squeeze") is None
    scorer = LPIPS("squeeze")
    a, b, c = (load_uint8(p) for p in write_images(tmp_path, 3, size=64, kind="stripes", seed=7))
    assert scorer(a, a) == 0.0  # identical features: every squared difference is exactly 0
    ours = scorer(a, b)
    # the wrapper runs in float32; its rounding (relative ~1e-7 per operation over ~1e3 terms per
    # sum) stays far below 1e-4 of the float64 value
    assert ours > 0 and ours == pytest.approx(lpips_by_hand(backbone, heads, a, b), rel=1e-4)
    assert scorer(b, a) == pytest.approx(ours, rel=1e-6)  # the definition is symmetric
    assert scorer(a, c) == pytest.approx(lpips_by_hand(backbone, heads, a, c), rel=1e-4)
    # an output of another size is resized to the input's size first (bicubic, antialiased)
    big = match_size(b, (96, 80))
    assert scorer(a, big) == pytest.approx(lpips_by_hand(backbone, heads, a, match_size(big, (64, 64))), rel=1e-4)


def test_metrics_import_nothing_from_training() -> None:
    import subprocess
    import sys

    code = (
        "import sys, brushwork.metrics, brushwork.metrics.report, brushwork.metrics.evaluate\n"
        "print(sorted(m for m in sys.modules if m.startswith(('brushwork.training', 'brushwork.methods'))))"
    )
    src = Path(__file__).resolve().parents[2] / "src"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          env={**os.environ, "PYTHONPATH": str(src)})  # fmt: skip
    assert done.stdout.strip() == "[]"
