"""Learning-rate schedules: per epoch as in the reference, or stretched over ``--steps`` iterations.

Without ``optim.max_steps`` a schedule is stepped once per epoch over ``epochs + epochs_decay``
epochs, exactly as the reference implementation does. With it, a run's length is set in
iterations and may end long before epoch 200, so the same shape is laid over its ``max_steps``
iterations instead and stepped once per iteration (:func:`steps_per_iteration`): ``linear``
keeps the rate for the first ``epochs / (epochs + epochs_decay)`` of them, then decays it.
``plateau`` reacts to an epoch's mean loss, so it always steps per epoch; ``inverse`` (AdaIN's
``lr / (1 + lr_decay_rate * iteration)``) is defined per iteration, so it always steps per iteration.
"""

from __future__ import annotations

from torch.optim import Optimizer
from torch.optim.lr_scheduler import (
    CosineAnnealingLR,
    LambdaLR,
    LRScheduler,
    ReduceLROnPlateau,
    StepLR,
)

from brushwork.config import OptimConfig

Scheduler = LRScheduler | ReduceLROnPlateau


def steps_per_iteration(cfg: OptimConfig) -> bool:
    """Whether the trainer steps this schedule after every iteration (else after every epoch)."""
    return cfg.lr_policy == "inverse" or (cfg.max_steps is not None and cfg.lr_policy != "plateau")


def build_scheduler(optimizer: Optimizer, cfg: OptimConfig) -> Scheduler:
    """``linear``: constant for ``epochs``, then linear decay to 0 over ``epochs_decay`` (reference).

    ``step``: x0.1 every ``lr_decay_epochs``; ``cosine``: cosine annealing to 0 over all epochs;
    ``plateau``: x0.2 when the epoch's mean loss stops improving by 1% for 5 epochs;
    ``constant``: no change. With ``max_steps`` the epochs become that many iterations in all,
    split in the same proportions.
    """
    if cfg.lr_policy == "inverse":
        rate = cfg.lr_decay_rate
        return LambdaLR(optimizer, lr_lambda=lambda n: 1.0 / (1.0 + rate * n))
    if steps_per_iteration(cfg):
        assert cfg.max_steps is not None
        total, epochs = cfg.max_steps, max(1, cfg.total_epochs)
        keep = total * cfg.epochs // epochs
        decay, step_size = total - keep, max(1, total * cfg.lr_decay_epochs // epochs)
    else:
        keep, decay, step_size, total = cfg.epochs, cfg.epochs_decay, cfg.lr_decay_epochs, max(1, cfg.total_epochs)
    if cfg.lr_policy == "linear":
        # Unit n (0-based epoch or iteration) trains at lr * (1 - max(0, n + 1 - keep) / (decay + 1)).
        def linear(n: int) -> float:
            return 1.0 - max(0, n + 1 - keep) / float(decay + 1)

        return LambdaLR(optimizer, lr_lambda=linear)
    if cfg.lr_policy == "step":
        return StepLR(optimizer, step_size=step_size, gamma=0.1)
    if cfg.lr_policy == "cosine":
        return CosineAnnealingLR(optimizer, T_max=total, eta_min=0.0)
    if cfg.lr_policy == "plateau":
        return ReduceLROnPlateau(optimizer, mode="min", factor=0.2, threshold=0.01, patience=5)
    if cfg.lr_policy == "constant":
        return LambdaLR(optimizer, lr_lambda=lambda _n: 1.0)
    raise ValueError(f"unknown lr_policy {cfg.lr_policy!r}")


def step_scheduler(scheduler: Scheduler, epoch_loss: float) -> None:
    if isinstance(scheduler, ReduceLROnPlateau):
        scheduler.step(epoch_loss)
    else:
        scheduler.step()
