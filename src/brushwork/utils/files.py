"""Atomic writes: a reader sees either the old file (or folder) or the complete new one, never a torn one."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO


@contextlib.contextmanager
def atomic_path(path: Path | str) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is fsynced and renamed over ``path``.

    If the body raises (disk full, interrupted), the temporary file is removed and any existing
    ``path`` is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


@contextlib.contextmanager
def atomic_dir(path: Path | str) -> Iterator[Path]:
    """Yield an empty folder to fill; on success it replaces the folder ``path`` as a whole.

    The new folder is built in ``.NAME.XXXX.tmp/new`` beside ``path``, its files fsynced, then
    swapped in by two renames (old folder away, new one in), so a reader sees the complete old
    folder or the complete new one (for the instant between the renames, none). If the body or
    a rename fails, ``path`` is left as it was and the temporary folder is removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    new, old = staging / "new", staging / "old"
    try:
        new.mkdir()
        yield new
        for file in new.rglob("*"):
            if file.is_file():
                with open(file, "rb") as fh:
                    os.fsync(fh.fileno())
        _fsync_dir(new)
        if path.exists():
            os.replace(path, old)
        try:
            os.replace(new, path)
        except BaseException:
            if old.exists():
                os.replace(old, path)
            raise
        _fsync_dir(path.parent)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def remove_stale_temps(folder: Path | str, target_glob: str = "*") -> list[Path]:
    """Delete the temporaries that killed :func:`atomic_path` / :func:`atomic_dir` writes left in ``folder``.

    Only those of targets matching ``target_glob`` (``.TARGET.XXXX.tmp``). A live write's
    temporary looks the same, so call this only where no write into ``folder`` can be running
    (when a run starts). Returns what was removed.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    stale = sorted(folder.glob(f".{target_glob}.*.tmp"))
    for path in stale:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    return stale


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write(path: Path | str, writer: Callable[[IO[bytes]], None]) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        writer(fh)


def atomic_write_bytes(path: Path | str, data: bytes) -> None:
    atomic_write(path, lambda fh: fh.write(data))


def atomic_write_text(path: Path | str, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path | str, obj: object) -> None:
    """Write ``obj`` as indented JSON (and a final newline) atomically."""
    atomic_write_text(path, json.dumps(obj, indent=2) + "\n")


def file_sha256(path: Path | str, chunk: int = 1 << 20) -> str:
    """The hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()
