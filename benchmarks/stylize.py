"""Inference speed: the plain fp32 eager path against brushwork's fast path, in one run.

    PYTHONPATH=src python benchmarks/stylize.py                 # 256x256 and 1024x1024, batch 1
    PYTHONPATH=src python benchmarks/stylize.py --model horse2zebra --sizes 256 512 --repeats 11

"plain" is what the reference implementation does: the fp32 network in NCHW called under
``torch.no_grad``. "fast" is ``Stylizer.translate`` with its defaults on this machine (bf16 with
channels_last on CPUs with native bf16, fp16 + channels_last on CUDA), padding and casts included.
The two are timed alternately (plain, fast, plain, ...) so that load from other processes hits
both alike; medians, images/s and the ratio are printed, with the PSNR between the two outputs
(as 8-bit images) on a real photo when ../shared/data is present.
"""

from __future__ import annotations

import argparse
import copy
import math
import platform
import statistics
import time
from pathlib import Path

import torch
from torch import Tensor, nn

from brushwork.inference import Stylizer
from brushwork.inference.sources import load_source
from brushwork.nn import build_generator, init_weights
from brushwork.release import ReleaseConfig, release_config_for

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "monet2photo-small" / "testB"


def random_generator() -> tuple[nn.Module, ReleaseConfig]:
    arch = {"name": "resnet_9blocks", "ngf": 64, "norm": "instance", "dropout": False, "padding": "reflect",
            "in_channels": 3, "out_channels": 3}
    torch.manual_seed(0)
    net = init_weights(build_generator(**arch))  # the reference initialisation, N(0, 0.02)
    return net.eval(), release_config_for(arch, direction="AtoB", source="A", target="B", train_size=256, provenance={})


def test_image(size: int, batch: int) -> Tensor:
    """A real photo resized to size x size (or smooth noise without the data), in [-1, 1]."""
    files = sorted(DATA.glob("*.jpg")) if DATA.is_dir() else []
    if files:
        from PIL import Image

        from brushwork.data.transforms import pil_to_uint8

        imgs = [Image.open(files[i % len(files)]).convert("RGB").resize((size, size), Image.Resampling.BICUBIC)
                for i in range(batch)]
        return torch.stack([pil_to_uint8(im) for im in imgs]).float().div(127.5).sub(1.0)
    g = torch.Generator().manual_seed(0)
    small = torch.rand(batch, 3, max(2, size // 16), max(2, size // 16), generator=g)
    return torch.nn.functional.interpolate(small, size=(size, size), mode="bicubic").clamp(0, 1) * 2 - 1


def psnr_uint8(a: Tensor, b: Tensor) -> float:
    qa = a.add(1).mul(127.5).round().clamp(0, 255)
    qb = b.add(1).mul(127.5).round().clamp(0, 255)
    mse = float(((qa - qb) ** 2).mean())
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="any model source (default: randomly initialised resnet_9blocks, ngf 64)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 1024])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=9, help="timed runs per path at the smallest size")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="auto", help="the fast path's precision (auto = the default)")
    parser.add_argument("--compile", action="store_true", help="also torch.compile the fast path")
    parser.add_argument("--keep-freed-memory", action="store_true",
                        help="glibc: reuse freed memory (process-wide, so both paths get it)")
    args = parser.parse_args()
    if args.keep_freed_memory:
        from brushwork.utils.memory import keep_freed_memory

        print(f"keep_freed_memory: {keep_freed_memory()}")

    model, config = load_source(args.model) if args.model else random_generator()
    device = torch.device(args.device)
    plain = copy.deepcopy(model).to(device).eval()
    fast = Stylizer(model, config, device=device, precision=args.precision, batch_size=args.batch,
                    memory_budget=1 << 40, compile=args.compile)
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, threads {torch.get_num_threads()}, "
          f"device {device}; fast path: {fast.precision}{', channels_last' if fast.channels_last else ''}"
          f"{', compiled' if args.compile else ''}")

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    def run_plain(x: Tensor) -> Tensor:
        with torch.no_grad():
            y = plain(x.to(device))
        sync()
        return y.float().cpu()

    def run_fast(x: Tensor) -> Tensor:
        y = fast.translate(x)
        sync()
        return y

    print(f"{'size':>6} {'batch':>5} {'path':>6} {'s/image':>9} {'images/s':>9} {'speed-up':>9} {'PSNR dB':>8}")
    for size in args.sizes:
        x = test_image(size, args.batch)
        repeats = max(3, args.repeats * 256 * 256 // (size * size)) if size > 256 else args.repeats
        for _ in range(args.warmup):
            run_plain(x)
            run_fast(x)
        times: dict[str, list[float]] = {"plain": [], "fast": []}
        for _ in range(repeats):
            for name, fn in (("plain", run_plain), ("fast", run_fast)):
                start = time.perf_counter()
                fn(x)
                times[name].append((time.perf_counter() - start) / args.batch)
        quality = psnr_uint8(run_plain(x), run_fast(x))
        med = {k: statistics.median(v) for k, v in times.items()}
        for name in ("plain", "fast"):
            ratio = med["plain"] / med[name]
            extra = f"{quality:8.1f}" if name == "fast" else f"{'':>8}"
            print(f"{size:>6} {args.batch:>5} {name:>6} {med[name]:9.4f} {1 / med[name]:9.2f} {ratio:8.2f}x {extra}")


if __name__ == "__main__":
    main()
