"""AdaIN (Huang and Belongie 2017): the training loss, the authors' defaults, and loading decoders.

The network is :class:`brushwork.nn.adain.AdaINNet`. Training it is a method of the trainer
that calls :func:`adain_training_step` on a batch of content images and a batch of style images
and optimises the decoder alone (the encoder is fixed):

    net, source = new_adain_network()                       # ImageNet VGG-19 encoder, fresh decoder
    opt = torch.optim.Adam(net.decoder.parameters(), lr=TRAINING.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor)   # lr / (1 + 5e-5 i), i = 0, 1, ...
    loss, parts = adain_training_step(net.encoder, net.decoder, content, style)   # RGB in [0, 1]
    loss.backward(); opt.step(); sched.step()
    ...
    save_adain_release(net, out_dir, encoder_source=source)   # config.json + model.safetensors

Loss (their eqs. 11-13): ``t = AdaIN(f(c), f(s))`` at relu4_1, ``g = decoder(t)``;
``L_c = MSE(f(g), t)`` at relu4_1 and ``L_s = sum_i MSE(mean(phi_i(g)), mean(phi_i(s))) +
MSE(std(phi_i(g)), std(phi_i(s)))`` over relu1_1, relu2_1, relu3_1, relu4_1; ``L = L_c + 10 L_s``.
``t`` is a constant for the loss (no gradient flows into the encoder's view of the content).

Published weights: the PyTorch port of the authors' models (github.com/naoto0804/pytorch-AdaIN,
its releases) ships ``decoder.pth`` (keys as :class:`~brushwork.nn.adain.AdaINDecoder`) and
``vgg_normalised.pth`` (see :data:`brushwork.style.weights.ADAIN_VGG_INDEX`): the decoder only
works with that encoder, so :func:`load_adain_model` takes both.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from brushwork import __version__
from brushwork.nn.adain import ENCODER_LAYERS, AdaINDecoder, AdaINNet, adain, mean_std
from brushwork.nn.vgg import VGG19Features
from brushwork.release import CONFIG_NAME, Preprocessing, ReleaseConfig, load_release, save_release
from brushwork.runs import RUN_CONFIG
from brushwork.style.weights import VGGWeights, load_into, load_vgg19_weights, read_weights_file

log = logging.getLogger(__name__)

PIPELINE_KIND = "reference-style"
#: names the authors' encoder file goes by (their README spells it both ways)
AUTHORS_VGG_NAMES = ("vgg_normalised.pth", "vgg_normalized.pth")


class AdaINModelError(ValueError):
    """An AdaIN decoder or encoder cannot be found or read; the message names it and what to do."""


@dataclass(frozen=True)
class AdaINTraining:
    """The authors' training settings (their PyTorch port's train.py defaults, as in the paper)."""

    lr: float = 1e-4
    #: lr at iteration i (from 0) is lr / (1 + lr_decay * i)
    lr_decay: float = 5e-5
    iterations: int = 160_000
    batch_size: int = 8
    #: both sets are resized to load_size x load_size (the port; the Lua original keeps the aspect,
    #: shorter side 512), then randomly cropped to crop_size
    load_size: int = 512
    crop_size: int = 256
    content_weight: float = 1.0
    style_weight: float = 10.0
    #: Adam on the decoder's parameters only, torch's default betas
    betas: tuple[float, float] = (0.9, 0.999)
    save_every: int = 10_000


TRAINING = AdaINTraining()


def learning_rate(iteration: int, settings: AdaINTraining = TRAINING) -> float:
    """The authors' inverse-time decay: ``lr / (1 + lr_decay * iteration)``."""
    return settings.lr / (1.0 + settings.lr_decay * iteration)


def lr_factor(iteration: int) -> float:
    """:func:`learning_rate` as a factor of the base rate, for ``torch.optim.lr_scheduler.LambdaLR``."""
    return 1.0 / (1.0 + TRAINING.lr_decay * iteration)


