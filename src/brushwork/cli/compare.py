"""``brushwork compare``: score several methods' outputs for the same inputs and write a report."""

from __future__ import annotations

import inspect
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


#: option keys of a style method spec (``NAME=style:PATH,...``) besides style: and model:
STYLE_SPEC_KEYS = ("method", "strength", "mode", "iterations", "max-side", "preserve-colour")


@dataclass(frozen=True)
class MethodSpec:
    name: str
    folder: Path | None = None  # outputs made elsewhere
    model: str | None = None  # a brushwork release model run on the fly
    #: style from example images (gatys, adain, colour), run on the fly: (path, weight) pairs
    styles: tuple[tuple[str, float], ...] = ()
    style_method: str | None = None
    #: the method's options (strength, colour_mode, iterations, preserve_colour)
    options: tuple[tuple[str, object], ...] = ()

    @property
    def source(self) -> str:
        if self.styles:
            names = ", ".join(p if w == 1.0 else f"{p}:{w:g}" for p, w in self.styles)
            extra = "".join(f", {k} {v}" for k, v in self.options)
            return f"{self.style_method} with style {names}" + (f", model {self.model}" if self.model else "") + extra
        return f"model {self.model}" if self.model is not None else f"folder {self.folder}"

    @property
    def runs(self) -> bool:
        """Whether compare makes its outputs now (a model or a style method) rather than reading a folder."""
        return self.model is not None or bool(self.styles)


def parse_method(text: str) -> MethodSpec:
    """``NAME=DIR``, ``NAME=model:SOURCE`` or ``NAME=style:PATH[:WEIGHT][,style:...][,model:DECODER][,method:M][,KEY:VALUE]``.

    A style spec's method is ``method:`` or else NAME itself (``gatys=style:painting.jpg``); its
    options are ``strength:S``, ``mode:reinhard|histogram|mk`` (colour), ``iterations:N`` (gatys)
    and ``preserve-colour``. Parts are separated by commas, so its paths cannot hold one.
    """
    name, sep, target = text.partition("=")
    name, target = name.strip(), target.strip()
    if not sep or not name or not target:
        raise MethodSpecError(f"--method {text!r}: expected NAME=DIR (a folder of outputs), NAME=model:SOURCE (a brushwork model) "
                              "or NAME=style:PAINTING (gatys, adain or colour)")  # fmt: skip
    if target.startswith("style:"):
        return _parse_style_spec(text, name, target)
    if target.startswith("model:"):
        model = target[len("model:") :]
        if not model:
            raise MethodSpecError(f"--method {text!r}: model: needs a model folder after it")
        return MethodSpec(name, model=model)
    return MethodSpec(name, folder=Path(target))


def _parse_style_spec(text: str, name: str, target: str) -> MethodSpec:
    from brushwork.style.gatys import MIN_LEVEL_SIDE
    from brushwork.style.inputs import StyleInputError, check_strength, parse_weighted
    from brushwork.style.pipelines import STYLE_METHODS

    styles: list[tuple[str, float]] = []
    model: str | None = None
    found: dict[str, str] = {}
    for part in (p.strip() for p in target.split(",")):
        key, colon, value = part.partition(":")
        key = key.strip()
        if key == "preserve-colour" and not colon:
            found[key] = "true"
            continue
        if not colon or not value:
            raise MethodSpecError(f"--method {text!r}: {part!r} is not KEY:VALUE (keys: style, model, {', '.join(STYLE_SPEC_KEYS)})")
        if key == "style":
            try:
                styles.append(parse_weighted(value, f"--method {name}: style"))
            except StyleInputError as exc:
                raise MethodSpecError(str(exc)) from None
        elif key == "model":
            model = value
        elif key in STYLE_SPEC_KEYS:
            found[key] = value
        else:
            raise MethodSpecError(f"--method {text!r}: unknown key {key!r}; keys: style, model, {', '.join(STYLE_SPEC_KEYS)}")
    method = found.pop("method", name)
    if method not in STYLE_METHODS:
        raise MethodSpecError(f"--method {text!r}: name the style method with method:{'|'.join(STYLE_METHODS.names())} "
                              f"(or call the method {' or '.join(STYLE_METHODS.names())})")  # fmt: skip
    options: dict[str, object] = {}
    try:
        if "strength" in found:
            options["strength"] = check_strength(float(found.pop("strength")))
        for key, least in (("iterations", 1), ("max-side", MIN_LEVEL_SIDE)):
            if key in found:
                options[key.replace("-", "_")] = value = int(found.pop(key))
                if value < least:
                    raise ValueError(f"{key} must be at least {least}, got {value}")
        if "mode" in found:
            options["colour_mode"] = found.pop("mode")
        if found.pop("preserve-colour", None):
            options["preserve_colour"] = True
    except (ValueError, StyleInputError) as exc:
        raise MethodSpecError(f"--method {text!r}: {exc}") from None
    if method == "adain" and model is None:
        raise MethodSpecError(f"--method {text!r}: adain needs a trained decoder: add model:RUN (a run or release folder of --method adain) or model:decoder.pth")
    if method != "adain" and model is not None:
        raise MethodSpecError(f"--method {text!r}: {method} takes no model:")
    return MethodSpec(name, model=model, styles=tuple(styles), style_method=method, options=tuple(options.items()))


