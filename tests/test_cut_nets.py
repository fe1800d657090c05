"""CUT / FastCUT building blocks: the anti-aliased layout, features, the patch head, PatchNCE, checkpoints."""

from __future__ import annotations

import io
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from brushwork.inference.cut_checkpoints import CutCheckpointError, infer_cut_architecture
from brushwork.nn import (
    BlurDownsample,
    BlurUpsample,
    FeatureNetwork,
    PatchSampleF,
    ResnetGenerator,
    build_discriminator,
    build_generator,
    feature_channels,
    patch_nce_loss,
    patch_nce_loss_over_layers,
)
from brushwork.nn.patchnce import sample_patch_ids
from brushwork.release import load_release, release_config_for, save_release

NCE_LAYERS = (0, 4, 8, 12, 16)  # the CUT code's default nce_layers


def tiny(**kwargs: object) -> ResnetGenerator:
    options: dict[str, object] = {"ngf": 4, "n_blocks": 2, "antialias": True}
    options.update(kwargs)
    return ResnetGenerator(**options)  # type: ignore[arg-type]


def shapes(net: nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in net.state_dict().items()}


# ---------------------------------------------------------------------------------------------
# The anti-aliased generator: the official CUT layout


def test_antialiased_layout_is_the_official_one() -> None:
    """ngf 4, 2 blocks, written out from the CUT code's module list.

    model: 0 pad, 1 conv7, 2 norm, 3 relu | 4 conv, 5 norm, 6 relu, 7 Downsample | 8 conv, 9 norm,
    10 relu, 11 Downsample | 12, 13 blocks | 14 Upsample, 15 conv, 16 norm, 17 relu | 18 Upsample,
    19 conv, 20 norm, 21 relu | 22 pad, 23 conv7, 24 tanh.
    """
    expected = {
        "model.1.weight": (4, 3, 7, 7), "model.1.bias": (4,),
        "model.4.weight": (8, 4, 3, 3), "model.4.bias": (8,),
        "model.7.filt": (8, 1, 3, 3),
        "model.8.weight": (16, 8, 3, 3), "model.8.bias": (16,),
        "model.11.filt": (16, 1, 3, 3),
        "model.12.conv_block.1.weight": (16, 16, 3, 3), "model.12.conv_block.1.bias": (16,),
        "model.12.conv_block.5.weight": (16, 16, 3, 3), "model.12.conv_block.5.bias": (16,),
        "model.13.conv_block.1.weight": (16, 16, 3, 3), "model.13.conv_block.1.bias": (16,),
        "model.13.conv_block.5.weight": (16, 16, 3, 3), "model.13.conv_block.5.bias": (16,),
        "model.14.filt": (16, 1, 4, 4),
        "model.15.weight": (8, 16, 3, 3), "model.15.bias": (8,),
        "model.18.filt": (8, 1, 4, 4),
        "model.19.weight": (4, 8, 3, 3), "model.19.bias": (4,),
        "model.23.weight": (3, 4, 7, 7), "model.23.bias": (3,),
    }  # fmt: skip
    net = tiny()
    assert shapes(net) == expected
    kinds = [type(m).__name__ for m in net.model]
    assert kinds == [
        "ReflectionPad2d", "Conv2d", "InstanceNorm2d", "ReLU",
        "Conv2d", "InstanceNorm2d", "ReLU", "BlurDownsample",
        "Conv2d", "InstanceNorm2d", "ReLU", "BlurDownsample",
        "ResnetBlock", "ResnetBlock",
        "BlurUpsample", "Conv2d", "InstanceNorm2d", "ReLU",
        "BlurUpsample", "Conv2d", "InstanceNorm2d", "ReLU",
        "ReflectionPad2d", "Conv2d", "Tanh",
    ]  # fmt: skip
    convs = {i: m for i, m in enumerate(net.model) if isinstance(m, nn.Conv2d)}
    assert all(convs[i].stride == (1, 1) and convs[i].padding == (1, 1) for i in (4, 8, 15, 19))  # zero padding 1


