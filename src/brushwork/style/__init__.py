"""Style from one example image: Gatys neural style, AdaIN, and statistical colour transfer.

    >>> from brushwork.style import from_style
    >>> pipe = from_style("painting.jpg", method="gatys", strength=0.8)
    >>> pipe("photo.jpg").save("out.png")

Modules: :mod:`~brushwork.style.pipelines` (the pipelines and :func:`from_style`),
:mod:`~brushwork.style.colour` (Reinhard, histogram and Monge-Kantorovich transfer; luminance
helpers), :mod:`~brushwork.style.gatys` (losses and the optimisation),
:mod:`~brushwork.style.adain` (training loss and step, defaults, loading decoders),
:mod:`~brushwork.style.weights` (ImageNet VGG-19 weights), :mod:`~brushwork.style.inputs`
(style images and weights, checked). The networks are in :mod:`brushwork.nn.vgg` and
:mod:`brushwork.nn.adain`.
"""

from brushwork.style.adain import (
    TRAINING,
    AdaINModelError,
    AdaINTraining,
    adain_loss,
    adain_training_step,
    learning_rate,
    load_adain_model,
    lr_factor,
    new_adain_network,
    save_adain_release,
)
from brushwork.style.colour import COLOUR_MODES, transfer_colour
from brushwork.style.gatys import GatysSettings, gatys_transfer
from brushwork.style.inputs import StyleInputError, load_styles, parse_weighted
from brushwork.style.pipelines import (
    STYLE_METHODS,
    AdaINPipeline,
    ColourTransferPipeline,
    GatysPipeline,
    StylePipeline,
    from_style,
)
from brushwork.style.weights import VGGWeightsError, load_vgg19_weights

__all__ = [
    "COLOUR_MODES", "STYLE_METHODS", "TRAINING", "AdaINModelError", "AdaINPipeline", "AdaINTraining",
    "ColourTransferPipeline", "GatysPipeline", "GatysSettings", "StyleInputError", "StylePipeline", "VGGWeightsError",
    "adain_loss", "adain_training_step", "from_style", "gatys_transfer", "learning_rate", "load_adain_model",
    "load_styles", "load_vgg19_weights", "lr_factor", "new_adain_network", "parse_weighted", "save_adain_release",
    "transfer_colour",
]  # fmt: skip
