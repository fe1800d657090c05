"""Model sources: official .pth import (architecture from keys), run folders, releases, downloads."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from brushwork.inference import Stylizer
from brushwork.inference.sources import (
    PUBLISHED_URL,
    ChecksumError,
    DownloadError,
    ModelSourceError,
    download_published,
    infer_architecture,
    load_source,
)
from brushwork.nn import build_discriminator, build_generator
from brushwork.utils.files import file_sha256
from tests._inference_helpers import (
    cli_fixture,
    self_signed_certificate,
    serve_folder,
    tiny_generator,
    tiny_release,
)

CLI = Callable[[list[str]], tuple[int, str, str]]
_ = cli_fixture  # the `cli` fixture

# ---------------------------------------------------------------------------------------------
# The official layout's math, recomputed here from the state dict alone


def _inorm(x: Tensor) -> Tensor:
    mean = x.mean(dim=(2, 3), keepdim=True)
    var = ((x - mean) ** 2).mean(dim=(2, 3), keepdim=True)
    return (x - mean) / torch.sqrt(var + 1e-5)


def reference_resnet(sd: dict[str, Tensor], x: Tensor, n_blocks: int) -> Tensor:
    """CycleGAN's resnet generator written out with functional calls (instance norm, no dropout)."""
    def conv(h: Tensor, key: str, **kw: int) -> Tensor:
        return F.conv2d(h, sd[f"{key}.weight"], sd[f"{key}.bias"], **kw)

    h = torch.relu(_inorm(conv(F.pad(x, (3, 3, 3, 3), mode="reflect"), "model.1")))
    h = torch.relu(_inorm(conv(h, "model.4", stride=2, padding=1)))
    h = torch.relu(_inorm(conv(h, "model.7", stride=2, padding=1)))
    for i in range(10, 10 + n_blocks):
        r = torch.relu(_inorm(conv(F.pad(h, (1, 1, 1, 1), mode="reflect"), f"model.{i}.conv_block.1")))
        r = _inorm(conv(F.pad(r, (1, 1, 1, 1), mode="reflect"), f"model.{i}.conv_block.5"))
        h = h + r
    up = 10 + n_blocks
    for key in (f"model.{up}", f"model.{up + 3}"):
        h = F.conv_transpose2d(h, sd[f"{key}.weight"], sd[f"{key}.bias"], stride=2, padding=1, output_padding=1)
        h = torch.relu(_inorm(h))
    return torch.tanh(conv(F.pad(h, (3, 3, 3, 3), mode="reflect"), f"model.{up + 7}"))