def test_cut_default_generator_counts() -> None:
    """resnet_9blocks, ngf 64: CycleGAN's 11,378,179 parameters (a 3x3 conv in place of each transposed
    conv has as many), 48 parameter tensors + 4 filter buffers of 9,600 values in all."""
    net = build_generator("resnet_9blocks", antialias=True)
    state = net.state_dict()
    assert sum(p.numel() for p in net.parameters()) == 11_378_179
    filters = {k: tuple(v.shape) for k, v in state.items() if k.endswith(".filt")}
    assert filters == {
        "model.7.filt": (128, 1, 3, 3), "model.11.filt": (256, 1, 3, 3),
        "model.21.filt": (256, 1, 4, 4), "model.25.filt": (128, 1, 4, 4),
    }  # fmt: skip
    assert sum(math.prod(s) for s in filters.values()) == 9_600
    assert len(state) == 52
    top = sorted({int(k.split(".")[1]) for k in state if "conv_block" not in k and not k.endswith(".filt")})
    assert top == [1, 4, 8, 22, 26, 30]
    assert sorted({int(k.split(".")[1]) for k in state if "conv_block" in k}) == list(range(12, 21))
    assert infer_cut_architecture(state) == {
        "name": "resnet_9blocks", "in_channels": 3, "out_channels": 3, "ngf": 64, "norm": "instance",
        "dropout": False, "padding": "reflect", "antialias": True, "antialias_up": True,
    }  # fmt: skip


def test_without_antialias_the_layout_is_cyclegan() -> None:
    assert shapes(tiny(antialias=False)) == shapes(ResnetGenerator(ngf=4, n_blocks=2))
    assert not any(k.endswith(".filt") for k in tiny(antialias=False).state_dict())


def test_state_dict_round_trip_strict() -> None:
    net = tiny().eval()
    buffer = io.BytesIO()
    torch.save(net.state_dict(), buffer)
    buffer.seek(0)
    other = tiny().eval()
    other.load_state_dict(torch.load(buffer, weights_only=True), strict=True)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(net(x), other(x))


@pytest.mark.parametrize(("height", "width"), [(32, 32), (36, 36), (32, 48)])
@pytest.mark.parametrize(("antialias", "antialias_up"), [(True, True), (True, False), (False, True)])
def test_forward_keeps_the_size(height: int, width: int, antialias: bool, antialias_up: bool) -> None:
    net = tiny(antialias=antialias, antialias_up=antialias_up)
    with torch.no_grad():
        y = net(torch.randn(2, 3, height, width))
    assert y.shape == (2, 3, height, width)
    assert y.abs().max() <= 1


def test_antialiased_discriminator_layout_and_size() -> None:
    """CUT's default D: conv stride 1 + LeakyReLU + Downsample per stage (indices 0, 2f, 3, 6f, 7, 10f, 11, 14)."""
    aa = build_discriminator("basic", ndf=2, antialias=True)
    assert shapes(aa) == {
        "model.0.weight": (2, 3, 4, 4), "model.0.bias": (2,), "model.2.filt": (2, 1, 3, 3),
        "model.3.weight": (4, 2, 4, 4), "model.3.bias": (4,), "model.6.filt": (4, 1, 3, 3),
        "model.7.weight": (8, 4, 4, 4), "model.7.bias": (8,), "model.10.filt": (8, 1, 3, 3),
        "model.11.weight": (16, 8, 4, 4), "model.11.bias": (16,),
        "model.14.weight": (1, 16, 4, 4), "model.14.bias": (1,),
    }  # fmt: skip
    plain = build_discriminator("basic", ndf=2)
    with torch.no_grad():
        for size in (64, 256):
            x = torch.randn(1, 3, size, size)
            assert aa(x).shape == plain(x).shape
        assert aa(torch.randn(1, 3, 256, 256)).shape == (1, 1, 30, 30)


# ---------------------------------------------------------------------------------------------
# Blur filters


def test_blur_filters_are_binomial() -> None:
    down, up = BlurDownsample(2).filt, BlurUpsample(2).filt
    row3, row4 = torch.tensor([1.0, 2.0, 1.0]), torch.tensor([1.0, 3.0, 3.0, 1.0])
    assert down.shape == (2, 1, 3, 3) and up.shape == (2, 1, 4, 4)
    assert torch.equal(down[1, 0], torch.outer(row3, row3) / 16)
    assert torch.equal(up[1, 0], torch.outer(row4, row4) / 64 * 4)
    assert down[0].sum().item() == 1.0 and up[0].sum().item() == 4.0  # sums of powers of two: exact
    assert not any(p.requires_grad for p in BlurDownsample(2).parameters())


