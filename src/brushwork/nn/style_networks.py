"""Networks that release folders rebuild but that are not image-to-image generators.

An AdaIN network (VGG encoder + decoder, taking a content and a style image) is rebuilt from a
release folder like a generator, but it must not be a choice for CycleGAN's ``model.generator``:
so it has its own registry, which :func:`brushwork.release.build_from_architecture` consults
before the generators.
"""

from __future__ import annotations

from torch import nn

from brushwork.registry import Registry

STYLE_NETWORKS: Registry[nn.Module] = Registry("style network")


def _register_builtins() -> None:
    import brushwork.nn.adain  # noqa: F401  (registers "adain")


def is_style_network(name: str) -> bool:
    _register_builtins()
    return name in STYLE_NETWORKS


def build_style_network(name: str, **kwargs: object) -> nn.Module:
    _register_builtins()
    return STYLE_NETWORKS.build(name, **kwargs)
