"""``brushwork stylize``: translate images with a trained model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from brushwork.cli.app import app, setup_logging


@app.command()
def stylize(
    inputs: Annotated[list[Path], typer.Argument(help="Image files or folders.")],
    model: Annotated[Path, typer.Option("--model", "-m", help="Release model folder (config.json + model.safetensors).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("stylized"),
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | mps")] = "auto",
) -> None:
    """Stylise images with a release model."""
    setup_logging()
    from brushwork.data.imageio import list_images, read_image, save_image
    from brushwork.inference import Stylizer

    stylizer = Stylizer.from_pretrained(model, device=device)
    files: list[Path] = []
    for item in inputs:
        files.extend(list_images(item, recursive=True) if item.is_dir() else [item])
    for path in files:
        loaded = read_image(path)
        result = stylizer(loaded.rgb)
        target = out / (path.stem + ".png")
        save_image(result, target, alpha=loaded.alpha)
        typer.echo(f"{path} -> {target}")