def test_blur_downsample_matches_the_formula() -> None:
    """y[t] = (x[2t-1] + 2 x[2t] + x[2t+1]) / 4 per axis, x[-1] = x[1] (reflection)."""
    x = torch.randn(2, 3, 8, 6, dtype=torch.float64)

    def blur_axis(v: Tensor, dim: int) -> Tensor:
        n = v.shape[dim]
        t2 = torch.arange(0, n, 2)
        reflect = lambda i: torch.where(i < 0, -i, torch.where(i > n - 1, 2 * (n - 1) - i, i))  # noqa: E731
        at = lambda i: v.index_select(dim, reflect(i))  # noqa: E731
        return (at(t2 - 1) + 2 * at(t2) + at(t2 + 1)) / 4

    expected = blur_axis(blur_axis(x, 2), 3)
    got = BlurDownsample(3).double()(x)
    assert got.shape == (2, 3, 4, 3)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)


def test_blur_upsample_is_bilinear() -> None:
    """The [1,3,3,1] transposed filter with replicated edges weights inputs 3/4 and 1/4 per axis:
    2x bilinear upsampling with half-pixel centres (align_corners=False clamps at the edges)."""
    x = torch.randn(2, 3, 5, 7)
    expected = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
    got = BlurUpsample(3)(x)
    # float32, each output a 4-term sum of |x| < 5 with weights summing to 1: error ~ 4 * 5 * 6e-8
    torch.testing.assert_close(got, expected, rtol=0, atol=2e-6)
    constant = torch.full((1, 2, 4, 4), 0.75)
    assert torch.equal(BlurDownsample(2)(constant), torch.full((1, 2, 2, 2), 0.75))
    assert torch.equal(BlurUpsample(2)(constant), torch.full((1, 2, 8, 8), 0.75))


# ---------------------------------------------------------------------------------------------
# Intermediate features


def test_encode_matches_the_module_prefix() -> None:
    net = tiny(n_blocks=5).eval()
    assert isinstance(net, FeatureNetwork)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        feats = net.encode(x, NCE_LAYERS)
        for i, feat in zip(NCE_LAYERS, feats, strict=True):
            assert torch.equal(feat, net.model[: i + 1](x)), i
    assert [tuple(f.shape) for f in feats] == [(2, 3, 38, 38), (2, 8, 32, 32), (2, 16, 16, 16), (2, 16, 8, 8), (2, 16, 8, 8)]


def test_encode_copies_features_before_an_inplace_relu() -> None:
    net = tiny().eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        norm_out, later = net.encode(x, [2, 5])  # instance-norm outputs, each followed by ReLU(inplace=True)
        assert torch.equal(norm_out, net.model[:3](x))
        assert (norm_out < 0).any()  # not rectified by the ReLU that ran after it
        assert torch.equal(later, net.model[:6](x))


def test_encode_stops_after_the_last_layer() -> None:
    net = tiny()
    ran: list[int] = []
    for i, module in enumerate(net.model):
        module.register_forward_hook(lambda *_args, i=i: ran.append(i))
    net.encode(torch.randn(1, 3, 16, 16), [0, 4, 8])
    assert ran == list(range(9))


@pytest.mark.parametrize("layers", [[], [4, 0], [3, 3], [-1], [25]])
def test_encode_rejects_bad_layers(layers: list[int]) -> None:
    with pytest.raises(ValueError, match="layers"):
        tiny().encode(torch.randn(1, 3, 16, 16), layers)


def test_feature_channels_dry_run_has_no_side_effects() -> None:
    assert feature_channels(tiny(n_blocks=5), NCE_LAYERS) == [3, 8, 16, 16, 16]
    net = tiny(n_blocks=5, norm="batch").train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    assert feature_channels(net, NCE_LAYERS) == [3, 8, 16, 16, 16]
    assert net.training and all(m.training for m in net.modules())
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


