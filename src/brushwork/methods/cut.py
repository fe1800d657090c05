"""CUT and FastCUT (Park, Efros, Zhang, Zhu, *Contrastive Learning for Unpaired Image-to-Image
Translation*, ECCV 2020).

One generator G: X -> Y [netG], one PatchGAN D judging Y [netD], and the projection head H, the
paper's H_l (one small MLP per encoder layer) [netF]. No cycle, no second generator, no image
pool. Per iteration, in the order of the official ``optimize_parameters``:

  phase "discriminator" (G runs here, once; D is updated on its output, detached):
    x' = flip(x) with probability 0.5 when flip_equivariance (FastCUT), else x
    fake = G(cat(x', y')) if nce_idt else G(x')        (y' flipped alike; G sees both at once)
    L_D = 0.5 * (L(D(G(x)), fake) + L(D(y), real))                         (LSGAN by default)
  phase "generator" (G and H together, D frozen):
    L_G = lambda_GAN * L(D(G(x)), real)                                    (eq. 1)
        + lambda_NCE * PatchNCE(G, H, X)                                   (eq. 3/5)
    and with nce_idt (CUT) the NCE part is the mean of PatchNCE(x, G(x)) and PatchNCE(y, G(y))
    (the identity term of eq. 6 with lambda_X = lambda_Y = 1, averaged as in the official code).

PatchNCE(x, G(x)) is the mean over the ``nce_layers`` of the per-layer InfoNCE
(:func:`brushwork.nn.patch_nce_loss`): keys are G's encoder features of x, queries those of
G(x), sampled by H at the same ``num_patches`` locations. With flip equivariance the query
features are flipped back before sampling, so they line up with the keys of the unflipped x.

FastCUT is the same method with other defaults (the official ``--CUT_mode FastCUT``):
lambda_NCE 10, no identity term, flip equivariance, 150 + 50 epochs (CUT: 200 + 200, the
official ``train_options.py``).

Where this differs from the official code (docs/methods.md has the list): H is built from
G's channel counts in :meth:`CUT.setup` instead of lazily inside its first forward pass, so
no first batch is spent on a forward/backward without a step; the flip is drawn from torch's
global CPU generator instead of numpy's, and patch locations from it too (the official code
draws them on the device), so a seeded run is the same on every device and resumes exactly
from the trainer's checkpointed RNG state.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import torch
from torch import Tensor, nn

from brushwork.config import ConfigError, TrainConfig, check, one_of, setting
from brushwork.methods.base import Method, MethodSpec, Phase, ReleaseSpec, register_method
from brushwork.methods.losses import GANLoss
from brushwork.methods.settings import ImageGANModel, check_generator_fits
from brushwork.nn import (
    FeatureNetwork,
    PatchSampleF,
    build_discriminator,
    build_generator,
    feature_channels,
    init_weights,
    patch_nce_loss_over_layers,
)
from brushwork.nn.patchnce import sample_patch_ids

#: The projection heads of the official ``--netF``: an MLP per layer, or sampling only.
HEADS = ("mlp_sample", "sample")
#: Discriminators whose stride-2 convolutions CUT anti-aliases (the pixel PatchGAN has none).
_ANTIALIASED_DISCRIMINATORS = ("basic", "n_layers")


@dataclass(frozen=True)
class CUTModel(ImageGANModel):
    """The official CUT architectures: anti-aliased ResNet 9-block G and PatchGAN D, Xavier init, MLP head."""

    init_type: str = setting("xavier", help="normal | xavier | kaiming | orthogonal (each method's default: brushwork methods NAME).")
    antialias: bool = setting(True, help="Anti-aliased down-sampling in G and D (blur after a stride-1 conv; the CUT code's default; off is its no_antialias option).")
    antialias_up: bool = setting(True, help="Anti-aliased up-sampling in G (blur, then conv; off is the CUT code's no_antialias_up option).")
    netf: str = setting("mlp_sample", flag="--netf", help="Projection head: mlp_sample (2-layer MLP per layer) | sample (no MLP).")
    netf_nc: int = setting(256, flag="--netf-nc", help="Width of the projection head's MLP (256).")

    def __post_init__(self) -> None:
        super().__post_init__()
        one_of("model.netf", self.netf, HEADS)
        check(self.netf_nc >= 1, f"model.netf_nc must be >= 1, got {self.netf_nc}")
        check(self.generator.startswith("resnet_"),
              f"model.generator={self.generator!r} has no encoder layers for PatchNCE; CUT needs a resnet_<N>blocks generator")  # fmt: skip

    def generator_kwargs(self, *, in_channels: int | None = None, out_channels: int | None = None) -> dict[str, Any]:
        return {**super().generator_kwargs(in_channels=in_channels, out_channels=out_channels),
                "antialias": self.antialias, "antialias_up": self.antialias_up}  # fmt: skip

    def discriminator_kwargs(self, *, in_channels: int | None = None) -> dict[str, Any]:
        kwargs = super().discriminator_kwargs(in_channels=in_channels)
        if self.discriminator in _ANTIALIASED_DISCRIMINATORS:
            kwargs["antialias"] = self.antialias
        return kwargs


def parse_layers(text: str) -> tuple[int, ...]:
    """``"0,4,8,12,16"`` -> ``(0, 4, 8, 12, 16)``; a ConfigError for anything else."""
    try:
        layers = tuple(int(part) for part in text.split(","))
    except ValueError:
        layers = ()
    ok = bool(layers) and layers[0] >= 0 and all(b > a for a, b in pairwise(layers))
    check(ok, f"objective.nce_layers={text!r} is not valid; expected increasing module indices of G, comma-separated (e.g. 0,4,8,12,16)")
    return layers


@dataclass(frozen=True)
class CUTObjective:
    """Loss weights and PatchNCE settings (the official ``--CUT_mode CUT`` defaults)."""

    gan_mode: str = setting("lsgan", help="lsgan | vanilla | wgangp (CUT/FastCUT: lsgan | vanilla; each method's default: brushwork methods NAME).")
    lambda_gan: float = setting(1.0, flag="--lambda-gan", help="Weight of the adversarial loss (1).")
    lambda_nce: float = setting(1.0, flag="--lambda-nce", help="Weight of PatchNCE (CUT 1, FastCUT 10).")
    nce_idt: bool = setting(True, help="Identity PatchNCE term NCE(y, G(y)) (CUT on, FastCUT off).")
    nce_layers: str = setting("0,4,8,12,16", help="Module indices of G whose outputs PatchNCE compares (0,4,8,12,16).")
    nce_t: float = setting(0.07, flag="--nce-t", help="PatchNCE temperature tau (0.07).")
    num_patches: int = setting(256, help="Patch locations sampled per layer (256).")
    nce_negatives: str = setting("image", help="image | batch: negatives from the same image (CUT/FastCUT) or the whole batch "
                                              "(the official nce_includes_all_negatives_from_minibatch option).")
    flip_equivariance: bool = setting(False, help="Flip G's input left-right with probability 0.5 and the query features back (CUT off, FastCUT on).")
    direction: str = setting("AtoB", help="AtoB | BtoA: which domain G translates from (the official --direction).")

    def __post_init__(self) -> None:
        # wgangp is left out: the official CUT code has no gradient penalty, so its "wgangp" is an unconstrained critic
        one_of("objective.gan_mode", self.gan_mode, ("lsgan", "vanilla"))
        one_of("objective.nce_negatives", self.nce_negatives, ("image", "batch"))
        one_of("objective.direction", self.direction, ("AtoB", "BtoA"))
        for name in ("lambda_gan", "lambda_nce"):
            value = getattr(self, name)
            check(value >= 0, f"objective.{name} must be >= 0, got {value}")
        check(self.lambda_gan > 0 or self.lambda_nce > 0, "objective.lambda_gan and objective.lambda_nce are both 0: the generator would have no loss")
        check(self.nce_t > 0, f"objective.nce_t must be positive, got {self.nce_t}")
        check(self.num_patches >= 1, f"objective.num_patches must be >= 1, got {self.num_patches}")
        parse_layers(self.nce_layers)

    @property
    def layers(self) -> tuple[int, ...]:
        return parse_layers(self.nce_layers)


@dataclass(frozen=True)
class FastCUTObjective(CUTObjective):
    """FastCUT (the official ``--CUT_mode FastCUT``): heavier PatchNCE, no identity term, flip equivariance."""

    lambda_nce: float = setting(10.0, flag="--lambda-nce", help="Weight of PatchNCE (CUT 1, FastCUT 10).")
    nce_idt: bool = setting(False, help="Identity PatchNCE term NCE(y, G(y)) (CUT on, FastCUT off).")
    flip_equivariance: bool = setting(True, help="Flip G's input left-right with probability 0.5 and the query features back (CUT off, FastCUT on).")


def check_cut_config(config: TrainConfig) -> None:
    """The crop suits the generator, and every ``nce_layers`` index is a module of G."""
    check_generator_fits(config)
    model = config.model
    # The layout (and so the number of modules) does not depend on the width: build a 1-wide copy.
    probe = build_generator(model.generator, **{**model.generator_kwargs(), "ngf": 1})
    if not isinstance(probe, FeatureNetwork) or not isinstance(getattr(probe, "model", None), nn.Sequential):
        raise ConfigError(f"model.generator={model.generator!r} has no encoder layers for PatchNCE; CUT needs a resnet_<N>blocks generator")
    count = len(probe.model)
    layers = config.objective.layers
    check(layers[-1] < count,
          f"objective.nce_layers={config.objective.nce_layers!r} names module {layers[-1]}, but "
          f"model.generator={model.generator} (antialias={model.antialias}, antialias_up={model.antialias_up}) has modules 0..{count - 1}")  # fmt: skip


def _flip(x: Tensor) -> Tensor:
    return torch.flip(x, dims=(3,))


class CUT(Method):
    """CUT and FastCUT: one generator ``G``, one discriminator ``D``, the projection head ``H`` (made in :meth:`setup`)."""

    def __init__(self, config: TrainConfig) -> None:
        model, objective = config.model, config.objective
        self._arch = {"name": model.generator, **model.generator_kwargs()}
        nets = {
            "G": build_generator(**self._arch),
            "D": build_discriminator(model.discriminator, **model.discriminator_kwargs(in_channels=model.out_channels)),
        }
        for net in nets.values():
            init_weights(net, init_type=model.init_type, gain=model.init_gain)
        self.networks = nn.ModuleDict(nets)
        self.head_settings = (model.netf, model.netf_nc, model.init_type, model.init_gain)
        self.gan_loss = GANLoss(objective.gan_mode)
        self.lambda_gan = objective.lambda_gan
        self.lambda_nce = objective.lambda_nce
        self.nce_idt = objective.nce_idt and objective.lambda_nce > 0  # as the official code: no NCE, no identity term
        self.nce_layers = objective.layers
        self.nce_t = objective.nce_t
        self.num_patches = objective.num_patches
        self.negatives = objective.nce_negatives
        self.flip_equivariance = objective.flip_equivariance
        # Two batches through one network in one pass when that is exact: every norm but batch
        # norm treats each sample on its own. (G's forward always sees x and y together, as the
        # official code's does, whatever the norm.)
        self.fuse_passes = model.norm != "batch"
        # x is the source domain's batch, y the target's (the official set_input swaps them for BtoA)
        self.source, self.target = ("A", "B") if objective.direction == "AtoB" else ("B", "A")

    # ------------------------------------------------------------------------------------------
    # set-up: the projection head

    def setup(self, batch: dict[str, Tensor]) -> None:
        """Create the head ``H`` from G's channel counts at ``nce_layers``, Xavier-initialised as the official netF.

        The channels depend on G alone (the batch only tells the input channels), so every start
        builds the same head; its initial weights come from the global RNG, which a resumed run
        then restores from the checkpoint along with the head's trained weights.
        """
        if "H" in self.networks:
            return
        channels = feature_channels(self.networks["G"], self.nce_layers, in_channels=int(batch[self.source].shape[1]))
        netf, nc, init_type, gain = self.head_settings
        head = PatchSampleF(channels=channels, nc=nc, mlp=netf == "mlp_sample")
        self.networks["H"] = init_weights(head, init_type=init_type, gain=gain)

    def phases(self) -> list[Phase]:
        return [Phase("discriminator", ("D",), forward=("G",)), Phase("generator", ("G", "H"))]

    # ------------------------------------------------------------------------------------------
    # losses

    def phase_loss(self, phase: str, batch: dict[str, Tensor], ctx: dict[str, Any]) -> tuple[Tensor, dict[str, Tensor]]:
        if phase == "discriminator":
            self._forward(batch, ctx)
            return self._discriminator_loss(batch[self.target], ctx["fake"])
        if phase == "generator":
            return self._generator_loss(batch, ctx)
        raise KeyError(f"CUT has no phase {phase!r}")

    def _forward(self, batch: dict[str, Tensor], ctx: dict[str, Any]) -> None:
        """G once per iteration, on x (and y with the identity term), flipped at random for FastCUT."""
        real_x, real_y = batch[self.source], batch[self.target]
        real = torch.cat([real_x, real_y]) if self.nce_idt else real_x
        flipped = self.flip_equivariance and bool(torch.rand(()) < 0.5)  # the global CPU RNG: seeded, checkpointed
        if flipped:
            real = _flip(real)
        fake = self.networks["G"](real)
        ctx["flipped"] = flipped
        ctx["fake"] = fake[: real_x.shape[0]]  # G(x) as G made it (flipped with x): D judges this, as in the official code
        if self.nce_idt:
            ctx["idt"] = fake[real_x.shape[0]:]  # G(y)

    def _discriminator_loss(self, real_y: Tensor, fake_y: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        D = self.networks["D"]
        fake_y = fake_y.detach()
        if self.fuse_passes:
            pred_fake, pred_real = D(torch.cat([fake_y.to(real_y.dtype), real_y])).split(fake_y.shape[0])
        else:
            pred_fake, pred_real = D(fake_y), D(real_y)
        loss_fake = self.gan_loss(pred_fake, False)
        loss_real = self.gan_loss(pred_real, True)
        return 0.5 * (loss_fake + loss_real), {"D_real": loss_real, "D_fake": loss_fake}

    def _generator_loss(self, batch: dict[str, Tensor], ctx: dict[str, Any]) -> tuple[Tensor, dict[str, Tensor]]:
        fake_y = ctx["fake"]
        losses: dict[str, Tensor] = {}
        total = fake_y.new_zeros((), dtype=torch.float32)
        if self.lambda_gan > 0:
            losses["G_GAN"] = self.gan_loss(self.networks["D"](fake_y), True) * self.lambda_gan
            total = total + losses["G_GAN"]
        if self.lambda_nce > 0:
            pairs = [(batch[self.source], fake_y)]
            if self.nce_idt:
                pairs.append((batch[self.target], ctx["idt"]))
            nce = self.nce_losses(pairs, flipped=ctx["flipped"])
            losses["NCE"] = nce[0]
            if self.nce_idt:
                losses["NCE_Y"] = nce[1]
            total = total + torch.stack(nce).mean()  # (NCE + NCE_Y) / 2 with the identity term
        return total, losses

    def nce_losses(self, pairs: list[tuple[Tensor, Tensor]], *, flipped: bool = False) -> list[Tensor]:
        """``lambda_NCE * PatchNCE(src, tgt)`` for each (source, translation) pair: the official ``calculate_NCE_loss``.

        Keys are G's features of the source, queries those of the translation (flipped back
        when ``flipped``), sampled at the keys' locations; new locations are drawn for each
        pair, keys first. The keys carry no gradient (the loss detaches them, as the official
        loss does), so they are computed without one. The head and the loss run in fp32 outside
        autocast: unit vectors and logits over tau = 0.07 need more than bf16's 8 bits. The patch
        locations are drawn here, eagerly, from the global CPU RNG (what PatchSampleF would draw,
        layer by layer), and handed to the head for both sides: the head the trainer may wrap
        (DDP, torch.compile) is then a pure function of its inputs, and compiled and eager runs
        draw alike.
        """
        if "H" not in self.networks:
            raise RuntimeError("CUT.setup(batch) must run before the losses: it creates the projection head")
        G, H = self.networks["G"], self.networks["H"]
        layers = self.nce_layers
        sources = [src for src, _ in pairs]
        targets = [tgt for _, tgt in pairs]
        if self.fuse_passes and len(pairs) > 1:
            sizes = [t.shape[0] for t in targets]
            feats_q = _split_layers(G.encode(torch.cat(targets), layers), sizes)
            with torch.no_grad():
                feats_k = _split_layers(G.encode(torch.cat(sources), layers), sizes)
        else:
            feats_q = [G.encode(t, layers) for t in targets]
            with torch.no_grad():
                feats_k = [G.encode(s, layers) for s in sources]
        losses = []
        device_type = targets[0].device.type
        with torch.autocast(device_type, enabled=False):
            for q_layers, k_layers in zip(feats_q, feats_k, strict=True):
                if flipped:
                    q_layers = [_flip(f) for f in q_layers]
                ids = [sample_patch_ids(f.shape[2], f.shape[3], self.num_patches) for f in k_layers]
                k_pool, _ = H([f.float() for f in k_layers], num_patches=self.num_patches, patch_ids=ids)
                q_pool, _ = H([f.float() for f in q_layers], num_patches=self.num_patches, patch_ids=ids)
                nce = patch_nce_loss_over_layers(q_pool, k_pool, temperature=self.nce_t, negatives=self.negatives)
                losses.append(nce * self.lambda_nce)
        return losses

    # ------------------------------------------------------------------------------------------
    # samples and releases

    @torch.no_grad()
    def visuals(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        G, x, y = self.networks["G"], self.source, self.target
        out = {f"real_{x}": batch[x], f"fake_{y}": G(batch[x]), f"real_{y}": batch[y]}
        if self.nce_idt:
            out[f"idt_{y}"] = G(batch[y])
        return out

    def release_specs(self) -> dict[str, ReleaseSpec]:
        return {f"{self.source}to{self.target}": ReleaseSpec("G", dict(self._arch), self.source, self.target)}


def _split_layers(feats: list[Tensor], sizes: list[int]) -> list[list[Tensor]]:
    """Per-layer features of a fused batch -> per-part lists of per-layer features."""
    parts = [f.split(sizes) for f in feats]
    return [[p[i] for p in parts] for i in range(len(sizes))]


register_method(MethodSpec(
    name="cut",
    summary="CUT (Park et al. 2020): one generator, PatchNCE + PatchGAN on unpaired folders",
    model=CUTModel,
    objective=CUTObjective,
    data_kind="unpaired",
    build=CUT,
    defaults={"optim": {"epochs": 200, "epochs_decay": 200}},  # the official train_options.py
    check=check_cut_config,
))

register_method(MethodSpec(
    name="fastcut",
    summary="FastCUT (Park et al. 2020): CUT without the identity term, lambda_NCE 10, flip equivariance",
    model=CUTModel,
    objective=FastCUTObjective,
    data_kind="unpaired",
    build=CUT,
    defaults={"optim": {"epochs": 150, "epochs_decay": 50}},  # the official --CUT_mode FastCUT
    check=check_cut_config,
))
