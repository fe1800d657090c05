"""The ``brushwork`` console script: one Typer app, one module per subcommand."""

from __future__ import annotations

from brushwork.cli.app import app, main

# Importing the command modules registers their subcommands on ``app``.
from brushwork.cli import compare, demo, evaluate, export, export_onnx, generate, methods, models, serve, stylize, train, tune  # noqa: F401  isort: skip

__all__ = ["app", "main"]
