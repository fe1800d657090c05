"""Whether and how the trainer ``torch.compile``\\ s its networks.

``run.compile`` is ``true``, ``false`` or ``auto``. ``auto`` (the default) compiles when the run
is long enough for the compile time to pay back and the toolchain torch.compile needs is present
(a C++ compiler on the CPU, Triton on CUDA). The threshold comes from the measurements in
docs/benchmarks.md: on a 2-core CPU, compiling the default CycleGAN takes about 1.5 minutes
with a cold cache (seconds once torch's on-disk cache holds it) and then saves 0.07 s (crop 128)
to 0.22 s (crop 256) per iteration over the eager fast path, and 0.65 GB of peak memory at 256,
so it pays back after about 1500 iterations at worst.

Under ``auto`` a network whose compilation fails runs eagerly instead (with a warning), so a
broken toolchain never stops a run; an explicit ``true`` lets the error through.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

AUTO_MIN_STEPS = 2000  # below this, auto stays eager (break-even is ~1500 iterations at crop 128; docs/benchmarks.md)


BACKEND: Any = "inductor"  # torch.compile's backend (tests swap in one that fails)


class CompileFailedError(RuntimeError):
    """torch.compile was asked for explicitly and could not compile a network."""


@dataclass(frozen=True)
class CompilePlan:
    enabled: bool
    reason: str  # one line for the log
    fall_back: bool  # True under auto: a network that fails to compile runs eagerly


def _cxx_compiler() -> str | None:
    for name in (os.environ.get("CXX"), "g++", "clang++", "c++"):
        found = shutil.which(name) if name else None
        if found:
            return found
    return None


def missing_toolchain(device: torch.device) -> str | None:
    """Why torch.compile cannot run on ``device`` here, or None when it can."""
    if device.type == "cpu":
        return None if _cxx_compiler() else "no C++ compiler found (install g++ or clang++, or set $CXX)"
    if device.type == "cuda":
        return None if importlib.util.find_spec("triton") is not None else "Triton is not installed"
    return f"torch.compile is not used on {device.type} devices"


def plan_compile(setting: bool | str, device: torch.device, total_steps: int, *, eager_precision: str | None = None) -> CompilePlan:
    """Decide for ``run.compile`` = ``setting`` on ``device`` for a run of ``total_steps`` iterations.

    ``eager_precision`` is the precision of the fastest eager setting (brushwork.tuning). On a
    CPU where that is fp32 (no fast bf16: AVX2 CPUs), compiled NCHW graphs were measured slower
    than eager channels_last with GEMM weight gradients (docs/benchmarks.md), so auto stays eager.
    """
    if setting is False:
        return CompilePlan(False, "off (--no-compile)", fall_back=False)
    if setting is True:
        return CompilePlan(True, "on (--compile)", fall_back=False)
    if total_steps < AUTO_MIN_STEPS:
        return CompilePlan(False, f"off: {total_steps} iterations is too short to pay back compiling "
                                  f"(auto compiles runs of {AUTO_MIN_STEPS} or more)", fall_back=True)  # fmt: skip
    if device.type == "cpu" and eager_precision == "fp32":
        return CompilePlan(False, "off: the fastest eager setting on this CPU is fp32, which compiled graphs "
                                  "do not beat (docs/benchmarks.md)", fall_back=True)  # fmt: skip
    missing = missing_toolchain(device)
    if missing:
        return CompilePlan(False, f"off: {missing}", fall_back=True)
    return CompilePlan(True, f"on: {total_steps} iterations on {device.type} (the first iterations compile, "
                             "which takes a minute or more)", fall_back=True)  # fmt: skip


def compile_network(net: nn.Module) -> nn.Module:
    """``net`` wrapped by torch.compile; it compiles lazily, on its first calls."""
    return torch.compile(net, backend=BACKEND)  # type: ignore[return-value]


@contextlib.contextmanager
def compile_errors(plan: CompilePlan) -> Iterator[None]:
    """Around calls that may compile: under auto, failures fall back to eager; else they are named."""
    if not plan.enabled:
        yield
        return
    import torch._dynamo
    import torch._inductor.exc

    if plan.fall_back:
        with torch._dynamo.config.patch(suppress_errors=True):
            yield
        return
    try:
        yield
    except (torch._dynamo.exc.BackendCompilerFailed, torch._inductor.exc.InductorError) as exc:
        cause = getattr(exc, "inner_exception", None) or exc.__cause__ or exc
        text = str(cause).strip()
        first = f"{type(cause).__name__}: {text.splitlines()[0]}" if text else type(cause).__name__
        raise CompileFailedError(f"torch.compile could not compile a network ({first[:300]}); "
                                 "train with --no-compile, or leave run.compile at auto") from None  # fmt: skip
