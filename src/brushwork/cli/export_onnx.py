"""``brushwork export-onnx``: one image-to-image generator as an ``.onnx`` file with its config.json."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from brushwork.cli.app import app, setup_logging

Opt = typer.Option


@app.command("export-onnx")
def export_onnx(
    source: Annotated[str, typer.Argument(help="Release folder, run folder (+ --direction), official .pth, or a published name.")],
    out: Annotated[Path, Opt("--out", "-o", help="The .onnx file to write; config.json is written beside it.")] = Path("model.onnx"),
    opset: Annotated[int, Opt(help="ONNX opset: 17 (default, loads in older runtimes) or 18.")] = 17,
    direction: Annotated[str | None, Opt(help="AtoB | BtoA, for a training run folder.")] = None,
    checkpoint: Annotated[Path | None, Opt(help="Checkpoint of a run folder (default: the latest).")] = None,
    norm: Annotated[str | None, Opt(help="Norm of a .pth generator (default: instance, as published).")] = None,
    verbose: Annotated[bool, Opt("--verbose", "-v")] = False,
) -> None:
    """Export a generator to ONNX (dynamic batch, height and width; inputs and outputs in [-1, 1]).

    The export is checked before it is kept: onnxruntime must give torch's output on a random
    input of another size. Run it with: brushwork stylize IMAGES --model model.onnx
    """
    setup_logging(verbose)
    from brushwork.inference.onnx import export_onnx as export
    from brushwork.inference.sources import DirectionRequiredError, ModelSourceError, load_source

    try:
        model, config = load_source(source, direction=direction, norm=norm, checkpoint=checkpoint)
    except DirectionRequiredError as exc:
        raise ModelSourceError(f"{exc} (use --direction {'|'.join(exc.directions)})") from None
    result = export(model, config, out, opset=opset, where=str(source))
    size_mb = result.path.stat().st_size / 1e6
    typer.echo(f"{result.path}: opset {result.opset}, {size_mb:.1f} MB, onnxruntime matches torch to "
               f"{result.max_abs_error:.1e} (of the [-1, 1] range)")
    typer.echo(f"{result.config_path}: preprocessing, input/output names, sha256 {result.sha256[:16]}...")
