"""Reading training run folders, for inference and export, without the trainer.

A run folder holds ``config.yaml`` (the resolved :class:`~brushwork.config.TrainConfig`),
``checkpoints/step_*.pt`` (training states) and ``release/<name>/`` folders. The method named
in the config rebuilds the networks (no optimiser, data or trainer is built).
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from brushwork.checkpoints import CheckpointError, find_resume_checkpoint, load_checkpoint
from brushwork.config import TrainConfig, load_yaml
from brushwork.release import ReleaseConfig

RUN_CONFIG = "config.yaml"


def load_run_config(run_dir: Path) -> TrainConfig:
    path = run_dir / RUN_CONFIG
    if not path.is_file():
        raise CheckpointError(f"{run_dir} is not a brushwork run folder: {RUN_CONFIG} is missing")
    return TrainConfig.from_dict(load_yaml(path))


def load_run_generator(run_dir: Path, direction: str | None, checkpoint: Path | None = None) -> tuple[nn.Module, ReleaseConfig]:
    """Rebuild one released generator of a training run from its config and a checkpoint (default: latest)."""
    from brushwork.inference.sources import DirectionRequiredError, ModelSourceError
    from brushwork.methods import build_method

    config = load_run_config(run_dir)
    method = build_method(config)
    specs = method.release_specs()
    if direction is None and len(specs) == 1:
        direction = next(iter(specs))
    if direction is None or direction not in specs:
        given = "no direction was given" if direction is None else f"direction {direction!r} is not one of them"
        raise DirectionRequiredError(f"{run_dir} is a training run with generators {', '.join(specs)}; {given}", run_dir, tuple(specs))
    spec = specs[direction]
    path = find_resume_checkpoint(run_dir, checkpoint or "latest")
    state = load_checkpoint(path)
    states = {**(state.get("frozen") or {}), **state.get("networks", {})}
    try:
        model = method.release_network(direction, states, str(run_dir))
    except (KeyError, RuntimeError) as exc:
        raise ModelSourceError(f"{path}: no usable weights for network {spec.network!r} ({exc})") from None
    if "method_state" in state:
        method.load_extra_state(state["method_state"])
    release = spec.release_config(direction, train_size=config.data.crop_size, provenance={
        "run": str(run_dir), "checkpoint": path.name, "step": state.get("step"), **method.release_provenance()})
    return model.eval(), release
