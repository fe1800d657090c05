"""Training methods: each computes named losses from a batch; the trainer does the rest."""

from brushwork.methods.base import METHODS, Method, build_method

# Importing registers the built-in methods.
from brushwork.methods import cyclegan as _cyclegan  # noqa: F401  isort: skip

__all__ = ["METHODS", "Method", "build_method"]
