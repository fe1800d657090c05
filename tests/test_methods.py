"""Every registered method on the one trainer: settings, data kinds, one run, its releases.

Parametrised over the method registry, so a new method is tested as soon as it registers (the
TINY table must name its small test settings, which the first test enforces).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from brushwork.config import ConfigError, resolve_train_config
from brushwork.data.builders import build_training_data
from brushwork.data.sampling import ShuffledSampler
from brushwork.data.unpaired import DatasetError, UnpairedSampler
from brushwork.inference import load_pipeline
from brushwork.methods import METHODS, method_spec
from brushwork.runs import load_run_config
from brushwork.training.logger import read_log
from brushwork.training.run import run_training
from tests._inference_helpers import cli_fixture
from tests.conftest import write_images, write_tiny_data

CLI = Callable[[list[str]], tuple[int, str, str]]
_ = cli_fixture

# Small settings per method: a few steps take well under a second each. A method's entry may
# have a "data" section too, which replaces those keys of tiny_config's data settings.
TINY: dict[str, dict[str, dict[str, object]]] = {
    # the authors' decoder has no width setting; a random encoder tests the mechanics
    "adain": {"model": {"encoder_weights": "random"}},
    "cyclegan": {"model": {"generator": "resnet_2blocks", "ngf": 8, "ndf": 8}},
    # the anti-aliased resnet_2blocks has modules 0..24; 0,4,8,12 = padded input, both down convs, block 1
    "cut": {"model": {"generator": "resnet_2blocks", "ngf": 8, "ndf": 8, "netf_nc": 16},
            "objective": {"nce_layers": "0,4,8,12", "num_patches": 16}},
    "fastcut": {"model": {"generator": "resnet_2blocks", "ngf": 8, "ndf": 8, "netf_nc": 16},
                "objective": {"nce_layers": "0,4,8,12", "num_patches": 16}},
    "pix2pix": {"model": {"generator": "unet_32", "ngf": 8, "ndf": 8}},
    # dcgan_64 makes 64x64 images only: the data must come at that size
    "dcgan": {"model": {"ngf": 4, "ndf": 4}, "data": {"load_size": 64, "crop_size": 64}},
}


def write_paired(root: Path, count: int = 5, size: int = 36, seed: int = 0) -> Path:
    """pix2pix's aligned layout: root/train/ and root/test/ of A|B images side by side."""
    rng = np.random.default_rng(seed)
    for split, n in (("train", count), ("test", 2)):
        (root / split).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            a = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            b = 255 - a  # B is a function of A: the pair really is aligned
            Image.fromarray(np.concatenate([a, b], axis=1)).save(root / split / f"{i:03d}.png")
    return root


def data_for(kind: str, root: Path) -> Path:
    if kind == "unpaired":
        return write_tiny_data(root)
    if kind == "paired":
        return write_paired(root)
    write_images(root, 6, size=(40, 36), seed=5)
    return root


def tiny_config(method: str, data: Path, out: Path, **optim: object):
    values = {
        "method": method,
        "data": {"root": str(data), "load_size": 36, "crop_size": 32, "num_workers": 0, "batch_size": 2},
        "optim": {"epochs": 1, "epochs_decay": 1, "lr_policy": "constant", **optim},  # a schedule fitted to --steps differs between 2 and 4
        "run": {"out": str(out), "progress": False, "tensorboard": False, "log_every": 1, "sample_every": 1000,
                "checkpoint_every": 2},
    }  # fmt: skip
    for section, settings in TINY[method].items():
        values[section] = {**values.get(section, {}), **settings}  # type: ignore[dict-item]
    return resolve_train_config(overrides=values)


def test_every_method_has_test_settings() -> None:
    assert set(METHODS.names()) == set(TINY), "add small test settings for each registered method to TINY"


@pytest.mark.parametrize("method", sorted(TINY))
def test_method_trains_resumes_exactly_and_releases(method: str, tmp_path: Path) -> None:
    """Every method: 4 steps, a resume from step 2 that continues identically, releases that load."""
    kind = method_spec(method).data_kind
    data = data_for(kind, tmp_path / "data")
    result = run_training(tiny_config(method, data, tmp_path / "full", max_steps=4))
    assert result.step == 4 and not result.interrupted and result.releases
    full = read_log(tmp_path / "full" / "log.jsonl")

    run_training(tiny_config(method, data, tmp_path / "part", max_steps=2))
    resumed = run_training(tiny_config(method, data, tmp_path / "part", max_steps=4), resume="latest")
    assert resumed.step == 4
    part = read_log(tmp_path / "part" / "log.jsonl")
    losses = [k for k in full[-1] if k not in ("step", "epoch", "lr", "it_per_s", "time", "kind")]
    assert losses
    for a, b in zip(full, part, strict=True):
        for key in losses:
            assert a[key] == b[key], (method, a["step"], key)  # bit for bit: same RNG, same data order

    for name, path in result.releases.items():
        pipeline = load_pipeline(path, device="cpu", precision="fp32")
        assert pipeline.kind == method_spec(method).build(load_run_config(tmp_path / "full")).release_specs()[name].pipeline
        # the run folder itself is a source too (one generator: no direction needed)
        if len(result.releases) == 1:
            assert load_pipeline(tmp_path / "full", device="cpu", precision="fp32").kind == pipeline.kind


@pytest.mark.parametrize("method", sorted(TINY))
def test_run_config_round_trips(method: str, tmp_path: Path) -> None:
    cfg = tiny_config(method, tmp_path, tmp_path / "run")
    cfg.save(tmp_path / "config.yaml")
    assert load_run_config(tmp_path) == cfg
    assert type(cfg.model) is method_spec(method).model and type(cfg.objective) is method_spec(method).objective


