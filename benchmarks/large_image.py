"""A huge image within a memory budget: time, peak RSS, and a seam score.

    PYTHONPATH=src /usr/bin/time -v python benchmarks/large_image.py --width 8000 --height 6000

Builds a synthetic photo-like image (smooth colour fields, edges and fine noise), stylises it
with the default pipeline (tiles chosen from the memory budget, instance-norm statistics from a
downscaled copy), and prints the tile plan, the time, the process's peak RSS and a seam score:
the mean absolute step between neighbouring output pixels across tile seams divided by the same
step everywhere else (1.0 means seams are invisible in the statistics; a visible seam gives a
clearly larger ratio).
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from brushwork.inference import Stylizer
from brushwork.inference.sources import load_source
from brushwork.inference.tiling import plan_tiles
from brushwork.nn import build_generator, init_weights
from brushwork.release import ReleaseConfig, release_config_for


def synthetic_photo(width: int, height: int, seed: int = 0) -> Image.Image:
    """Smooth colour fields plus hard edges and grain, built in bands to stay light on memory."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (height // 400 + 2, width // 400 + 2, 3), dtype=np.uint8)
    img = Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC)
    arr = np.asarray(img).copy()
    for _ in range(40):  # rectangles with hard edges
        x0, y0 = int(rng.integers(0, width)), int(rng.integers(0, height))
        arr[y0 : y0 + int(rng.integers(50, 800)), x0 : x0 + int(rng.integers(50, 800))] = rng.integers(0, 256, 3)
    for top in range(0, height, 512):  # grain
        band = arr[top : top + 512].astype(np.int16)
        band += rng.integers(-12, 13, band.shape, dtype=np.int16)
        arr[top : top + 512] = np.clip(band, 0, 255).astype(np.uint8)
    return Image.fromarray(arr)


def seam_score(out: np.ndarray, rows: tuple[int, ...], cols: tuple[int, ...], overlap: int) -> float:
    """Mean |step| between neighbours inside the blend zones over the mean |step| elsewhere."""
    gray = out.astype(np.float32).mean(axis=2)
    dx = np.abs(np.diff(gray, axis=1))
    dy = np.abs(np.diff(gray, axis=0))
    mask_x = np.zeros(dx.shape[1], dtype=bool)
    for c in cols[1:]:
        mask_x[c : c + overlap] = True
    mask_y = np.zeros(dy.shape[0], dtype=bool)
    for r in rows[1:]:
        mask_y[r : r + overlap] = True
    seam = np.concatenate([dx[:, mask_x].ravel(), dy[mask_y, :].ravel()])
    rest = np.concatenate([dx[:, ~mask_x].ravel(), dy[~mask_y, :].ravel()])
    return float(seam.mean() / rest.mean()) if seam.size and rest.size else 1.0


def default_generator(ngf: int) -> tuple[nn.Module, ReleaseConfig]:
    arch = {"name": "resnet_9blocks", "ngf": ngf, "norm": "instance", "dropout": False, "padding": "reflect",
            "in_channels": 3, "out_channels": 3}
    torch.manual_seed(0)
    return init_weights(build_generator(**arch)).eval(), release_config_for(
        arch, direction="AtoB", source="A", target="B", train_size=256, provenance={})


def run(width: int, height: int, *, model: str | None = None, ngf: int = 64, memory_gb: float | None = None,
        precision: str = "auto", out: Path | None = None) -> dict[str, float]:
    net, config = load_source(model) if model else default_generator(ngf)
    stylizer = Stylizer(net, config, device="cpu", precision=precision, copy_model=False,
                        memory_budget=int(memory_gb * (1 << 30)) if memory_gb else None)
    image = synthetic_photo(width, height)
    tile = stylizer.tile_side()
    plan = plan_tiles(height, width, tile=tile, overlap=stylizer.tile_overlap, multiple=stylizer.multiple)
    start = time.perf_counter()
    result = stylizer(image)
    seconds = time.perf_counter() - start
    arr = np.asarray(result)
    assert arr.shape == (height, width, 3)
    if out is not None:
        result.save(out)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    peak_gib = usage.ru_maxrss / (1 << 20)
    return {"tile": tile, "tiles": plan.count, "seconds": seconds, "peak_rss_gib": peak_gib,
            "user_s": usage.ru_utime, "system_s": usage.ru_stime,
            "budget_gib": stylizer.memory_budget / (1 << 30),
            "seam_score": seam_score(arr, plan.rows, plan.cols, plan.overlap) if plan.count > 1 else 1.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--width", type=int, default=8000)
    parser.add_argument("--height", type=int, default=6000)
    parser.add_argument("--model", help="any model source (default: random resnet_9blocks)")
    parser.add_argument("--ngf", type=int, default=64)
    parser.add_argument("--memory-gb", type=float, help="memory budget of one forward pass (default: automatic)")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--out", type=Path, help="save the result here")
    parser.add_argument("--keep-freed-memory", action="store_true", help="glibc: reuse freed memory (as the CLI does)")
    args = parser.parse_args()
    if args.keep_freed_memory:
        from brushwork.utils.memory import keep_freed_memory

        print(f"keep_freed_memory: {keep_freed_memory()}")
    stats = run(args.width, args.height, model=args.model, ngf=args.ngf, memory_gb=args.memory_gb,
                precision=args.precision, out=args.out)
    print(f"{args.width}x{args.height}: budget {stats['budget_gib']:.1f} GiB, tiles of {stats['tile']:.0f} px "
          f"({stats['tiles']:.0f} tiles), {stats['seconds']:.1f} s, peak RSS {stats['peak_rss_gib']:.2f} GiB, "
          f"seam score {stats['seam_score']:.3f}; process CPU: user {stats['user_s']:.0f} s, system {stats['system_s']:.0f} s")


if __name__ == "__main__":
    main()
