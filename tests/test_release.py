"""Release models: export from a run, rebuild from the folder alone, stylise with the CLI."""

from __future__ import annotations

import errno
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from brushwork import release as release_module
from brushwork.config import resolve_train_config
from brushwork.data.transforms import pil_to_uint8, uint8_to_unit
from brushwork.release import ReleaseError, load_release, save_release
from brushwork.training.run import run_training
from tests._inference_helpers import tiny_generator, tiny_release
from tests.conftest import tiny_overrides, write_images
from tests.test_training import ENV


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("release")
    data = root / "data"
    write_images(data / "trainA", 4, seed=1)
    write_images(data / "trainB", 4, seed=2)
    cfg = resolve_train_config(overrides=tiny_overrides(data, root / "run") | {"optim": {"max_steps": 3}})
    run_training(cfg)
    return root / "run"


def test_release_rebuilds_the_generator_from_the_folder_alone(trained_run: Path) -> None:
    from brushwork.checkpoints import list_checkpoints

    state = torch.load(list_checkpoints(trained_run)[-1], weights_only=False)
    for direction, net in (("AtoB", "G"), ("BtoA", "F")):
        folder = trained_run / "release" / direction
        config = json.loads((folder / "config.json").read_text())
        assert config["format"] == "brushwork.generator" and config["format_version"] == 2 and config["pipeline"] == "image-to-image"
        assert config["architecture"]["name"] == "resnet_2blocks" and config["architecture"]["ngf"] == 8
        assert config["direction"] == direction and config["preprocessing"]["size_multiple"] == 4
        model, _ = load_release(folder)
        assert not model.training
        for key, value in model.state_dict().items():
            assert torch.equal(value, state["networks"][net][key])


def test_export_command_writes_the_same_release(trained_run: Path, tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "brushwork", "export", str(trained_run), "--out", str(tmp_path / "exp")],
                          env=ENV, capture_output=True, text=True)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    a, _ = load_release(tmp_path / "exp" / "AtoB")
    b, _ = load_release(trained_run / "release" / "AtoB")
    x = torch.rand(1, 3, 20, 24) * 2 - 1
    with torch.no_grad():
        assert torch.equal(a(x), b(x))


def test_stylize_cli_on_a_release_model(trained_run: Path, tmp_path: Path) -> None:
    # Textured, not flat: on a constant image every instance norm divides rounding noise by
    # sqrt(eps), so any two correct implementations (layouts, kernels) disagree completely.
    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (22, 30, 3), dtype=np.uint8))
    img.save(tmp_path / "in.png")
    proc = subprocess.run([sys.executable, "-m", "brushwork", "stylize", str(tmp_path / "in.png"), "--model",
                           str(trained_run / "release" / "AtoB"), "--out", str(tmp_path / "out"), "--device", "cpu",
                           "--precision", "fp32"],
                          env=ENV, capture_output=True, text=True)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    outputs = list((tmp_path / "out").rglob("*.png"))
    assert len(outputs) == 1
    result = Image.open(outputs[0])
    assert result.size == (30, 22)  # padded to a multiple of 4 internally, cropped back
    model, _ = load_release(trained_run / "release" / "AtoB")
    with torch.no_grad():
        expected = model(torch.nn.functional.pad(uint8_to_unit(pil_to_uint8(img))[None], (0, 2, 0, 2), mode="reflect"))
    expected_u8 = expected[0, :, :22, :30].add(1).mul(127.5).round().clamp(0, 255).to(torch.uint8)
    assert (pil_to_uint8(result.convert("RGB")).int() - expected_u8.int()).abs().max() <= 1


def test_bad_release_folders(tmp_path: Path, trained_run: Path) -> None:
    with pytest.raises(ReleaseError, match="does not exist"):
        load_release(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ReleaseError, match="config.json is missing"):
        load_release(tmp_path / "empty")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text((trained_run / "release" / "AtoB" / "config.json").read_text())
    (broken / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(ReleaseError, match="unreadable safetensors"):
        load_release(broken)
    config = json.loads((broken / "config.json").read_text())
    config["architecture"]["ngf"] = 16
    (broken / "config.json").write_text(json.dumps(config))
    (broken / "model.safetensors").write_bytes((trained_run / "release" / "AtoB" / "model.safetensors").read_bytes())
    with pytest.raises(ReleaseError, match="do not fit architecture"):
        load_release(broken)


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.mark.parametrize("failing", ["weights", "config"])
def test_failed_release_write_keeps_the_old_folder_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: str) -> None:
    """A crash while writing either file leaves the previous release as it was, and nothing temporary."""
    folder = tiny_release(tmp_path / "rel", seed=1)
    old = _snapshot(folder)
    net, config = tiny_generator(seed=2)

    def full_disk(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    if failing == "weights":
        def partial(tensors: object, filename: str, metadata: object = None) -> None:
            Path(filename).write_bytes(b"partial")
            full_disk()

        monkeypatch.setattr(release_module, "save_file", partial)
    else:  # the weights are written, then the config fails
        monkeypatch.setattr(release_module.ReleaseConfig, "to_json", full_disk)
    with pytest.raises(ReleaseError, match=f"cannot write release folder {folder}.*No space left"):
        save_release(net, folder, config)
    assert _snapshot(folder) == old
    assert [p.name for p in tmp_path.iterdir()] == ["rel"]  # no temporary folder beside it
    monkeypatch.undo()
    load_release(folder)


def test_release_folder_is_replaced_as_a_whole(tmp_path: Path) -> None:
    folder = tiny_release(tmp_path / "rel", seed=1)
    (folder / "config.json").unlink()  # an incomplete release from an older brushwork
    tiny_release(folder, seed=2)
    fresh = tiny_release(tmp_path / "fresh", seed=2)
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
    assert (folder / "config.json").read_text() == (fresh / "config.json").read_text()
    weights, expected = load_file(folder / "model.safetensors"), load_file(fresh / "model.safetensors")
    assert weights.keys() == expected.keys() and all(torch.equal(weights[k], expected[k]) for k in weights)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fresh", "rel"]


def test_release_never_replaces_a_folder_of_other_files(tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    net, config = tiny_generator()
    with pytest.raises(ReleaseError, match=f"{mine} holds notes.txt, which a release folder does not"):
        save_release(net, mine, config)
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]
