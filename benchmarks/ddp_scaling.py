#!/usr/bin/env python
"""Data-parallel scaling of CycleGAN training: seconds per global iteration and images per second
for 1, 2, 4, 8 ... processes under torchrun (DDP), and the scaling efficiency.

Each process count runs in its own torchrun launch, on synthetic batches (no data set, no disk),
and rounds alternate between the counts so that a shared machine's noise affects them alike.
Rank 0 times every iteration (after warm-up); the gradient allreduce keeps the processes in
step, so that is the time of one global iteration. Reported: the median over all timed
iterations of all rounds, images per second (global batch / median) and the efficiency,
images per second at N processes / (N x images per second at 1).

- ``--scaling weak`` (the default; how data-parallel training is used on GPUs): every process
  keeps ``--batch-size`` images, so the global batch grows with N; ideal efficiency is 1.
- ``--scaling strong``: the global batch ``--batch-size`` is split over the N processes (it
  must divide); ideal: N times faster.

    python benchmarks/ddp_scaling.py --device cpu --procs 1,2 --scaling strong --batch-size 2 --crop 64
    python benchmarks/ddp_scaling.py --device cuda --procs 1,2,4,8 --batch-size 4 --crop 256   # one 8-GPU machine
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path


def worker(args: argparse.Namespace) -> None:
    import torch

    from brushwork.config import resolve_train_config
    from brushwork.methods import build_method
    from brushwork.training.distributed import init_distributed, rank_seed, shutdown
    from brushwork.training.trainer import Trainer

    cfg = resolve_train_config(overrides={
        "data": {"root": ".", "load_size": args.crop, "crop_size": args.crop, "batch_size": args.per_rank},
        "model": {"generator": args.generator},
        "run": {"progress": False, "tensorboard": False, "device": args.device, "precision": args.precision,
                "compile": False, "sync_bn": False},
    })  # fmt: skip
    info, device = init_distributed(cfg.run.device)
    torch.manual_seed(0)
    method = build_method(cfg)
    torch.manual_seed(rank_seed(0, info.rank))
    trainer = Trainer(method, cfg, None, device=device, distributed=info)  # synthetic batches: no data set needed
    batch = {k: (torch.rand(args.per_rank, 3, args.crop, args.crop) * 2 - 1).to(device) for k in ("A", "B")}
    times = []
    for i in range(args.warmup + args.iters):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        trainer.train_step(batch)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= args.warmup:
            times.append(time.perf_counter() - t0)
    if info.is_main:
        print("RESULT " + json.dumps({"times": times, "world": info.world, "device": str(device), "setting": trainer.speed.name,
                                      "threads": torch.get_num_threads()}))  # fmt: skip
    shutdown(info)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--procs", default="1,2", help="comma-separated process counts (on CUDA: GPUs of this machine)")
    parser.add_argument("--scaling", choices=("weak", "strong"), default="weak")
    parser.add_argument("--batch-size", type=int, default=1, help="per process (weak) or global (strong)")
    parser.add_argument("--crop", type=int, default=256)
    parser.add_argument("--generator", default="resnet_9blocks")
    parser.add_argument("--device", default="auto", help="cpu (gloo) or cuda (NCCL, one GPU per process)")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads per process (OMP_NUM_THREADS)")
    parser.add_argument("--iters", type=int, default=10, help="timed iterations per round")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--per-rank", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return

    procs = [int(n) for n in args.procs.split(",")]
    if args.scaling == "strong" and any(args.batch_size % n for n in procs):
        parser.error(f"--scaling strong: the global batch {args.batch_size} must divide by every process count")
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    results: dict[int, list[dict[str, object]]] = {n: [] for n in procs}
    for _ in range(args.rounds):
        for n in procs:
            per_rank = args.batch_size // n if args.scaling == "strong" else args.batch_size
            cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(n), __file__,
                   "--worker", "--per-rank", str(per_rank), "--crop", str(args.crop), "--generator", args.generator,
                   "--device", args.device, "--precision", args.precision, "--iters", str(args.iters),
                   "--warmup", str(args.warmup)]  # fmt: skip
            out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
            line = next(s for s in out.splitlines() if s.startswith("RESULT "))
            results[n].append({**json.loads(line[len("RESULT "):]), "per_rank": per_rank})

    import torch

    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, {args.generator} at {args.crop}, {args.scaling} scaling, "
          f"{args.threads} thread(s) per process, {args.rounds} rounds x {args.iters} timed iterations")  # fmt: skip
    print(f"{'procs':>5} {'batch/proc':>10} {'global':>6} {'s/iter':>8} {'img/s':>8} {'speed-up':>8} {'efficiency':>10}  setting")
    summary, base = [], None
    for n in procs:
        runs = results[n]
        median = statistics.median(t for r in runs for t in r["times"])  # type: ignore[attr-defined]
        per_rank = int(runs[0]["per_rank"])  # type: ignore[call-overload]
        images = per_rank * n / median
        base = base or {"n": n, "images": images, "median": median}
        efficiency = images / (base["images"] * n / base["n"])
        print(f"{n:>5} {per_rank:>10} {per_rank * n:>6} {median:>8.3f} {images:>8.2f} {base['median'] / median:>7.2f}x "
              f"{efficiency:>10.2f}  {runs[0]['setting']} on {runs[0]['device']}")  # fmt: skip
        summary.append({"procs": n, "batch_per_proc": per_rank, "median_s_per_iter": median, "images_per_s": images,
                        "efficiency": efficiency, "device": runs[0]["device"], "setting": runs[0]["setting"]})  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
