"""``brushwork compare``: score several methods' outputs for the same inputs and write a report."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from brushwork.cli.app import app, setup_logging
from brushwork.cli.evaluate import (
    print_results,
    progress_factory,
    report_unreadable,
    unreadable_json,
)
from brushwork.utils.files import atomic_write_json

if TYPE_CHECKING:
    from brushwork.metrics.evaluate import Matching

Opt = typer.Option
log = logging.getLogger("brushwork.compare")


class MethodSpecError(ValueError):
    """A --method value is malformed or repeats a name."""


@dataclass(frozen=True)
class MethodSpec:
    name: str
    folder: Path | None = None  # outputs made elsewhere
    model: str | None = None  # a brushwork release model run on the fly

    @property
    def source(self) -> str:
        return f"model {self.model}" if self.model is not None else f"folder {self.folder}"


def parse_method(text: str) -> MethodSpec:
    """``NAME=DIR`` or ``NAME=model:SOURCE``."""
    name, sep, target = text.partition("=")
    name, target = name.strip(), target.strip()
    if not sep or not name or not target:
        raise MethodSpecError(f"--method {text!r}: expected NAME=DIR (a folder of outputs) or NAME=model:SOURCE (a brushwork model)")
    if target.startswith("model:"):
        model = target[len("model:") :]
        if not model:
            raise MethodSpecError(f"--method {text!r}: model: needs a model folder after it")
        return MethodSpec(name, model=model)
    return MethodSpec(name, folder=Path(target))


def run_model(spec: MethodSpec, inputs: list[Path], input_root: Path, out_dir: Path, device: str) -> tuple[list[Path], dict[Path, str]]:
    """Translate every input with a brushwork model into ``out_dir`` as lossless PNG, mirroring the
    inputs' relative paths as ``brushwork stylize`` does; returns the outputs and the failed inputs."""
    from brushwork.inference import Stylizer
    from brushwork.inference.io import InputItem, stylize_files
    from brushwork.inference.sources import DirectionRequiredError

    assert spec.model is not None
    try:
        stylizer = Stylizer.from_pretrained(spec.model, device=device)
    except DirectionRequiredError as exc:
        run = exc.run_dir
        raise MethodSpecError(
            f"--method {spec.name}=model:{spec.model}: {run} is a training run with generators {', '.join(exc.directions)}; "
            f"compare takes one generator: model:{run / 'release' / exc.directions[0]} (brushwork export {run} writes the release folders)"
        ) from None
    log.info("running %s on %d inputs -> %s", spec.source, len(inputs), out_dir)
    items = [InputItem(p, p.relative_to(input_root)) for p in inputs]
    report = stylize_files(stylizer, items, out_dir, fmt="png", overwrite=True)
    return report.written, dict(report.failed)


def check_matching(spec: MethodSpec, inputs: list[Path], input_root: Path, outputs: list[Path], output_root: Path,
                   suffixes: Sequence[str], strict: bool) -> Matching:
    """Pair a method's outputs with the inputs by relative path; log (or with ``strict`` refuse) gaps."""
    from brushwork.metrics.evaluate import MetricInputError, match_by_name, relative_name

    matching = match_by_name(inputs, outputs, input_root=input_root, output_root=output_root, strip_suffixes=suffixes)
    if not matching.pairs:
        if not outputs:
            raise MetricInputError(f"--method {spec.name}: produced no outputs")
        input_names = {relative_name(p, input_root) for p in inputs}
        suffixed = any(relative_name(o, output_root).startswith(i) for o in outputs[:50] for i in input_names)
        raise MetricInputError(
            f"--method {spec.name}: none of its {len(outputs)} outputs is named like an input "
            f"(outputs e.g. {relative_name(outputs[0], output_root)}, inputs e.g. {relative_name(inputs[0], input_root)}); "
            "outputs are matched to inputs by relative path without extension"
            + ("; the outputs look suffixed, try --strip-suffix" if suffixed and not suffixes else "")
        )
    if matching.missing:
        listed = ", ".join(matching.missing[:10]) + (" ..." if len(matching.missing) > 10 else "")
        message = f"{spec.name}: no output for {len(matching.missing)} of {len(inputs)} inputs: {listed}"
        if strict:
            raise MetricInputError(message + " (--strict)")
        log.warning(message)
    if matching.extra:
        log.warning("%s: %d output(s) match no input: %s", spec.name, len(matching.extra), ", ".join(matching.extra[:10]))
    return matching


