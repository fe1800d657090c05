"""Configuration: reference defaults, precedence, and errors that name the bad key or value."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from brushwork.config import (
    ConfigError,
    TrainConfig,
    load_yaml,
    resolve_train_config,
)
from tests._inference_helpers import cli_fixture

CLI = Callable[[list[str]], tuple[int, str, str]]
_ = cli_fixture  # the `cli` fixture: the console entry point run in-process


def test_defaults_are_the_reference_ones() -> None:
    cfg = resolve_train_config(overrides={"data": {"root": "d"}})
    assert (cfg.optim.lr, cfg.optim.beta1, cfg.optim.beta2) == (2e-4, 0.5, 0.999)
    assert (cfg.objective.lambda_a, cfg.objective.lambda_b, cfg.objective.lambda_identity) == (10, 10, 0.5)
    assert (cfg.objective.gan_mode, cfg.objective.pool_size) == ("lsgan", 50)
    assert (cfg.optim.epochs, cfg.optim.epochs_decay, cfg.optim.lr_policy) == (100, 100, "linear")
    assert (cfg.data.load_size, cfg.data.crop_size, cfg.data.preprocess, cfg.data.flip) == (286, 256, "resize_and_crop", True)
    assert (cfg.model.generator, cfg.model.discriminator, cfg.model.norm, cfg.model.dropout) == (
        "resnet_9blocks", "basic", "instance", False,
    )  # fmt: skip
    assert (cfg.model.init_type, cfg.model.init_gain, cfg.data.batch_size) == ("normal", 0.02, 1)


def test_precedence_defaults_yaml_flags_set(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"data": {"root": "from_yaml", "crop_size": 128}, "optim": {"lr": 1e-3}}))
    cfg = resolve_train_config(
        config_file=config,
        overrides={"optim": {"lr": 5e-4}},
        assignments=["objective.lambda_identity=0", "model.generator=resnet_6blocks"],
    )
    assert cfg.data.root == "from_yaml" and cfg.data.crop_size == 128  # YAML over defaults
    assert cfg.optim.lr == 5e-4  # flags over YAML
    assert cfg.objective.lambda_identity == 0.0 and cfg.model.generator == "resnet_6blocks"  # --set last
    assert cfg.data.load_size == 286  # untouched default


def test_saved_config_round_trips(tmp_path: Path) -> None:
    cfg = resolve_train_config(overrides={"data": {"root": "d", "max_dataset_size": 5}, "run": {"seed": 3}})
    cfg.save(tmp_path / "config.yaml")
    assert TrainConfig.from_dict(load_yaml(tmp_path / "config.yaml")) == cfg


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"data": {"root": "d", "crop_size": 300}}, r"data.crop_size=300 is larger than data.load_size=286"),
        ({"data": {"root": "d"}, "objective": {"lambda_a": -1}}, r"objective.lambda_a must be >= 0, got -1"),
        ({"data": {"root": "d", "colour": 1}}, r"unknown config key data.colour"),
        ({"data": {"root": "d"}, "optimiser": {}}, r"unknown config key optimiser"),
        ({"data": {"root": "d"}, "model": {"norm": "layer"}}, r"model.norm='layer' is not valid; expected one of instance"),
        ({"data": {"root": "d"}, "model": {"generator": "vgg"}}, r"model.generator='vgg' is not valid"),
        ({"data": {"root": "d", "batch_size": "four"}}, r"data.batch_size must be an integer, got 'four'"),
        ({"data": {"root": "d"}, "objective": {"gan_mode": "hinge"}}, r"objective.gan_mode='hinge'"),
        ({}, r"give data.root"),
        ({"data": {"root": "d"}, "model": {"in_channels": 1}}, r"model.in_channels=1 is not supported; expected 3 .*RGB"),
        ({"data": {"root": "d"}, "model": {"out_channels": 4}}, r"model.out_channels=4 is not supported; expected 3 .*RGB"),
    ],
)
def test_bad_settings_name_the_key(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        resolve_train_config(overrides=overrides)


def test_bad_yaml_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        resolve_train_config(config_file=tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        resolve_train_config(config_file=bad)
    with pytest.raises(ConfigError, match="--set expects section.key=value"):
        resolve_train_config(overrides={"data": {"root": "d"}}, assignments=["optim.lr"])


def test_channel_counts_other_than_rgb_are_one_line_cli_errors(tmp_path: Path, cli: CLI) -> None:
    """Images are always read as RGB, so a 1-channel model cannot train: say so before anything runs."""
    for setting in ("model.in_channels=1", "model.out_channels=1"):
        code, out, err = cli(["train", "--data", str(tmp_path), "--out", str(tmp_path / "run"), "--set", setting])
        assert code == 2, err
        assert "Traceback" not in out + err
        lines = err.strip().splitlines()
        assert len(lines) == 1 and setting in lines[0] and "RGB" in lines[0], err
        assert not (tmp_path / "run").exists()
