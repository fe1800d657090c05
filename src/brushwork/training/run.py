"""Entry points that assemble a run from a resolved config: seeding, device, method, data, trainer."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import torch

from brushwork.checkpoints import find_resume_checkpoint, load_checkpoint
from brushwork.config import TrainConfig
from brushwork.data.builders import build_training_data
from brushwork.methods import build_method, method_spec
from brushwork.runs import load_run_config
from brushwork.training.distributed import Distributed, init_distributed, rank_seed, shutdown
from brushwork.training.trainer import (
    Trainer,
    TrainerHook,
    TrainResult,
    export_releases,
    load_method_weights,
)
from brushwork.utils.seed import seed_everything

log = logging.getLogger(__name__)


def run_training(config: TrainConfig, *, resume: str | Path | None = None, hooks: Sequence[TrainerHook] = ()) -> TrainResult:
    """Train ``config`` to the end (or resume it); ``hooks`` run every ``hook.every`` steps beside evaluation.

    Started by torchrun with 2 or more processes, each process trains its share of the data
    with DDP (:mod:`brushwork.training.distributed`); ``hooks`` run on rank 0 only.
    """
    distributed, device = init_distributed(config.run.device, sync_bn=config.run.sync_bn)
    result = _train(config, distributed, device, resume, list(hooks))
    # Only after a clean end: after a failure a peer may be gone, and torchrun ends the processes.
    shutdown(distributed)
    return result


def _train(config: TrainConfig, distributed: Distributed, device: torch.device, resume: str | Path | None,
           hooks: list[TrainerHook]) -> TrainResult:  # fmt: skip
    seed_everything(config.run.seed)
    if config.run.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = not config.run.deterministic
    method = build_method(config)  # from run.seed in every process: the same initial weights
    if distributed.rank > 0:  # each process's own randomness (pools, patches, noise); rank 0 keeps run.seed's stream
        seed_everything(rank_seed(config.run.seed, distributed.rank))
    data = build_training_data(method_spec(config.method).data_kind, config.data, config.run.seed)
    log.info("data: %s", data.description)
    log.info("device: %s, precision: %s", device, config.run.precision)
    if config.eval.every > 0 and distributed.is_main:
        from brushwork.training.evaluation import EvaluationHook

        hooks.append(EvaluationHook(config, device=device))
    trainer = Trainer(method, config, data, device=device, resume=resume, hooks=hooks, distributed=distributed)
    result = trainer.fit()
    if data.skipped:
        log.warning("skipped %d unreadable image(s): %s", len(data.skipped), ", ".join(map(str, data.skipped[:5])))
    return result


def export_run(run_dir: Path, *, checkpoint: Path | None = None, out: Path | None = None) -> dict[str, Path]:
    """Export the release models of ``run_dir`` from ``checkpoint`` (default: the latest)."""
    config = load_run_config(run_dir)
    path = find_resume_checkpoint(run_dir, checkpoint or "latest")
    state = load_checkpoint(path, pick_flag="--checkpoint")
    method = build_method(config)
    load_method_weights(method, state, str(path), exact=False)
    method.load_extra_state(state["method_state"])
    out_root = out if out is not None else run_dir / "release"
    return export_releases(method, config, out_root, step=int(state["step"]), run_dir=run_dir)
