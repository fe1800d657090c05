"""``brushwork train``: train any registered method; its flags come from the settings dataclasses.

Every field of the shared sections (data, optim, run, eval) and of each method's own ``model``
and ``objective`` dataclasses is a flag (:func:`brushwork.config.setting` names it and gives its
help), so a new method's settings appear here with no edit. A flag of another method's settings
is an error naming it.
"""

from __future__ import annotations

import dataclasses
import inspect
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Union

import typer

from brushwork.cli.app import app, setup_logging

Opt = typer.Option


@dataclass(frozen=True)
class Flag:
    """One generated flag: the config field it sets and the methods whose settings hold it."""

    param: str  # the Python parameter name Typer passes it as
    section: str
    key: str
    names: tuple[str, ...]  # "--batch-size", "-b"
    hint: Any
    help: str
    methods: frozenset[str] | None  # None: a shared section, every method has it

    @property
    def display(self) -> str:
        return self.names[0].split("/")[0]


def _flag_type(hint: Any) -> Any:
    """The command-line type of a field: optional, as every flag defaults to "not given"."""
    if typing.get_origin(hint) in (Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        hint = bool if bool in args else args[0]
    return hint


def collect_flags() -> list[Flag]:
    """Flags of every setting of every registered method, each defined once."""
    from brushwork.config import SHARED_SECTIONS
    from brushwork.methods import METHODS, method_spec

    sections: list[tuple[str, type, str | None]] = [(name, cls, None) for name, cls in SHARED_SECTIONS.items()]
    for name in METHODS.names():
        spec = method_spec(name)
        sections += [("model", spec.model, name), ("objective", spec.objective, name)]
    flags: dict[str, Flag] = {}
    by_name: dict[str, str] = {}
    for section, cls, method in sections:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            meta = f.metadata
            if not meta.get("cli", True):
                continue
            hint = _flag_type(hints[f.name])
            long = meta.get("flag") or "--" + f.name.replace("_", "-")
            if hint is bool and "/" not in long:
                long = f"{long}/--no-{long[2:]}"
            param = f"{section}__{f.name}"
            names = (long, meta["short"]) if meta.get("short") else (long,)
            key = long.split("/")[0]
            if key in by_name and by_name[key] != param:
                raise RuntimeError(f"flag {key} is claimed by {by_name[key]} and {param}; name one with setting(flag=...)")
            by_name[key] = param
            if param in flags:  # the same setting in two methods: one flag for both
                old = flags[param]
                if old.hint is not hint:
                    raise RuntimeError(f"setting {section}.{f.name} has type {old.hint} in one method and {hint} in {method}")
                methods = None if old.methods is None else old.methods | {method}
                flags[param] = dataclasses.replace(old, methods=methods)
                continue
            flags[param] = Flag(param, section, f.name, names, hint, meta.get("help", ""),
                                None if method is None else frozenset({method}))  # fmt: skip
    return list(flags.values())


FLAGS = collect_flags()


def _run(*, config: Path | None, resume: bool, resume_from: Path | None, method: str | None, set_: list[str] | None,
         verbose: bool, **values: Any) -> None:
    """Train a CycleGAN (or another method: --method cut, fastcut, pix2pix, dcgan, ...).

    Settings resolve as the method's defaults < --config YAML < flags < --set. The resolved
    config is saved as RUN/config.yaml; `--resume` continues a stopped run exactly.
    `brushwork methods NAME` lists a method's own settings and defaults.
    """
    setup_logging(verbose)
    from brushwork.config import ConfigError, load_yaml, resolve_train_config
    from brushwork.methods import method_spec

    given = {f.param: f for f in FLAGS if values.get(f.param) is not None}
    overrides: dict[str, Any] = {}
    if method is not None:
        overrides["method"] = method
    for param, flag in given.items():
        value = values[param]
        overrides.setdefault(flag.section, {})[flag.key] = str(value) if isinstance(value, Path) else value
    if ("data__dir_a" in given) != ("data__dir_b" in given):
        raise typer.BadParameter("give both --data-a and --data-b, or --data")
    if "data__dir_a" in given:
        overrides.setdefault("data", {})["root"] = None

    if resume or resume_from:
        run_dir = Path(overrides.get("run", {}).get("out") or f"runs/{method or 'cyclegan'}")
        saved = run_dir / "config.yaml"
        if config is None and saved.is_file():
            config = saved  # a resumed run keeps its own settings unless told otherwise
    chosen = method
    if chosen is None and config is not None and config.is_file():
        chosen = load_yaml(config).get("method")
    spec = method_spec(chosen or "cyclegan")
    foreign = [f.display for f in given.values() if f.methods is not None and spec.name not in f.methods]
    if foreign:
        owners = sorted({m for f in given.values() if f.methods and spec.name not in f.methods for m in f.methods})
        raise ConfigError(
            f"{', '.join(foreign)} {'does' if len(foreign) == 1 else 'do'} not apply to method {spec.name} "
            f"(settings of {', '.join(owners)}); its settings: brushwork methods {spec.name}"
        )
    cfg = resolve_train_config(config_file=config, overrides=overrides, assignments=set_)

    from brushwork.training.run import run_training

    result = run_training(cfg, resume=str(resume_from) if resume_from else ("latest" if resume else None))
    if result.interrupted:
        if result.main:
            typer.echo(f"stopped at step {result.step}; checkpoint saved. Continue with: brushwork train --out {result.run_dir} --resume")
        raise typer.Exit(130)
    if not result.main:  # torchrun's other processes: rank 0 reports
        return
    typer.echo(f"done: {result.step} steps in {result.run_dir}")
    for direction, path in result.releases.items():
        typer.echo(f"  release {direction}: {path}")
    if result.skipped_images:
        typer.echo(f"  skipped {result.skipped_images} unreadable image(s)")


def _signature() -> inspect.Signature:
    P = inspect.Parameter
    fixed = [
        P("config", P.KEYWORD_ONLY, default=None, annotation=Annotated[Path | None, Opt("--config", "-c", help="YAML file of settings (flags override it).")]),
        P("resume", P.KEYWORD_ONLY, default=False, annotation=Annotated[bool, Opt("--resume", help="Continue the run in --out from its latest checkpoint.")]),
        P("resume_from", P.KEYWORD_ONLY, default=None, annotation=Annotated[Path | None, Opt("--resume-from", help="Continue from this checkpoint file.")]),
        P("method", P.KEYWORD_ONLY, default=None, annotation=Annotated[str | None, Opt("--method", help="Training method (cyclegan; brushwork methods lists them).")]),
        P("set_", P.KEYWORD_ONLY, default=None, annotation=Annotated[list[str] | None, Opt("--set", help="Any setting as section.key=value (repeatable).")]),
        P("verbose", P.KEYWORD_ONLY, default=False, annotation=Annotated[bool, Opt("--verbose", "-v")]),
    ]
    generated = []
    for flag in FLAGS:
        help_text = flag.help
        if flag.methods is not None:
            help_text = f"{help_text} [{', '.join(sorted(flag.methods))}]"
        panel = {"data": "Data", "optim": "Optimisation", "run": "Run", "eval": "Evaluation"}.get(flag.section, "Method settings")
        hint = flag.hint | None
        generated.append(P(flag.param, P.KEYWORD_ONLY, default=None,
                           annotation=Annotated[hint, Opt(*flag.names, help=help_text, rich_help_panel=panel, show_default=False)]))  # fmt: skip
    return inspect.Signature([*fixed, *generated])


def train(**kwargs: Any) -> None:
    _run(**kwargs)


train.__doc__ = _run.__doc__
train.__signature__ = _signature()  # type: ignore[attr-defined]
train.__annotations__ = {p.name: p.annotation for p in train.__signature__.parameters.values()}  # type: ignore[attr-defined]
app.command(name="train")(train)
