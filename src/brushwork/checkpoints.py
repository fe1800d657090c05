"""Training-state checkpoints: written atomically, the last K kept, loaded with clear errors."""

from __future__ import annotations

import logging
import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

import torch

from brushwork.utils.files import atomic_path, remove_stale_temps

log = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoints"
_NAME = re.compile(r"step_(\d+)\.pt")
FORMAT_VERSION = 1


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable or incompatible; the message names the file."""


def checkpoint_path(run_dir: Path, step: int) -> Path:
    return run_dir / CHECKPOINT_DIR / f"step_{step:08d}.pt"


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Checkpoints of ``run_dir``, oldest first."""
    folder = run_dir / CHECKPOINT_DIR
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.fullmatch(p.name))]
    return [p for _, p in sorted(found)]


def remove_interrupted_saves(run_dir: Path) -> list[Path]:
    """Delete the temporary files (``.step_*.pt.*.tmp``) of checkpoint saves that were killed.

    Call only while this run saves nothing, e.g. when it starts: a live save's file looks the same.
    """
    return remove_stale_temps(run_dir / CHECKPOINT_DIR, "step_*.pt")


def save_checkpoint(run_dir: Path, step: int, state: dict[str, Any], *, keep: int) -> Path:
    """Write ``state`` atomically, then delete all but the newest ``keep`` checkpoints.

    If writing fails (a full disk, say) the exception propagates and the older checkpoints are
    untouched: nothing is pruned before the new file is safely in place.
    """
    path = checkpoint_path(run_dir, step)
    state = {"format_version": FORMAT_VERSION, **state}
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    for old in list_checkpoints(run_dir)[:-keep]:
        old.unlink(missing_ok=True)
    return path


def load_checkpoint(path: Path, map_location: torch.device | str = "cpu", *, pick_flag: str | None = None) -> dict[str, Any]:
    """Load a training state; ``pick_flag`` is the calling command's flag for choosing another file.

    Several commands read checkpoints (train, export, stylize), so the flag is theirs to name.
    """
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=False)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, OSError) as exc:
        raise CheckpointError(
            f"checkpoint {path} is corrupt or truncated ({exc}); nothing was changed. "
            + (f"Pick an older checkpoint with {pick_flag} PATH, or delete this file" if pick_flag
               else "Delete this file to fall back on the previous checkpoint")
        ) from None
    if not isinstance(state, dict) or "format_version" not in state or "networks" not in state:
        raise CheckpointError(f"checkpoint {path} is not a brushwork training state")
    if state["format_version"] > FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format version {state['format_version']}; this brushwork reads "
            f"up to {FORMAT_VERSION}: upgrade brushwork"
        )
    return state


def find_resume_checkpoint(run_dir: Path, resume: str | Path) -> Path:
    """``resume`` is ``latest`` (newest in the run folder) or a path to a checkpoint file."""
    if str(resume) != "latest":
        return Path(resume)
    found = list_checkpoints(run_dir)
    if not found:
        raise CheckpointError(f"no checkpoint in {run_dir / CHECKPOINT_DIR}: the run has not saved one yet")
    return found[-1]
