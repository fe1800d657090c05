"""Speed settings chosen by measurement on this machine: precision, layout, weight-gradient kernel.

CPU flags do not say which settings are fastest. On a CPU with AVX512-BF16/AMX, bf16 and
channels_last are 3-5x faster than plain fp32; on an AVX2-only CPU bf16 is emulated (slower
than fp32), channels_last alone is slower than NCHW, and only channels_last with GEMM weight
gradients (:mod:`brushwork.nn.conv`) beats the plain path (docs/benchmarks.md). So the first
time brushwork runs on a given CPU model, flag set, ISA limit, thread count and torch version,
it times each candidate on a resnet generator's layers at a reduced size (about ten seconds
for training, forward and backward, and a few for inference, forward only) and keeps the fastest; the plain setting wins
ties, so a default is never measurably slower than the plain path. The result is cached as JSON
in ``$BRUSHWORK_CACHE/speed/`` and logged. Explicit settings (``--precision``,
``--channels-last``, ``run.gemm_weight_grad``) narrow the candidates or skip the probe;
``BRUSHWORK_SPEED_PROBE=0`` skips it and takes the plain setting.

Only the CPU is probed. CUDA trains in bf16 (fp16 where bf16 is missing) and stylises in fp16,
with channels_last; MPS trains in fp32 and stylises in fp16, in NCHW.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import torch

from brushwork.nn.conv import gemm_weight_grad
from brushwork.utils.cache import cache_dir
from brushwork.utils.device import DeviceError
from brushwork.utils.files import atomic_write_json

log = logging.getLogger(__name__)

Workload = Literal["train", "infer"]
PROBE_ENV = "BRUSHWORK_SPEED_PROBE"
PROBE_VERSION = 2  # bump when the probe's workload or candidates change: old cache files are ignored
#: A candidate must beat the plain setting by this fraction to be chosen (timer noise on a busy machine).
MARGIN = 0.03


@dataclass(frozen=True)
class SpeedSetting:
    """How the networks run: autocast/weight dtype, memory layout, and (training) the conv weight-gradient kernel."""

    precision: str  # "fp32" | "bf16" | "fp16"
    channels_last: bool
    gemm_weight_grad: bool = False

    @property
    def name(self) -> str:
        parts = [self.precision, "channels_last" if self.channels_last else "NCHW"]
        if self.gemm_weight_grad:
            parts.append("GEMM weight gradients")
        return " + ".join(parts)

    @property
    def dtype(self) -> torch.dtype:
        return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[self.precision]


PLAIN = SpeedSetting("fp32", channels_last=False)

CANDIDATES: dict[Workload, tuple[SpeedSetting, ...]] = {
    "train": (
        PLAIN,
        SpeedSetting("fp32", True),
        SpeedSetting("fp32", True, gemm_weight_grad=True),
        SpeedSetting("bf16", False),
        SpeedSetting("bf16", True),
    ),
    "infer": (PLAIN, SpeedSetting("fp32", True), SpeedSetting("bf16", False), SpeedSetting("bf16", True)),
}


@dataclass(frozen=True)
class SpeedChoice:
    setting: SpeedSetting
    reason: str  # one line for the log


def choose_speed(
    workload: Workload,
    device: torch.device,
    *,
    precision: str = "auto",
    channels_last: bool | None = None,
    gemm: bool | None = None,
) -> SpeedChoice:
    """The setting to run ``workload`` with on ``device``, honouring every explicit choice."""
    check_settings(device, precision, channels_last, gemm)
    if device.type != "cpu":
        return SpeedChoice(_accelerator_setting(workload, device, precision, channels_last), f"{device.type} defaults")
    candidates = [
        c for c in CANDIDATES[workload]
        if precision in ("auto", c.precision)
        and channels_last in (None, c.channels_last)
        and gemm in (None, c.gemm_weight_grad)
    ]  # fmt: skip
    if not candidates:  # inference with GEMM weight gradients asked for: there are no gradients
        candidates = [c for c in CANDIDATES[workload] if precision in ("auto", c.precision) and channels_last in (None, c.channels_last)]
    if len(candidates) == 1:
        return SpeedChoice(candidates[0], "as configured")
    if os.environ.get(PROBE_ENV, "1") == "0":
        setting = PLAIN if PLAIN in candidates else candidates[0]
        return SpeedChoice(setting, f"{PROBE_ENV}=0: no speed probe")
    timings, where, cached = _probe_timings(workload, candidates)
    best = _pick(candidates, timings)
    base = timings[candidates[0].name]
    verb = "cached" if cached else "measured"
    return SpeedChoice(best, f"fastest of {len(candidates)} settings on this CPU ({verb}: {timings[best.name] * 1e3:.0f} ms "
                             f"against {base * 1e3:.0f} ms for {candidates[0].name}; {where})")  # fmt: skip


def check_settings(device: torch.device, precision: str, channels_last: bool | None = None, gemm: bool | None = None) -> None:
    """A :class:`DeviceError` naming the setting that ``device`` cannot run, or that contradicts another."""
    if precision not in ("auto", "fp32", "bf16", "fp16"):
        raise DeviceError(f"unknown precision {precision!r}; expected fp32, bf16, fp16 or auto")
    if precision == "fp16" and device.type == "cpu":
        raise DeviceError("precision fp16 is not supported on the CPU; use bf16 or fp32")
    if gemm and (device.type != "cpu" or precision in ("bf16", "fp16") or channels_last is False):
        raise DeviceError("GEMM weight gradients (--gemm-weight-grad, run.gemm_weight_grad) run on the CPU in fp32 "
                          f"with channels_last; this run asks for {precision} on {device.type}"
                          f"{' in NCHW' if channels_last is False else ''}")  # fmt: skip


def _accelerator_setting(workload: Workload, device: torch.device, precision: str, channels_last: bool | None) -> SpeedSetting:
    layout = device.type == "cuda" if channels_last is None else channels_last
    if precision == "auto":
        # Training prefers bf16 (no loss scaling); inference fp16, which keeps three more
        # mantissa bits and runs on the same tensor cores.
        if workload == "infer":
            precision = "fp16"  # CUDA and MPS
        elif device.type == "cuda":
            precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        else:
            precision = "fp32"
    return SpeedSetting(precision, layout)


def _pick(candidates: Sequence[SpeedSetting], timings: dict[str, float]) -> SpeedSetting:
    """The fastest candidate; the first (the plainest) keeps its place unless beaten by MARGIN."""
    first = candidates[0]
    best = min(candidates, key=lambda c: timings[c.name])
    return best if timings[best.name] < timings[first.name] * (1 - MARGIN) else first


# ---------------------------------------------------------------------------------------------
# The probe and its cache


def machine_key(workload: Workload) -> dict[str, str]:
    """What the probe's result depends on: CPU model and flags, ISA limits, threads, torch."""
    model, flags = platform.processor() or platform.machine(), ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() in ("flags", "Features") and not flags:
                flags = value.strip()
    return {
        "workload": workload,
        "probe_version": str(PROBE_VERSION),
        "cpu": model,
        "flags_sha256": hashlib.sha256(flags.encode()).hexdigest()[:16],
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "ATEN_CPU_CAPABILITY": os.environ.get("ATEN_CPU_CAPABILITY", ""),
        "ONEDNN_MAX_CPU_ISA": os.environ.get("ONEDNN_MAX_CPU_ISA", os.environ.get("DNNL_MAX_CPU_ISA", "")),
        "threads": str(torch.get_num_threads()),
        "torch": torch.__version__,
    }


