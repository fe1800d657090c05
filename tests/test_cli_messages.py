"""Every command-line flag that a message names is a real flag of the commands that can show it."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import pytest
from typer.main import get_command

SRC = Path(__file__).resolve().parents[1] / "src" / "brushwork"
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")
# "brushwork export RUN --checkpoint X": the flags after a named command are that command's
NAMED = re.compile(r"brushwork ((?:models )?[a-z]+)([^;,()]*)")

# Which commands can show the messages of each module (training-side modules are checked by
# their own tests). Messages of the inference and metrics libraries reach several commands.
SHOWN_BY = {
    "cli/stylize.py": {"stylize"},
    "cli/style_options.py": {"stylize"},
    "cli/evaluate.py": {"evaluate"},
    "cli/compare.py": {"compare"},
    "cli/models.py": {"models list", "models download", "models import"},
    "cli/export.py": {"export"},
    "cli/export_onnx.py": {"export-onnx"},
    "cli/generate.py": {"generate"},
    "inference/generation.py": {"generate"},
    "cli/demo.py": {"demo"},
    "cli/tune.py": {"tune"},
    "cli/methods.py": {"train"},  # it describes train's data flags
    "cli/serve.py": {"serve"},
    "tuning.py": {"train"},  # the one message naming a flag is about training settings
    "inference/io.py": {"stylize"},  # compare's model runs pass fmt="png": no --format message can arise
    "inference/sources.py": {"stylize", "compare", "models download", "models import", "serve"},
    "inference/stylizer.py": {"stylize", "compare", "serve"},
    "inference/tiling.py": {"stylize", "compare"},
    "inference/temporal.py": {"stylize"},  # video is only reached through stylize
    "inference/video.py": {"stylize"},
    "inference/onnx.py": {"export-onnx", "stylize", "compare"},
    "data/imageio.py": {"stylize", "evaluate", "compare", "train"},
    "metrics/evaluate.py": {"evaluate", "compare"},
    "metrics/features.py": {"evaluate", "compare", "train"},
    "metrics/weights.py": {"evaluate", "compare", "train"},
    "metrics/scores.py": {"evaluate", "compare", "train"},
    "metrics/report.py": {"compare"},
    "release.py": {"stylize", "compare", "export", "models download", "models import", "train", "serve"},
    # methods name their settings' flags (setting(flag=...)) and messages about them: train's
    **{f"methods/{p.name}": {"train"} for p in (SRC / "methods").glob("*.py")},
}
# Flags a message may name although a command in SHOWN_BY lacks them, with the reason.
UNREACHABLE = {
    ("metrics/evaluate.py", "--source"): "the 'give the inputs' reason needs inputs to be missing; compare always has --inputs",
}
# Modules of several subcommands: each of their messages belongs to one of them.
ONE_OF = {"cli/models.py"}


def command_flags() -> dict[str, set[str]]:
    from brushwork.cli import app

    flags: dict[str, set[str]] = {}

    def visit(prefix: str, cmd: Any) -> None:
        if getattr(cmd, "commands", None):  # a group of subcommands
            for name, sub in cmd.commands.items():
                visit(f"{prefix} {name}".strip(), sub)
            return
        flags[prefix] = {o for p in cmd.params for o in (*p.opts, *p.secondary_opts) if o.startswith("--")}

    visit("", get_command(app))
    return flags


def message_strings(path: Path) -> list[str]:
    """String literals of a module, docstrings left out; an f-string is one text with NAME for
    each placeholder (so "brushwork models download {name} --force" reads as one command line)."""
    tree = ast.parse(path.read_text())
    skip = {
        id(node.body[0].value) for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)
    }  # fmt: skip
    texts = []
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            skip.update(id(v) for v in node.values)
            texts.append("".join(v.value if isinstance(v, ast.Constant) else "NAME" for v in node.values))
    texts += [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in skip]
    return texts


def test_every_module_with_flags_is_mapped() -> None:
    skipped = ("training/", "config.py", "data/unpaired.py", "data/builders.py", "demo/", "cli/train.py", "cli/app.py")
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC).as_posix()
        if rel.startswith(skipped) or rel in SHOWN_BY:
            continue
        assert not any(FLAG.search(text) for text in message_strings(path)), f"{rel} names a flag: add it to SHOWN_BY"


@pytest.mark.parametrize("module", sorted(SHOWN_BY))
def test_messages_name_only_real_flags(module: str) -> None:
    flags = command_flags()
    problems = []
    for text in message_strings(SRC / module):
        rest = text
        for match in NAMED.finditer(text):  # "brushwork <command> ... --flag"
            command = match.group(1)
            if command not in flags:
                continue  # "brushwork needs ...": prose, not a command
            problems += [f"{flag} (brushwork {command}) in {text!r}" for flag in FLAG.findall(match.group(2)) if flag not in flags[command]]
            rest = rest.replace(match.group(0), "")
        for flag in FLAG.findall(rest):
            if (module, flag) in UNREACHABLE:
                continue
            lacking = sorted(c for c in SHOWN_BY[module] if flag not in flags[c])
            if module in ONE_OF:
                lacking = lacking if len(lacking) == len(SHOWN_BY[module]) else []
            problems += [f"{flag} ({command}) in {text!r}" for command in lacking]
    assert not problems, f"{module}: messages name flags their commands lack: {problems}"
