"""CycleGAN (Zhu, Park, Isola, Efros, ICCV 2017).

Names follow the paper, with the reference code's names in brackets:
G: A -> B [netG_A], F: B -> A [netG_B], D_B judges domain B [netD_A], D_A judges domain A [netD_B].

Per iteration:
  phase "generators" (D_A, D_B frozen):
    L_GAN(G, D_B) + L_GAN(F, D_A)                                  (eq. 1, LSGAN by default)
    + lambda_A * |F(G(a)) - a|_1 + lambda_B * |G(F(b)) - b|_1      (eq. 2, weights of eq. 3)
    + lambda_idt * (lambda_B * |G(b) - b|_1 + lambda_A * |F(a) - a|_1)   (identity, sec. 5.2)
  phase "discriminators":
    0.5 * (L(D_B(b), real) + L(D_B(pool_B(G(a))), fake)) and the same for D_A.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from brushwork.config import TrainConfig, check, one_of, setting
from brushwork.methods.base import Method, MethodSpec, Phase, ReleaseSpec, register_method
from brushwork.methods.losses import GANLoss, gradient_penalty
from brushwork.methods.pool import ImagePool
from brushwork.methods.settings import GAN_MODES, ImageGANModel
from brushwork.nn import build_discriminator, build_generator, init_weights


@dataclass(frozen=True)
class CycleGANModel(ImageGANModel):
    """CycleGAN's architectures: the reference defaults of :class:`ImageGANModel`."""


@dataclass(frozen=True)
class CycleGANObjective:
    """Loss weights (Zhu et al. 2017, eq. 3 and the identity term of section 5.2)."""

    gan_mode: str = setting("lsgan", help="lsgan | vanilla | wgangp (lsgan).")
    lambda_a: float = setting(10.0, flag="--lambda-a", help="Cycle weight A->B->A (10).")
    lambda_b: float = setting(10.0, flag="--lambda-b", help="Cycle weight B->A->B (10).")
    lambda_identity: float = setting(0.5, help="Identity weight, relative to the cycle weights (0.5).")
    pool_size: int = setting(50, help="Image history pool size (50; 0 = off).")
    lambda_gp: float = setting(10.0, help="WGAN-GP gradient penalty weight (10).")

    def __post_init__(self) -> None:
        one_of("objective.gan_mode", self.gan_mode, GAN_MODES)
        for name in ("lambda_a", "lambda_b", "lambda_identity", "lambda_gp"):
            value = getattr(self, name)
            check(value >= 0, f"objective.{name} must be >= 0, got {value}")
        check(self.pool_size >= 0, f"objective.pool_size must be >= 0, got {self.pool_size}")