def _cache_file(key: dict[str, str]) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return cache_dir("speed", f"{key['workload']}-{digest}.json")


def probe(workload: Workload, *, fresh: bool = False) -> tuple[dict[str, float], SpeedSetting, Path]:
    """Every candidate's probe time (cached unless ``fresh``), the one auto settings choose, the cache file."""
    candidates = CANDIDATES[workload]
    timings, _, _ = _probe_timings(workload, candidates, fresh=fresh)
    return {c.name: timings[c.name] for c in candidates}, _pick(candidates, timings), _cache_file(machine_key(workload))


def _probe_timings(workload: Workload, candidates: Sequence[SpeedSetting], *, fresh: bool = False) -> tuple[dict[str, float], str, bool]:
    key = machine_key(workload)
    path = _cache_file(key)
    stored: dict[str, float] = {}
    with contextlib.suppress(OSError, ValueError, TypeError, AttributeError):
        record = json.loads(path.read_text())
        if record.get("key") == key and not fresh:
            stored = {str(k): float(v) for k, v in record["seconds"].items()}
    missing = [c for c in candidates if c.name not in stored]
    if not missing:
        return stored, f"cache {path}", True
    log.info("timing %d speed settings for %s on this CPU (once; cached in %s)", len(missing), workload, path.parent)
    stored.update(measure(workload, missing))
    try:
        atomic_write_json(path, {"key": key, "seconds": stored, "candidates": [asdict(c) for c in CANDIDATES[workload]],
                                 "measured": time.strftime("%Y-%m-%d %H:%M:%S")})  # fmt: skip
    except OSError as exc:  # a read-only cache is no reason to stop
        log.warning("could not cache the speed probe in %s: %s", path, exc)
    return stored, f"probe cached in {path}", False


