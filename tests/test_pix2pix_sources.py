"""pix2pix ``.pth`` files: U-Net architecture from keys, strict loading, clear errors, published names."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from brushwork.inference.sources import (
    PIX2PIX_URL,
    PUBLISHED_MODELS,
    ModelSourceError,
    import_pth,
    infer_architecture,
    load_source,
    published_url,
)
from brushwork.nn import build_generator, init_weights
from brushwork.release import load_release
from tests._inference_helpers import cli_fixture, serve_folder

CLI = Callable[[list[str]], tuple[int, str, str]]
_ = cli_fixture  # the `cli` fixture


def tiny_unet(name: str = "unet_32", *, norm: str = "batch", dropout: bool = True, ngf: int = 2, seed: int = 0) -> nn.Module:
    """A small U-Net with weights and batch-norm statistics far enough from their defaults to matter."""
    torch.manual_seed(seed)
    net = init_weights(build_generator(name, ngf=ngf, norm=norm, dropout=dropout), gain=0.3)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.bias.normal_(0, 0.1)
    return net.eval()


def unet_prefix(level: int) -> str:
    return "model.model." + ("1.model." if level else "") + "3.model." * max(level - 1, 0)


def reference_unet(sd: dict[str, Tensor], x: Tensor, depth: int) -> Tensor:
    """The authors' U-Net (batch norm, eval mode) written out with functional calls from the state dict.

    Each inner level returns cat([skip, up(level below)]). Its skip carries LeakyReLU(x), not x:
    the official block's LeakyReLU is in place and runs before torch.cat reads its input.
    """
    def bn(h: Tensor, key: str) -> Tensor:
        return F.batch_norm(h, sd[f"{key}.running_mean"], sd[f"{key}.running_var"], sd[f"{key}.weight"], sd[f"{key}.bias"], False, 0.0, 1e-5)

    def down(h: Tensor, key: str) -> Tensor:
        return F.conv2d(h, sd[f"{key}.weight"], None, stride=2, padding=1)

    def up(h: Tensor, key: str) -> Tensor:
        return F.conv_transpose2d(h, sd[f"{key}.weight"], sd.get(f"{key}.bias"), stride=2, padding=1)

    def level(h: Tensor, k: int) -> Tensor:
        p = unet_prefix(k)
        skip = F.leaky_relu(h, 0.2)
        if k == depth - 1:  # innermost: no norm after its down conv
            y = bn(up(F.relu(down(skip, p + "1")), p + "3"), p + "4")
        else:
            y = bn(up(F.relu(level(bn(down(skip, p + "1"), p + "2"), k + 1)), p + "5"), p + "6")
        return torch.cat([skip, y], 1)

    h = level(down(x, "model.model.0"), 1)
    return torch.tanh(up(F.relu(h), "model.model.3"))


def unet_params(num_downs: int, ngf: int = 64, channels: int = 3) -> int:
    """Parameters of the official U-Net with batch norm, by formula (bias only on the output conv)."""
    # (outer, inner) channels of each level below the outermost, innermost last
    levels = [(ngf, 2 * ngf), (2 * ngf, 4 * ngf), (4 * ngf, 8 * ngf)] + [(8 * ngf, 8 * ngf)] * (num_downs - 4)
    total = channels * ngf * 16 + 2 * ngf * channels * 16 + channels  # outermost down, up (+ bias)
    for i, (outer, inner) in enumerate(levels):
        innermost = i == len(levels) - 1
        total += outer * inner * 16 + (0 if innermost else 2 * inner)  # down conv, down norm
        total += (1 if innermost else 2) * inner * outer * 16 + 2 * outer  # up conv, up norm
    return total


def test_the_official_layout_matches_an_independent_recomputation() -> None:
    net = tiny_unet("unet_32", dropout=False)
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(net(x.clone()), reference_unet(net.state_dict(), x, depth=5), rtol=0, atol=1e-5)


def test_published_size_unet_256_keys_and_parameters() -> None:
    """unet_256, ngf 64, batch norm: the official code prints 54.414 M parameters for it."""
    with torch.device("meta"):  # shapes only: nothing is allocated or initialised
        net = build_generator("unet_256", norm="batch", dropout=True)
    sd = net.state_dict()
    assert sum(p.numel() for p in net.parameters()) == unet_params(8) == 54_413_955
    assert len(sd) == 82  # 16 convs (2 with bias) + 14 batch norms x 5 entries
    assert infer_architecture(sd).architecture == {"name": "unet_256", "in_channels": 3, "out_channels": 3, "ngf": 64,
                                                   "norm": "batch", "dropout": True}


def test_dropout_does_not_shift_indices() -> None:
    """The official block appends nn.Dropout after its weighted layers: the keys are the same."""
    with_dropout = build_generator("unet_128", ngf=2, dropout=True).state_dict()
    without = build_generator("unet_128", ngf=2, dropout=False).state_dict()
    assert list(with_dropout) == list(without)
    assert {k: v.shape for k, v in with_dropout.items()} == {k: v.shape for k, v in without.items()}


@pytest.mark.parametrize("name", ["unet_256", "unet_128"])
@pytest.mark.parametrize("norm", ["batch", "instance"])
def test_inferred_architecture_and_strict_load(tmp_path: Path, name: str, norm: str) -> None:
    # dropout assumed as the norm's method trains: pix2pix (batch) with, CycleGAN's U-Net (instance) without
    dropout = norm == "batch"
    net = tiny_unet(name, norm=norm, dropout=dropout, ngf=3, seed=2)
    torch.save(net.state_dict(), tmp_path / "latest_net_G.pth")
    model, config = load_source(tmp_path / "latest_net_G.pth")
    assert config.architecture == {"name": name, "in_channels": 3, "out_channels": 3, "ngf": 3, "norm": norm, "dropout": dropout}
    assert config.preprocessing.size_multiple == int(name.split("_")[1])
    assert config.test_mode == ("train_like" if norm == "batch" else "eval")  # the authors' test.py default
    assert config.provenance["dropout_assumed"] is True
    loaded, expected = model.state_dict(), net.state_dict()
    assert loaded.keys() == expected.keys() and all(torch.equal(loaded[k], expected[k]) for k in expected)
    assert not model.training


def test_channels_and_overrides(tmp_path: Path) -> None:
    net = build_generator("unet_32", ngf=2, in_channels=1, out_channels=4)
    arch = infer_architecture(net.state_dict(), dropout=False).architecture
    assert (arch["in_channels"], arch["out_channels"], arch["dropout"]) == (1, 4, False)
    torch.save(net.state_dict(), tmp_path / "g.pth")
    config = load_release(import_pth(tmp_path / "g.pth", tmp_path / "rel", dropout=False, test_mode="eval"))[1]
    assert (config.architecture["dropout"], config.test_mode, config.provenance["dropout_assumed"]) == (False, "eval", False)


def test_files_from_before_pytorch_0_4_1_load(tmp_path: Path) -> None:
    """Published pix2pix files predate num_batches_tracked; torch's compatible path starts it at 0."""
    net = tiny_unet("unet_32")
    old = {k: v for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}
    torch.save(old, tmp_path / "old.pth")
    model, _ = load_source(tmp_path / "old.pth")
    counters = [v for k, v in model.state_dict().items() if k.endswith("num_batches_tracked")]
    assert len(counters) == sum(isinstance(m, nn.BatchNorm2d) for m in net.modules()) == 7
    assert all(int(c) == 0 for c in counters)


