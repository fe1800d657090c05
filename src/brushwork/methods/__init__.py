"""Training methods: each computes named losses from a batch; the trainer does the rest."""

from brushwork.methods.base import (
    METHODS,
    Method,
    MethodSpec,
    Phase,
    ReleaseSpec,
    build_method,
    method_spec,
)

# Importing registers the built-in methods.
from brushwork.methods import adain, cut, cyclegan, dcgan, pix2pix  # noqa: F401  isort: skip

__all__ = ["METHODS", "Method", "MethodSpec", "Phase", "ReleaseSpec", "build_method", "method_spec"]
