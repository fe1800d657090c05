"""DCGAN (Radford, Metz, Chintala, ICLR 2016): images from noise, trained on one folder.

G maps a latent z ~ N(0, I) of length 100 to a 64x64 (or 128x128) image; D maps an image to
one real/fake logit (:mod:`brushwork.nn.dcgan`). Per iteration, as in the PyTorch DCGAN example
(D first, then G on the same G(z); the paper's Theano code instead alternates one G and one D
update on successive minibatches):
  phase "discriminator":  L(D(x), real) + L(D(G(z)), fake)      the sum, no 0.5 (both codes)
  phase "generator":      L(D(G(z)), real)                        the non-saturating loss, through the updated D
where L is binary cross-entropy on D's logits (``gan_mode`` vanilla; lsgan is an option) and
z is drawn once per iteration from torch's global CPU generator (checkpointed with the run,
so a resume continues with the same noise), then moved to the device.

Defaults follow the paper and its code: batch 128, Adam lr 0.0002 with beta1 0.5, weights
N(0, 0.02) and batch-norm scales N(1, 0.02), no label smoothing; images are resized to the generator's size
(``resize_and_crop`` with load_size = crop_size = image_size: for square images such as the
Monet paintings this is the PyTorch example's Resize(64) + CenterCrop(64); an image that is not
square is squeezed to the square rather than centre-cropped), not flipped, for 25 epochs at a
constant learning rate (``niter`` 25, ``niter_decay`` 0 in the paper's code and the example).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from brushwork.config import TrainConfig, check, one_of, setting
from brushwork.inference.sampler import sample_latents
from brushwork.methods.base import Method, MethodSpec, Phase, ReleaseSpec, register_method
from brushwork.methods.losses import GANLoss
from brushwork.methods.settings import GAN_MODES
from brushwork.nn import build_discriminator, build_generator, init_weights
from brushwork.nn.init import INIT_TYPES

IMAGE_SIZES = (64, 128)  # the registered dcgan_64 / dcgan_128 networks
#: preprocessing modes that give every image the same square size (crop_size x crop_size)
SQUARE_PREPROCESS = ("resize_and_crop", "crop", "scale_width_and_crop")


@dataclass(frozen=True)
class DCGANModel:
    """The paper's all-convolutional generator and discriminator (PyTorch example layout)."""

    image_size: int = setting(64, help="64 | 128: generator and discriminator dcgan_64 or dcgan_128 (64).")
    latent_dim: int = setting(100, help="Length of the noise vector z (100).")
    ngf: int = setting(64, help="Generator width (64).")
    ndf: int = setting(64, help="Discriminator width (64).")
    init_type: str = setting("normal", help="normal | xavier | kaiming | orthogonal")
    init_gain: float = setting(0.02, help="Scale of the initial weights (0.02).")

    def __post_init__(self) -> None:
        check(self.image_size in IMAGE_SIZES,
              f"model.image_size={self.image_size} is not valid; expected one of {', '.join(map(str, IMAGE_SIZES))}")  # fmt: skip
        for name in ("latent_dim", "ngf", "ndf"):
            value = getattr(self, name)
            check(value >= 1, f"model.{name} must be >= 1, got {value}")
        one_of("model.init_type", self.init_type, INIT_TYPES)
        check(self.init_gain > 0, f"model.init_gain must be positive, got {self.init_gain}")

    @property
    def network(self) -> str:
        return f"dcgan_{self.image_size}"

    def generator_architecture(self) -> dict[str, Any]:
        """What a release records: the registry name and the constructor arguments."""
        return {"name": self.network, "latent_dim": self.latent_dim, "ngf": self.ngf, "out_channels": 3,
                "image_size": self.image_size}  # fmt: skip


@dataclass(frozen=True)
class DCGANObjective:
    gan_mode: str = setting("vanilla", help="vanilla | lsgan (DCGAN: vanilla, binary cross-entropy on logits).")

    def __post_init__(self) -> None:
        one_of("objective.gan_mode", self.gan_mode, GAN_MODES[:2])


class DCGAN(Method):
    def __init__(self, config: TrainConfig) -> None:
        model = config.model
        self.latent_dim = model.latent_dim
        self._arch = model.generator_architecture()
        nets = {
            "G": build_generator(**self._arch),
            "D": build_discriminator(model.network, in_channels=3, ndf=model.ndf),
        }
        for net in nets.values():
            init_weights(net, init_type=model.init_type, gain=model.init_gain)
        self.networks = nn.ModuleDict(nets)
        self.gan_loss = GANLoss(config.objective.gan_mode)

    def phases(self) -> list[Phase]:
        return [Phase("discriminator", ("D",), forward=("G",)), Phase("generator", ("G",))]

    def phase_loss(self, phase: str, batch: dict[str, Tensor], ctx: dict[str, Any]) -> tuple[Tensor, dict[str, Tensor]]:
        G, D = self.networks["G"], self.networks["D"]
        real = batch["images"]
        if phase == "discriminator":
            # the global CPU generator: its state is in every checkpoint, and a CPU draw is the
            # same whatever the device
            z = torch.randn(real.shape[0], self.latent_dim, 1, 1).to(real.device)
            fake = G(z)
            ctx["fake"] = fake  # with its graph: the generator phase backpropagates through it
            loss_real = self.gan_loss(D(real), True)
            loss_fake = self.gan_loss(D(fake.detach()), False)
            return loss_real + loss_fake, {"D_real": loss_real, "D_fake": loss_fake}
        if phase == "generator":
            loss = self.gan_loss(D(ctx["fake"]), True)
            return loss, {"G": loss}
        raise KeyError(f"DCGAN has no phase {phase!r}")

    @torch.no_grad()
    def visuals(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        real = batch["images"]
        # the same latents at every sample step, so the grids show one set of images evolving
        z = sample_latents(real.shape[0], self.latent_dim, seed=0).to(real.device)
        return {"real": real, "fake": self.networks["G"](z)}

    def release_specs(self) -> dict[str, ReleaseSpec]:
        return {"generator": ReleaseSpec("G", dict(self._arch), None, "images", pipeline="noise-sampler")}


def check_dcgan(config: TrainConfig) -> None:
    """The data must come in the generator's size: square crops of exactly ``model.image_size``."""
    size, data = config.model.image_size, config.data
    check(data.crop_size == size,
          f"data.crop_size={data.crop_size} does not match model.image_size={size}; "
          f"DCGAN trains on {size}x{size} images: pass --crop-size {size} --load-size {size}")  # fmt: skip
    check(data.preprocess in SQUARE_PREPROCESS,
          f"data.preprocess={data.preprocess!r} does not give every image the same size; DCGAN needs one of "
          f"{', '.join(SQUARE_PREPROCESS)}")  # fmt: skip


register_method(MethodSpec(
    name="dcgan",
    summary="DCGAN (Radford et al. 2016): noise -> image, trained on one folder",
    model=DCGANModel,
    objective=DCGANObjective,
    data_kind="single",
    build=DCGAN,
    # resize_and_crop with load_size = crop_size: the whole image resized to the square
    defaults={
        "data": {"load_size": 64, "crop_size": 64, "preprocess": "resize_and_crop", "flip": False, "batch_size": 128},
        "optim": {"lr": 2e-4, "beta1": 0.5, "beta2": 0.999, "epochs": 25, "epochs_decay": 0, "lr_policy": "constant"},
    },
    check=check_dcgan,
))
