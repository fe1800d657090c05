"""The authors' CUT generators for inference: ``latest_net_G.pth`` files in the official layout
(anti-aliasing buffers), and the published models read out of their one tar archive."""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from brushwork.inference import Stylizer
from brushwork.inference.sources import (
    CUT_ARCHIVE_URL,
    CUT_MODELS,
    DownloadError,
    ModelSourceError,
    cut_archive_member,
    download_published,
    infer_architecture,
    load_source,
    published_family,
    published_url,
)
from brushwork.nn import ResnetGenerator, init_weights
from brushwork.release import load_release
from brushwork.utils.files import file_sha256
from tests._inference_helpers import cli_fixture, serve_folder
from tests.conftest import one_thread

CLI = Callable[[list[str]], tuple[int, str, str]]
_ = cli_fixture


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    with one_thread():
        yield


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("BRUSHWORK_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def cut_generator(seed: int = 0, n_blocks: int = 2, ngf: int = 4, **kw: bool) -> nn.Module:
    """A small anti-aliased ResNet generator: the official CUT module list, so its state dict has the official keys."""
    torch.manual_seed(seed)
    net = ResnetGenerator(n_blocks=n_blocks, ngf=ngf, antialias=kw.get("antialias", True), antialias_up=kw.get("antialias_up", True))
    return init_weights(net, init_type="xavier", gain=0.5).eval()


def test_an_official_cut_state_dict_loads_and_translates(tmp_path: Path) -> None:
    net = cut_generator(n_blocks=3)
    state = net.state_dict()
    assert {"model.7.filt", "model.11.filt", "model.15.filt", "model.19.filt", "model.24.weight"} <= set(state)
    torch.save(state, tmp_path / "latest_net_G.pth")
    stylizer = Stylizer.from_pretrained(tmp_path / "latest_net_G.pth", device="cpu", precision="fp32")
    assert stylizer.config.architecture == {"name": "resnet_3blocks", "in_channels": 3, "out_channels": 3, "ngf": 4, "norm": "instance",
                                            "dropout": False, "padding": "reflect", "antialias": True, "antialias_up": True}  # fmt: skip
    assert stylizer.config.provenance["converted_from"] == "official CUT state dict"
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        expected = net(x)
    assert torch.allclose(stylizer.translate(x), expected, atol=1e-5)


@pytest.mark.parametrize(("antialias", "antialias_up"), [(True, False), (False, True)])
def test_one_sided_anti_aliasing_is_read_from_the_keys(antialias: bool, antialias_up: bool) -> None:
    arch = infer_architecture(cut_generator(antialias=antialias, antialias_up=antialias_up).state_dict()).architecture
    assert (arch["antialias"], arch["antialias_up"]) == (antialias, antialias_up)


def test_import_writes_a_release_that_records_the_anti_aliasing(tmp_path: Path, cli: CLI) -> None:
    net = cut_generator(seed=2)
    torch.save(net.state_dict(), tmp_path / "latest_net_G.pth")
    code, _, err = cli(["models", "import", str(tmp_path / "latest_net_G.pth"), "--out", str(tmp_path / "rel")])
    assert code == 0, err
    config = json.loads((tmp_path / "rel" / "config.json").read_text())
    assert config["architecture"]["antialias"] is True and config["test_mode"] == "eval"
    model, _ = load_release(tmp_path / "rel")
    assert all(torch.equal(model.state_dict()[k], v) for k, v in net.state_dict().items())


def _broken(kind: str) -> dict[str, Tensor]:
    state = cut_generator().state_dict()
    if kind == "filter":
        state["model.7.filt"] = state["model.7.filt"] * 2
    elif kind == "missing":
        del state["model.8.weight"]
    elif kind == "prefixed":
        state = {f"module.{k}": v for k, v in state.items()}
    return state


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("filter", r"g\.pth: looks like a CUT generator .* model\.7\.filt is not the 3x3 binomial filter for 8 channels"),
        ("missing", r"g\.pth: looks like a CUT generator .* convolutions at \[1, 4, 15, 19, 23\] \(expected \[1, 4, 8, 15, 19, 23\]\)"),
        ("prefixed", r"g\.pth: keys carry a wrapper prefix \('module\.model\.1\.weight'\)"),
    ],
)
def test_broken_cut_files_say_what_is_wrong(tmp_path: Path, kind: str, message: str) -> None:
    torch.save(_broken(kind), tmp_path / "g.pth")
    with pytest.raises(ModelSourceError, match=message) as info:
        load_source(tmp_path / "g.pth")
    assert "\n" not in str(info.value)


# ---------------------------------------------------------------------------------------------
# Published CUT models: one tar archive, members read out as they stream in


