"""Reading PyTorch weights files safely (``weights_only``), with the reason of a failure in one line."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import torch

#: what torch.load raises for a truncated, foreign or non-tensor file
READ_ERRORS = (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, OSError, ValueError)


class UnreadableTorchFile(ValueError):
    """torch.load failed; the message is the first line of its reason (callers name the file)."""


def load_weights_only(path: Path) -> object:
    """``torch.load(path, weights_only=True)`` on the CPU, or :class:`UnreadableTorchFile`."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except READ_ERRORS as exc:
        text = str(exc).strip()
        raise UnreadableTorchFile(text.splitlines()[0] if text else type(exc).__name__) from None
