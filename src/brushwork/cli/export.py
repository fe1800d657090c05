"""``brushwork export``: write release models from a run's checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from brushwork.cli.app import app, setup_logging


@app.command()
def export(
    run_dir: Annotated[Path, typer.Argument(help="Run folder (holds config.yaml and checkpoints/).")],
    checkpoint: Annotated[Path | None, typer.Option(help="Checkpoint file (default: the latest).")] = None,
    out: Annotated[Path | None, typer.Option(help="Where to write <direction>/ folders (default RUN/release).")] = None,
) -> None:
    """Export each generator of a training run as a release folder (config.json + model.safetensors)."""
    setup_logging()
    from brushwork.training.run import export_run

    for direction, path in export_run(run_dir, checkpoint=checkpoint, out=out).items():
        typer.echo(f"{direction}: {path}")