@pytest.mark.parametrize(("n_blocks", "hw"), [(2, (32, 48)), (3, (30, 45))])
def test_official_layout_matches_independent_recomputation(tmp_path: Path, n_blocks: int, hw: tuple[int, int]) -> None:
    net, _ = tiny_generator(n_blocks=n_blocks, ngf=6, gain=0.3)
    torch.save(net.state_dict(), tmp_path / "g.pth")
    stylizer = Stylizer.from_pretrained(tmp_path / "g.pth", device="cpu", precision="fp32")
    x = torch.rand(2, 3, *hw, generator=torch.Generator().manual_seed(n_blocks)) * 2 - 1
    h, w = hw
    ph, pw = -(-h // 4) * 4, -(-w // 4) * 4
    padded = F.pad(x, (0, pw - w, 0, ph - h), mode="reflect")  # the pipeline reflects up to a multiple of 4
    expected = reference_resnet(net.state_dict(), padded, n_blocks)[..., :h, :w]
    got = stylizer.translate(x)
    assert got.shape == x.shape
    # Both sides are fp32 with different summation orders (layouts, kernels). Each conv output is
    # a sum of at most K = C_in * k * k terms, off by at most K * u relative (u = 2^-24); instance
    # norm keeps relative errors relative, tanh does not enlarge them, so over the L convolutions
    # the outputs (in [-1, 1]) differ by at most about L * K_max * u.
    layers = 3 + 2 * n_blocks + 2 + 1
    k_max = max(3 * 49, 4 * 6 * 9, 6 * 49)  # c7s1 in, the residual convs at 4 * ngf, c7s1 out
    torch.testing.assert_close(got, expected, atol=layers * k_max * 2.0**-24, rtol=0)


# ---------------------------------------------------------------------------------------------
# .pth import: architecture inferred from keys and shapes


@pytest.mark.parametrize(
    ("name", "dropout", "keys", "params"),
    [("resnet_9blocks", False, 48, 11_378_179), ("resnet_9blocks", True, 48, 11_378_179),
     ("resnet_6blocks", False, 36, 7_837_699), ("resnet_6blocks", True, 36, 7_837_699)],
)
def test_official_pth_imports_strictly(tmp_path: Path, name: str, dropout: bool, keys: int, params: int) -> None:
    net = build_generator(name, dropout=dropout)
    sd = net.state_dict()
    assert len(sd) == keys and sum(v.numel() for v in sd.values()) == params  # REFERENCE.md, section 1
    assert any(".conv_block.6." in k for k in sd) == dropout
    torch.save(sd, tmp_path / "g.pth")
    model, config = load_source(tmp_path / "g.pth")
    arch = config.architecture
    assert (arch["name"], arch["ngf"], arch["dropout"], arch["norm"]) == (name, 64, dropout, "instance")
    loaded = model.state_dict()
    assert loaded.keys() == sd.keys() and all(torch.equal(loaded[k], sd[k]) for k in sd)


def test_small_widths_and_batch_norm_are_read_from_shapes() -> None:
    net, _ = tiny_generator(n_blocks=4, ngf=5, dropout=True)
    arch = infer_architecture(net.state_dict()).architecture
    assert (arch["name"], arch["ngf"], arch["dropout"]) == ("resnet_4blocks", 5, True)
    bn = build_generator("resnet_3blocks", ngf=4, norm="batch")
    assert infer_architecture(bn.state_dict()).architecture["norm"] == "batch"


def test_norm_is_assumed_instance_and_overridable(tmp_path: Path) -> None:
    net, _ = tiny_generator()
    torch.save(net.state_dict(), tmp_path / "g.pth")
    assert load_source(tmp_path / "g.pth")[1].architecture["norm"] == "instance"
    model, config = load_source(tmp_path / "g.pth", norm="none")
    assert config.architecture["norm"] == "none"
    assert not any(isinstance(m, torch.nn.InstanceNorm2d) for m in model.modules())


def test_old_instance_norm_running_stats_are_dropped(tmp_path: Path) -> None:
    net, _ = tiny_generator()
    sd = dict(net.state_dict())
    sd["model.2.running_mean"] = torch.zeros(4)
    sd["model.2.running_var"] = torch.ones(4)
    torch.save(sd, tmp_path / "old.pth")
    model, _ = load_source(tmp_path / "old.pth")
    assert "model.2.running_mean" not in model.state_dict()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (["not", "a", "dict"], "holds a list, not a state dict"),
        ({"model.1.weight": torch.zeros(4, 3, 7, 7), "epoch": 3}, "'epoch' is a int, not a tensor"),
        ({}, "the state dict is empty"),
        ({"encoder.weight": torch.zeros(2, 2)}, "unexpected key 'encoder.weight'"),
        ({"module.model.1.weight": torch.zeros(4, 3, 7, 7)}, "wrapper prefix ('module.model.1.weight')"),
        ({"model.model.0.weight": torch.zeros(8, 3, 4, 4)}, "U-Net of 1 levels; the official U-Net has at least 5"),
    ],
)
def test_bad_state_dicts_name_what_was_found(tmp_path: Path, content: object, message: str) -> None:
    torch.save(content, tmp_path / "bad.pth")
    with pytest.raises(ModelSourceError, match=rf"bad\.pth.*{re.escape(message)}"):
        load_source(tmp_path / "bad.pth")


