"""``brushwork serve``: the HTTP service and web page for one or more models (FastAPI + uvicorn)."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from brushwork.cli.app import app, setup_logging, user_errors

if TYPE_CHECKING:
    from fastapi import FastAPI

Opt = typer.Option
log = logging.getLogger(__name__)

#: The model names the service accepts (kept equal to brushwork.serve.app.MODEL_NAME, which needs FastAPI).
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_LOOPBACK = ("127.0.0.1", "localhost", "::1")


def parse_model_spec(spec: str) -> tuple[str | None, str]:
    """``NAME=SOURCE`` -> (NAME, SOURCE); a bare ``SOURCE`` -> (None, SOURCE).

    A spec whose part before the first ``=`` is not a valid name (or that names an existing
    file as a whole) is a bare source, so paths containing ``=`` still work.
    """
    name, sep, source = spec.partition("=")
    if sep and _NAME.fullmatch(name) and source and not Path(spec).exists():
        return name, source
    return None, spec


def default_model_name(source: str) -> str:
    """A model's name from its source: the file stem or folder name, made URL-safe."""
    path = Path(source.rstrip("/\\"))
    stem = path.stem if path.suffix.lower() in (".pth", ".pt", ".safetensors", ".onnx") else path.name
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", stem).strip("-._")[:64]
    return name or "model"


def model_table(specs: list[str]) -> dict[str, str]:
    """``--model`` values -> {name: source}, in order; a clash of names is a one-line error."""
    table: dict[str, str] = {}
    for spec in specs:
        name, source = parse_model_spec(spec)
        name = name or default_model_name(source)
        if name in table:
            raise typer.BadParameter(f"two models are named {name!r} ({table[name]} and {source}); "
                                     f"name them with NAME=SOURCE", param_hint="--model")
        table[name] = source
    return table


def build_app(specs: list[str], *, direction: str | None, device: str, precision: str, workers: int, queue: int,
              timeout: float, max_upload_mb: float, max_pixels: int | None) -> FastAPI:
    """Load every model once and make the app (what ``serve`` runs; separate so tests can call it)."""
    from brushwork.inference import Stylizer
    from brushwork.inference.sources import DirectionRequiredError, ModelSourceError
    from brushwork.serve import create_app

    models = {}
    for name, source in model_table(specs).items():
        try:
            models[name] = Stylizer.from_pretrained(source, direction=direction, device=device, precision=precision)
        except DirectionRequiredError as exc:
            raise ModelSourceError(f"{exc} (use --direction {'|'.join(exc.directions)})") from None
        except ValueError as exc:
            if isinstance(exc, user_errors()):
                raise
            raise typer.BadParameter(str(exc)) from None  # device / precision
        typer.echo(f"model {name}: {models[name].describe()}", err=True)
    try:
        return create_app(models, max_upload_bytes=int(max_upload_mb * 1_000_000), workers=workers,
                          queue_size=queue, request_timeout_s=timeout, max_pixels=max_pixels)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


@app.command()
def serve(
    model: Annotated[list[str], Opt("--model", "-m", help="SOURCE or NAME=SOURCE, repeatable; the first is the default. SOURCE: a release folder, an official .pth or a published name (the name defaults to its file or folder name).")],
    host: Annotated[str, Opt(help="Address to listen on; 0.0.0.0 for every interface (there is no authentication).")] = "127.0.0.1",
    port: Annotated[int, Opt(min=0, max=65535, help="Port (0: any free one).")] = 8000,
    workers: Annotated[int, Opt(min=1, help="Inference threads; 1 on a CPU, where one pass uses every core.")] = 1,
    queue: Annotated[int, Opt(min=0, help="Requests that may wait for a worker; more get 503 with Retry-After.")] = 8,
    timeout: Annotated[float, Opt(min=0.001, help="Seconds a request may take, upload and queueing included (then 504).")] = 60.0,
    max_upload_mb: Annotated[float, Opt("--max-upload-mb", min=0.001, help="Largest upload in MB (10^6 bytes); larger ones get 413.")] = 20.0,
    max_pixels: Annotated[int | None, Opt("--max-pixels", min=1, help="Largest image in pixels (default: $BRUSHWORK_MAX_PIXELS or 400 M).")] = None,
    direction: Annotated[str | None, Opt(help="AtoB | BtoA, for training run folders.")] = None,
    device: Annotated[str, Opt(help="auto | cpu | cuda | cuda:N | mps")] = "auto",
    precision: Annotated[str, Opt(help="auto | fp32 | bf16 | fp16")] = "auto",
    verbose: Annotated[bool, Opt("--verbose", "-v")] = False,
) -> None:
    """Serve models over HTTP: a web page at /, a JSON API at /v1 (OpenAPI at /docs).

    Models load once at start-up; requests run in a bounded worker pool (see docs/deploy.md).
    """
    setup_logging(verbose)
    try:
        import fastapi  # noqa: F401
        import python_multipart  # noqa: F401
        import uvicorn
    except ImportError:
        typer.secho("error: brushwork serve needs FastAPI and uvicorn: pip install 'brushwork[serve]'",
                    fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None
    service = build_app(model, direction=direction, device=device, precision=precision, workers=workers,
                        queue=queue, timeout=timeout, max_upload_mb=max_upload_mb, max_pixels=max_pixels)
    if host not in _LOOPBACK:
        log.warning("listening on %s: anyone who can reach it can use this server (it has no authentication)", host)
    shown = f"[{host}]" if ":" in host else host
    typer.echo(f"serving {', '.join(service.state.models)} on http://{shown}:{port}/ (API docs at /docs; Ctrl-C stops)",
               err=True)
    uvicorn.run(service, host=host, port=port, log_config=None, log_level="debug" if verbose else "info",
                server_header=False, timeout_keep_alive=5)
