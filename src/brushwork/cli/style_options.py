"""``brushwork stylize --style ...``: the style-from-one-example options, checked before any file is written."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from brushwork.style.gatys import MIN_LEVEL_SIDE
from brushwork.style.inputs import StyleInputError, check_strength, parse_weighted

if TYPE_CHECKING:
    from brushwork.style.pipelines import StylePipeline

#: methods that take several weighted style images and --preserve-colour
CNN_METHODS = ("gatys", "adain")
METHODS = ("adain", "gatys", "colour")


def check_style_options(*, style: list[str] | None, method: str | None, model: str | None, strength: float | None,
                        preserve_colour: bool, iterations: int | None, colour_mode: str | None,
                        max_side: int | None = None) -> None:
    """One-line errors for options that do not go together (before anything is read or written)."""
    if not style:
        given = [flag for flag, value in (("--method", method), ("--strength", strength), ("--iterations", iterations),
                                          ("--colour-mode", colour_mode), ("--preserve-colour", preserve_colour or None),
                                          ("--max-side", max_side))
                 if value is not None]  # fmt: skip
        if given:
            raise StyleInputError(f"{given[0]} needs --style (a style image); without it --model names a trained generator")
        if model is None:
            raise StyleInputError("give --model (a trained generator) or --style (a style image, with --method adain|gatys|colour)")
        return
    method = method or "adain"
    if method not in METHODS:
        raise StyleInputError(f"--method {method!r} is not a style method; expected one of {', '.join(METHODS)}")
    if strength is not None:
        try:
            check_strength(strength)
        except StyleInputError:
            raise StyleInputError(f"--strength must be from 0 to 1, got {strength}") from None
    if method == "adain" and model is None:
        raise StyleInputError(
            "--method adain needs a trained decoder: --model RUN (a run or release folder of brushwork train --method adain) or "
            "--model decoder.pth (the AdaIN authors', with their vgg_normalised.pth beside it); "
            "--method gatys and --method colour need no model"
        )
    if method != "adain" and model is not None:
        raise StyleInputError(f"--method {method} takes no --model (it needs no trained network); drop --model")
    if method not in CNN_METHODS:
        if len(style) > 1:
            raise StyleInputError(f"--method {method} takes one --style image, got {len(style)}; several styles are for gatys and adain")
        if preserve_colour:
            raise StyleInputError("--preserve-colour keeps the photo's colours, all that --method colour changes; use it with gatys or adain")
    if iterations is not None and method != "gatys":
        raise StyleInputError(f"--iterations is for --method gatys, not {method}")
    if iterations is not None and iterations < 1:
        raise StyleInputError(f"--iterations must be at least 1, got {iterations}")
    if max_side is not None and method != "gatys":
        raise StyleInputError(f"--max-side is for --method gatys, not {method}")
    if max_side is not None and max_side < MIN_LEVEL_SIDE:
        raise StyleInputError(f"--max-side must be at least {MIN_LEVEL_SIDE} pixels, got {max_side}")
    if colour_mode is not None and method != "colour":
        raise StyleInputError(f"--colour-mode is for --method colour, not {method}")


def parse_styles(style: list[str]) -> list[tuple[str, float]]:
    """``--style PATH`` or ``--style PATH:WEIGHT``, each weight checked."""
    return [parse_weighted(text, "--style") for text in style]


def build_style_pipeline(*, style: list[str], method: str | None, model: str | None, strength: float | None,
                         preserve_colour: bool, iterations: int | None, colour_mode: str | None, device: str,
                         precision: str, batch_size: int, max_side: int | None = None) -> StylePipeline:
    """The pipeline for ``--style`` (options already checked by :func:`check_style_options`)."""
    from brushwork.style.pipelines import from_style

    method = method or "adain"
    styles: list[str | Path | tuple[str | Path, float]] = [(path, weight) for path, weight in parse_styles(style)]
    options: dict[str, object] = {"strength": 1.0 if strength is None else strength}
    if method == "colour":
        options["colour_mode"] = colour_mode or "reinhard"
    else:
        options.update(preserve_colour=preserve_colour, device=device, precision=precision)
    if method == "gatys":
        options.update({k: v for k, v in (("iterations", iterations), ("max_side", max_side)) if v is not None})
    if method == "adain":
        options.update(model=model, batch_size=batch_size)
    return from_style(styles, method, **options)
