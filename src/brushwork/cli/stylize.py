"""``brushwork stylize``: translate images, videos, folders and globs with any model source."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from brushwork.cli.app import app, setup_logging, user_errors

if TYPE_CHECKING:
    from brushwork.inference import ImagePipeline
    from brushwork.inference.io import BatchReport, InputItem
    from brushwork.inference.video import VideoReport

Opt = typer.Option


@app.command()
def stylize(
    inputs: Annotated[list[str], typer.Argument(help="Image or video files (mp4, mov, mkv, webm, avi, m4v), folders of images (recursive) or globs (quote them).")],
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
    temporal: Annotated[str, Opt(help="Videos: stable (norm statistics smoothed over frames, restarted at scene cuts) | per-frame.")] = "stable",
    smoothing: Annotated[float, Opt(help="Videos, stable mode: EMA factor of the statistics in [0, 1); 0 is per-frame, 0.8 remembers ~5 frames.")] = 0.8,
    cut_threshold: Annotated[float, Opt(help="Videos, stable mode: colour-histogram distance (0-1) between frames that counts as a scene cut.")] = 0.2,
    video_codec: Annotated[str | None, Opt("--video-codec", help="Videos: h264 | vp9 | av1 (default: h264; vp9 for .webm).")] = None,
    crf: Annotated[int | None, Opt(help="Videos: quality, lower is better (h264 0-51, default 18; vp9 0-63, 31; av1 1-63, 35).")] = None,
    test_mode: Annotated[str | None, Opt("--test-mode", help="eval | train_like: batch norm and dropout at test time (default: the model's; pix2pix: train_like, as its authors test).")] = None,
    seed: Annotated[int, Opt(help="Seed of train_like's dropout noise (0).")] = 0,
    no_progress: Annotated[bool, Opt("--no-progress", help="No progress bar.")] = False,
    style: Annotated[list[str] | None, Opt("--style", help="Style image, PATH or PATH:WEIGHT (repeat for a weighted mix with gatys/adain): stylise like it with --method instead of a trained generator.")] = None,
    method: Annotated[str | None, Opt("--method", help="With --style: adain (needs --model, a trained decoder) | gatys (optimisation, slow) | colour (instant). Default: adain.")] = None,
    strength: Annotated[float | None, Opt("--strength", help="With --style: 0 (the photo) .. 1 (full style; the default).")] = None,
    preserve_colour: Annotated[bool, Opt("--preserve-colour", help="With --style and gatys/adain: transfer luminance only, keep the photo's colours.")] = False,
    iterations: Annotated[int | None, Opt("--iterations", help="Gatys: optimisation iterations at the first (512-pixel) level (default 300; later levels a third).")] = None,
    colour_mode: Annotated[str | None, Opt("--colour-mode", help="Colour transfer: reinhard (default) | histogram | mk.")] = None,
    max_side: Annotated[int | None, Opt("--max-side", help="Gatys: optimise at most at this long side and upsample the result to the photo's size (memory: about 3 KB per pixel of that size in fp32; default: the full size).")] = None,
    verbose: Annotated[bool, Opt("--verbose", "-v")] = False,
) -> None:
    """Stylise images and videos with a trained or published generator, or like one style image (--style).

    Videos keep their name, container, frame timing, rotation and audio. Failed files are listed
    at the end and make the exit status 1; the others are still written.
    """
    setup_logging(verbose)
    from brushwork.cli.style_options import build_style_pipeline, check_style_options
    from brushwork.inference import Stylizer
    from brushwork.inference.io import collect_inputs, output_suffix
    from brushwork.inference.sources import DirectionRequiredError, ModelSourceError
    from brushwork.inference.stylizer import MIN_SIDE, PipelineKindError
    from brushwork.inference.temporal import TEMPORAL_MODES
    from brushwork.inference.video import is_video_file, resolve_codec

    check_style_options(style=style, method=method, model=model, strength=strength, preserve_colour=preserve_colour,
                        iterations=iterations, colour_mode=colour_mode, max_side=max_side)  # fmt: skip

    if fmt is not None:
        try:
            output_suffix(Path("x.png"), fmt)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--format") from None
    if size is not None and size < MIN_SIDE:
        raise typer.BadParameter(f"--size must be at least {MIN_SIDE}, got {size}", param_hint="--size")
    if memory_gb is not None and not 0 <= memory_gb < 1 << 20:  # 0 = the default budget
        raise typer.BadParameter(f"--memory-gb must be a number of GiB >= 0, got {memory_gb}", param_hint="--memory-gb")
    if temporal not in TEMPORAL_MODES:
        raise typer.BadParameter(f"expected one of {', '.join(TEMPORAL_MODES)}, got {temporal!r}", param_hint="--temporal")
    if not 0 <= smoothing < 1:
        raise typer.BadParameter(f"must be in [0, 1), got {smoothing}", param_hint="--smoothing")
    if not 0 < cut_threshold <= 1:
        raise typer.BadParameter(f"must be in (0, 1], got {cut_threshold}", param_hint="--cut-threshold")
    items, missing = collect_inputs(inputs, out_dir=out)
    videos = [item for item in items if is_video_file(item.path)]
    items = [item for item in items if not is_video_file(item.path)]
    for suffix in sorted({item.path.suffix.lower() for item in videos}):
        try:
            resolve_codec(video_codec, suffix, crf)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--video-codec/--crf") from None
    try:
        if style:
            stylizer = build_style_pipeline(style=style, method=method, model=model, strength=strength, preserve_colour=preserve_colour,
                                            iterations=iterations, colour_mode=colour_mode, max_side=max_side, device=device, precision=precision,
                                            batch_size=batch_size)  # fmt: skip
        else:
            assert model is not None  # check_style_options
            stylizer = Stylizer.from_pretrained(
                model, direction=direction, norm=norm, device=device, precision=precision, batch_size=batch_size,
                tile_size=tile_size, memory_budget=int(memory_gb * (1 << 30)) if memory_gb else None,
                test_mode=test_mode, seed=seed,
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
    typer.echo(f"{'method' if style else 'model'}: {stylizer.describe()}", err=True)
    report = _run_with_progress(stylizer, items, out, fmt=fmt, size=size, pair=side_by_side, overwrite=overwrite,
                                show=not no_progress)
    report.failed[:0] = [(path, f"{path}: {reason}") for path, reason in missing]
    rates = [f"{len(report.written) / report.seconds:.2f} images/s"] if items and report.seconds > 0 else []
    if videos:
        video_report, done = _run_videos(stylizer, videos, out, overwrite=overwrite, show=not no_progress, temporal=temporal,
                                         smoothing=smoothing, cut_threshold=cut_threshold, codec=video_codec, crf=crf,
                                         size=size, side_by_side=side_by_side)
        for name in ("written", "skipped", "failed", "warnings"):
            getattr(report, name).extend(getattr(video_report, name))
        report.seconds += video_report.seconds
        frames = sum(v.frames for v in done)
        if done and video_report.seconds > 0:
            rates.append(f"{frames / video_report.seconds:.2f} video frames/s")
        for video in done:
            temporal_text = f"stable, {len(video.cuts) - 1} scene cut(s)" if video.temporal == "stable" else "per-frame"
            audio_text = ", ".join(video.audio) or "no audio"
            typer.echo(f"{video.target}: {video.frames} frames, {video.width}x{video.height} at {video.fps:.3f} fps, "
                       f"{temporal_text}, {audio_text}")

    rate_text = f" ({', '.join(rates)})" if rates else ""
    typer.echo(
        f"{len(report.written)} written, {len(report.skipped)} skipped (exist; --overwrite to replace), "
        f"{len(report.failed)} failed in {report.seconds:.1f} s{rate_text} -> {out}"
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


def _run_videos(stylizer: ImagePipeline, items: list[InputItem], out: Path, *, overwrite: bool, show: bool,
                **options: object) -> tuple[BatchReport, list[VideoReport]]:
    """Stylise the videos one after the other, with a progress bar in frames for each."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    from brushwork.inference.video import stylize_video_files

    if not show:
        return stylize_video_files(stylizer, items, out, overwrite=overwrite, **options)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("frames"), TimeRemainingColumn())
    with Progress(*columns, transient=True) as bar:
        tasks: dict[Path, object] = {}

        def advance(item: InputItem, done: int, total: int | None) -> None:
            if item.path not in tasks:
                tasks[item.path] = bar.add_task(item.path.name, total=total)
            bar.update(tasks[item.path], completed=done, total=max(total, done) if total else None)  # type: ignore[arg-type]

        return stylize_video_files(stylizer, items, out, overwrite=overwrite, progress=advance, **options)