def measure(workload: Workload, candidates: Sequence[SpeedSetting], *, repeats: int = 3) -> dict[str, float]:
    """Least (weighted) seconds of one probe pass per candidate; rounds alternate between candidates.

    bf16 candidates are dropped first when a single bf16 convolution is more than twice as slow
    as fp32 (no native bf16: oneDNN emulates it, 10-30x slower), and any candidate whose warm-up
    pass takes over three times the fastest one's keeps that warm-up time, so hopeless
    candidates cost one pass.
    """
    times: dict[str, list[float]] = {}
    if any(c.precision == "bf16" for c in candidates):
        ratio = _bf16_conv_ratio()
        if ratio > 2:
            log.info("bf16 convolutions are %.1fx slower than fp32 on this CPU: bf16 not probed further", ratio)
            times.update({c.name: [math.inf] for c in candidates if c.precision == "bf16"})
    runners = {c.name: _runner(workload, c) for c in candidates if c.name not in times}  # each returns its seconds
    warm = {}
    for name, run in runners.items():  # warm-up: oneDNN builds its kernels on the first call
        warm[name] = run()
    for run in runners.values():  # and the allocator's pools fill on the first few
        run()
    fastest = min(warm.values(), default=math.inf)
    for name, seconds in warm.items():
        if seconds > 3 * fastest:
            times[name] = [seconds]
            del runners[name]
        else:
            times[name] = []
    for _ in range(repeats):
        for name, run in runners.items():
            times[name].append(run())
    # The fastest repeat: other load on the machine only ever adds time to a fixed computation.
    return {name: min(ts) for name, ts in times.items()}


def _timed(fn: Callable[[], None]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _bf16_conv_ratio() -> float:
    """Seconds of a 256-channel 3x3 convolution in bf16 over fp32 (medians of 3, after a warm-up)."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, 256, 16, 16, generator=gen)
    w = torch.randn(256, 256, 3, 3, generator=gen)
    xb, wb = x.bfloat16(), w.bfloat16()
    seconds = {}
    with torch.inference_mode():
        for name, (a, b) in {"fp32": (x, w), "bf16": (xb, wb)}.items():
            torch.nn.functional.conv2d(a, b, padding=1)
            seconds[name] = statistics.median(_timed(lambda a=a, b=b: torch.nn.functional.conv2d(a, b, padding=1)) for _ in range(3))
    return seconds["bf16"] / seconds["fp32"]


#: The probe times one pass of a resnet_9blocks generator (ngf 64) on a small batch, in two
#: parts: the encoder and decoder (the 7x7, stride-2 and transposed convolutions with their norms
#: at full resolution) and two of the nine residual blocks (256 channels at a quarter of the
#: side, where 88 % of the FLOPs are), counted 4.5 times. The blocks alone mislead: on an SSE4.1-only CPU
#: channels_last won there and lost the whole training step (docs/benchmarks.md).
#: Training: two images (CycleGAN runs each generator on two batches at once); inference: one,
#: larger, as stylised images are.
PROBE_SHAPE: dict[Workload, tuple[int, int]] = {"train": (2, 96), "infer": (1, 192)}
BLOCK_WEIGHT = 9 / 2


def _runner(workload: Workload, setting: SpeedSetting) -> Callable[[], float]:
    """One forward (inference) or forward + backward (training) pass, as described at PROBE_SHAPE."""
    from brushwork.nn.generators import ResnetBlock, ResnetGenerator

    torch_state = torch.get_rng_state()
    outer = ResnetGenerator(in_channels=3, out_channels=3, ngf=64, n_blocks=0)
    blocks = torch.nn.Sequential(*(ResnetBlock(256, norm="instance", padding="reflect", dropout=False) for _ in range(2)))
    torch.set_rng_state(torch_state)  # probing must not move the caller's random stream
    layout = torch.channels_last if setting.channels_last else torch.contiguous_format
    gen = torch.Generator().manual_seed(0)
    n, side = PROBE_SHAPE[workload]
    parts = [
        (outer, torch.rand(n, 3, side, side, generator=gen) * 2 - 1, 1.0),
        (blocks, torch.randn(n, 256, side // 4, side // 4, generator=gen), BLOCK_WEIGHT),
    ]
    timed: list[tuple[Callable[[], None], float]] = []
    for net, x, weight in parts:
        x = x.contiguous(memory_format=layout)
        if workload == "infer":
            net = net.eval().to(dtype=setting.dtype, memory_format=layout)
            timed.append((_infer_pass(net, x.to(setting.dtype)), weight))
        else:
            timed.append((_train_pass(net.train().to(memory_format=layout), x, setting, needs_input_grad=net is blocks), weight))

    def run() -> float:
        return sum(weight * _timed(fn) for fn, weight in timed)

    return run


def _infer_pass(net: torch.nn.Module, x: torch.Tensor) -> Callable[[], None]:
    def infer() -> None:
        with torch.inference_mode():
            net(x)

    return infer


def _train_pass(net: torch.nn.Module, x: torch.Tensor, setting: SpeedSetting, *, needs_input_grad: bool) -> Callable[[], None]:
    x.requires_grad_(needs_input_grad)  # inside a generator the blocks pass gradients back

    def train() -> None:
        autocast = torch.autocast("cpu", dtype=torch.bfloat16) if setting.precision == "bf16" else contextlib.nullcontext()
        with gemm_weight_grad(setting.gemm_weight_grad), autocast:
            loss = net(x).float().abs().mean()
        loss.backward()
        net.zero_grad(set_to_none=True)
        x.grad = None

    return train
