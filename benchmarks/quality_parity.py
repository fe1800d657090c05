#!/usr/bin/env python
"""Does the fast path train the same model? Loss curves of fp32 and the fast path side by side.

Trains the default CycleGAN on monet2photo-small (crop 128) for N iterations four times: fp32
with seed 0, fp32 with seed 1 (the run-to-run noise), and the fast path with seed 0, eager and
under torch.compile. Prints the windowed mean of every loss for each run, and the gap between
each fast run and fp32 next to the gap between the two fp32 seeds. A fast run is "within noise"
when its gap is of the same order.

    python benchmarks/quality_parity.py --steps 300 --data ../shared/data/monet2photo-small
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

RUNS = {
    "fp32_seed0": ["--precision", "fp32", "--no-channels-last", "--seed", "0"],
    "fp32_seed1": ["--precision", "fp32", "--no-channels-last", "--seed", "1"],
    "fast_seed0": ["--seed", "0", "--no-compile"],  # the eager fast path (the default for short runs)
    "compiled_seed0": ["--seed", "0", "--compile"],  # the fast path as long runs get it (run.compile=auto)
}
FAST = ("fast_seed0", "compiled_seed0")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data" / "monet2photo-small")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--window", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run (runs go in parallel)")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--analyze", action="store_true", help="only read the logs already in --out (up to their common length)")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="parity-"))
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    procs = {}
    for name, extra in ({} if args.analyze else RUNS).items():
        cmd = [sys.executable, "-m", "brushwork", "train", "--data", str(args.data), "--out", str(out / name),
               "--crop-size", str(args.crop), "--load-size", str(int(args.crop * 286 / 256)), "--steps", str(args.steps),
               "--log-every", "1", "--sample-every", str(args.steps), "--checkpoint-every", str(args.steps),
               "--no-progress", "--no-tensorboard", "--workers", "0", *extra]  # fmt: skip
        procs[name] = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    for name, proc in procs.items():
        _, err = proc.communicate()
        if proc.returncode != 0:
            sys.exit(f"{name} failed:\n{err}")

    logs = {name: [json.loads(line) for line in (out / name / "log.jsonl").read_text().splitlines()] for name in RUNS}
    steps = min(len(log) for log in logs.values())
    if steps < args.window:
        sys.exit(f"only {steps} iterations logged in every run; need at least one window of {args.window}")
    logs = {name: log[:steps] for name, log in logs.items()}
    args.steps = steps - steps % args.window
    keys = [k for k in logs["fp32_seed0"][0] if k not in ("step", "kind", "epoch", "lr", "it_per_s")]
    windows = range(0, args.steps, args.window)
    print(f"{args.steps} iterations, crop {args.crop}, window means of {args.window} iterations; runs in {out}")
    summary = {}
    for key in keys:
        means = {name: [statistics.fmean(r[key] for r in log[w : w + args.window]) for w in windows] for name, log in logs.items()}
        ref = means["fp32_seed0"]
        noise = statistics.fmean(abs(a - b) for a, b in zip(ref, means["fp32_seed1"], strict=True))
        gaps = {name: statistics.fmean(abs(a - b) for a, b in zip(ref, means[name], strict=True)) for name in FAST}
        summary[key] = {**{f"{n}_vs_fp32": g for n, g in gaps.items()}, "seed_vs_seed": noise, **means}
        print(f"{key:>8}  {'fp32_seed0':>14}: " + " ".join(f"{m:7.3f}" for m in ref))
        for name in FAST:
            print(f"{'':>8}  {name:>14}: " + " ".join(f"{m:7.3f}" for m in means[name]) + f"   |gap| {gaps[name]:.3f}")
        print(f"{'':>8}  |seed1-seed0| {noise:.3f}")
    (out / "parity.json").write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