def style_statistics_loss(generated: Tensor, style: Tensor) -> Tensor:
    """``MSE(mean(g), mean(s)) + MSE(std(g), std(s))`` of one layer's features."""
    gm, gs = mean_std(generated)
    sm, ss = mean_std(style)
    return F.mse_loss(gm, sm) + F.mse_loss(gs, ss)


def adain_loss(encoder: VGG19Features, decoder: nn.Module, content: Tensor, style: Tensor, *, alpha: float = 1.0,
               content_weight: float = TRAINING.content_weight, style_weight: float = TRAINING.style_weight) -> dict[str, Tensor]:
    """The loss terms for one batch: ``content``, ``style`` (unweighted), ``total`` and the decoded ``output``.

    ``content`` and ``style`` are (N, 3, H, W) RGB in [0, 1] (the same N); ``encoder`` returns
    relu1_1 ... relu4_1 and is not trained.
    """
    if content.shape[0] != style.shape[0]:
        raise ValueError(f"a content batch of {content.shape[0]} needs a style batch of the same size, got {style.shape[0]}")
    missing = set(ENCODER_LAYERS) - set(encoder.layers)
    if missing:
        raise ValueError(f"the encoder does not return {sorted(missing)}")
    last = ENCODER_LAYERS[-1]
    with torch.no_grad():
        style_feats = encoder(style)
        fc = encoder(content)[last]
        t = adain(fc, style_feats[last])
        if alpha != 1.0:
            t = alpha * t + (1 - alpha) * fc
    output = decoder(t)
    out_feats = encoder(output)
    loss_c = F.mse_loss(out_feats[last].float(), t.float())
    loss_s = sum((style_statistics_loss(out_feats[layer], style_feats[layer]) for layer in ENCODER_LAYERS), torch.zeros((), device=content.device))
    total = content_weight * loss_c + style_weight * loss_s
    return {"content": loss_c, "style": loss_s, "total": total, "output": output}


def adain_training_step(encoder: VGG19Features, decoder: nn.Module, content: Tensor, style: Tensor, *,
                        content_weight: float = TRAINING.content_weight,
                        style_weight: float = TRAINING.style_weight) -> tuple[Tensor, dict[str, Tensor]]:
    """``(loss, parts)`` for one batch: the weighted total to back-propagate into the decoder, and
    the detached named terms ``loss_content``, ``loss_style`` (both unweighted) and ``loss_total``."""
    terms = adain_loss(encoder, decoder, content, style, content_weight=content_weight, style_weight=style_weight)
    parts = {"loss_content": terms["content"].detach(), "loss_style": terms["style"].detach(), "loss_total": terms["total"].detach()}
    return terms["total"], parts


# ---------------------------------------------------------------------------------------------
# Networks, releases and the authors' files


def new_adain_network(weights: str | Path | VGGWeights = "auto", *, download: bool | None = None) -> tuple[AdaINNet, str]:
    """An AdaIN network with an ImageNet VGG-19 encoder (reflection padding, as the authors' encoder)
    and a freshly initialised decoder; and the encoder weights' source line."""
    found = weights if isinstance(weights, VGGWeights) else load_vgg19_weights(weights, download=download)
    net = AdaINNet()
    load_into(net.encoder, found)
    return net, found.source


def adain_release_config(net: AdaINNet, *, encoder_source: str, train_size: int = TRAINING.crop_size,
                         provenance: Mapping[str, Any] | None = None) -> ReleaseConfig:
    enc = net.encoder
    return ReleaseConfig(
        architecture={"name": "adain", "encoder_padding": enc.padding, "encoder_pooling": enc.pooling,
                      "encoder_ceil_mode": enc.ceil_mode},
        preprocessing=Preprocessing(input_range=(0.0, 1.0), size_multiple=8, train_size=train_size),
        source_domain="content",
        target_domain="style",
        pipeline=PIPELINE_KIND,
        provenance={"brushwork_version": __version__, "encoder_weights": encoder_source, **(provenance or {})},
    )  # fmt: skip


