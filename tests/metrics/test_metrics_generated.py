"""``brushwork generate`` then ``brushwork evaluate``: a folder of generated images scored against
a real folder with IS, FID and KID. The weights file is the random one in the published format
and the forward pass the cheap stand-in (the network itself: test_metrics_parity.py), so the
plumbing from generator to scores is checked, not the values."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from brushwork.cli import main

pytest.importorskip("torch_fidelity")  # the weights fixture is written in torch-fidelity's format


def _cli(args: list[object], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", ["brushwork", *map(str, args)])
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    return code, capsys.readouterr().err


def _noise_release(folder: Path) -> Path:
    from brushwork.nn import build_generator, init_weights
    from brushwork.release import release_config_for, save_release

    torch.manual_seed(0)
    arch = {"name": "dcgan_64", "latent_dim": 100, "ngf": 4, "out_channels": 3, "image_size": 64}
    net = init_weights(build_generator(**arch))
    config = release_config_for(arch, direction="generator", source="noise", target="images", train_size=64,
                                pipeline="noise-sampler", provenance={"test": True})  # fmt: skip
    return save_release(net, folder, config)


def test_generated_folder_is_scored_against_the_real_folder(
    image_sets: dict[str, Path], inception_weights: Path, cheap_inception: list[int], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    gen = tmp_path / "gen"
    code, err = _cli(["generate", "--model", _noise_release(tmp_path / "release"), "-n", 20, "--out", gen,
                      "--no-grid", "--device", "cpu", "--no-progress"], monkeypatch, capsys)  # fmt: skip
    assert code == 0, err
    out = tmp_path / "scores.json"
    code, err = _cli(["evaluate", "--real", image_sets["real"], "--fake", gen, "--inception-weights", inception_weights,
                      "--json", out, "--device", "cpu", "--no-progress", "--no-cache"], monkeypatch, capsys)  # fmt: skip
    assert code == 0, err
    result = json.loads(out.read_text())
    assert (result["fake"]["n"], result["real"]["n"]) == (20, 8)  # IS needs 2 images per split of 10
    for key in ("is", "fid", "kid"):
        assert isinstance(result["metrics"][key]["value"], float), key
    assert sum(cheap_inception) == 28