def test_method_defaults_are_the_papers() -> None:
    cyc = resolve_train_config(overrides={"data": {"root": "d"}})
    assert (cyc.model.generator, cyc.model.norm, cyc.objective.gan_mode, cyc.objective.lambda_a) == ("resnet_9blocks", "instance", "lsgan", 10)
    p2p = resolve_train_config(overrides={"method": "pix2pix", "data": {"root": "d"}})
    assert (p2p.model.generator, p2p.model.norm, p2p.model.dropout) == ("unet_256", "batch", True)
    assert (p2p.objective.gan_mode, p2p.objective.lambda_l1, p2p.objective.direction) == ("vanilla", 100, "AtoB")
    assert (p2p.data.batch_size, p2p.optim.lr, p2p.optim.beta1, p2p.run.out) == (1, 2e-4, 0.5, "runs/pix2pix")


def test_settings_of_another_method_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown config key objective.lambda_l1; valid keys of objective: gan_mode"):
        resolve_train_config(overrides={"data": {"root": "d"}, "objective": {"lambda_l1": 5}})
    with pytest.raises(ConfigError, match=r"objective.direction='up' is not valid"):
        resolve_train_config(overrides={"method": "pix2pix", "data": {"root": "d"}, "objective": {"direction": "up"}})
    with pytest.raises(ConfigError, match=r"data.crop_size=100 does not suit model.generator=unet_256"):
        resolve_train_config(overrides={"method": "pix2pix", "data": {"root": "d", "crop_size": 100}})


def test_cli_flags_of_another_method_are_an_error_naming_them(cli: CLI, tmp_path: Path) -> None:
    code, _, err = cli(["train", "--data", str(tmp_path), "--lambda-l1", "5", "--out", str(tmp_path / "r")])
    assert code == 2
    assert "--lambda-l1 does not apply to method cyclegan (settings of pix2pix)" in err
    assert not (tmp_path / "r").exists()
    code, _, err = cli(["train", "--method", "nope", "--data", str(tmp_path)])
    assert code == 2 and f"unknown method 'nope'; valid names: {', '.join(METHODS.names())}" in err


def test_flags_come_from_the_settings() -> None:
    from brushwork.cli.train import FLAGS

    by_name = {f.display: f for f in FLAGS}
    assert by_name["--lambda-l1"].methods == {"pix2pix"} and by_name["--lambda-a"].methods == {"cyclegan"}
    assert by_name["--ngf"].methods >= {"cyclegan", "pix2pix"}  # one flag for a setting several methods share
    assert (by_name["--steps"].section, by_name["--steps"].key, by_name["--steps"].methods) == ("optim", "max_steps", None)
    assert by_name["--workers"].key == "num_workers" and by_name["--eval-every"].section == "eval"


# ---------------------------------------------------------------------------------------------
# data kinds


def test_paired_aligned_halves_share_crop_and_flip(tmp_path: Path) -> None:
    cfg = tiny_config("pix2pix", write_paired(tmp_path / "d"), tmp_path / "r")
    data = build_training_data("paired", cfg.data, seed=0)
    data.sampler.set_epoch(0)
    for key in list(data.sampler)[:4]:
        item = data.dataset[key]
        # B = 255 - A pixel for pixel, so A + B is exactly 255 everywhere only if both halves got the same crop and flip
        a, b = ((item["A"] + 1) * 127.5).round(), ((item["B"] + 1) * 127.5).round()
        assert torch.equal(a + b, torch.full_like(a, 255))


def test_paired_folders_are_matched_by_name(tmp_path: Path) -> None:
    write_images(tmp_path / "trainA", 3, seed=1)
    write_images(tmp_path / "trainB", 3, seed=2)
    (tmp_path / "trainB" / "img_002.png").rename(tmp_path / "trainB" / "other.png")
    cfg = tiny_config("pix2pix", tmp_path, tmp_path / "r")
    data = build_training_data("paired", cfg.data, seed=0)
    assert len(data.dataset) == 2 and "pairs matched by name" in data.description
    (tmp_path / "trainB" / "img_000.png").unlink()
    (tmp_path / "trainB" / "img_001.png").unlink()
    with pytest.raises(DatasetError, match="no file names appear in both"):
        build_training_data("paired", cfg.data, seed=0)


def test_no_paired_layout_names_what_was_expected(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    cfg = tiny_config("pix2pix", tmp_path / "d", tmp_path / "r")
    with pytest.raises(DatasetError, match=r"expected .*/train/ holding aligned A\|B images"):
        build_training_data("paired", cfg.data, seed=0)


@pytest.mark.parametrize("make", [lambda: UnpairedSampler(5, 8, seed=3), lambda: ShuffledSampler(7, seed=3)])
def test_samplers_shard_an_epoch_into_equal_shares(make: Callable[[], object]) -> None:
    """Every key in one share; the last round is filled with the epoch's first keys (equal shares: equal step counts)."""
    whole = make()
    whole.set_epoch(2)  # type: ignore[attr-defined]
    keys = list(whole)  # type: ignore[call-overload]
    shards = []
    for rank in range(3):
        s = make()
        s.shard(rank, 3)  # type: ignore[attr-defined]
        s.set_epoch(2)  # type: ignore[attr-defined]
        shards.append(list(s))  # type: ignore[call-overload]
        assert len(shards[-1]) == len(s)  # type: ignore[arg-type]
    assert sorted(k for shard in shards for k in shard) == sorted(keys + keys[: -len(keys) % 3])
    assert len({len(shard) for shard in shards}) == 1
    skipped = make()
    skipped.set_epoch(2, skip=2)  # type: ignore[attr-defined]
    assert list(skipped) == keys[2:]  # type: ignore[call-overload]
