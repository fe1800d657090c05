"""AdaIN (Huang and Belongie, ICCV 2017): training the decoder of arbitrary style transfer.

A fixed VGG-19 encoder maps a content image c and a style image s to relu4_1 features;
``t = AdaIN(f(c), f(s))`` gives the content features the style's channel means and deviations,
and the decoder g learns to turn ``t`` back into an image. Per iteration one phase, "decoder":

    L = content_weight * MSE(f(g(t)), t) + style_weight * sum_l [MSE(mean phi_l(g(t)), mean phi_l(s))
                                                              + MSE(std phi_l(g(t)), std phi_l(s))]

over relu1_1, relu2_1, relu3_1, relu4_1 (:func:`brushwork.style.adain.adain_loss`). The encoder
is a *frozen* network of the method: it is moved, checkpointed and released with the decoder but
never trained. Content images come from one domain folder (A by default) and style images from
the other, each drawn independently, as the authors' two infinite samplers do.

Defaults are the authors' (their PyTorch port's train.py, as in the paper): batch 8, Adam lr 1e-4
with betas (0.9, 0.999), lr / (1 + 5e-5 i) at iteration i, 160,000 iterations, both sets resized
to 512x512 and randomly cropped to 256 (no flips), content weight 1, style weight 10, a
checkpoint every 10,000 iterations. The release (``RUN/release/adain/``) is an
:class:`~brushwork.nn.adain.AdaINNet` folder of the ``reference-style`` pipeline:
``brushwork stylize photo.jpg --style painting.jpg --method adain --model RUN``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from brushwork.config import TrainConfig, check, one_of, setting
from brushwork.methods.base import Method, MethodSpec, Phase, ReleaseSpec, register_method
from brushwork.nn.adain import ENCODER_LAYERS, AdaINDecoder, adain
from brushwork.nn.style_networks import build_style_network
from brushwork.nn.vgg import VGG19Features
from brushwork.style.adain import PIPELINE_KIND, TRAINING, adain_loss

log = logging.getLogger(__name__)

RANDOM_ENCODER = "random"
#: the authors' encoder layout: reflection padding, ceil-mode max pooling
ARCHITECTURE: dict[str, Any] = {"name": "adain", "encoder_padding": "reflect", "encoder_pooling": "max", "encoder_ceil_mode": True}
RELEASE_NAME = "adain"
#: relu4_1 is 1/8 of the input: crops must be a multiple of 8 for the decoder to return their size
SIZE_MULTIPLE = 8


@dataclass(frozen=True)
class AdaINModel:
    """The authors' networks: VGG-19 encoder to relu4_1 (frozen) and their decoder."""

    encoder_weights: str = setting(
        "auto", help="VGG-19 weights of the encoder: auto (torchvision's in torch's cache, else an offline copy, else a "
        "download) | a weights file | random (tests of the mechanics only: the result means nothing).")  # fmt: skip

    def __post_init__(self) -> None:
        check(bool(self.encoder_weights), "model.encoder_weights is empty; expected auto, a file or random")


@dataclass(frozen=True)
class AdaINObjective:
    content_weight: float = setting(TRAINING.content_weight, help="Weight of the content loss (1).")
    style_weight: float = setting(TRAINING.style_weight, help="Weight of the style loss (AdaIN: 10).")
    content_domain: str = setting("A", help="A | B: the domain folder of content images; the other one holds the styles (A).")

    def __post_init__(self) -> None:
        check(self.content_weight >= 0 and self.style_weight >= 0,
              f"objective.content_weight and style_weight must be >= 0, got {self.content_weight}, {self.style_weight}")  # fmt: skip
        check(self.content_weight + self.style_weight > 0, "objective.content_weight and style_weight are both 0: nothing to train")
        one_of("objective.content_domain", self.content_domain, ("A", "B"))