class CycleGAN(Method):
    def __init__(self, config: TrainConfig) -> None:
        model, objective = config.model, config.objective
        self.config = config
        gen_arch = {"name": model.generator, **model.generator_kwargs()}
        self._gen_arch_ab = gen_arch
        self._gen_arch_ba = {
            "name": model.generator,
            **model.generator_kwargs(in_channels=model.out_channels, out_channels=model.in_channels),
        }
        nets = {
            "G": build_generator(**self._gen_arch_ab),
            "F": build_generator(**self._gen_arch_ba),
            "D_B": build_discriminator(model.discriminator, **model.discriminator_kwargs(in_channels=model.out_channels)),
            "D_A": build_discriminator(model.discriminator, **model.discriminator_kwargs(in_channels=model.in_channels)),
        }
        for net in nets.values():
            init_weights(net, init_type=model.init_type, gain=model.init_gain)
        self.networks = nn.ModuleDict(nets)
        self.gan_loss = GANLoss(objective.gan_mode)
        self.lambda_a = objective.lambda_a
        self.lambda_b = objective.lambda_b
        self.lambda_idt = objective.lambda_identity
        self.lambda_gp = objective.lambda_gp
        self.pool_a = ImagePool(objective.pool_size)  # fakes of domain A, F(b)
        self.pool_b = ImagePool(objective.pool_size)  # fakes of domain B, G(a)
        # Passes of one network over two batches run as one batch when that is exact: with
        # instance norm (or none) every sample is normalised on its own. Batch norm would mix them.
        self.fuse_passes = model.norm != "batch"

    def phases(self) -> list[Phase]:
        return [Phase("generators", ("G", "F")), Phase("discriminators", ("D_A", "D_B"))]

    def phase_loss(self, phase: str, batch: dict[str, Tensor], ctx: dict[str, Any]) -> tuple[Tensor, dict[str, Tensor]]:
        if phase == "generators":
            return self._generator_loss(batch["A"], batch["B"], ctx)
        if phase == "discriminators":
            return self._discriminator_loss(batch["A"], batch["B"], ctx)
        raise KeyError(f"CycleGAN has no phase {phase!r}")

    def _generator_loss(self, real_a: Tensor, real_b: Tensor, ctx: dict[str, Any]) -> tuple[Tensor, dict[str, Tensor]]:
        G, F_, D_A, D_B = (self.networks[k] for k in ("G", "F", "D_A", "D_B"))
        n = real_a.shape[0]
        idt_b = idt_a = None
        if self.lambda_idt > 0 and self.fuse_passes:
            # G(a) and G(b) share weights: one pass over both batches (exact, as every norm is per sample)
            fake_b, idt_b = G(torch.cat([real_a, real_b])).split(n)
            fake_a, idt_a = F_(torch.cat([real_b, real_a])).split(n)
        else:
            fake_b, fake_a = G(real_a), F_(real_b)
            if self.lambda_idt > 0:
                idt_b, idt_a = G(real_b), F_(real_a)
        rec_a = F_(fake_b)
        rec_b = G(fake_a)
        losses: dict[str, Tensor] = {
            "G_gan": self.gan_loss(D_B(fake_b), True),
            "F_gan": self.gan_loss(D_A(fake_a), True),
            "cycle_A": F.l1_loss(rec_a.float(), real_a.float()) * self.lambda_a,
            "cycle_B": F.l1_loss(rec_b.float(), real_b.float()) * self.lambda_b,
        }
        if idt_b is not None and idt_a is not None:
            losses["idt_B"] = F.l1_loss(idt_b.float(), real_b.float()) * self.lambda_b * self.lambda_idt
            losses["idt_A"] = F.l1_loss(idt_a.float(), real_a.float()) * self.lambda_a * self.lambda_idt
        ctx["fake_a"] = fake_a.detach()
        ctx["fake_b"] = fake_b.detach()
        total = torch.stack(list(losses.values())).sum()
        return total, losses

    def _d_loss(self, D: nn.Module, real: Tensor, fake: Tensor) -> tuple[Tensor, Tensor | None]:
        if self.fuse_passes:
            pred_real, pred_fake = D(torch.cat([real, fake.to(real.dtype)])).split(real.shape[0])
        else:
            pred_real, pred_fake = D(real), D(fake)
        loss = 0.5 * (self.gan_loss(pred_real, True) + self.gan_loss(pred_fake, False))
        if self.gan_loss.mode == "wgangp":
            gp = gradient_penalty(D, real, fake) * self.lambda_gp
            return loss + gp, gp
        return loss, None

    def _discriminator_loss(self, real_a: Tensor, real_b: Tensor, ctx: dict[str, Any]) -> tuple[Tensor, dict[str, Tensor]]:
        fake_b = self.pool_b.query(ctx["fake_b"])
        fake_a = self.pool_a.query(ctx["fake_a"])
        loss_db, gp_b = self._d_loss(self.networks["D_B"], real_b, fake_b)
        loss_da, gp_a = self._d_loss(self.networks["D_A"], real_a, fake_a)
        losses = {"D_B": loss_db, "D_A": loss_da}
        if gp_a is not None and gp_b is not None:
            losses["gp"] = gp_a + gp_b
        return loss_db + loss_da, losses

    @torch.no_grad()
    def visuals(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        G, F_ = self.networks["G"], self.networks["F"]
        real_a, real_b = batch["A"], batch["B"]
        fake_b, fake_a = G(real_a), F_(real_b)
        return {
            "real_A": real_a,
            "fake_B": fake_b,
            "rec_A": F_(fake_b),
            "real_B": real_b,
            "fake_A": fake_a,
            "rec_B": G(fake_a),
        }

    def release_specs(self) -> dict[str, ReleaseSpec]:
        return {
            "AtoB": ReleaseSpec("G", dict(self._gen_arch_ab), "A", "B"),
            "BtoA": ReleaseSpec("F", dict(self._gen_arch_ba), "B", "A"),
        }

    def extra_state(self) -> dict[str, Any]:
        return {"pool_A": self.pool_a.state_dict(), "pool_B": self.pool_b.state_dict()}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        device = next(self.networks.parameters()).device
        self.pool_a.load_state_dict(state["pool_A"], device)
        self.pool_b.load_state_dict(state["pool_B"], device)


register_method(MethodSpec(
    name="cyclegan",
    summary="CycleGAN (Zhu et al. 2017): two generators and two PatchGANs on unpaired folders",
    model=CycleGANModel,
    objective=CycleGANObjective,
    data_kind="unpaired",
    build=CycleGAN,
))
