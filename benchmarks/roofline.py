#!/usr/bin/env python
"""How close convolutions come to this CPU's fp32 GEMM speed, pass by pass.

    python benchmarks/roofline.py                     # 2 threads (all cores), the residual-block conv
    python benchmarks/roofline.py --size 32 --batch 2 --repeats 9
    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 python benchmarks/roofline.py   # imitate an AVX2 CPU

The roofline is a large fp32 matrix product (4096 x 4096 by default). Against it stand the three
passes of the 3x3, 256-channel convolution that holds 88 % of a CycleGAN generator's FLOPs (at
64 x 64 for crop 256, 32 x 32 for crop 128): forward, input gradient and weight gradient, each in
NCHW and channels_last through oneDNN, and the weight gradient as GEMMs
(:mod:`brushwork.nn.conv`). The variants are timed alternately; medians are printed in GFLOP/s. Run with
ONEDNN_VERBOSE=1 to see which oneDNN kernel each pass takes.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from _machine import cpu_name  # benchmarks/_machine.py (scripts run from this folder)
from brushwork.nn.conv import conv_weight_grad_gemm


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=64, help="output side of the convolution (64: crop 256)")
    parser.add_argument("--channels", type=int, default=256)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--gemm", type=int, default=4096, help="side of the square matrix product")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    n, c, s = args.batch, args.channels, args.size
    gen = torch.Generator().manual_seed(0)
    conv_flops = 2 * n * c * c * 9 * s * s

    a = torch.randn(args.gemm, args.gemm, generator=gen)
    b = torch.randn(args.gemm, args.gemm, generator=gen)
    x = torch.randn(n, c, s + 2, s + 2, generator=gen)  # already padded, as after ReflectionPad2d
    w = torch.randn(c, c, 3, 3, generator=gen)
    gy = torch.randn(n, c, s, s, generator=gen)
    cl = torch.channels_last
    xc, wc, gyc = x.contiguous(memory_format=cl), w.contiguous(memory_format=cl), gy.contiguous(memory_format=cl)
    back = torch.ops.aten.convolution_backward

    def grad(g: torch.Tensor, inp: torch.Tensor, wt: torch.Tensor, mask: list[bool]) -> Callable[[], object]:
        return lambda: back(g, inp, wt, None, [1, 1], [0, 0], [1, 1], False, [0, 0], 1, mask)

    cases: dict[str, tuple[Callable[[], object], float]] = {
        f"GEMM {args.gemm}^3": (lambda: a @ b, 2 * args.gemm**3),
        "forward, NCHW": (lambda: F.conv2d(x, w), conv_flops),
        "forward, channels_last": (lambda: F.conv2d(xc, wc), conv_flops),
        "input grad, NCHW": (grad(gy, x, w, [True, False, False]), conv_flops),
        "input grad, channels_last": (grad(gyc, xc, wc, [True, False, False]), conv_flops),
        "weight grad, NCHW": (grad(gy, x, w, [False, True, False]), conv_flops),
        "weight grad, channels_last": (grad(gyc, xc, wc, [False, True, False]), conv_flops),
        "weight grad, GEMMs (brushwork)": (lambda: conv_weight_grad_gemm(xc, gyc, (3, 3)), conv_flops),
    }
    times: dict[str, list[float]] = {k: [] for k in cases}
    with torch.inference_mode():
        for fn, _ in cases.values():
            fn()
        for _ in range(args.repeats):
            for name, (fn, _) in cases.items():
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)
    print(f"{cpu_name()}; torch {torch.__version__}, ATen {torch.backends.cpu.get_cpu_capability()}, "
          f"ONEDNN_MAX_CPU_ISA={os.environ.get('ONEDNN_MAX_CPU_ISA', '-')}, {torch.get_num_threads()} threads")  # fmt: skip
    print(f"conv: batch {n}, {c} -> {c} channels, 3x3, output {s}x{s} ({conv_flops / 1e9:.2f} GFLOP per pass)")
    roof = None
    for name, (_, flops) in cases.items():
        med = statistics.median(times[name])
        rate = flops / med / 1e9
        roof = roof or rate
        print(f"  {name:<32} {med * 1e3:8.1f} ms {rate:7.1f} GFLOP/s {rate / roof:6.0%} of the GEMM")


if __name__ == "__main__":
    main()
