#!/usr/bin/env python
"""Seconds per training iteration and peak memory, for several methods and variants side by side.

Each (method, variant, crop) measurement runs in its own child process (so peak memory is its
own), and rounds alternate between methods and variants so that a noisy, shared machine affects
them alike. Prints the median seconds per iteration over all timed iterations of all rounds,
the peak memory, and the ratio of every row to the first (at the same crop and batch size).
Each method runs with its own default settings (CUT: the anti-aliased networks, PatchNCE with
the identity term) on synthetic batches.

    python benchmarks/train_step.py                         # CycleGAN, plain vs fast, crops 128 and 256
    python benchmarks/train_step.py --methods cyclegan,cut,fastcut --variants fast --crops 128 --rounds 5
    python benchmarks/train_step.py --crops 256 --iters 5 --rounds 3
    python benchmarks/train_step.py --variants plain --batch-size 4
    python benchmarks/train_step.py --device cuda --crops 256 --variants plain,fast,compile --batch-sizes 1,4,16
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

# A variant is a set of run/config overrides. "plain" is the reference code path: fp32, NCHW, eager.
VARIANTS: dict[str, dict[str, dict[str, object]]] = {
    "plain": {"run": {"precision": "fp32", "channels_last": False, "gemm_weight_grad": False, "compile": False}},
    "bf16": {"run": {"precision": "bf16", "channels_last": False, "compile": False}},
    "cl": {"run": {"precision": "fp32", "channels_last": True, "gemm_weight_grad": False, "compile": False}},
    "cl_gemm": {"run": {"precision": "fp32", "channels_last": True, "gemm_weight_grad": True, "compile": False}},
    "bf16cl": {"run": {"precision": "bf16", "channels_last": True, "compile": False}},
    # The eager defaults: whatever brushwork.tuning's probe measured fastest on this machine.
    "fast": {"run": {"precision": "auto", "channels_last": None, "gemm_weight_grad": None, "compile": False}},
    # What long runs get by default (run.compile=auto compiles runs of 2000+ iterations).
    "compile": {"run": {"precision": "auto", "channels_last": None, "compile": True}},
    "fp32compile": {"run": {"precision": "fp32", "channels_last": None, "compile": True}},
    "compile_nchw": {"run": {"precision": "auto", "channels_last": False, "compile": True}},
    "compile_cl": {"run": {"precision": "auto", "channels_last": True, "compile": True}},
    # The eager defaults with each network pass on its own batch (CycleGAN's passes batched off).
    "fast_unbatched": {"run": {"precision": "auto", "channels_last": None, "compile": False}, "attrs": {"fuse_passes": False}},
    "plain_unbatched": {"run": {"precision": "fp32", "channels_last": False, "gemm_weight_grad": False, "compile": False},
                        "attrs": {"fuse_passes": False}},
}


def child(method_name: str, variant: str, crop: int, batch: int, iters: int, warmup: int, device_name: str,
          threads: int | None = None) -> dict[str, object]:
    import torch

    if threads:
        torch.set_num_threads(threads)

    from brushwork.config import resolve_train_config
    from brushwork.methods import build_method
    from brushwork.training.trainer import Trainer
    from brushwork.utils.device import resolve_device

    device = resolve_device(device_name)
    overrides: dict[str, object] = {
        "method": method_name,
        "data": {"root": ".", "load_size": crop, "crop_size": crop, "batch_size": batch},
        "run": {"progress": False, "tensorboard": False, "device": device_name},
    }
    for section, values in VARIANTS[variant].items():
        if section != "attrs":
            overrides.setdefault(section, {}).update(values)  # type: ignore[attr-defined]
    cfg = resolve_train_config(overrides=overrides)
    torch.manual_seed(0)
    method = build_method(cfg)
    for name, value in VARIANTS[variant].get("attrs", {}).items():
        setattr(method, name, value)
    trainer = Trainer(method, cfg, None, device=device)  # synthetic batches: no data set needed
    batch = {k: (torch.rand(batch, 3, crop, crop) * 2 - 1).to(device) for k in ("A", "B")}
    times, cpu_times, first = [], [], 0.0
    for i in range(warmup + iters):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0, c0 = time.perf_counter(), time.process_time()
        trainer.train_step(batch)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i == 0:
            first = time.perf_counter() - t0  # includes compiling, for the compiled variants
        if i >= warmup:
            times.append(time.perf_counter() - t0)
            cpu_times.append(time.process_time() - c0)  # CPU seconds of all threads: less sensitive to a shared machine
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    peak_gpu = torch.cuda.max_memory_allocated() if device.type == "cuda" else None
    return {"times": times, "cpu_times": cpu_times, "first": first, "peak_rss": peak_rss, "peak_gpu": peak_gpu, "device": str(device),
            "precision": str(trainer.autocast_dtype).replace("torch.", ""), "setting": trainer.speed.name}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", default="cyclegan", help="comma-separated training methods (brushwork methods), each at its defaults")
    parser.add_argument("--variants", default="plain,fast", help=f"comma-separated, from {', '.join(VARIANTS)}")
    parser.add_argument("--crops", default="128,256")
    parser.add_argument("--batch-sizes", "--batch-size", default="1", help="comma-separated, e.g. 1,4,16 (out of memory is reported)")
    parser.add_argument("--iters", type=int, default=5, help="timed iterations per round")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, help="torch threads per child (default: torch's; 1 avoids threads waiting on each other on a busy machine)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    methods = args.methods.split(",")
    variants = args.variants.split(",")
    crops = [int(c) for c in args.crops.split(",")]
    batches = [int(b) for b in args.batch_sizes.split(",")]
    if args.child:
        try:
            print(json.dumps(child(methods[0], variants[0], crops[0], batches[0], args.iters, args.warmup, args.device, args.threads)))
        except RuntimeError as exc:  # torch.OutOfMemoryError is a RuntimeError
            if "out of memory" not in str(exc).lower():
                raise
            print(json.dumps({"oom": True}))
        return

    rows = [(m, v) for m in methods for v in variants]
    results: dict[tuple[str, str, int, int], list[dict[str, object]]] = {}
    for _ in range(args.rounds):
        for crop in crops:
            for batch in batches:
                for method, variant in rows:
                    cmd = [sys.executable, __file__, "--child", "--methods", method, "--variants", variant, "--crops", str(crop),
                           "--batch-sizes", str(batch), "--iters", str(args.iters), "--warmup", str(args.warmup),
                           "--device", args.device, *(["--threads", str(args.threads)] if args.threads else [])]  # fmt: skip
                    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=os.environ).stdout
                    results.setdefault((method, variant, crop, batch), []).append(json.loads(out.strip().splitlines()[-1]))

    import torch

    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, "
          f"{args.rounds} rounds x {args.iters} timed iterations (after {args.warmup} warm-up)")  # fmt: skip
    print(f"{'crop':>5} {'batch':>5} {'method':>8} {'variant':>11} {'device':>6} {'dtype':>9} {'s/iter':>8} {'cpu s':>7} {'img/s':>7} {'1st iter':>8} "
          f"{'peak RSS':>9} {'peak GPU':>9} {'speed-up':>8}")  # fmt: skip
    summary = []
    for crop in crops:
        for batch in batches:
            base = None
            for method, variant in rows:
                runs = [r for r in results[(method, variant, crop, batch)] if not r.get("oom")]
                if not runs:
                    print(f"{crop:>5} {batch:>5} {method:>8} {variant:>11} out of memory")
                    continue
                times = [t for r in runs for t in r["times"]]  # type: ignore[union-attr]
                median = statistics.median(times)
                per_run = [statistics.median(r["times"]) for r in runs]  # type: ignore[arg-type]
                cpu = statistics.median(t for r in runs for t in r.get("cpu_times", []))  # type: ignore[union-attr]
                base = base or median
                rss = max(int(r["peak_rss"]) for r in runs) / 2**30  # type: ignore[arg-type]
                gpu = max(int(r["peak_gpu"] or 0) for r in runs) / 2**30  # type: ignore[arg-type]
                first = statistics.median(float(r["first"]) for r in runs)  # type: ignore[arg-type]
                print(f"{crop:>5} {batch:>5} {method:>8} {variant:>11} {runs[0]['device']:>6} {runs[0]['precision']:>9} {median:>8.3f} {cpu:>7.2f} "
                      f"{batch / median:>7.2f} {first:>7.1f}s {rss:>8.2f}G {gpu:>8.2f}G {base / median:>7.2f}x  {runs[0]['setting']}; "
                      f"per-run medians {min(per_run):.2f}-{max(per_run):.2f} s")  # fmt: skip
                summary.append({"crop": crop, "batch_size": batch, "method": method, "variant": variant, "median_s": median, "median_cpu_s": cpu, "images_per_s": batch / median,
                                "per_run_median_s": per_run, "peak_rss_gib": rss, "peak_gpu_gib": gpu, "speedup": base / median, "first_iter_s": first,
                                "setting": runs[0]["setting"]})  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