def test_old_instance_norm_statistics_are_dropped(tmp_path: Path) -> None:
    sd = dict(tiny_unet("unet_32", norm="instance").state_dict())
    sd["model.model.1.model.2.running_mean"] = torch.zeros(4)
    sd["model.model.1.model.2.running_var"] = torch.ones(4)
    torch.save(sd, tmp_path / "old.pth")
    assert load_source(tmp_path / "old.pth")[1].architecture["norm"] == "instance"


def _renamed(sd: dict[str, Tensor], old: str, new: str) -> dict[str, Tensor]:
    return {k.replace(old, new, 1): v for k, v in sd.items()}


def _corrupt(kind: str) -> tuple[dict[str, Any], str]:
    sd = dict(tiny_unet("unet_32").state_dict())
    deep = unet_prefix(3)
    if kind == "nesting":
        return _renamed(sd, deep, deep.replace(".3.model.", ".4.model.", 1)), r"nests through layer indices \[1, 4, 3\]; .*corrupted nesting"
    if kind == "no_innermost":  # a unet_64 without its innermost level: level 4 is a middle level
        six = tiny_unet("unet_64").state_dict()
        keep = {k: v for k, v in six.items() if not k.startswith(unet_prefix(5))}
        return keep, rf"the innermost U-Net level 4 of 5 should hold a 4x4 convolution at {re.escape(unet_prefix(4))}3\.weight"
    if kind == "missing_conv":
        return {k: v for k, v in sd.items() if k != "model.model.3.weight"}, r"outermost U-Net level 0 of 5 should hold a 4x4 convolution at model\.model\.3\.weight, found shape None"
    if kind == "foreign_key":
        return {**sd, "model.model.1.extra.weight": torch.zeros(2)}, r"key outside the official layout: 'model\.model\.1\.extra\.weight'"
    if kind == "too_few_levels":
        levels = {k: v for k, v in sd.items() if not k.startswith(unet_prefix(2))}
        levels[unet_prefix(1) + "3.weight"] = torch.zeros(4, 2, 4, 4)  # makes level 1 the innermost
        return levels, r"U-Net of 2 levels; the official U-Net has at least 5 \(unet_32\)"
    assert kind == "shapes"
    return {**sd, unet_prefix(2) + "1.weight": torch.zeros(8, 3, 4, 4)}, "weights do not fit the inferred architecture"


