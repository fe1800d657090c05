"""``brushwork models``: list, download (local server) and import with a recorded checksum."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from brushwork.inference import Stylizer
from tests._inference_helpers import cli_fixture, serve_folder, tiny_generator

CLI = Callable[[list[str]], tuple[int, str, str]]
_ = cli_fixture  # the `cli` fixture


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("BRUSHWORK_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_models_cli_import_records_checksum(tmp_path: Path, cli: CLI) -> None:
    net, _ = tiny_generator(seed=5, n_blocks=3)
    torch.save(net.state_dict(), tmp_path / "g.pth")
    code, out, _ = cli(["models", "import", str(tmp_path / "g.pth"), "--out", str(tmp_path / "rel")])
    assert code == 0, out
    config = json.loads((tmp_path / "rel" / "config.json").read_text())
    assert config["provenance"]["source_sha256"] == hashlib.sha256((tmp_path / "g.pth").read_bytes()).hexdigest()
    assert config["architecture"]["name"] == "resnet_3blocks"
    x = torch.rand(1, 3, 24, 24) * 2 - 1
    a = Stylizer.from_pretrained(tmp_path / "rel", device="cpu", precision="fp32").translate(x)
    b = Stylizer.from_pretrained(tmp_path / "g.pth", device="cpu", precision="fp32").translate(x)
    assert torch.equal(a, b)


def test_models_cli_list_and_download(tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch, cli: CLI) -> None:
    code, out, _ = cli(["models", "list"])
    assert code == 0 and "horse2zebra" in out and "cached" not in out
    served = tmp_path / "served"
    served.mkdir()
    torch.save(tiny_generator()[0].state_dict(), served / "zebra2horse.pth")
    with serve_folder(served) as url:
        monkeypatch.setenv("BRUSHWORK_MODEL_URL", url)
        code, out, _ = cli(["models", "download", "zebra2horse", "--out", str(tmp_path / "rel")])
    assert code == 0, out
    assert hashlib.sha256((served / "zebra2horse.pth").read_bytes()).hexdigest() in out
    assert json.loads((tmp_path / "rel" / "config.json").read_text())["provenance"]["published_name"] == "zebra2horse"
    code, out, _ = cli(["models", "list"])
    assert "zebra2horse" in out and "cached" in out
    code, _, err = cli(["models", "download", "unicorn"])
    assert code == 2 and "unknown published model 'unicorn'" in err
