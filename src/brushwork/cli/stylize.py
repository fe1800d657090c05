"""``brushwork stylize``: translate images, folders and globs with any model source."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from brushwork.cli.app import app, setup_logging, user_errors

if TYPE_CHECKING:
    from brushwork.inference import ImagePipeline
    from brushwork.inference.io import BatchReport, InputItem

Opt = typer.Option


@app.command()
def stylize(
    inputs: Annotated[list[str], typer.Argument(help="Image files, folders (recursive) or globs (quote them).")],
    model: Annotated[str | None, Opt("--model", "-m", help="Release folder, run folder (+ --direction), official .pth, or a published name (brushwork models list); with --method adain, the AdaIN decoder.")] = None,
    out: Annotated[Path, Opt("--out", "-o", help="Output folder; relative paths and names are kept.")] = Path("stylized"),
    direction: Annotated[str | None, Opt(help="AtoB | BtoA, for a training run folder.")] = None,
    norm: Annotated[str | None, Opt(help="Norm of a .pth generator (default: instance, as published).")] = None,
    fmt: Annotated[str | None, Opt("--format", "-f", help="Output format: png, jpg, webp, tiff... (default: the input's).")] = None,
    size: Annotated[int | None, Opt(help="Resize the short side to this many pixels first.")] = None,
    side_by_side: Annotated[bool, Opt("--side-by-side", help="Write input|output pairs.")] = False,
    overwrite: Annotated[bool, Opt("--overwrite", help="Replace existing outputs (default: skip them).")] = False,
    device: Annotated[str, Opt(help="auto | cpu | cuda | cuda:N | mps")] = "auto",
    precision: Annotated[str, Opt(help="auto (CPU: the fastest measured on this machine; GPU: fp16) | fp32 | bf16 | fp16")] = "auto",
    batch_size: Annotated[int, Opt("--batch-size", "-b", help="Same-size images per forward pass.")] = 4,
    tile_size: Annotated[int | None, Opt(help="Process in tiles of this side (default: only above the memory budget).")] = None,
    memory_gb: Annotated[float | None, Opt("--memory-gb", help="Memory budget of one forward pass in GiB.")] = None,
    no_progress: Annotated[bool, Opt("--no-progress", help="No progress bar.")] = False,
    style: Annotated[list[str] | None, Opt("--style", help="Style image, PATH or PATH:WEIGHT (repeat for a weighted mix with gatys/adain): stylise like it with --method instead of a trained generator.")] = None,
    method: Annotated[str | None, Opt("--method", help="With --style: adain (needs --model, a trained decoder) | gatys (optimisation, slow) | colour (instant). Default: adain.")] = None,
    strength: Annotated[float | None, Opt("--strength", help="With --style: 0 (the photo) .. 1 (full style; the default).")] = None,
    preserve_colour: Annotated[bool, Opt("--preserve-colour", help="With --style and gatys/adain: transfer luminance only, keep the photo's colours.")] = False,
    iterations: Annotated[int | None, Opt("--iterations", help="Gatys: optimisation iterations at the first (512-pixel) level (default 300; later levels a third).")] = None,
    colour_mode: Annotated[str | None, Opt("--colour-mode", help="Colour transfer: reinhard (default) | histogram | mk.")] = None,
    verbose: Annotated[bool, Opt("--verbose", "-v")] = False,
) -> None:
    """Stylise images with a trained or published generator, or like one style image (--style).

    Failed files are listed at the end and make the exit status 1; the others are still written.
    """
    setup_logging(verbose)
    from brushwork.cli.style_options import build_style_pipeline, check_style_options
    from brushwork.inference import Stylizer
    from brushwork.inference.io import collect_inputs, output_suffix
    from brushwork.inference.sources import DirectionRequiredError, ModelSourceError
    from brushwork.inference.stylizer import MIN_SIDE, PipelineKindError

    check_style_options(style=style, method=method, model=model, strength=strength, preserve_colour=preserve_colour,
                        iterations=iterations, colour_mode=colour_mode)  # fmt: skip

    if fmt is not None:
        try:
            output_suffix(Path("x.png"), fmt)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--format") from None
    if size is not None and size < MIN_SIDE:
        raise typer.BadParameter(f"--size must be at least {MIN_SIDE}, got {size}", param_hint="--size")
    if memory_gb is not None and not 0 <= memory_gb < 1 << 20:  # 0 = the default budget
        raise typer.BadParameter(f"--memory-gb must be a number of GiB >= 0, got {memory_gb}", param_hint="--memory-gb")
    try:
        if style:
            stylizer = build_style_pipeline(style=style, method=method, model=model, strength=strength, preserve_colour=preserve_colour,
                                            iterations=iterations, colour_mode=colour_mode, device=device, precision=precision,
                                            batch_size=batch_size)  # fmt: skip
        else:
            assert model is not None  # check_style_options
            stylizer = Stylizer.from_pretrained(
                model, direction=direction, norm=norm, device=device, precision=precision, batch_size=batch_size,
                tile_size=tile_size, memory_budget=int(memory_gb * (1 << 30)) if memory_gb else None,
            )
    except DirectionRequiredError as exc:
        raise ModelSourceError(f"{exc} (use --direction {'|'.join(exc.directions)})") from None
    except PipelineKindError as exc:
        if exc.pipeline == "reference-style":
            raise ModelSourceError(f"{model} is an AdaIN model: give a style image, --style PAINTING --method adain --model {model}") from None
        raise
    except ValueError as exc:
        if isinstance(exc, user_errors()):
            raise
        raise typer.BadParameter(str(exc)) from None  # device / precision / batch size
    items, missing = collect_inputs(inputs, out_dir=out)
    typer.echo(f"{'method' if style else 'model'}: {stylizer.describe()}", err=True)
    report = _run_with_progress(stylizer, items, out, fmt=fmt, size=size, pair=side_by_side, overwrite=overwrite,
                                show=not no_progress)
    report.failed[:0] = [(path, f"{path}: {reason}") for path, reason in missing]

    rate = len(report.written) / report.seconds if report.seconds > 0 else 0.0
    typer.echo(
        f"{len(report.written)} written, {len(report.skipped)} skipped (exist; --overwrite to replace), "
        f"{len(report.failed)} failed in {report.seconds:.1f} s ({rate:.2f} images/s) -> {out}"
    )
    if report.warnings:
        typer.echo("warnings:", err=True)
        for message in report.warnings:
            typer.echo(f"  {message}", err=True)
    if report.failed:
        typer.echo("failed:", err=True)
        for _, message in report.failed:
            typer.echo(f"  {message}", err=True)
        raise typer.Exit(1)


def _run_with_progress(stylizer: ImagePipeline, items: list[InputItem], out: Path, *, fmt: str | None, size: int | None,
                       pair: bool, overwrite: bool, show: bool) -> BatchReport:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    from brushwork.inference.io import stylize_files

    if not show or not items:
        return stylize_files(stylizer, items, out, fmt=fmt, size=size, pair=pair, overwrite=overwrite)
    columns = (TextColumn("stylising"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), TextColumn("{task.description}"))
    with Progress(*columns, transient=True) as bar:
        task = bar.add_task("", total=len(items))
        if hasattr(stylizer, "progress"):  # Gatys: a bar of optimisation iterations for the image at hand
            steps = bar.add_task("iterations", total=None)
            stylizer.progress = lambda done, total: bar.update(steps, completed=done, total=total)

        def advance(item: InputItem, status: str) -> None:
            bar.update(task, advance=1, description=item.path.name)

        return stylize_files(stylizer, items, out, fmt=fmt, size=size, pair=pair, overwrite=overwrite, progress=advance)
