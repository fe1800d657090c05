"""Settings shared by the image-to-image GAN methods: the generator/discriminator architecture.

Each method declares its own ``model`` dataclass; CycleGAN, CUT and pix2pix subclass
:class:`ImageGANModel` and change its defaults (a subclass redeclares a field to change it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from brushwork.config import check, one_of, setting
from brushwork.nn.generators import is_valid_generator_name
from brushwork.nn.init import INIT_TYPES
from brushwork.nn.layers import NORMS, PADDINGS

GAN_MODES = ("lsgan", "vanilla", "wgangp")


@dataclass(frozen=True)
class ImageGANModel:
    """Generator and PatchGAN discriminator architectures (CycleGAN reference defaults)."""

    generator: str = setting("resnet_9blocks", help="resnet_9blocks | resnet_6blocks | resnet_<N>blocks | unet_256 | unet_128")
    discriminator: str = setting("basic", help="basic | n_layers | pixel")
    ngf: int = setting(64, help="Generator width (64).")
    ndf: int = setting(64, help="Discriminator width (64).")
    n_layers_d: int = setting(3, help="Discriminator layers for n_layers (3).")
    norm: str = setting("instance", help="instance | batch | none")
    dropout: bool = setting(False, help="Dropout in the generator.")
    padding: str = setting("reflect", help="reflect | replicate | zero (generator padding).")
    init_type: str = setting("normal", help="normal | xavier | kaiming | orthogonal")
    init_gain: float = setting(0.02, help="Scale of the initial weights (0.02).")
    in_channels: int = setting(3, cli=False, help="Input channels (3: images are read as RGB).")
    out_channels: int = setting(3, cli=False, help="Output channels (3).")

    def __post_init__(self) -> None:
        check(
            is_valid_generator_name(self.generator),
            f"model.generator={self.generator!r} is not valid; expected resnet_<N>blocks "
            "(resnet_9blocks, resnet_6blocks) or unet_<2^k> (unet_128, unet_256)",
        )
        one_of("model.discriminator", self.discriminator, ("basic", "n_layers", "pixel"))
        one_of("model.norm", self.norm, NORMS)
        one_of("model.padding", self.padding, PADDINGS)
        one_of("model.init_type", self.init_type, INIT_TYPES)
        for name in ("ngf", "ndf", "n_layers_d"):
            value = getattr(self, name)
            check(value >= 1, f"model.{name} must be >= 1, got {value}")
        for name in ("in_channels", "out_channels"):  # kept as fields: release configs record them
            value = getattr(self, name)
            check(value == 3, f"model.{name}={value} is not supported; expected 3 (training images are always read as RGB)")
        check(self.init_gain > 0, f"model.init_gain must be positive, got {self.init_gain}")

    def generator_kwargs(self, *, in_channels: int | None = None, out_channels: int | None = None) -> dict[str, Any]:
        """Constructor arguments of the generator (what a release artifact records)."""
        return {
            "in_channels": self.in_channels if in_channels is None else in_channels,
            "out_channels": self.out_channels if out_channels is None else out_channels,
            "ngf": self.ngf,
            "norm": self.norm,
            "dropout": self.dropout,
            "padding": self.padding,
        }

    def discriminator_kwargs(self, *, in_channels: int | None = None) -> dict[str, Any]:
        return {
            "in_channels": self.in_channels if in_channels is None else in_channels,
            "ndf": self.ndf,
            "n_layers": self.n_layers_d,
            "norm": self.norm,
        }


def check_generator_fits(config: Any) -> None:
    """A U-Net needs the crop size to be a multiple of 2**depth (unet_256: 256)."""
    from brushwork.nn.generators import generator_multiple

    multiple = generator_multiple(config.model.generator)
    crop = config.data.crop_size
    check(
        crop % multiple == 0 or config.data.preprocess == "none",
        f"data.crop_size={crop} does not suit model.generator={config.model.generator}, which needs a multiple of {multiple}",
    )
