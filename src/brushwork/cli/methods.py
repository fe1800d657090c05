"""``brushwork methods``: the training methods, the data each needs, and their own settings."""

from __future__ import annotations

import dataclasses
from typing import Annotated

import typer

from brushwork.cli.app import app

DATA_HELP = {
    "unpaired": "two folders of unpaired images (--data with trainA/ trainB/, or --data-a and --data-b)",
    "paired": "aligned pairs (--data with train/ of A|B images, or trainA/ trainB/ matched by file name)",
    "single": "one folder of images (--data FOLDER)",
}


@app.command()
def methods(
    name: Annotated[str | None, typer.Argument(help="Show this method's settings and defaults.")] = None,
) -> None:
    """List the training methods; with a NAME, its settings and their defaults (as YAML keys and flags)."""
    from brushwork.methods import METHODS, method_spec

    if name is None:
        for method in METHODS.names():
            spec = method_spec(method)
            typer.echo(f"{method:10s} {spec.summary}\n{'':10s} data: {DATA_HELP.get(spec.data_kind, spec.data_kind)}")
        typer.echo("\nbrushwork methods NAME shows a method's settings and defaults; each is a flag of brushwork train.")
        return
    spec = method_spec(name)
    typer.echo(f"{spec.name}: {spec.summary}\ndata: {DATA_HELP.get(spec.data_kind, spec.data_kind)}")
    for section, cls in (("model", spec.model), ("objective", spec.objective)):
        typer.echo(f"\n{section}:")
        for f in dataclasses.fields(cls):
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
            typer.echo(f"  {f.name} = {default!r}    {f.metadata.get('help', '')}")
    if spec.defaults:
        typer.echo("\ndefaults it sets in the shared sections:")
        for section, values in spec.defaults.items():
            for key, value in values.items():
                typer.echo(f"  {section}.{key} = {value!r}")
