"""``brushwork generate``: images from a generator of noise (a DCGAN run or release)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from brushwork.cli.app import app, setup_logging, user_errors

Opt = typer.Option


@app.command()
def generate(
    model: Annotated[str, Opt("--model", "-m", help="Run folder (its latest checkpoint) or release folder of a generator of noise (DCGAN).")],
    n: Annotated[int, Opt("-n", "--number", min=1, help="How many images.")] = 64,
    seed: Annotated[int, Opt(min=0, help="Latent seed; image i of a seed is the same for any -n and --batch-size.")] = 0,
    out: Annotated[Path, Opt("--out", "-o", help="Output folder: 00000.png, 00001.png, ... and grid.png.")] = Path("generated"),
    grid: Annotated[bool, Opt("--grid/--no-grid", help="Also write grid.png (the first 1024 images; leave it out of a folder to score).")] = True,
    checkpoint: Annotated[Path | None, Opt(help="Checkpoint of a run folder (default: the latest).")] = None,
    overwrite: Annotated[bool, Opt("--overwrite", help="Replace the earlier images and grid of brushwork generate in --out (default: refuse).")] = False,
    batch_size: Annotated[int, Opt("--batch-size", "-b", min=1, help="Images per forward pass.")] = 64,
    device: Annotated[str, Opt(help="auto | cpu | cuda | cuda:N | mps")] = "auto",
    no_progress: Annotated[bool, Opt("--no-progress", help="No progress bar.")] = False,
    verbose: Annotated[bool, Opt("--verbose", "-v")] = False,
) -> None:
    """Generate images with a generator of noise, e.g. `brushwork generate --model runs/dcgan -n 64 --seed 0 --out gen/`.

    Unlike `brushwork stylize`, which skips outputs that exist, an output folder holding earlier
    generated images is refused without --overwrite: images of another model or seed would
    otherwise mix with these unnoticed.
    """
    setup_logging(verbose)
    from brushwork.inference.generation import generate_to_folder
    from brushwork.inference.sampler import NoiseSampler

    try:
        sampler = NoiseSampler.from_pretrained(model, checkpoint=checkpoint, download=False, device=device, batch_size=batch_size)
    except ValueError as exc:
        if isinstance(exc, user_errors()):
            raise
        raise typer.BadParameter(str(exc)) from None  # device
    typer.echo(f"model: {sampler.describe()}", err=True)
    if no_progress:
        report = generate_to_folder(sampler, out, n, seed=seed, grid=grid, overwrite=overwrite)
    else:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        columns = (TextColumn("generating"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
        with Progress(*columns, transient=True) as bar:
            task = bar.add_task("", total=n)
            report = generate_to_folder(sampler, out, n, seed=seed, grid=grid, overwrite=overwrite,
                                        progress=lambda done: bar.update(task, completed=done))  # fmt: skip
    grid_note = f" and {report.grid.name}" if report.grid else ""
    typer.echo(f"{len(report.images)} images{grid_note} written in {report.seconds:.1f} s "
               f"({report.images_per_second:.1f} images/s) -> {out}")  # fmt: skip
