#!/usr/bin/env bash
# One prepared check for a machine with a CUDA GPU: correctness first, then the GPU benchmarks.
# Writes everything under ${OUT:-gpu-check}/ and prints a summary. About 8 minutes on an H100.
#
#     bash benchmarks/gpu_check.sh            # after `make test` has built .venv
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-gpu-check}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"

# 1. CUDA correctness: a short real training run (fast path, eager), export, stylise.
"$PY" - <<'EOF' 2>&1 | tee "$OUT/correctness.txt"
import tempfile, torch
from pathlib import Path
from PIL import Image
import numpy as np
from brushwork.config import resolve_train_config
from brushwork.training.run import run_training
from brushwork.inference import Stylizer
root = Path(tempfile.mkdtemp())
rng = np.random.default_rng(0)
for split, n in (("trainA", 8), ("trainB", 8), ("testA", 2), ("testB", 2)):
    (root / split).mkdir()
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (72, 72, 3), dtype=np.uint8)).save(root / split / f"{i}.png")
for precision in ("fp32", "auto"):
    cfg = resolve_train_config(overrides={
        "data": {"root": str(root), "load_size": 72, "crop_size": 64, "num_workers": 0},
        "optim": {"max_steps": 20}, "run": {"out": str(root / f"run-{precision}"), "device": "cuda",
        "precision": precision, "progress": False, "tensorboard": False, "sample_every": 10}})
    result = run_training(cfg)
    print(precision, "trained", result.step, "steps on", torch.cuda.get_device_name())
    out_fast = Stylizer.from_pretrained(result.releases["AtoB"], device="cuda")(torch.rand(1, 3, 256, 256) * 2 - 1)
    print(precision, "stylised", tuple(out_fast.shape), "finite:", bool(torch.isfinite(out_fast).all()))
EOF

# 2. Training speed: plain fp32 eager (the reference path) vs the fast path, eager and compiled.
#    "bf16" is the fast path in NCHW: against "fast" it shows what channels_last (and the
#    per-sample instance norm that keeps it) does on this GPU at each batch size.
"$PY" benchmarks/train_step.py --device cuda --crops 256 --variants plain,bf16,fast,compile \
    --batch-sizes 1,4,8,16 --iters 10 --rounds 2 --warmup 3 --json "$OUT/train_step.json" | tee "$OUT/train_step.txt"

# 3. Inference speed and fast-vs-plain PSNR at batch 1 and 8.
for batch in 1 8; do
    "$PY" benchmarks/stylize.py --device cuda --sizes 256 1024 --batch "$batch" | tee "$OUT/stylize_b$batch.txt"
done
