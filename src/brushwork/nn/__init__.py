"""Networks: pure ``nn.Module``s built by name from registries."""

from brushwork.nn.discriminators import (
    DISCRIMINATORS,
    NLayerDiscriminator,
    PixelDiscriminator,
    build_discriminator,
)
from brushwork.nn.generators import GENERATORS, ResnetGenerator, UnetGenerator, build_generator
from brushwork.nn.init import INIT_TYPES, init_weights

__all__ = [
    "DISCRIMINATORS",
    "GENERATORS",
    "INIT_TYPES",
    "NLayerDiscriminator",
    "PixelDiscriminator",
    "ResnetGenerator",
    "UnetGenerator",
    "build_discriminator",
    "build_generator",
    "init_weights",
]