def save_adain_release(net: AdaINNet, out_dir: Path, *, encoder_source: str, provenance: Mapping[str, Any] | None = None,
                       extra_files: Mapping[str, str] | None = None) -> Path:
    """A release folder (config.json naming the reference-style pipeline + model.safetensors with
    the encoder and decoder) that :func:`load_adain_model` and ``load_pipeline`` read."""
    config = adain_release_config(net, encoder_source=encoder_source, provenance=provenance)
    return save_release(net, Path(out_dir), config, extra_files=extra_files)


def load_authors_decoder(path: Path) -> AdaINDecoder:
    """The authors' ``decoder.pth`` (a bare state dict of their nn.Sequential), loaded strictly."""
    from brushwork.inference.sources import ModelSourceError, load_state_dict_file

    try:
        state = load_state_dict_file(path)
    except ModelSourceError as exc:
        raise AdaINModelError(str(exc)) from None
    decoder = AdaINDecoder()
    expected = {k: tuple(v.shape) for k, v in decoder.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in state.items()}
    if found != expected:
        wrong = sorted(set(expected) ^ set(found)) or [k for k in expected if expected[k] != found[k]]
        raise AdaINModelError(
            f"{path}: not an AdaIN decoder in the authors' layout (expected keys 1.weight 256x512x3x3 ... 28.weight "
            f"3x64x3x3, 18 tensors); mismatch at {wrong[0]!r} among {len(found)} tensors"
        )
    decoder.load_state_dict(state, strict=True)
    return decoder


def _authors_encoder(decoder_path: Path, encoder: str | Path | None) -> tuple[Path, VGGWeights]:
    if encoder is not None:
        path = Path(encoder).expanduser()
    else:
        beside = [decoder_path.parent / name for name in AUTHORS_VGG_NAMES]
        found = [p for p in beside if p.is_file()]
        if not found:
            raise AdaINModelError(
                f"{decoder_path} is a decoder in the AdaIN authors' layout; it only works with their encoder "
                f"vgg_normalised.pth: put that file beside it ({beside[0]}) or pass encoder=PATH"
            )
        path = found[0]
    try:
        weights = read_weights_file(path)
    except Exception as exc:
        raise AdaINModelError(str(exc)) from None
    if weights.padding != "reflect":
        log.warning("%s is not the authors' vgg_normalised.pth: their decoder was trained on that encoder's features", path)
    return path, weights


def load_adain_model(source: str | Path, *, encoder: str | Path | None = None) -> tuple[AdaINNet, ReleaseConfig]:
    """An AdaIN network from a brushwork release folder or training run, or from the authors' ``decoder.pth`` with
    their ``vgg_normalised.pth`` (``encoder``, default: beside the decoder)."""
    path = Path(source).expanduser()
    if path.is_dir():
        if not (path / CONFIG_NAME).is_file() and (path / RUN_CONFIG).is_file():  # a training run (--method adain)
            from brushwork.runs import load_run_generator

            model, config = load_run_generator(path, None)
        elif not (path / CONFIG_NAME).is_file():
            raise AdaINModelError(f"{path} is not a release folder (no {CONFIG_NAME}); an AdaIN model is a release folder, "
                                  "a training run of the adain method or a decoder.pth")  # fmt: skip
        else:
            model, config = load_release(path)
        if config.pipeline != PIPELINE_KIND or not isinstance(model, AdaINNet):
            raise AdaINModelError(f"{path} is a {config.pipeline} model ({config.architecture['name']}), not an AdaIN decoder")
        return model, config
    if not path.is_file():
        raise AdaINModelError(f"AdaIN model {path} does not exist")
    decoder = load_authors_decoder(path)
    encoder_path, weights = _authors_encoder(path, encoder)
    net = AdaINNet()
    load_into(net.encoder, weights)
    net.decoder = decoder
    config = adain_release_config(net, encoder_source=weights.source, provenance={"decoder_file": path.name, "encoder_file": encoder_path.name})
    return net.eval(), config
