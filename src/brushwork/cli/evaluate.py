"""``brushwork evaluate``: IS, FID, KID of a folder of outputs, and content preservation."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from brushwork.cli.app import app, setup_logging
from brushwork.utils.files import atomic_write_json

if TYPE_CHECKING:
    from brushwork.metrics.evaluate import ProgressFactory, SetResult

Opt = typer.Option


@contextlib.contextmanager
def progress_factory(enabled: bool) -> Iterator[ProgressFactory | None]:
    """A rich progress display whose tasks the library advances through callbacks."""
    if not enabled:
        yield None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, transient=True, console=Console(stderr=True)) as bar:  # stdout may carry JSON

        def factory(what: str, total: int) -> Any:
            task = bar.add_task(what, total=total)
            return lambda k: bar.advance(task, k)

        yield factory


def print_results(results: list[SetResult], title: str, *, stderr: bool = False) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from brushwork.metrics.evaluate import summary_notes
    from brushwork.metrics.report import best_values, format_value
    from brushwork.metrics.scores import METRICS

    shown = [k for k in METRICS if any(k in r.metrics for r in results)]
    table = Table(title=title)
    table.add_column("outputs")
    for k in shown:
        table.add_column(f"{METRICS[k].label} {'↑' if METRICS[k].higher_is_better else '↓'}", justify="right")
    table.add_column("N", justify="right")
    best = best_values(results)
    for r in results:
        cells = []
        for k in shown:
            mv = r.metrics.get(k)
            if mv is None or mv.value is None:
                cells.append("[dim]n/a[/dim]")
            else:
                text = format_value(k, mv.value, mv.std)
                cells.append(f"[bold green]{text} ★[/bold green]" if best.get(k) == mv.value else text)
        table.add_row(escape(r.name), *cells, str(r.n_outputs))
    console = Console(stderr=stderr)
    console.print(table)
    for text in summary_notes(results):
        console.print(f"[yellow]note:[/yellow] {escape(text)}", highlight=False)


def report_unreadable(unreadable: dict[Path, str]) -> None:
    """List the files left out of the scores (stderr); the caller then exits with status 1."""
    if unreadable:
        typer.echo(f"{len(unreadable)} unreadable file(s) skipped (left out of every score):", err=True)
        for reason in unreadable.values():
            typer.echo(f"  {reason}", err=True)


def unreadable_json(unreadable: dict[Path, str]) -> list[dict[str, str]]:
    return [{"path": str(path), "reason": reason} for path, reason in unreadable.items()]


def write_json(target: Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` atomically to ``target``, or to standard output when ``target`` is ``-``."""
    if str(target) == "-":
        sys.stdout.write(json.dumps(payload, indent=2) + "\n")
        sys.stdout.flush()
    else:
        atomic_write_json(target, payload)
        typer.echo(f"wrote {target}")