@pytest.mark.parametrize("kind", ["nesting", "no_innermost", "missing_conv", "foreign_key", "too_few_levels", "shapes"])
def test_broken_unet_files_name_the_file_and_what_is_wrong(tmp_path: Path, kind: str) -> None:
    state, message = _corrupt(kind)
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(ModelSourceError, match=rf"bad\.pth: .*{message}"):
        load_source(tmp_path / "bad.pth")


def test_batch_norm_cannot_be_overridden_to_instance(tmp_path: Path) -> None:
    torch.save(tiny_unet("unet_32").state_dict(), tmp_path / "g.pth")
    with pytest.raises(ModelSourceError, match=re.escape("holds batch-norm statistics and bias-free convolutions, but norm='instance'")):
        load_source(tmp_path / "g.pth", norm="instance")


# ---------------------------------------------------------------------------------------------
# Published pix2pix names


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("BRUSHWORK_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_published_names_and_urls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BRUSHWORK_MODEL_URL", raising=False)
    pix2pix = [n for n in PUBLISHED_MODELS if n.startswith("pix2pix_")]
    assert pix2pix == ["pix2pix_edges2shoes", "pix2pix_sat2map", "pix2pix_map2sat", "pix2pix_facades_label2photo", "pix2pix_day2night"]
    assert "facades_label2photo" in PUBLISHED_MODELS  # CycleGAN's model of the same name stays as it was
    assert published_url("pix2pix_facades_label2photo") == PIX2PIX_URL + "facades_label2photo.pth"
    assert PIX2PIX_URL == "https://efrosgans.eecs.berkeley.edu/pix2pix/models-pytorch/"
    assert published_url("facades_label2photo").endswith("/cyclegan/pretrained_models/facades_label2photo.pth")
    monkeypatch.setenv("BRUSHWORK_MODEL_URL", "http://mirror.example/models/")
    assert published_url("pix2pix_sat2map") == "http://mirror.example/models/pix2pix_sat2map.pth"  # a mirror uses brushwork's names


def test_download_a_pix2pix_model_from_a_local_server(tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch, cli: CLI) -> None:
    served = tmp_path / "served"
    served.mkdir()
    net = tiny_unet("unet_256", ngf=1, seed=4)
    torch.save(net.state_dict(), served / "pix2pix_facades_label2photo.pth")
    with serve_folder(served) as url:
        monkeypatch.setenv("BRUSHWORK_MODEL_URL", url)
        code, out, err = cli(["models", "download", "pix2pix_facades_label2photo", "--out", str(tmp_path / "rel")])
    assert code == 0, out + err
    assert (cache / "pretrained" / "pix2pix_facades_label2photo.pth.sha256").is_file()
    config = json.loads((tmp_path / "rel" / "config.json").read_text())
    assert config["architecture"]["name"] == "unet_256" and config["test_mode"] == "train_like"
    assert config["provenance"]["published_name"] == "pix2pix_facades_label2photo"
    model, release = load_source("pix2pix_facades_label2photo")  # from the cache now: the server is gone
    assert release.test_mode == "train_like" and release.provenance["converted_from"] == "official pix2pix U-Net state dict"
    assert all(torch.equal(model.state_dict()[k], v) for k, v in net.state_dict().items())
    code, out, _ = cli(["models", "list"])
    assert re.search(r"pix2pix_facades_label2photo\s+pix2pix\s+cached", out) and re.search(r"horse2zebra\s+cyclegan\s+-", out)
