#!/usr/bin/env python
"""DCGAN speed: seconds per training iteration and images per second of generation.

Synthetic data (no data set needed), the paper's networks (ngf = ndf = 64, latent 100).
Training: one trainer step = D on real + G(z), then G through the updated D; the median of the
timed iterations after a warm-up, for each speed variant (``plain``: fp32, NCHW, eager; ``fast``:
whatever brushwork.tuning's probe measured fastest on this machine, eager). Generation: the
``noise-sampler`` pipeline in eval mode, images/s over batches of ``--gen-batch``.

    python benchmarks/dcgan.py                                  # batch 128, 64 px
    python benchmarks/dcgan.py --image-size 128 --iters 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

VARIANTS: dict[str, dict[str, object]] = {
    "plain": {"precision": "fp32", "channels_last": False, "gemm_weight_grad": False, "compile": False},
    "fast": {"precision": "auto", "channels_last": None, "gemm_weight_grad": None, "compile": False},
}


def train_times(variant: str, size: int, batch: int, iters: int, warmup: int) -> list[float]:
    import torch

    from brushwork.config import resolve_train_config
    from brushwork.methods import build_method
    from brushwork.training.trainer import Trainer

    cfg = resolve_train_config(overrides={
        "method": "dcgan",
        "data": {"root": ".", "load_size": size, "crop_size": size, "batch_size": batch},
        "model": {"image_size": size},
        "run": {"progress": False, "tensorboard": False, "device": "cpu", **VARIANTS[variant]},
    })  # fmt: skip
    torch.manual_seed(0)
    trainer = Trainer(build_method(cfg), cfg, None, device=torch.device("cpu"))
    images = {"images": torch.rand(batch, 3, size, size) * 2 - 1}
    times = []
    for i in range(warmup + iters):
        t0 = time.perf_counter()
        trainer.train_step(images)
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    print(f"  speed setting of {variant}: {trainer.speed.name}", flush=True)
    return times


def generate_rates(size: int, n: int, batch: int, rounds: int) -> list[float]:
    import torch

    from brushwork.inference.sampler import NoiseSampler
    from brushwork.nn import build_generator, init_weights
    from brushwork.release import release_config_for

    arch = {"name": f"dcgan_{size}", "latent_dim": 100, "ngf": 64, "out_channels": 3, "image_size": size}
    torch.manual_seed(0)
    net = init_weights(build_generator(**arch))
    config = release_config_for(arch, direction="generator", source="noise", target="images", train_size=size,
                                pipeline="noise-sampler", provenance={})  # fmt: skip
    sampler = NoiseSampler(net, config, device="cpu", batch_size=batch)
    sampler.generate(batch, seed=0)  # warm-up
    rates = []
    for r in range(rounds):
        t0 = time.perf_counter()
        sampler.generate(n, seed=r)
        rates.append(n / (time.perf_counter() - t0))
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--variants", default="plain,fast")
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--gen-n", type=int, default=512, help="images per generation round")
    parser.add_argument("--gen-batch", type=int, default=64)
    parser.add_argument("--gen-rounds", type=int, default=5)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    import torch

    results: dict[str, object] = {"threads": torch.get_num_threads(), "torch": torch.__version__,
                                  "image_size": args.image_size, "batch_size": args.batch_size}  # fmt: skip
    for variant in args.variants.split(","):
        times = train_times(variant, args.image_size, args.batch_size, args.iters, args.warmup)
        results[f"train_{variant}_s_per_iter"] = {"median": statistics.median(times), "all": times}
        print(f"train {variant}: {statistics.median(times):.2f} s/iteration (median of {len(times)}; "
              f"min {min(times):.2f}, max {max(times):.2f}) at batch {args.batch_size}, {args.image_size} px", flush=True)  # fmt: skip
    rates = generate_rates(args.image_size, args.gen_n, args.gen_batch, args.gen_rounds)
    results["generate_images_per_s"] = {"median": statistics.median(rates), "all": rates}
    print(f"generate: {statistics.median(rates):.1f} images/s (median of {len(rates)} rounds of {args.gen_n}; "
          f"batch {args.gen_batch}, fp32, eval mode)")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