@app.command()
def compare(
    inputs: Annotated[Path, Opt("--inputs", help="Folder of input images (outputs are matched to them by file name).")],
    method: Annotated[list[str], Opt("--method", "-m", help="NAME=DIR (a folder of outputs from any tool) or NAME=model:SOURCE (a brushwork model folder, run now). Repeatable.")],
    out: Annotated[Path, Opt("--out", "-o", help="HTML report to write (full-size images go to <name>_files/ beside it).")] = Path("report.html"),
    real: Annotated[Path | None, Opt("--real", help="Real images of the target domain: the reference set for FID and KID.")] = None,
    json_out: Annotated[Path | None, Opt("--json", help="Also write the results as JSON here (default: beside the report).")] = None,
    grid: Annotated[Path | None, Opt("--grid", help="PNG grid for papers (default: the report's name with .png).")] = None,
    grid_rows: Annotated[int, Opt("--grid-rows", min=1, help="Inputs shown in the PNG grid.")] = 4,
    metrics: Annotated[str | None, Opt("--metrics", help="Comma-separated subset of is,fid,kid,ssim,lpips that must all be computed (default: whatever the images allow).")] = None,
    inception_weights: Annotated[Path | None, Opt("--inception-weights", help="torch-fidelity's weights-inception-2015-12-05-6726825d.pth.")] = None,
    device: Annotated[str, Opt(help="auto | cpu | cuda | cuda:N | mps")] = "auto",
    batch_size: Annotated[int, Opt("--batch-size", min=1, help="Images per Inception forward pass.")] = 32,
    cache: Annotated[bool, Opt("--cache/--no-cache", help="Reuse the reference set's features between runs.")] = True,
    strip_suffix: Annotated[list[str] | None, Opt("--strip-suffix", help="Remove this suffix from output names before matching (e.g. _fake for the CycleGAN reference code's results).")] = None,
    strict: Annotated[bool, Opt("--strict", help="Fail when a method lacks an output for some input.")] = False,
    thumb_size: Annotated[int, Opt("--thumb-size", min=16, help="Thumbnail size in the report (pixels).")] = 192,
    progress: Annotated[bool, Opt("--progress/--no-progress", help="Show progress bars.")] = True,
    verbose: Annotated[bool, Opt("--verbose", "-v")] = False,
) -> None:
    """Compare methods side by side: metrics table (best per column marked) and a row of images per input.

    Each method is a folder of outputs named like the inputs (any tool), or a brushwork model
    run on the inputs now. Folders are read recursively and outputs paired with inputs by
    relative path. Missing and extra names are reported, never silently dropped; unreadable
    images are skipped, listed at the end and make the exit status 1.
    """
    setup_logging(verbose)
    from brushwork.inference.io import check_output_folder
    from brushwork.metrics.evaluate import (
        Evaluator,
        by_name,
        images_in,
        parse_metrics,
        protocol_dict,
    )
    from brushwork.metrics.features import FeatureCache
    from brushwork.metrics.report import MethodColumn, safe_name, write_grid, write_html_report
    from brushwork.utils.device import resolve_device

    specs = [parse_method(m) for m in method]
    for folder in {out.parent, (grid or out).parent, (json_out or out).parent}:
        check_output_folder(folder)  # unwritable: fail now, not after the scoring
    seen: set[str] = set()
    for spec in specs:
        if spec.name in seen:
            raise MethodSpecError(f"--method name {spec.name!r} is given twice; names must be unique")
        seen.add(spec.name)
    assets = out.parent / f"{out.stem}_files"
    # Never read the report's own files, or a method's outputs kept inside the inputs or the real set.
    written = [assets, *(spec.folder for spec in specs if spec.folder is not None)]
    input_files = images_in(inputs, "--inputs", recursive=True, exclude=written)
    input_by_name = by_name(input_files, inputs)
    real_files = images_in(real, "--real", recursive=True, exclude=written) if real is not None else None
    chosen = parse_metrics(metrics)
    suffixes = strip_suffix or ()
    # Match every folder method before any slow work, so that a bad folder fails at once.
    matchings = {
        spec.name: check_matching(spec, input_files, inputs, images_in(spec.folder, f"--method {spec.name}", recursive=True,
                                  exclude=[assets]), spec.folder, suffixes, strict)
        for spec in specs if spec.folder is not None
    }  # fmt: skip
    evaluator = Evaluator(
        **({"wanted": chosen, "required": chosen} if chosen else {}),
        inception_weights=inception_weights,
        device=resolve_device(device),
        batch_size=batch_size,
        cache=FeatureCache() if cache else None,
    )
    if chosen is None or any(m in chosen for m in ("is", "fid", "kid")):
        evaluator.load_extractor()  # missing weights: say so now, not after running the models
    columns: list[MethodColumn] = []
    with progress_factory(progress) as factory:
        evaluator.progress = factory
        for i, spec in enumerate(specs):
            if spec.model is not None:
                out_dir = assets / f"{i + 1:02d}_{safe_name(spec.name)}"
                outputs, failed = run_model(spec, input_files, inputs, out_dir, str(evaluator.device))
                for path, reason in failed.items():  # already logged by the model run
                    evaluator.unreadable.setdefault(path, reason)
                usable = [p for p in input_files if p not in failed]  # failed inputs are listed as unreadable
                matching = check_matching(spec, usable, inputs, outputs, out_dir, (), strict)
            else:
                matching = matchings[spec.name]
            result = evaluator.evaluate(spec.name, [p for _, _, p in matching.pairs], real=real_files, matching=matching)
            columns.append(MethodColumn(spec.name, result, {n: p for n, _, p in matching.pairs}, spec.source))

    print_results([c.result for c in columns], title=f"{len(columns)} methods on {len(input_files)} inputs from {inputs}")
    protocol = protocol_dict(evaluator.loaded_extractor)
    write_html_report(
        out, inputs=input_by_name, methods=columns, reference=str(real) if real else None, protocol=protocol, thumb_size=thumb_size
    )
    typer.echo(f"wrote {out}")
    grid_path = grid if grid is not None else out.with_suffix(".png")
    names = list(input_by_name)[: max(1, grid_rows)]
    write_grid(
        grid_path,
        headers=["input", *[c.name for c in columns]],
        rows=[[input_by_name[n], *[c.outputs.get(n) for c in columns]] for n in names],
    )
    typer.echo(f"wrote {grid_path}")
    payload = {
        "inputs": {"path": str(inputs), "n": len(input_files)},
        "real": {"path": str(real), "n": len(real_files)} if real_files is not None else None,
        "protocol": protocol,
        "methods": [{"source": c.source, **c.result.to_dict()} for c in columns],
        "unreadable": unreadable_json(evaluator.unreadable),
    }
    json_path = json_out if json_out is not None else out.with_suffix(".json")
    atomic_write_json(json_path, payload)
    typer.echo(f"wrote {json_path}")
    report_unreadable(evaluator.unreadable)
    if evaluator.unreadable:
        raise typer.Exit(1)
