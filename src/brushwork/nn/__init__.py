"""Networks: pure ``nn.Module``s built by name from registries."""

from brushwork.nn.dcgan import DCGANDiscriminator, DCGANGenerator
from brushwork.nn.discriminators import (
    DISCRIMINATORS,
    NLayerDiscriminator,
    PixelDiscriminator,
    build_discriminator,
)
from brushwork.nn.generators import (
    GENERATORS,
    ResnetGenerator,
    UnetGenerator,
    build_generator,
    generator_input,
)
from brushwork.nn.init import INIT_TYPES, init_weights
from brushwork.nn.modes import TEST_MODES, apply_test_mode

__all__ = [
    "DISCRIMINATORS",
    "GENERATORS",
    "INIT_TYPES",
    "TEST_MODES",
    "DCGANDiscriminator",
    "DCGANGenerator",
    "NLayerDiscriminator",
    "PixelDiscriminator",
    "ResnetGenerator",
    "UnetGenerator",
    "apply_test_mode",
    "build_discriminator",
    "build_generator",
    "generator_input",
    "init_weights",
]