def test_discriminator_weights_are_rejected_with_their_keys(tmp_path: Path) -> None:
    torch.save(build_discriminator("basic", ndf=8).state_dict(), tmp_path / "d.pth")
    with pytest.raises(ModelSourceError, match=r"no 7x7 input convolution at model.1.weight .*model\.0\.weight"):
        load_source(tmp_path / "d.pth")


def test_a_file_that_is_not_a_checkpoint(tmp_path: Path) -> None:
    (tmp_path / "junk.pth").write_bytes(b"\x00\x01 definitely not a pickle")
    with pytest.raises(ModelSourceError, match=r"junk\.pth is not a readable PyTorch state dict"):
        load_source(tmp_path / "junk.pth")
    (tmp_path / "empty.pth").write_bytes(b"")
    with pytest.raises(ModelSourceError, match="empty"):
        load_source(tmp_path / "empty.pth")


def test_unknown_names_and_paths(tmp_path: Path) -> None:
    with pytest.raises(ModelSourceError, match="published names: apple2orange"):
        load_source("horse2unicorn")
    with pytest.raises(ModelSourceError, match="does not exist"):
        load_source(str(tmp_path / "missing.pth"))
    with pytest.raises(ModelSourceError, match="neither a release folder"):
        load_source(tmp_path)


# ---------------------------------------------------------------------------------------------
# Release folders and training runs


def test_release_folder_and_direction_check(tmp_path: Path) -> None:
    tiny_release(tmp_path / "rel")
    _, config = load_source(tmp_path / "rel")
    assert config.direction == "AtoB"
    with pytest.raises(ModelSourceError, match="part of a release folder; pass the folder"):
        load_source(tmp_path / "rel" / "model.safetensors")
    with pytest.raises(ModelSourceError, match="direction AtoB, not BtoA"):
        load_source(tmp_path / "rel", direction="BtoA")


def test_training_run_folder_with_direction(tmp_path: Path) -> None:
    from brushwork.checkpoints import save_checkpoint
    from brushwork.config import resolve_train_config
    from brushwork.methods import build_method

    run = tmp_path / "run"
    run.mkdir()
    cfg = resolve_train_config(overrides={"data": {"root": str(tmp_path)}, "model": {"generator": "resnet_2blocks", "ngf": 4, "ndf": 4},
                                          "run": {"out": str(run)}})
    cfg.save(run / "config.yaml")
    method = build_method(cfg)
    save_checkpoint(run, 7, {"networks": {k: v.state_dict() for k, v in method.networks.items()}, "step": 7}, keep=2)
    model, config = load_source(run, direction="BtoA")
    assert (config.direction, config.source_domain, config.target_domain) == ("BtoA", "B", "A")
    expected = method.networks["F"].state_dict()
    assert all(torch.equal(model.state_dict()[k], expected[k]) for k in expected)
    with pytest.raises(ModelSourceError, match="generators AtoB, BtoA; no direction was given"):
        load_source(run)