@app.command()
def evaluate(
    real: Annotated[Path, Opt("--real", help="Folder of real images of the target domain (the reference set).")],
    fake: Annotated[Path, Opt("--fake", help="Folder of generated images to score.")],
    source: Annotated[Path | None, Opt("--source", help="Folder of the inputs the outputs were made from (SSIM, LPIPS by name).")] = None,
    json_out: Annotated[Path | None, Opt("--json", help="Write the results as JSON here; - for standard output (the table then goes to stderr).")] = None,
    metrics: Annotated[str | None, Opt("--metrics", help="Comma-separated subset of is,fid,kid,ssim,lpips (default: is,fid,kid, plus ssim and lpips with --source).")] = None,
    inception_weights: Annotated[Path | None, Opt("--inception-weights", help="torch-fidelity's weights-inception-2015-12-05-6726825d.pth (else $BRUSHWORK_INCEPTION_WEIGHTS, then torch hub's cache, then a download).")] = None,
    device: Annotated[str, Opt(help="auto | cpu | cuda | cuda:N | mps")] = "auto",
    batch_size: Annotated[int, Opt("--batch-size", min=1, help="Images per Inception forward pass.")] = 32,
    cache: Annotated[bool, Opt("--cache/--no-cache", help="Reuse the reference set's features between runs.")] = True,
    cache_dir: Annotated[Path | None, Opt("--cache-dir", help="Feature cache folder (default ~/.cache/brushwork/features).")] = None,
    strip_suffix: Annotated[list[str] | None, Opt("--strip-suffix", help="Remove this suffix from output names before matching them to --source (e.g. _fake).")] = None,
    progress: Annotated[bool, Opt("--progress/--no-progress", help="Show progress bars.")] = True,
    verbose: Annotated[bool, Opt("--verbose", "-v")] = False,
) -> None:
    """Score generated images: Inception Score, FID and KID against --real; SSIM and LPIPS against --source.

    Folders are read recursively; outputs are paired with --source inputs by relative path without
    extension. Unreadable images are skipped, listed at the end and make the exit status 1.
    The protocol is the published one (2015-12-05 Inception weights, TF-compatible resize, no antialias); see docs/metrics.md.
    """
    setup_logging(verbose)
    import logging

    from brushwork.inference.io import check_output_folder
    from brushwork.metrics.evaluate import (
        Evaluator,
        images_in,
        match_by_name,
        parse_metrics,
        protocol_dict,
    )
    from brushwork.metrics.features import FeatureCache
    from brushwork.utils.device import resolve_device

    log = logging.getLogger("brushwork.evaluate")
    chosen = parse_metrics(metrics)
    if chosen is None:
        required = ["is", "fid", "kid"] + (["ssim"] if source is not None else [])
        wanted = [*required, "lpips"] if source is not None else required
    else:
        required = wanted = chosen

    to_stdout = json_out is not None and str(json_out) == "-"
    real_files = images_in(real, "--real", recursive=True, exclude=[fake])
    fake_files = images_in(fake, "--fake", recursive=True)
    matching = None
    if source is not None:
        source_files = images_in(source, "--source", recursive=True, exclude=[fake])
        matching = match_by_name(source_files, fake_files, input_root=source, output_root=fake, strip_suffixes=strip_suffix or ())
        if matching.missing:
            log.warning("%d input(s) in %s have no output in %s: %s", len(matching.missing), source, fake, ", ".join(matching.missing[:10]))
        if matching.extra:
            log.warning("%d output(s) in %s match no input in %s: %s", len(matching.extra), fake, source, ", ".join(matching.extra[:10]))

    if json_out is not None and not to_stdout:
        check_output_folder(json_out.parent)  # unwritable: fail now, not after the scoring
    evaluator = Evaluator(
        wanted=wanted,
        required=required,
        inception_weights=inception_weights,
        device=resolve_device(device),
        batch_size=batch_size,
        cache=FeatureCache(cache_dir) if cache else None,
    )
    # Check that every metric can run (image counts, weights) before the slow part.
    reasons = evaluator.plan(n_outputs=len(fake_files), n_real=len(real_files), n_pairs=len(matching.pairs) if matching else None, where="--fake")
    if any(reasons.get(m, "not wanted") is None for m in ("is", "fid", "kid")):  # None: it can run
        evaluator.load_extractor()
    with progress_factory(progress) as factory:
        evaluator.progress = factory
        result = evaluator.evaluate(fake.name or str(fake), fake_files, real=real_files, matching=matching)

    print_results([result], title=f"{fake} vs {real}", stderr=to_stdout)
    if json_out is not None:
        payload = {
            "real": {"path": str(real), "n": len(real_files)},
            "fake": {"path": str(fake), "n": len(fake_files)},
            "source": {"path": str(source), "n": len(matching.pairs) + len(matching.missing)} if matching else None,
            "protocol": protocol_dict(evaluator.loaded_extractor),
            **{k: v for k, v in result.to_dict().items() if k not in ("name", "unreadable")},
            "unreadable": unreadable_json(evaluator.unreadable),
        }
        write_json(json_out, payload)
    report_unreadable(evaluator.unreadable)
    if evaluator.unreadable:
        raise typer.Exit(1)