def check_style_spec(spec: MethodSpec) -> None:
    """Read the style images of a style spec (and reject option/method mismatches) before any slow work."""
    from brushwork.style.inputs import StyleInputError, load_styles
    from brushwork.style.pipelines import STYLE_METHODS

    accepted = set(inspect.signature(STYLE_METHODS.get(spec.style_method or "")).parameters)
    for key, _ in spec.options:
        if key not in accepted:
            raise MethodSpecError(f"--method {spec.name}: {spec.style_method} takes no {key.replace('_', '-')}")
    try:
        load_styles(list(spec.styles))
    except StyleInputError as exc:
        raise MethodSpecError(f"--method {spec.name}: {exc}") from None


BASELINE_NAME = "colour baseline"
#: the style image the baseline uses when it stands for the whole --real set
BASELINE_MOSAIC = "baseline-real-colours.png"


def baseline_spec(specs: Sequence[MethodSpec], real_files: Sequence[Path] | None, assets: Path) -> MethodSpec | None:
    """The colour-transfer baseline (Reinhard) every report carries, or None when it has nothing to match to.

    Its target: the first style image of the first style method, else the pooled colours of the
    real set (:func:`~brushwork.style.inputs.domain_mosaic`, written into the report's files).
    None also when the comparison has a colour-transfer method of its own, or a method of that name.
    """
    if any(s.style_method == "colour" or s.name == BASELINE_NAME for s in specs):
        return None
    styled = next((s for s in specs if s.styles), None)
    if styled is not None:
        style = styled.styles[0][0]
    elif real_files:
        from brushwork.style.inputs import domain_mosaic
        from brushwork.utils.files import atomic_path

        path = assets / BASELINE_MOSAIC
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            domain_mosaic(real_files).save(tmp, format="PNG")
        style = str(path)
    else:
        log.debug("no colour-transfer baseline: it needs a style method (NAME=style:PAINTING) or --real to match colours to")
        return None
    return MethodSpec(BASELINE_NAME, styles=((style, 1.0),), style_method="colour", options=(("colour_mode", "reinhard"),))


def _pipeline(spec: MethodSpec, device: str) -> object:
    from brushwork.inference import Stylizer
    from brushwork.inference.sources import DirectionRequiredError
    from brushwork.style.pipelines import from_style

    if spec.styles:
        extra: dict[str, object] = {"model": spec.model} if spec.model is not None else {}
        if spec.style_method != "colour":
            extra["device"] = device
        return from_style(list(spec.styles), spec.style_method or "", **extra, **dict(spec.options))
    assert spec.model is not None
    try:
        return Stylizer.from_pretrained(spec.model, device=device)
    except DirectionRequiredError as exc:
        run = exc.run_dir
        raise MethodSpecError(
            f"--method {spec.name}=model:{spec.model}: {run} is a training run with generators {', '.join(exc.directions)}; "
            f"compare takes one generator: model:{run / 'release' / exc.directions[0]} (brushwork export {run} writes the release folders)"
        ) from None


def run_model(spec: MethodSpec, inputs: list[Path], input_root: Path, out_dir: Path, device: str) -> tuple[list[Path], dict[Path, str]]:
    """Translate every input with a brushwork model (or a style method) into ``out_dir`` as lossless PNG,
    mirroring the inputs' relative paths as ``brushwork stylize`` does; returns the outputs and the failed inputs."""
    from brushwork.inference.io import InputItem, stylize_files

    assert spec.runs
    stylizer = _pipeline(spec, device)
    log.info("running %s on %d inputs -> %s", spec.source, len(inputs), out_dir)
    items = [InputItem(p, p.relative_to(input_root)) for p in inputs]
    report = stylize_files(stylizer, items, out_dir, fmt="png", overwrite=True)  # type: ignore[arg-type]
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
    method: Annotated[list[str], Opt("--method", "-m", help="NAME=DIR (a folder of outputs from any tool), NAME=model:SOURCE (a brushwork model folder, run now) or NAME=style:PAINTING[,model:DECODER][,method:gatys|adain|colour][,strength:S][,mode:M][,iterations:N][,preserve-colour] (style from one example image, run now; NAME gatys, adain or colour names the method). Repeatable.")],
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
    baseline: Annotated[bool, Opt("--baseline/--no-baseline", help="Add a colour-transfer baseline (Reinhard): to the first style method's style image, else to the pooled colours of --real (on).")] = True,
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
    for spec in specs:
        if spec.styles:
            check_style_spec(spec)  # unreadable, tiny, grayscale or transparent style images: fail now
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
    if baseline:  # after every check of the user's input: a refused comparison writes nothing
        try:
            base = baseline_spec(specs, real_files, assets)
            if base is not None:
                check_style_spec(base)
                specs.append(base)
        except (MethodSpecError, ValueError) as exc:  # e.g. a --real set of grayscale images
            log.warning("no colour-transfer baseline: %s", exc)
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
            if spec.runs:
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