class AdaINMethod(Method):
    def __init__(self, config: TrainConfig) -> None:
        net = build_style_network(**ARCHITECTURE)
        # Random until setup() loads the weights, so that reading a run's release specs loads nothing.
        self.encoder: VGG19Features = net.encoder
        decoder: AdaINDecoder = net.decoder  # torch's default initialisation, as the authors' port
        self.networks = nn.ModuleDict({"decoder": decoder})
        self.weights = config.model.encoder_weights
        self.encoder_source = ""
        objective = config.objective
        self.content_weight, self.style_weight = objective.content_weight, objective.style_weight
        self.content_key = objective.content_domain
        self.style_key = "B" if objective.content_domain == "A" else "A"

    def setup(self, batch: dict[str, Tensor]) -> None:
        del batch
        if self.encoder_source:
            return
        if self.weights == RANDOM_ENCODER:
            log.warning("model.encoder_weights=random: the AdaIN encoder is randomly initialised, so this run tests "
                        "mechanics only; its decoder is no use for style transfer")  # fmt: skip
            self.encoder_source = "random initialisation (seeded by run.seed)"
            return
        from brushwork.style.weights import load_into, load_vgg19_weights

        found = load_vgg19_weights(self.weights)
        load_into(self.encoder, found)
        self.encoder_source = found.source
        log.info("AdaIN encoder: %s", found.source)

    def frozen_networks(self) -> Mapping[str, nn.Module]:
        return {"encoder": self.encoder}

    def phases(self) -> list[Phase]:
        return [Phase("decoder", ("decoder",))]

    def _pair(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """Content and style images as RGB in [0, 1] (the data come in [-1, 1])."""
        return (batch[self.content_key] + 1) / 2, (batch[self.style_key] + 1) / 2

    def phase_loss(self, phase: str, batch: dict[str, Tensor], ctx: dict[str, Any]) -> tuple[Tensor, dict[str, Tensor]]:
        if phase != "decoder":
            raise KeyError(f"AdaIN has no phase {phase!r}")
        content, style = self._pair(batch)
        terms = adain_loss(self.encoder, self.networks["decoder"], content, style,
                           content_weight=self.content_weight, style_weight=self.style_weight)  # fmt: skip
        return terms["total"], {"content": terms["content"].detach(), "style": terms["style"].detach()}

    @torch.no_grad()
    def visuals(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        content, style = self._pair(batch)
        last = ENCODER_LAYERS[-1]
        t = adain(self.encoder(content)[last], self.encoder(style)[last])
        out = self.networks["decoder"](t)[..., : content.shape[-2], : content.shape[-1]]
        return {"content": batch[self.content_key], "style": batch[self.style_key], "stylised": out.clamp(0, 1) * 2 - 1}

    def release_specs(self) -> dict[str, ReleaseSpec]:
        return {RELEASE_NAME: ReleaseSpec("decoder", dict(ARCHITECTURE), "content", "style", pipeline=PIPELINE_KIND,
                                          input_range=(0.0, 1.0), size_multiple=SIZE_MULTIPLE)}  # fmt: skip

    def release_state(self, name: str, states: Mapping[str, Mapping[str, Tensor]]) -> dict[str, Tensor]:
        """An :class:`~brushwork.nn.adain.AdaINNet`'s state: the frozen encoder and the trained decoder."""
        del name
        return {f"{part}.{k}": v for part in ("encoder", "decoder") for k, v in states[part].items()}

    def release_provenance(self) -> dict[str, Any]:
        return {"encoder_weights": self.encoder_source}

    def extra_state(self) -> dict[str, Any]:
        return {"encoder_source": self.encoder_source}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        # the checkpoint's encoder weights replace whatever setup() loaded: so does their source
        self.encoder_source = str(state.get("encoder_source", self.encoder_source))


def check_adain(config: TrainConfig) -> None:
    data = config.data
    check(data.crop_size % SIZE_MULTIPLE == 0 and data.crop_size >= 16,
          f"data.crop_size={data.crop_size} does not suit AdaIN: the decoder returns multiples of {SIZE_MULTIPLE} "
          f"pixels; use a multiple of {SIZE_MULTIPLE} of at least 16 (the authors: 256)")  # fmt: skip
    check(config.eval.every == 0,
          "eval.every: AdaIN has no evaluation during training (its output depends on the style image chosen); "
          "compare a trained decoder with `brushwork compare` instead")  # fmt: skip


register_method(MethodSpec(
    name="adain",
    summary="AdaIN (Huang and Belongie 2017): a decoder for arbitrary style transfer, content folder + style folder",
    model=AdaINModel,
    objective=AdaINObjective,
    data_kind="unpaired",
    build=AdaINMethod,
    defaults={
        "data": {"load_size": TRAINING.load_size, "crop_size": TRAINING.crop_size, "preprocess": "resize_and_crop",
                 "flip": False, "batch_size": TRAINING.batch_size},
        "optim": {"lr": TRAINING.lr, "beta1": TRAINING.betas[0], "beta2": TRAINING.betas[1], "lr_policy": "inverse",
                  "lr_decay_rate": TRAINING.lr_decay, "max_steps": TRAINING.iterations},
        "run": {"checkpoint_every": TRAINING.save_every},
    },
    check=check_adain,
))
