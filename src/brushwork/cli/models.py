"""``brushwork models``: list, download and import published CycleGAN, pix2pix and CUT/FastCUT generators."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from brushwork.cli.app import app, setup_logging

models_app = typer.Typer(help="Published CycleGAN, pix2pix and CUT/FastCUT generators: list, download, import into the release format.",
                         no_args_is_help=True)
app.add_typer(models_app, name="models")


@models_app.command("list")
def list_models() -> None:
    """The published model names, and which are in the local cache."""
    from brushwork.inference.sources import (
        PUBLISHED_MODELS,
        cache_dir,
        published_family,
        published_path,
    )

    typer.echo(f"cache: {cache_dir() / 'pretrained'}")
    for name in PUBLISHED_MODELS:
        mark = "cached" if published_path(name).is_file() else "-"
        typer.echo(f"  {name:<30} {published_family(name):<9} {mark}")


@models_app.command("download")
def download(
    name: Annotated[str, typer.Argument(help="A published model name (brushwork models list).")],
    force: Annotated[bool, typer.Option("--force", help="Download again even if cached.")] = False,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Also convert it into a release folder here.")] = None,
) -> None:
    """Download a published generator into the cache (and optionally convert it)."""
    setup_logging()
    from brushwork.inference.sources import download_published, import_pth, published_direction
    from brushwork.utils.files import file_sha256

    path = download_published(name, force=force)
    typer.echo(f"{name}: {path} (sha256 {file_sha256(path)})")
    if out is not None:
        typer.echo(f"release: {import_pth(path, out, name=name, direction=published_direction(name))}")


@models_app.command("import")
def import_model(
    file: Annotated[Path, typer.Argument(help="A generator state dict in the official CycleGAN/pix2pix/CUT layout (.pth).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Release folder to write (config.json + model.safetensors).")],
    norm: Annotated[str | None, typer.Option(help="instance (assumed) | batch | none.")] = None,
    dropout: Annotated[bool | None, typer.Option("--dropout/--no-dropout", help="Whether a U-Net was trained with dropout "
                       "(not visible in its keys; assumed with batch norm, as pix2pix).")] = None,
    test_mode: Annotated[str | None, typer.Option(help="Batch norm and dropout at inference: train_like (the authors' "
                         "test.py, the default with batch norm or dropout) | eval.")] = None,
    direction: Annotated[str, typer.Option(help="Direction recorded in the release: AtoB | BtoA.")] = "AtoB",
    train_size: Annotated[int, typer.Option(help="Crop size it was trained at (a hint for brushwork stylize --size).")] = 256,
) -> None:
    """Convert an official ``.pth`` into a release folder; its sha256 goes into config.json."""
    setup_logging()
    from brushwork.inference.sources import DIRECTIONS, import_pth
    from brushwork.nn.modes import TEST_MODES

    if direction not in DIRECTIONS:
        raise typer.BadParameter(f"expected {' or '.join(DIRECTIONS)}, got {direction!r}", param_hint="--direction")
    if test_mode is not None and test_mode not in TEST_MODES:
        raise typer.BadParameter(f"expected {' or '.join(TEST_MODES)}, got {test_mode!r}", param_hint="--test-mode")
    path = import_pth(file, out, norm=norm, dropout=dropout, direction=direction, train_size=train_size, test_mode=test_mode)
    typer.echo(f"release: {path}")
