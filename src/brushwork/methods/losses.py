"""Adversarial objectives and the WGAN-GP gradient penalty."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class GANLoss(nn.Module):
    """Adversarial loss against a constant real/fake target.

    * ``lsgan`` (Mao et al. 2017): mean squared error to 1 (real) or 0 (fake).
    * ``vanilla`` (Goodfellow et al. 2014): binary cross-entropy on logits.
    * ``wgangp`` (Gulrajani et al. 2017): -mean(D) for real, +mean(D) for fake.

    Predictions are promoted to fp32 so that the loss is exact under mixed precision.
    """

    def __init__(self, mode: str) -> None:
        super().__init__()
        if mode not in ("lsgan", "vanilla", "wgangp"):
            raise ValueError(f"unknown gan_mode {mode!r}; expected lsgan, vanilla or wgangp")
        self.mode = mode

    def forward(self, prediction: Tensor, target_is_real: bool) -> Tensor:
        prediction = prediction.float()
        if self.mode == "wgangp":
            return -prediction.mean() if target_is_real else prediction.mean()
        target = torch.full_like(prediction, 1.0 if target_is_real else 0.0)
        if self.mode == "lsgan":
            return F.mse_loss(prediction, target)
        return F.binary_cross_entropy_with_logits(prediction, target)


def gradient_penalty(discriminator: nn.Module, real: Tensor, fake: Tensor, *, constant: float = 1.0) -> Tensor:
    """E[(||grad D(x_hat)||_2 - constant)^2] on random interpolates of real and fake."""
    alpha = torch.rand(real.shape[0], 1, 1, 1, device=real.device, dtype=real.dtype)
    mixed = (alpha * real + (1 - alpha) * fake.detach()).requires_grad_(True)
    out = discriminator(mixed)
    (grads,) = torch.autograd.grad(out.float().sum(), mixed, create_graph=True)
    norms = grads.flatten(1).float().norm(2, dim=1)
    return ((norms - constant) ** 2).mean()
