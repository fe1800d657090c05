"""Networks: pure ``nn.Module``s built by name from registries."""

from brushwork.nn.antialias import BlurDownsample, BlurUpsample, binomial_filter
from brushwork.nn.dcgan import DCGANDiscriminator, DCGANGenerator
from brushwork.nn.discriminators import (
    DISCRIMINATORS,
    NLayerDiscriminator,
    PixelDiscriminator,
    build_discriminator,
)
from brushwork.nn.features import FeatureNetwork, feature_channels, sequential_features
from brushwork.nn.generators import (
    GENERATORS,
    ResnetGenerator,
    UnetGenerator,
    build_generator,
    generator_input,
)
from brushwork.nn.init import INIT_TYPES, init_weights
from brushwork.nn.modes import TEST_MODES, apply_test_mode
from brushwork.nn.patchnce import PatchSampleF, patch_nce_loss, patch_nce_loss_over_layers

__all__ = [
    "DISCRIMINATORS",
    "GENERATORS",
    "INIT_TYPES",
    "TEST_MODES",
    "BlurDownsample",
    "BlurUpsample",
    "DCGANDiscriminator",
    "DCGANGenerator",
    "FeatureNetwork",
    "NLayerDiscriminator",
    "PatchSampleF",
    "PixelDiscriminator",
    "ResnetGenerator",
    "UnetGenerator",
    "apply_test_mode",
    "binomial_filter",
    "build_discriminator",
    "build_generator",
    "feature_channels",
    "generator_input",
    "init_weights",
    "patch_nce_loss",
    "patch_nce_loss_over_layers",
    "sequential_features",
]
