"""``brushwork demo``: the built-in example, no data and no network needed."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from brushwork.cli.app import app, setup_logging


@app.command()
def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the data, run and HTML page.")] = Path("runs/demo"),
    steps: Annotated[int, typer.Option(min=1, help="Training iterations.")] = 2000,
    crops: Annotated[int, typer.Option(min=1, help="Training crops per domain.")] = 240,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | mps")] = "auto",
    no_progress: Annotated[bool, typer.Option("--no-progress")] = False,
) -> None:
    """Train a small CycleGAN on a procedural painting style and show the results as HTML."""
    setup_logging()
    from brushwork.checkpoints import list_checkpoints
    from brushwork.demo.run import DemoInterrupted, DemoSettings, run_demo
    from brushwork.utils.device import resolve_device

    resolve_device(device)  # a bad --device fails before any data is written
    if list_checkpoints(out / "run"):
        raise typer.BadParameter(f"{out} already holds a demo run; remove it or pass another --out")
    settings = DemoSettings(out=out, steps=steps, crops_per_domain=crops, seed=seed, device=device, progress=not no_progress)
    try:
        scores, page = run_demo(settings)
    except DemoInterrupted as exc:
        typer.secho(f"stopped: {exc}", fg=typer.colors.YELLOW, err=True)
        raise typer.Exit(130) from None
    typer.echo(
        f"held-out photos: G(photo) vs true style PSNR {scores.psnr_model:.2f} dB, SSIM {scores.ssim_model:.3f}; "
        f"do-nothing baseline PSNR {scores.psnr_baseline:.2f} dB, SSIM {scores.ssim_baseline:.3f} "
        f"-> {'beats' if scores.beats_baseline else 'does NOT beat'} the baseline"
    )
    typer.echo(f"open {page}")
