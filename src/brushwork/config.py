"""Training configuration: frozen dataclasses split by concern, resolved once at the entry point.

Precedence is defaults < YAML file (``--config``) < command-line flags. Every section checks its
own values on construction, so an impossible value is rejected with a message naming it, and
an unknown key is rejected before anything runs. The resolved config is written beside each run.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, Union

import yaml

from brushwork.nn.generators import is_valid_generator_name
from brushwork.nn.init import INIT_TYPES
from brushwork.nn.layers import NORMS, PADDINGS


class ConfigError(ValueError):
    """A configuration value or key is invalid; the message names it."""


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def _one_of(name: str, value: str, choices: tuple[str, ...]) -> None:
    _check(value in choices, f"{name}={value!r} is not valid; expected one of {', '.join(choices)}")


PREPROCESS_MODES = ("resize_and_crop", "crop", "scale_width", "scale_width_and_crop", "none")
GAN_MODES = ("lsgan", "vanilla", "wgangp")
LR_POLICIES = ("linear", "step", "cosine", "plateau", "constant")
PRECISIONS = ("fp32", "bf16", "fp16", "auto")


@dataclass(frozen=True)
class DataConfig:
    """Where the two domains come from and how images are prepared (reference defaults)."""

    root: str | None = None  # DATA with trainA/ trainB/ (testA/ testB/)
    dir_a: str | None = None  # or two arbitrary folders
    dir_b: str | None = None
    load_size: int = 286
    crop_size: int = 256
    preprocess: str = "resize_and_crop"
    flip: bool = True
    max_dataset_size: int | None = None
    batch_size: int = 1
    num_workers: int = 2
    skip_bad_images: bool = False
    serial_batches: bool = False  # take B in order instead of at random
    cache: str = "auto"  # decode once and keep uint8 tensors in RAM: auto|ram|none

    def __post_init__(self) -> None:
        _check(
            self.root is not None or (self.dir_a is not None and self.dir_b is not None),
            "data: give data.root (a folder with trainA/ and trainB/) or both data.dir_a and data.dir_b",
        )
        _one_of("data.preprocess", self.preprocess, PREPROCESS_MODES)
        _check(self.load_size > 0, f"data.load_size must be positive, got {self.load_size}")
        _check(self.crop_size > 0, f"data.crop_size must be positive, got {self.crop_size}")
        if self.preprocess in ("resize_and_crop", "scale_width_and_crop"):
            _check(
                self.crop_size <= self.load_size,
                f"data.crop_size={self.crop_size} is larger than data.load_size={self.load_size}; "
                "the crop must fit inside the resized image",
            )
        _check(self.batch_size >= 1, f"data.batch_size must be >= 1, got {self.batch_size}")
        _check(self.num_workers >= 0, f"data.num_workers must be >= 0, got {self.num_workers}")
        _check(
            self.max_dataset_size is None or self.max_dataset_size >= 1,
            f"data.max_dataset_size must be >= 1, got {self.max_dataset_size}",
        )
        _one_of("data.cache", self.cache, ("auto", "ram", "none"))


@dataclass(frozen=True)
class ModelConfig:
    """Network architectures (CycleGAN reference defaults)."""

    generator: str = "resnet_9blocks"
    discriminator: str = "basic"
    ngf: int = 64
    ndf: int = 64
    n_layers_d: int = 3
    norm: str = "instance"
    dropout: bool = False
    padding: str = "reflect"
    init_type: str = "normal"
    init_gain: float = 0.02
    in_channels: int = 3
    out_channels: int = 3

    def __post_init__(self) -> None:
        _check(
            is_valid_generator_name(self.generator),
            f"model.generator={self.generator!r} is not valid; expected resnet_<N>blocks "
            "(resnet_9blocks, resnet_6blocks) or unet_<2^k> (unet_128, unet_256)",
        )
        _one_of("model.discriminator", self.discriminator, ("basic", "n_layers", "pixel"))
        _one_of("model.norm", self.norm, NORMS)
        _one_of("model.padding", self.padding, PADDINGS)
        _one_of("model.init_type", self.init_type, INIT_TYPES)
        for name in ("ngf", "ndf", "n_layers_d"):
            value = getattr(self, name)
            _check(value >= 1, f"model.{name} must be >= 1, got {value}")
        for name in ("in_channels", "out_channels"):  # kept as fields: release configs record them
            value = getattr(self, name)
            _check(value == 3, f"model.{name}={value} is not supported; expected 3 (training images are always read as RGB)")
        _check(self.init_gain > 0, f"model.init_gain must be positive, got {self.init_gain}")

    def generator_kwargs(self, *, in_channels: int | None = None, out_channels: int | None = None) -> dict[str, Any]:
        """Constructor arguments of the generator (what a release artifact records)."""
        return {
            "in_channels": self.in_channels if in_channels is None else in_channels,
            "out_channels": self.out_channels if out_channels is None else out_channels,
            "ngf": self.ngf,
            "norm": self.norm,
            "dropout": self.dropout,
            "padding": self.padding,
        }

    def discriminator_kwargs(self, *, in_channels: int | None = None) -> dict[str, Any]:
        return {
            "in_channels": self.in_channels if in_channels is None else in_channels,
            "ndf": self.ndf,
            "n_layers": self.n_layers_d,
            "norm": self.norm,
        }


@dataclass(frozen=True)
class ObjectiveConfig:
    """Loss weights (Zhu et al. 2017, eq. 3 and the identity term of section 5.2)."""

    gan_mode: str = "lsgan"
    lambda_a: float = 10.0  # cycle weight for A -> B -> A
    lambda_b: float = 10.0  # cycle weight for B -> A -> B
    lambda_identity: float = 0.5  # identity weight, relative to lambda_a / lambda_b
    pool_size: int = 50
    lambda_gp: float = 10.0  # WGAN-GP gradient penalty weight (Gulrajani et al. 2017)

    def __post_init__(self) -> None:
        _one_of("objective.gan_mode", self.gan_mode, GAN_MODES)
        for name in ("lambda_a", "lambda_b", "lambda_identity", "lambda_gp"):
            value = getattr(self, name)
            _check(value >= 0, f"objective.{name} must be >= 0, got {value}")
        _check(self.pool_size >= 0, f"objective.pool_size must be >= 0, got {self.pool_size}")


@dataclass(frozen=True)
class OptimConfig:
    """Adam and the learning-rate schedule (reference: 100 epochs constant + 100 linear decay)."""

    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    lr_policy: str = "linear"
    epochs: int = 100  # epochs at the initial learning rate
    epochs_decay: int = 100  # epochs of decay after that (linear and cosine)
    lr_decay_epochs: int = 50  # step policy: multiply by 0.1 every this many epochs
    max_steps: int | None = None  # stop after this many iterations (overrides the epoch count)

    def __post_init__(self) -> None:
        _check(self.lr > 0, f"optim.lr must be positive, got {self.lr}")
        _check(0 <= self.beta1 < 1 and 0 <= self.beta2 < 1, "optim.beta1 and optim.beta2 must be in [0, 1)")
        _one_of("optim.lr_policy", self.lr_policy, LR_POLICIES)
        _check(self.epochs >= 0 and self.epochs_decay >= 0, "optim.epochs and optim.epochs_decay must be >= 0")
        _check(self.epochs + self.epochs_decay >= 1 or self.max_steps, "training needs at least one epoch or step")
        _check(self.lr_decay_epochs >= 1, f"optim.lr_decay_epochs must be >= 1, got {self.lr_decay_epochs}")
        _check(self.max_steps is None or self.max_steps >= 1, f"optim.max_steps must be >= 1, got {self.max_steps}")

    @property
    def total_epochs(self) -> int:
        return self.epochs + self.epochs_decay


@dataclass(frozen=True)
class RunConfig:
    """Where the run lives and how often it reports, samples and saves."""

    out: str = "runs/cyclegan"
    seed: int = 0
    device: str = "auto"  # auto|cpu|cuda|cuda:N|mps
    precision: str = "auto"  # fp32 | bf16 | fp16 | auto (CPU: the fastest measured, brushwork.tuning; CUDA: bf16)
    channels_last: bool | None = None  # NHWC layout; None = auto (CPU: measured, brushwork.tuning; CUDA: on)
    gemm_weight_grad: bool | None = None  # conv weight gradients as GEMMs (CPU, fp32, NHWC); None = measured
    compile: bool | str = "auto"  # torch.compile the networks: true | false | auto (long runs, when a compiler is present)
    log_every: int = 10
    sample_every: int = 500
    checkpoint_every: int = 5000
    keep_checkpoints: int = 3
    tensorboard: bool = True
    export_at_end: bool = True
    progress: bool = True
    deterministic: bool = False

    def __post_init__(self) -> None:
        _one_of("run.precision", self.precision, PRECISIONS)
        _check(isinstance(self.compile, bool) or self.compile == "auto",
               f"run.compile={self.compile!r} is not valid; expected true, false or auto")  # fmt: skip
        for name in ("log_every", "sample_every", "checkpoint_every", "keep_checkpoints"):
            value = getattr(self, name)
            _check(value >= 1, f"run.{name} must be >= 1, got {value}")


@dataclass(frozen=True)
class EvalConfig:
    """Evaluation on the test split during training (KID/FID of each direction; 0 = off)."""

    every: int = 0  # evaluate every N steps; 0 turns it off
    metric: str = "kid"  # the metric that picks the best checkpoint (lower is better): kid|fid
    max_images: int | None = None  # use at most this many test images per domain
    inception_weights: str | None = None  # else $BRUSHWORK_INCEPTION_WEIGHTS or torch hub's cache
    batch_size: int = 16

    def __post_init__(self) -> None:
        _check(self.every >= 0, f"eval.every must be >= 0 (0 = off), got {self.every}")
        _one_of("eval.metric", self.metric, ("kid", "fid"))
        _check(self.max_images is None or self.max_images >= 2, f"eval.max_images must be >= 2, got {self.max_images}")
        _check(self.batch_size >= 1, f"eval.batch_size must be >= 1, got {self.batch_size}")


@dataclass(frozen=True)
class TrainConfig:
    method: str = "cyclegan"
    data: DataConfig = field(default_factory=DataConfig)  # fails unless data is given
    model: ModelConfig = field(default_factory=ModelConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    run: RunConfig = field(default_factory=RunConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def save(self, path: Path) -> None:
        from brushwork.utils.files import atomic_write_text

        atomic_write_text(path, yaml.safe_dump(self.to_dict(), sort_keys=False))


# ---------------------------------------------------------------------------------------------
# Resolution: defaults < YAML < flags

C = TypeVar("C")


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """Check ``value`` against the type hint ``hint``; ints widen to floats."""
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{where}: invalid value {value!r}")
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where} must be true or false, got {value!r}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{where} must be an integer, got {value!r}")
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{where} must be a number, got {value!r}")
    if hint is str:
        if isinstance(value, (str, Path)):
            return str(value)
        raise ConfigError(f"{where} must be a string, got {value!r}")
    return value


def build_dataclass(cls: type[C], values: Mapping[str, Any], where: str = "") -> C:
    """Build ``cls`` from a nested mapping, rejecting unknown keys and wrongly typed values."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - names)
    if unknown:
        prefix = f"{where}." if where else ""
        raise ConfigError(
            f"unknown config key {prefix}{unknown[0]!s}; valid keys{' of ' + where if where else ''}: "
            + ", ".join(sorted(names))
        )
    kwargs: dict[str, Any] = {}
    for name, value in values.items():
        key = f"{where}.{name}" if where else name
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            if not isinstance(value, Mapping):
                raise ConfigError(f"{key} must be a mapping of settings, got {value!r}")
            kwargs[name] = build_dataclass(hint, value, key)  # type: ignore[arg-type]
        else:
            kwargs[name] = _coerce(value, hint, key)
    try:
        return cls(**kwargs)
    except TypeError as exc:  # pragma: no cover - guarded by the key check above
        raise ConfigError(f"{where or cls.__name__}: {exc}") from exc


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged: dict[str, Any] = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def parse_assignment(text: str) -> dict[str, Any]:
    """``'optim.lr=1e-4'`` -> ``{'optim': {'lr': 0.0001}}`` (the value is read as YAML)."""
    if "=" not in text:
        raise ConfigError(f"--set expects section.key=value, got {text!r}")
    dotted, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {dotted}: cannot read value {raw!r}: {exc}") from exc
    result: dict[str, Any] = {}
    node = result
    parts = dotted.strip().split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return result


def load_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of sections, got {type(data).__name__}")
    return data


def resolve_train_config(
    *,
    config_file: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    assignments: list[str] | None = None,
) -> TrainConfig:
    """defaults < YAML file < ``overrides`` (flags, nested dict) < ``--set`` assignments."""
    values: dict[str, Any] = {}
    if config_file is not None:
        values = load_yaml(config_file)
    if overrides:
        values = deep_merge(values, overrides)
    for text in assignments or []:
        values = deep_merge(values, parse_assignment(text))
    return build_dataclass(TrainConfig, values)
