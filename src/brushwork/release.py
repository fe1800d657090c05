"""Release artifacts: one generator direction as ``config.json`` + ``model.safetensors``.

A release folder rebuilds its generator with no training code and no training flags:

    model_dir/
      config.json        format, architecture (registry name + constructor arguments),
                         preprocessing, direction, test mode, provenance
      model.safetensors  the generator's state dict (unwrapped, fp32)
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from brushwork import __version__
from brushwork.nn.generators import build_generator, generator_multiple
from brushwork.nn.modes import TEST_MODES, check_test_mode
from brushwork.nn.style_networks import build_style_network, is_style_network
from brushwork.registry import RegistryError
from brushwork.utils.files import atomic_dir

FORMAT = "brushwork.generator"
FORMAT_VERSION = 2  # 2: names its pipeline kind (version 1 files are image-to-image generators)
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


class ReleaseError(ValueError):
    """A release folder is missing, malformed or incompatible; the message names it."""


@dataclass(frozen=True)
class Preprocessing:
    """How inference must prepare an image for this generator."""

    input_range: tuple[float, float] = (-1.0, 1.0)
    size_multiple: int = 4  # sides are padded to a multiple of this
    train_size: int = 256  # the crop size it was trained at (a hint for --size)


@dataclass(frozen=True)
class ReleaseConfig:
    architecture: dict[str, Any]
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    direction: str = "AtoB"
    source_domain: str = "A"
    target_domain: str = "B"
    provenance: dict[str, Any] = field(default_factory=dict)
    #: the inference pipeline that runs it (brushwork.inference.pipeline.PIPELINES)
    pipeline: str = "image-to-image"
    #: batch norm and dropout at inference: "eval", or the pix2pix authors' "train_like"
    #: (per-image statistics, seeded dropout); brushwork.nn.modes.apply_test_mode applies it
    test_mode: str = "eval"
    format: str = FORMAT
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        check_test_mode(self.test_mode)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=False) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str) -> ReleaseConfig:
        if data.get("format") != FORMAT:
            raise ReleaseError(f"{where}: not a brushwork generator config (format={data.get('format')!r})")
        version = data.get("format_version")
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise ReleaseError(
                f"{where}: format_version {version!r} is newer than this brushwork reads ({FORMAT_VERSION}); upgrade brushwork"
            )
        arch = data.get("architecture")
        if not isinstance(arch, dict) or "name" not in arch:
            raise ReleaseError(f"{where}: 'architecture' must be a mapping with a 'name'")
        test_mode = data.get("test_mode", "eval")  # absent before pix2pix releases: eval
        if test_mode not in TEST_MODES:
            raise ReleaseError(f"{where}: unknown test_mode {test_mode!r}; expected one of {', '.join(TEST_MODES)}")
        pre = data.get("preprocessing", {})
        try:
            preprocessing = Preprocessing(**{**pre, "input_range": tuple(pre.get("input_range", (-1.0, 1.0)))})
        except TypeError as exc:
            raise ReleaseError(f"{where}: bad 'preprocessing': {exc}") from None
        return cls(
            architecture=arch,
            preprocessing=preprocessing,
            direction=str(data.get("direction", "AtoB")),
            source_domain=str(data.get("source_domain", "A")),
            target_domain=str(data.get("target_domain", "B")),
            provenance=dict(data.get("provenance", {})),
            pipeline=str(data.get("pipeline", "image-to-image")),
            test_mode=test_mode,
        )


def build_from_architecture(arch: dict[str, Any], where: str = "architecture") -> nn.Module:
    """The network ``arch`` names: a style network (AdaIN, :mod:`brushwork.nn.style_networks`) or a generator."""
    kwargs = {k: v for k, v in arch.items() if k != "name"}
    try:
        if is_style_network(arch["name"]):
            return build_style_network(arch["name"], **kwargs)
        return build_generator(arch["name"], **kwargs)
    except (RegistryError, TypeError, ValueError) as exc:
        raise ReleaseError(f"{where}: cannot build network {arch!r}: {exc}") from None


def save_release(model: nn.Module, out_dir: Path, config: ReleaseConfig, *, extra_files: Mapping[str, str] | None = None) -> Path:
    """Write a release folder atomically as a whole and return it.

    An existing release there is replaced (a reader sees the old files or the new ones, never new
    weights with an old config); ``extra_files`` (name -> text, e.g. ``best.json``) go into the
    same folder in the same step. A folder holding anything else is refused, so a mistyped
    ``--out`` cannot delete a user's files.
    """
    tensors = {k: v.detach().float().contiguous().cpu() for k, v in model.state_dict().items()}
    metadata = {"format": FORMAT, "format_version": str(FORMAT_VERSION), "brushwork_version": __version__}
    extra = dict(extra_files or {})
    if out_dir.exists() and not out_dir.is_dir():
        raise ReleaseError(f"cannot write release folder {out_dir}: it is a file, expected a folder")
    ours = {CONFIG_NAME, WEIGHTS_NAME, *extra}
    foreign = sorted(p.name for p in out_dir.iterdir() if p.name not in ours) if out_dir.is_dir() else []
    if foreign:
        raise ReleaseError(f"{out_dir} holds {foreign[0]}, which a release folder does not; choose an empty or new folder")
    try:
        with atomic_dir(out_dir) as tmp:
            save_file(tensors, str(tmp / WEIGHTS_NAME), metadata=metadata)
            for name, text in {CONFIG_NAME: config.to_json(), **extra}.items():
                (tmp / name).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ReleaseError(f"cannot write release folder {out_dir} ({exc.strerror or exc})") from None
    return out_dir


def release_config_for(arch: dict[str, Any], *, direction: str, source: str, target: str, train_size: int,
                       provenance: dict[str, Any], pipeline: str = "image-to-image", test_mode: str = "eval",
                       input_range: tuple[float, float] = (-1.0, 1.0), size_multiple: int | None = None) -> ReleaseConfig:
    """The config of a release of a trained network; ``size_multiple`` None: what the generator ``arch`` names needs."""
    multiple = generator_multiple(arch["name"]) if size_multiple is None else size_multiple
    return ReleaseConfig(
        architecture=arch,
        pipeline=pipeline,
        test_mode=test_mode,
        preprocessing=Preprocessing(input_range=input_range, size_multiple=multiple, train_size=train_size),
        direction=direction,
        source_domain=source,
        target_domain=target,
        provenance={"brushwork_version": __version__, **provenance},
    )


def read_release_config(model_dir: Path) -> ReleaseConfig:
    config_path = model_dir / CONFIG_NAME
    if not model_dir.is_dir():
        raise ReleaseError(f"model folder {model_dir} does not exist")
    if not config_path.is_file():
        raise ReleaseError(f"{model_dir} is not a brushwork model folder: {CONFIG_NAME} is missing")
    try:
        data = json.loads(config_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ReleaseError(f"{config_path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ReleaseError(f"{config_path}: expected a JSON object")
    return ReleaseConfig.from_dict(data, str(config_path))


def load_release(model_dir: Path | str, map_location: str | torch.device = "cpu") -> tuple[nn.Module, ReleaseConfig]:
    """Rebuild the generator of ``model_dir`` in eval mode, with strictly matching weights."""
    model_dir = Path(model_dir)
    config = read_release_config(model_dir)
    weights = model_dir / WEIGHTS_NAME
    if not weights.is_file():
        raise ReleaseError(f"{model_dir} is not a brushwork model folder: {WEIGHTS_NAME} is missing")
    try:
        state = load_file(str(weights), device=str(map_location))
    except (SafetensorError, OSError) as exc:
        raise ReleaseError(f"{weights}: unreadable safetensors file ({exc})") from None
    model = build_from_architecture(config.architecture, str(model_dir / CONFIG_NAME))
    missing, unexpected = _key_mismatch(model, state)
    if missing or unexpected:
        raise ReleaseError(
            f"{weights}: weights do not match architecture {config.architecture['name']!r}: "
            f"missing {missing[:3]}{'...' if len(missing) > 3 else ''}, unexpected {unexpected[:3]}{'...' if len(unexpected) > 3 else ''}"
        )
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ReleaseError(f"{weights}: weights do not fit architecture {config.architecture!r}: {exc}") from None
    return model.eval(), config


def _key_mismatch(model: nn.Module, state: dict[str, torch.Tensor]) -> tuple[list[str], list[str]]:
    expected = set(model.state_dict())
    return sorted(expected - set(state)), sorted(set(state) - expected)