def _tar(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def _pth(net: nn.Module) -> bytes:
    buffer = io.BytesIO()
    torch.save(net.state_dict(), buffer)
    return buffer.getvalue()


def test_names_urls_and_members(monkeypatch: pytest.MonkeyPatch) -> None:
    assert CUT_MODELS == ("cut_horse2zebra", "fastcut_horse2zebra", "cut_cat2dog", "fastcut_cat2dog", "cut_cityscapes", "fastcut_cityscapes")
    assert cut_archive_member("fastcut_cat2dog") == "checkpoints/cat2dog_fastcut_pretrained/latest_net_G.pth"
    assert (published_family("cut_cat2dog"), published_family("fastcut_cityscapes"), published_family("horse2zebra")) == ("cut", "fastcut", "cyclegan")
    monkeypatch.delenv("BRUSHWORK_MODEL_URL", raising=False)
    assert published_url("cut_horse2zebra") == CUT_ARCHIVE_URL == "https://efrosgans.eecs.berkeley.edu/CUT/pretrained_models.tar"
    monkeypatch.setenv("BRUSHWORK_MODEL_URL", "http://mirror.example/m/")
    assert published_url("fastcut_horse2zebra") == "http://mirror.example/m/cut_pretrained_models.tar"


def test_a_published_cut_model_is_read_out_of_the_archive(tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch, cli: CLI) -> None:
    wanted, other = cut_generator(seed=1), cut_generator(seed=2)
    data = _pth(wanted)
    served = tmp_path / "served"
    served.mkdir()
    _tar(served / "cut_pretrained_models.tar", {
        "./checkpoints/horse2zebra_fastcut_pretrained/latest_net_G.pth": _pth(other),  # a leading ./ as tar -c . writes
        "checkpoints/horse2zebra_cut_pretrained/latest_net_G.pth": data,
        "cityscapes_cut_pretrained/latest_net_G.pth": _pth(other),  # the member is found under any top folder, or none
    })  # fmt: skip
    with serve_folder(served) as url:
        monkeypatch.setenv("BRUSHWORK_MODEL_URL", url)
        model, config = load_source("cut_horse2zebra")
        code, _, err = cli(["models", "download", "cut_cityscapes", "--out", str(tmp_path / "rel")])
    assert code == 0, err
    target = cache / "pretrained" / "cut_horse2zebra.pth"
    assert target.read_bytes() == data  # the member itself, byte for byte
    assert (cache / "pretrained" / "cut_horse2zebra.pth.sha256").read_text() == f"{file_sha256(target)}  cut_horse2zebra.pth\n"
    assert all(torch.equal(model.state_dict()[k], v) for k, v in wanted.state_dict().items())
    assert config.provenance["published_name"] == "cut_horse2zebra" and config.architecture["antialias"] is True
    assert config.direction == "AtoB"
    assert json.loads((tmp_path / "rel" / "config.json").read_text())["direction"] == "BtoA"  # cityscapes: label -> photo
    assert sorted(p.name for p in (cache / "pretrained").iterdir()) == [
        "cut_cityscapes.pth", "cut_cityscapes.pth.sha256", "cut_horse2zebra.pth", "cut_horse2zebra.pth.sha256"]  # no archive kept
    # the server is gone: the cached copy is used, checked against its recorded sha256
    again, _ = load_source("cut_horse2zebra")
    assert all(torch.equal(again.state_dict()[k], v) for k, v in wanted.state_dict().items())


def test_archive_failures_are_clear_and_leave_nothing(tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    served = tmp_path / "served"
    served.mkdir()
    _tar(served / "cut_pretrained_models.tar", {"checkpoints/horse2zebra_cut_pretrained/latest_net_G.pth": _pth(cut_generator())})
    with serve_folder(served) as url:
        monkeypatch.setenv("BRUSHWORK_MODEL_URL", url)
        with pytest.raises(DownloadError, match=r"cut_pretrained_models\.tar is a tar archive without checkpoints/cat2dog_cut_pretrained/latest_net_G\.pth; nothing was saved"):
            download_published("cut_cat2dog")
    with serve_folder(served, truncate=True) as url:  # half the archive: it ends inside the member
        monkeypatch.setenv("BRUSHWORK_MODEL_URL", url)
        with pytest.raises(DownloadError, match=r"cannot read checkpoints/horse2zebra_cut_pretrained/latest_net_G\.pth from .*: the download broke off"):
            download_published("cut_horse2zebra")
    (served / "cut_pretrained_models.tar").write_bytes(b"<html>not found</html>" * 40)
    with serve_folder(served) as url:
        monkeypatch.setenv("BRUSHWORK_MODEL_URL", url)
        with pytest.raises(DownloadError, match=r"or is not a tar archive; nothing was saved"):
            download_published("cut_horse2zebra")
    assert list((cache / "pretrained").glob("*")) == []
