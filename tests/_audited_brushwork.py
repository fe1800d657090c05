"""``python -m brushwork``, recording what this process writes under ``$AUDIT_ROOT``.

tests/test_distributed.py starts it under torchrun to check that only rank 0 writes files. A
Python audit hook (PEP 578) sees every file opened for writing (by Python code: the log, the
sample PNGs, the temporary files of the atomic writes) and every create, rename and delete,
which covers the checkpoints and releases whose bytes C++ or Rust code writes into those
temporaries. At exit the list goes to ``$AUDIT_OUT/rank<RANK>-attempt<N>.json``.
"""

from __future__ import annotations

import atexit
import json
import os
import sys
from typing import Any

ROOT = os.path.realpath(os.environ["AUDIT_ROOT"])
WRITES = {"os.mkdir", "os.rename", "os.remove", "os.rmdir", "os.truncate", "os.symlink", "os.link", "shutil.rmtree",
          "tempfile.mkstemp", "tempfile.mkdtemp"}  # fmt: skip
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
touched: list[str] = []


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if event == "open":
        path, mode, flags = args
        writing = any(c in mode for c in "wax+") if isinstance(mode, str) else bool(isinstance(flags, int) and flags & WRITE_FLAGS)
        paths = [path] if writing else []
    elif event in WRITES:
        paths = list(args[:2])
    else:
        return
    for path in paths:
        if isinstance(path, (str, bytes, os.PathLike)):
            full = os.path.realpath(os.fsdecode(path))
            if full == ROOT or full.startswith(ROOT + os.sep):
                touched.append(f"{event} {full}")


def _report() -> None:
    out = os.path.join(os.environ["AUDIT_OUT"], f"rank{os.environ.get('RANK', '0')}-attempt{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}.json")
    with open(out, "w", encoding="utf-8") as fh:  # outside AUDIT_ROOT
        json.dump(touched, fh)


sys.addaudithook(_audit)
atexit.register(_report)

from brushwork.cli import main  # noqa: E402 - after the hook, so that nothing is missed

main()