# ---------------------------------------------------------------------------------------------
# Published models: cache, download from a local server, clear failures


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("BRUSHWORK_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_published_name_downloads_once_then_uses_cache(tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    served = tmp_path / "served"
    served.mkdir()
    net, _ = tiny_generator(seed=3)
    torch.save(net.state_dict(), served / "horse2zebra.pth")
    with serve_folder(served) as url:
        monkeypatch.setenv("BRUSHWORK_MODEL_URL", url)
        _, config = load_source("horse2zebra")
    assert (cache / "pretrained" / "horse2zebra.pth").is_file()
    assert config.provenance["published_name"] == "horse2zebra"
    # the server is gone now: the cached copy is used
    again, _ = load_source("horse2zebra")
    assert all(torch.equal(again.state_dict()[k], v) for k, v in net.state_dict().items())


def test_download_failures_are_clear(tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with serve_folder(tmp_path) as url:
        monkeypatch.setenv("BRUSHWORK_MODEL_URL", url)
        with pytest.raises(DownloadError, match=r"cannot download 'style_monet' from http://127\.0\.0\.1:\d+/style_monet\.pth: the server answered HTTP 404"):
            download_published("style_monet")
    # the same port, now closed: nothing listens
    with pytest.raises(DownloadError, match="server unreachable"):
        download_published("style_monet")
    assert not (cache / "pretrained" / "style_monet.pth").exists()
    with pytest.raises(ModelSourceError, match="not in the cache"):
        load_source("style_monet", download=False)


def _served(tmp_path: Path, name: str, seed: int = 3) -> tuple[Path, bytes]:
    served = tmp_path / "served"
    served.mkdir(exist_ok=True)
    torch.save(tiny_generator(seed=seed)[0].state_dict(), served / f"{name}.pth")
    return served, (served / f"{name}.pth").read_bytes()


def test_the_authors_server_is_reached_over_https() -> None:
    assert PUBLISHED_URL.startswith("https://efrosgans.eecs.berkeley.edu/")


def test_https_download_records_a_checksum_and_a_tampered_cache_is_refused(
    tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hashlib

    served, data = _served(tmp_path, "horse2zebra")
    cert, key = self_signed_certificate(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # trust this one certificate
    with serve_folder(served, tls=(cert, key)) as url:
        assert url.startswith("https://")
        monkeypatch.setenv("BRUSHWORK_MODEL_URL", url)
        path = download_published("horse2zebra")
    assert path.read_bytes() == data
    digest = hashlib.sha256(data).hexdigest()
    assert (cache / "pretrained" / "horse2zebra.pth.sha256").read_text() == f"{digest}  horse2zebra.pth\n"
    load_source("horse2zebra")  # the recorded sha256 matches: loads
    # one flipped byte in the cached file: refused on the next load, and by download without --force
    tampered = bytearray(data)
    tampered[len(tampered) // 2] ^= 0xFF
    path.write_bytes(bytes(tampered))
    message = rf"horse2zebra\.pth: sha256 [0-9a-f]{{64}} does not match the recorded '{digest}'.*brushwork models download horse2zebra --force"
    with pytest.raises(ChecksumError, match=message):
        load_source("horse2zebra")
    with pytest.raises(ChecksumError, match=message):
        download_published("horse2zebra")
    # --force fetches it again and records the hash anew
    with serve_folder(served, tls=(cert, key)) as url:
        monkeypatch.setenv("BRUSHWORK_MODEL_URL", url)
        download_published("horse2zebra", force=True)
    assert path.read_bytes() == data
    load_source("horse2zebra")


def test_an_untrusted_certificate_is_a_clear_error(tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    served, _ = _served(tmp_path, "style_monet")
    cert, key = self_signed_certificate(tmp_path)
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    with serve_folder(served, tls=(cert, key)) as url:
        monkeypatch.setenv("BRUSHWORK_MODEL_URL", url)
        with pytest.raises(DownloadError, match=r"style_monet\.pth: the secure connection failed \(.*CERTIFICATE_VERIFY_FAILED"):
            download_published("style_monet")
    assert list((cache / "pretrained").glob("*")) == []


def test_a_truncated_download_is_refused_and_leaves_nothing(tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    served, data = _served(tmp_path, "zebra2horse")
    with serve_folder(served, truncate=True) as url:
        monkeypatch.setenv("BRUSHWORK_MODEL_URL", url)
        with pytest.raises(DownloadError, match=rf"stopped after {len(data) // 2} of {len(data)} bytes; nothing was saved"):
            download_published("zebra2horse")
    assert list((cache / "pretrained").glob("*")) == []  # no partial file, no temporary file, no checksum


def test_a_hand_placed_file_is_recorded_on_first_use(tmp_path: Path, cache: Path) -> None:
    _, data = _served(tmp_path, "monet2photo")
    target = cache / "pretrained" / "monet2photo.pth"
    target.parent.mkdir(parents=True)
    target.write_bytes(data)  # as the download error message suggests
    load_source("monet2photo", download=False)
    assert (cache / "pretrained" / "monet2photo.pth.sha256").read_text().split()[0] == file_sha256(target)
    target.write_bytes(data[:-1])
    with pytest.raises(ChecksumError, match="monet2photo.pth: sha256"):
        load_source("monet2photo", download=False)
