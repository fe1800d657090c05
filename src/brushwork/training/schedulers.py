"""Learning-rate schedules, stepped once per epoch as in the reference implementation."""

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


def build_scheduler(optimizer: Optimizer, cfg: OptimConfig) -> Scheduler:
    """``linear``: constant for ``epochs``, then linear decay to 0 over ``epochs_decay`` (reference).

    ``step``: x0.1 every ``lr_decay_epochs``; ``cosine``: cosine annealing to 0 over all epochs;
    ``plateau``: x0.2 when the epoch's mean loss stops improving by 1% for 5 epochs;
    ``constant``: no change.
    """
    if cfg.lr_policy == "linear":
        # Epoch e (0-based) trains at lr * (1 - max(0, e + 1 - epochs) / (epochs_decay + 1)).
        def linear(epoch: int) -> float:
            return 1.0 - max(0, epoch + 1 - cfg.epochs) / float(cfg.epochs_decay + 1)

        return LambdaLR(optimizer, lr_lambda=linear)
    if cfg.lr_policy == "step":
        return StepLR(optimizer, step_size=cfg.lr_decay_epochs, gamma=0.1)
    if cfg.lr_policy == "cosine":
        return CosineAnnealingLR(optimizer, T_max=max(1, cfg.total_epochs), eta_min=0.0)
    if cfg.lr_policy == "plateau":
        return ReduceLROnPlateau(optimizer, mode="min", factor=0.2, threshold=0.01, patience=5)
    if cfg.lr_policy == "constant":
        return LambdaLR(optimizer, lr_lambda=lambda _epoch: 1.0)
    raise ValueError(f"unknown lr_policy {cfg.lr_policy!r}")


def step_scheduler(scheduler: Scheduler, epoch_loss: float) -> None:
    if isinstance(scheduler, ReduceLROnPlateau):
        scheduler.step(epoch_loss)
    else:
        scheduler.step()