# ---------------------------------------------------------------------------------------------
# PatchSampleF


def test_patch_ids_are_deterministic_under_a_seed() -> None:
    a = sample_patch_ids(8, 8, 16, generator=torch.Generator().manual_seed(3))
    b = sample_patch_ids(8, 8, 16, generator=torch.Generator().manual_seed(3))
    c = sample_patch_ids(8, 8, 16, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert len(set(a.tolist())) == 16 and int(a.min()) >= 0 and int(a.max()) < 64
    torch.manual_seed(5)
    d = sample_patch_ids(8, 8, 16)
    torch.manual_seed(5)
    assert torch.equal(d, sample_patch_ids(8, 8, 16))
    assert sorted(sample_patch_ids(3, 2, 256).tolist()) == list(range(6))  # more patches than locations: all


def test_patch_sample_picks_the_ids_locations() -> None:
    head = PatchSampleF(channels=[3, 5], mlp=False)
    feats = [torch.randn(2, 3, 6, 7), torch.randn(2, 5, 4, 4)]
    samples, ids = head(feats, num_patches=10, generator=torch.Generator().manual_seed(0))
    assert [tuple(s.shape) for s in samples] == [(2, 10, 3), (2, 10, 5)]
    for feat, sample, layer_ids in zip(feats, samples, ids, strict=True):
        width = feat.shape[3]
        for p, flat in enumerate(layer_ids.tolist()):
            vector = feat[:, :, flat // width, flat % width]  # (B, C)
            torch.testing.assert_close(sample[:, p], vector / vector.norm(dim=1, keepdim=True), rtol=0, atol=1e-6)


def test_patch_sample_reuses_ids_and_normalises() -> None:
    head = PatchSampleF(channels=[3, 8], nc=16)
    assert {k: tuple(v.shape) for k, v in head.state_dict().items()} == {
        "mlp_0.0.weight": (16, 3), "mlp_0.0.bias": (16,), "mlp_0.2.weight": (16, 16), "mlp_0.2.bias": (16,),
        "mlp_1.0.weight": (16, 8), "mlp_1.0.bias": (16,), "mlp_1.2.weight": (16, 16), "mlp_1.2.bias": (16,),
    }  # fmt: skip
    feats = [torch.randn(2, 3, 8, 8), torch.randn(2, 8, 4, 4)]
    keys, ids = head(feats, num_patches=12)
    queries, ids_again = head([f.clone() for f in feats], patch_ids=ids)
    for k, q, a, b in zip(keys, queries, ids, ids_again, strict=True):
        assert torch.equal(k, q) and torch.equal(a, b)
        # unit vectors: x / (|x| + 1e-7) has norm |x| / (|x| + 1e-7), within 1e-7 / |x| of 1
        torch.testing.assert_close(k.norm(dim=-1), torch.ones(k.shape[:2]), rtol=0, atol=1e-5)
    width = 4
    flat = int(ids[1][0])
    manual = head.mlp_1(feats[1][:, :, flat // width, flat % width])
    torch.testing.assert_close(keys[1][:, 0], manual / manual.norm(dim=1, keepdim=True), rtol=0, atol=1e-6)


def test_patch_sample_rejects_mismatches() -> None:
    head = PatchSampleF(channels=[3])
    with pytest.raises(ValueError, match="expected a"):
        head([torch.randn(1, 4, 4, 4)])
    with pytest.raises(ValueError, match="feature maps"):
        head([torch.randn(1, 3, 4, 4)] * 2)
    with pytest.raises(ValueError, match="locations"):
        head([torch.randn(1, 3, 4, 4)], patch_ids=[torch.tensor([16])])


# ---------------------------------------------------------------------------------------------
# PatchNCE


def reference_nce(q: list[list[float]], k: list[list[float]], temperature: float) -> list[float]:
    """Per-patch loss from the formula: -log softmax over [q_i.k_i, q_i.k_j (j != i), -10 at j = i] / T."""
    def dot(a: list[float], b: list[float]) -> float:
        return sum(x * y for x, y in zip(a, b, strict=True))

    losses = []
    for i, qi in enumerate(q):
        logits = [dot(qi, k[i])] + [-10.0 if j == i else dot(qi, kj) for j, kj in enumerate(k)]
        scaled = [v / temperature for v in logits]
        top = max(scaled)
        losses.append(top + math.log(sum(math.exp(v - top) for v in scaled)) - scaled[0])
    return losses


@pytest.mark.parametrize("temperature", [0.07, 0.5])
def test_patch_nce_by_hand(temperature: float) -> None:
    """Two patches in 2-d: row 0 has logits [0.8, -10, 0.96] / T, row 1 [0.8, 0, -10] / T."""
    q = [[0.6, 0.8], [1.0, 0.0]]
    k = [[0.0, 1.0], [0.8, 0.6]]
    expected = reference_nce(q, k, temperature)
    got = patch_nce_loss(torch.tensor([q]), torch.tensor([k]), temperature=temperature, reduction="none")
    assert got.shape == (1, 2)
    # float32 logits of size <= 10 / T ~ 143: absolute rounding ~ 143 * 6e-8 ~ 1e-5
    torch.testing.assert_close(got[0].double(), torch.tensor(expected, dtype=torch.float64), rtol=0, atol=3e-5)
    mean = patch_nce_loss(torch.tensor([q]), torch.tensor([k]), temperature=temperature)
    assert abs(mean.item() - sum(expected) / 2) < 3e-5


def test_patch_nce_is_near_zero_for_matching_orthogonal_patches() -> None:
    """q = k = identity rows (P = D = 4): loss = log(1 + 3 exp(-1/T) + exp(-11/T)) ~ 1.9e-6 at T = 0.07."""
    eye = torch.eye(4)[None]
    loss = patch_nce_loss(eye, eye.clone())
    expected = math.log1p(3 * math.exp(-1 / 0.07) + math.exp(-11 / 0.07))
    assert loss.item() < 1e-5
    assert abs(loss.item() - expected) < 1e-6  # log-sum-exp of logits ~ 14: float32 error ~ 1e-6 at worst
    random = F.normalize(torch.randn(1, 4, 4), dim=-1)
    assert patch_nce_loss(random, F.normalize(torch.randn(1, 4, 4), dim=-1)).item() > 100 * loss.item()


def test_patch_nce_gradients_reach_queries_only() -> None:
    q = F.normalize(torch.randn(2, 5, 3), dim=-1).requires_grad_()
    k = F.normalize(torch.randn(2, 5, 3), dim=-1).requires_grad_()
    patch_nce_loss(q, k).backward()
    assert q.grad is not None and q.grad.abs().sum() > 0
    assert k.grad is None
    q.grad = None
    patch_nce_loss(q, k, detach_key=False).backward()
    assert k.grad is not None and k.grad.abs().sum() > 0


def test_patch_nce_negatives_per_image_or_batch() -> None:
    q = F.normalize(torch.randn(2, 4, 3), dim=-1)
    k = F.normalize(torch.randn(2, 4, 3), dim=-1)
    per_image = patch_nce_loss(q, k, reduction="none")
    changed_k = k.clone()
    changed_k[1] = F.normalize(torch.randn(4, 3), dim=-1)
    assert torch.equal(patch_nce_loss(q, changed_k, reduction="none")[0], per_image[0])  # image 1 is not a negative of image 0
    for b in range(2):
        torch.testing.assert_close(per_image[b], patch_nce_loss(q[b : b + 1], k[b : b + 1], reduction="none")[0], rtol=0, atol=0)
    whole = patch_nce_loss(q, k, negatives="batch", reduction="none")
    torch.testing.assert_close(whole.reshape(1, 8), patch_nce_loss(q.reshape(1, 8, 3), k.reshape(1, 8, 3), reduction="none"))
    assert not torch.equal(patch_nce_loss(q, changed_k, negatives="batch", reduction="none")[0], whole[0])


def test_patch_nce_over_layers_is_the_mean_of_layer_means() -> None:
    qs = [F.normalize(torch.randn(2, 4, 3), dim=-1), F.normalize(torch.randn(2, 6, 5), dim=-1)]
    ks = [F.normalize(torch.randn(2, 4, 3), dim=-1), F.normalize(torch.randn(2, 6, 5), dim=-1)]
    expected = (patch_nce_loss(qs[0], ks[0]) + patch_nce_loss(qs[1], ks[1])) / 2
    torch.testing.assert_close(patch_nce_loss_over_layers(qs, ks), expected)


def test_cut_nce_pipeline_runs_and_backpropagates() -> None:
    """G's features of x (keys) and of G(x) (queries), sampled at shared ids, one backward pass."""
    gen = tiny(n_blocks=5)
    head = PatchSampleF(channels=feature_channels(gen, NCE_LAYERS), nc=8)
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    keys, ids = head(gen.encode(x, NCE_LAYERS), num_patches=16)
    queries, _ = head(gen.encode(gen(x), NCE_LAYERS), patch_ids=ids)
    loss = patch_nce_loss_over_layers(queries, keys)
    loss.backward()
    assert torch.isfinite(loss)
    assert gen.model[1].weight.grad is not None and head.mlp_0[0].weight.grad is not None


# ---------------------------------------------------------------------------------------------
# Reading CUT checkpoints


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"antialias_up": False},
        {"antialias": False, "antialias_up": True},
        {"n_blocks": 3, "dropout": True},
        {"n_blocks": 0},
        {"norm": "batch"},
        {"in_channels": 1, "out_channels": 4, "ngf": 6},
    ],
)
def test_infer_cut_architecture_round_trip(options: dict[str, object]) -> None:
    net = tiny(**options).eval()
    arch = infer_cut_architecture(net.state_dict())
    assert arch is not None
    expected = {"in_channels": 3, "out_channels": 3, "ngf": 4, "n_blocks": 2, "norm": "instance",
                "dropout": False, "padding": "reflect", "antialias": True}  # fmt: skip
    expected.update(options)
    expected.setdefault("antialias_up", expected["antialias"])
    assert arch["name"] == f"resnet_{expected.pop('n_blocks')}blocks"
    assert {k: v for k, v in arch.items() if k != "name"} == expected
    rebuilt = build_generator(arch["name"], **{k: v for k, v in arch.items() if k != "name"}).eval()
    rebuilt.load_state_dict(net.state_dict(), strict=True)
    x = torch.randn(1, int(expected["in_channels"]), 16, 16)  # type: ignore[call-overload]
    with torch.no_grad():
        assert torch.equal(rebuilt(x), net(x))


def test_infer_cut_architecture_leaves_other_state_dicts_alone() -> None:
    assert infer_cut_architecture(ResnetGenerator(ngf=4, n_blocks=2).state_dict()) is None  # CycleGAN layout
    assert infer_cut_architecture(build_generator("unet_128", ngf=2).state_dict()) is None
    assert infer_cut_architecture({"module.model.7.filt": torch.zeros(1)}) is None
    assert infer_cut_architecture({}) is None


def test_infer_cut_architecture_explains_a_broken_layout() -> None:
    state = tiny().state_dict()
    missing = {k: v for k, v in state.items() if k != "model.7.filt"}
    with pytest.raises(CutCheckpointError, match="residual blocks"):
        infer_cut_architecture(missing)
    wrong_filter = dict(state)
    wrong_filter["model.14.filt"] = torch.ones(16, 1, 4, 4)
    with pytest.raises(CutCheckpointError, match="binomial"):
        infer_cut_architecture(wrong_filter)
    extra = dict(state)
    extra["model.16.weight"] = torch.zeros(8, 8, 3, 3)
    with pytest.raises(CutCheckpointError, match="line up"):
        infer_cut_architecture(extra)


def test_cut_generator_release_round_trip(tmp_path: Path) -> None:
    """The architecture read from a CUT state dict is a release config; the folder loads strictly."""
    net = tiny().eval()
    arch = infer_cut_architecture(net.state_dict())
    assert arch is not None
    config = release_config_for(arch, direction="AtoB", source="A", target="B", train_size=32, provenance={})
    loaded, loaded_config = load_release(save_release(net, tmp_path / "cut", config))
    assert loaded_config.architecture == arch
    x = torch.randn(1, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(loaded(x), net(x))
