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


class ConfigError(ValueError):
    """A configuration value or key is invalid; the message names it."""


def check(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def one_of(name: str, value: str, choices: tuple[str, ...]) -> None:
    check(value in choices, f"{name}={value!r} is not valid; expected one of {', '.join(choices)}")


def setting(default: Any = dataclasses.MISSING, *, help: str, flag: str | None = None, short: str | None = None,
            cli: bool = True, default_factory: Any = dataclasses.MISSING) -> Any:
    """A config field with what the command line needs to offer it as a flag.

    ``brushwork train`` makes one flag per field: ``--<field-name>`` unless ``flag`` names it
    (``"--steps"``; for a boolean ``"--compile/--no-compile"``); ``cli=False`` keeps it to YAML
    and ``--set``. ``help`` is the flag's help text.
    """
    metadata = {"help": help, "flag": flag, "short": short, "cli": cli}
    if default_factory is not dataclasses.MISSING:
        return field(default_factory=default_factory, metadata=metadata)
    return field(default=default, metadata=metadata)


PREPROCESS_MODES = ("resize_and_crop", "crop", "scale_width", "scale_width_and_crop", "none")
LR_POLICIES = ("linear", "step", "cosine", "plateau", "constant", "inverse")
PRECISIONS = ("fp32", "bf16", "fp16", "auto")


@dataclass(frozen=True)
class DataConfig:
    """Where the two domains come from and how images are prepared (reference defaults)."""

    root: str | None = setting(None, flag="--data", help="Data folder: trainA/ and trainB/ (unpaired), train/ of aligned AB images or trainA/ trainB/ matched by name (paired), or a folder of images (one domain).")
    dir_a: str | None = setting(None, flag="--data-a", help="Folder of domain A images (instead of --data).")
    dir_b: str | None = setting(None, flag="--data-b", help="Folder of domain B images (instead of --data).")
    load_size: int = setting(286, help="Resize to this size before cropping (286).")
    crop_size: int = setting(256, help="Random crop size (256).")
    preprocess: str = setting("resize_and_crop", help="resize_and_crop | crop | scale_width | scale_width_and_crop | none")
    flip: bool = setting(True, help="Flip images left-right at random (on).")
    max_dataset_size: int | None = setting(None, help="Use at most this many images per domain.")
    batch_size: int = setting(1, short="-b", help="Batch size (1).")
    num_workers: int = setting(2, flag="--workers", help="Data loader worker processes (2).")
    skip_bad_images: bool = setting(False, help="Skip unreadable images (counted) instead of stopping.")
    serial_batches: bool = setting(False, help="Take images in order instead of at random.")
    cache: str = setting("auto", help="Decode images once and keep them in RAM: auto | ram | none.")

    def __post_init__(self) -> None:
        check(
            self.root is not None or (self.dir_a is not None and self.dir_b is not None),
            "data: give data.root (a folder with trainA/ and trainB/) or both data.dir_a and data.dir_b",
        )
        one_of("data.preprocess", self.preprocess, PREPROCESS_MODES)
        check(self.load_size > 0, f"data.load_size must be positive, got {self.load_size}")
        check(self.crop_size > 0, f"data.crop_size must be positive, got {self.crop_size}")
        if self.preprocess in ("resize_and_crop", "scale_width_and_crop"):
            check(
                self.crop_size <= self.load_size,
                f"data.crop_size={self.crop_size} is larger than data.load_size={self.load_size}; "
                "the crop must fit inside the resized image",
            )
        check(self.batch_size >= 1, f"data.batch_size must be >= 1, got {self.batch_size}")
        check(self.num_workers >= 0, f"data.num_workers must be >= 0, got {self.num_workers}")
        check(
            self.max_dataset_size is None or self.max_dataset_size >= 1,
            f"data.max_dataset_size must be >= 1, got {self.max_dataset_size}",
        )
        one_of("data.cache", self.cache, ("auto", "ram", "none"))


@dataclass(frozen=True)
class OptimConfig:
    """Adam and the learning-rate schedule (reference: 100 epochs constant + 100 linear decay)."""

    lr: float = setting(2e-4, help="Adam learning rate (0.0002).")
    beta1: float = setting(0.5, help="Adam beta1 (0.5).")
    beta2: float = setting(0.999, help="Adam beta2 (0.999).")
    lr_policy: str = setting("linear", help="linear | step | cosine | plateau | constant | inverse")
    epochs: int = setting(100, help="Epochs at the initial learning rate (100).")
    epochs_decay: int = setting(100, help="Epochs of learning-rate decay after that (100; linear and cosine).")
    lr_decay_epochs: int = setting(50, help="step policy: multiply the rate by 0.1 every this many epochs (50).")
    lr_decay_rate: float = setting(5e-5, help="inverse policy: rate = lr / (1 + this x iteration) (AdaIN: 5e-5).")
    max_steps: int | None = setting(None, flag="--steps", help="Stop after this many iterations (the schedule is fitted to them).")

    def __post_init__(self) -> None:
        check(self.lr > 0, f"optim.lr must be positive, got {self.lr}")
        check(0 <= self.beta1 < 1 and 0 <= self.beta2 < 1, "optim.beta1 and optim.beta2 must be in [0, 1)")
        one_of("optim.lr_policy", self.lr_policy, LR_POLICIES)
        check(self.epochs >= 0 and self.epochs_decay >= 0, "optim.epochs and optim.epochs_decay must be >= 0")
        check(self.epochs + self.epochs_decay >= 1 or self.max_steps, "training needs at least one epoch or step")
        check(self.lr_decay_epochs >= 1, f"optim.lr_decay_epochs must be >= 1, got {self.lr_decay_epochs}")
        check(self.lr_decay_rate >= 0, f"optim.lr_decay_rate must be >= 0, got {self.lr_decay_rate}")
        check(self.max_steps is None or self.max_steps >= 1, f"optim.max_steps must be >= 1, got {self.max_steps}")

    @property
    def total_epochs(self) -> int:
        return self.epochs + self.epochs_decay


@dataclass(frozen=True)
class RunConfig:
    """Where the run lives and how often it reports, samples and saves."""

    out: str = setting("", short="-o", help="Run folder (default runs/<method>).")
    seed: int = setting(0, help="Random seed (0).")
    device: str = setting("auto", help="auto | cpu | cuda | cuda:N | mps")
    precision: str = setting("auto", help="fp32 | bf16 | fp16 | auto (CPU: the fastest measured on this machine; CUDA: bf16)")
    channels_last: bool | None = setting(None, help="NHWC memory layout (default: measured on this CPU; CUDA: on).")
    gemm_weight_grad: bool | None = setting(None, help="Conv weight gradients as GEMMs (CPU, fp32, channels_last; default: measured on this CPU).")
    compile: bool | str = setting("auto", flag="--compile/--no-compile", help="torch.compile the networks (default: auto, on for runs of 2000+ iterations when a compiler is present).")
    log_every: int = setting(10, help="Log losses every N steps (10).")
    sample_every: int = setting(500, help="Save a sample grid every N steps (500).")
    checkpoint_every: int = setting(5000, help="Save a checkpoint every N steps (5000).")
    keep_checkpoints: int = setting(3, help="Keep the newest K checkpoints (3).")
    tensorboard: bool = setting(True, help="Write TensorBoard logs (on).")
    export_at_end: bool = setting(True, help="Write release folders at the end (on).")
    progress: bool = setting(True, help="Show a progress bar (on).")
    deterministic: bool = setting(False, help="Deterministic algorithms where PyTorch has them (slower).")
    sync_bn: bool = setting(False, help="Under torchrun: batch norm statistics over all processes (SyncBatchNorm; CUDA only).")

    def __post_init__(self) -> None:
        check(bool(self.out), "run.out is empty; give a run folder")
        one_of("run.precision", self.precision, PRECISIONS)
        check(isinstance(self.compile, bool) or self.compile == "auto",
               f"run.compile={self.compile!r} is not valid; expected true, false or auto")  # fmt: skip
        for name in ("log_every", "sample_every", "checkpoint_every", "keep_checkpoints"):
            value = getattr(self, name)
            check(value >= 1, f"run.{name} must be >= 1, got {value}")


@dataclass(frozen=True)
class EvalConfig:
    """Evaluation on the test split during training (KID/FID of each direction; 0 = off)."""

    every: int = setting(0, flag="--eval-every", help="Evaluate KID/FID on the test split every N steps and keep the best model (0 = off).")
    metric: str = setting("kid", flag="--eval-metric", help="kid | fid: picks the best model (RUN/best/<name>/).")
    max_images: int | None = setting(None, flag="--eval-max-images", help="Evaluate on at most N test images per domain.")
    inception_weights: str | None = setting(None, flag="--inception-weights", help="Inception weights file for --eval-every (else $BRUSHWORK_INCEPTION_WEIGHTS or torch hub's cache).")
    batch_size: int = setting(16, flag="--eval-batch-size", help="Images per Inception forward pass (16).")
    samples: int = setting(1000, flag="--eval-samples", help="Images a noise -> image generator makes per evaluation (1000).")

    def __post_init__(self) -> None:
        check(self.every >= 0, f"eval.every must be >= 0 (0 = off), got {self.every}")
        one_of("eval.metric", self.metric, ("kid", "fid"))
        check(self.max_images is None or self.max_images >= 2, f"eval.max_images must be >= 2, got {self.max_images}")
        check(self.batch_size >= 1, f"eval.batch_size must be >= 1, got {self.batch_size}")
        check(self.samples >= 2, f"eval.samples must be >= 2, got {self.samples}")


SHARED_SECTIONS: dict[str, type] = {"data": DataConfig, "optim": OptimConfig, "run": RunConfig, "eval": EvalConfig}
METHOD_SECTIONS = ("model", "objective")


@dataclass(frozen=True)
class TrainConfig:
    """A whole run's settings. ``model`` and ``objective`` are the chosen method's own dataclasses
    (``brushwork.methods``: each method registers its types and defaults); build one with
    :func:`resolve_train_config` or :meth:`from_dict`, which pick those types by ``method``."""

    method: str
    data: DataConfig
    model: Any
    objective: Any
    optim: OptimConfig = field(default_factory=OptimConfig)
    run: RunConfig = field(default_factory=lambda: RunConfig(out="runs/run"))
    eval: EvalConfig = field(default_factory=EvalConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def save(self, path: Path) -> None:
        from brushwork.utils.files import atomic_write_text

        atomic_write_text(path, yaml.safe_dump(self.to_dict(), sort_keys=False))

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TrainConfig:
        """Build from nested settings: the method's defaults < ``values``; unknown keys are errors."""
        from brushwork.methods import method_spec

        values = dict(values)
        method = values.pop("method", "cyclegan")
        check(isinstance(method, str), f"method must be a name, got {method!r}")
        spec = method_spec(method)
        unknown = sorted(set(values) - set(SHARED_SECTIONS) - set(METHOD_SECTIONS))
        if unknown:
            valid = ", ".join(["method", *SHARED_SECTIONS, *METHOD_SECTIONS])
            raise ConfigError(f"unknown config key {unknown[0]}; valid sections: {valid}")
        merged = deep_merge(spec.defaults, values)
        run = dict(merged.get("run") or {})
        if not run.get("out"):
            run["out"] = f"runs/{method}"
        merged["run"] = run
        sections: dict[str, Any] = {}
        types = {**SHARED_SECTIONS, "model": spec.model, "objective": spec.objective}
        for name, section_type in types.items():
            section_values = merged.get(name) or {}
            if not isinstance(section_values, Mapping):
                raise ConfigError(f"{name} must be a mapping of settings, got {section_values!r}")
            sections[name] = build_dataclass(section_type, section_values, name)
        config = cls(method=method, **sections)
        spec.check(config)
        return config


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
    """defaults (the method's) < YAML file < ``overrides`` (flags, nested dict) < ``--set`` assignments."""
    values: dict[str, Any] = {}
    if config_file is not None:
        values = load_yaml(config_file)
    if overrides:
        values = deep_merge(values, overrides)
    for text in assignments or []:
        values = deep_merge(values, parse_assignment(text))
    return TrainConfig.from_dict(values)
