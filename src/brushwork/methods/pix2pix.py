"""pix2pix (Isola, Zhu, Zhou, Efros, CVPR 2017): a conditional GAN on paired images.

G maps an input image x to y; the PatchGAN D judges (x, y) pairs, concatenated on channels.
Per iteration, as in the authors' code (D first, then G on the same G(x)):
  phase "discriminator":  0.5 * (L(D(x, y), real) + L(D(x, G(x)), fake))        (eq. 1)
  phase "generator":      L(D(x, G(x)), real) + lambda_L1 * |y - G(x)|_1         (eq. 4, lambda 100)
Defaults follow the paper and the official code: U-Net 256 with dropout, batch norm, vanilla
(cross-entropy) GAN loss, no image pool, batch 1, Adam(2e-4, 0.5, 0.999), 100 + 100 epochs.
``objective.direction`` says which half of a pair is the input (AtoB: A -> B).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from brushwork.config import TrainConfig, check, one_of, setting
from brushwork.methods.base import Method, MethodSpec, Phase, ReleaseSpec, register_method
from brushwork.methods.losses import GANLoss
from brushwork.methods.settings import GAN_MODES, ImageGANModel, check_generator_fits
from brushwork.nn import build_discriminator, build_generator, init_weights


@dataclass(frozen=True)
class Pix2PixModel(ImageGANModel):
    """The official pix2pix architecture: U-Net 256 with dropout, batch norm, 70x70 PatchGAN."""

    generator: str = setting("unet_256", help="unet_256 | unet_128 | resnet_9blocks ... (pix2pix: unet_256)")
    norm: str = setting("batch", help="instance | batch | none (pix2pix: batch)")
    dropout: bool = setting(True, help="Dropout in the generator (pix2pix: on, also at test time).")


@dataclass(frozen=True)
class Pix2PixObjective:
    gan_mode: str = setting("vanilla", help="lsgan | vanilla | wgangp (pix2pix: vanilla).")
    lambda_l1: float = setting(100.0, flag="--lambda-l1", help="Weight of the L1 term (100).")
    direction: str = setting("AtoB", help="AtoB | BtoA: which half of a pair is the input.")

    def __post_init__(self) -> None:
        one_of("objective.gan_mode", self.gan_mode, GAN_MODES[:2])
        one_of("objective.direction", self.direction, ("AtoB", "BtoA"))
        check(self.lambda_l1 >= 0, f"objective.lambda_l1 must be >= 0, got {self.lambda_l1}")


class Pix2Pix(Method):
    def __init__(self, config: TrainConfig) -> None:
        model, objective = config.model, config.objective
        self.source, self.target = ("A", "B") if objective.direction == "AtoB" else ("B", "A")
        self._arch = {"name": model.generator, **model.generator_kwargs()}
        nets = {
            "G": build_generator(**self._arch),
            # conditional: D sees the input and the (real or generated) output side by side
            "D": build_discriminator(model.discriminator, **model.discriminator_kwargs(in_channels=model.in_channels + model.out_channels)),
        }
        for net in nets.values():
            init_weights(net, init_type=model.init_type, gain=model.init_gain)
        self.networks = nn.ModuleDict(nets)
        self.gan_loss = GANLoss(objective.gan_mode)
        self.lambda_l1 = objective.lambda_l1

    def phases(self) -> list[Phase]:
        return [Phase("discriminator", ("D",), forward=("G",)), Phase("generator", ("G",))]

    def phase_loss(self, phase: str, batch: dict[str, Tensor], ctx: dict[str, Any]) -> tuple[Tensor, dict[str, Tensor]]:
        G, D = self.networks["G"], self.networks["D"]
        real_x, real_y = batch[self.source], batch[self.target]
        if phase == "discriminator":
            fake_y = G(real_x)
            ctx["fake_y"] = fake_y  # with its graph: the generator phase backpropagates through it
            pred_fake = D(torch.cat([real_x, fake_y.detach()], 1))
            pred_real = D(torch.cat([real_x, real_y], 1))
            loss = 0.5 * (self.gan_loss(pred_fake, False) + self.gan_loss(pred_real, True))
            return loss, {"D": loss}
        if phase == "generator":
            fake_y = ctx["fake_y"]
            losses = {
                "G_gan": self.gan_loss(D(torch.cat([real_x, fake_y], 1)), True),
                "G_L1": F.l1_loss(fake_y.float(), real_y.float()) * self.lambda_l1,
            }
            return losses["G_gan"] + losses["G_L1"], losses
        raise KeyError(f"pix2pix has no phase {phase!r}")

    @torch.no_grad()
    def visuals(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        real_x = batch[self.source]
        return {f"real_{self.source}": real_x, f"fake_{self.target}": self.networks["G"](real_x), f"real_{self.target}": batch[self.target]}

    def release_specs(self) -> dict[str, ReleaseSpec]:
        return {f"{self.source}to{self.target}": ReleaseSpec("G", dict(self._arch), self.source, self.target)}


register_method(MethodSpec(
    name="pix2pix",
    summary="pix2pix (Isola et al. 2017): conditional GAN + L1 on paired images",
    model=Pix2PixModel,
    objective=Pix2PixObjective,
    data_kind="paired",
    build=Pix2Pix,
    check=check_generator_fits,
))
