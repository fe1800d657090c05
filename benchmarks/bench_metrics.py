"""Speed of brushwork's evaluation: Inception features per image, and FID/KID from features.

    PYTHONPATH=src python benchmarks/bench_metrics.py --weights PATH [--images DIR] [--repeats 3]

``--weights`` is the Inception weights file (random weights of the right shape time the same as the
real ones). Prints medians of ``--repeats`` runs. FID is timed against torch-fidelity's own
function on the same features (it takes the eigenvalues of a 2048x2048 product in NumPy).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch


def median_time(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, required=True)
    parser.add_argument("--images", type=Path, default=Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "monet2photo-small" / "testA")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 32])
    args = parser.parse_args()

    from brushwork.metrics import (
        InceptionExtractor,
        frechet_distance,
        kernel_inception_distance,
        load_uint8,
    )
    from brushwork.metrics.evaluate import images_in

    files = images_in(args.images, "--images")[:32]
    images = [load_uint8(p) for p in files]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} default threads, {len(images)} images from {args.images}")
    extractor = InceptionExtractor(args.weights, device="cpu")
    for threads in args.threads:
        torch.set_num_threads(threads)
        for batch in args.batch_sizes:
            extractor.batch_size = batch
            n = max(batch, 8)
            extractor.extract(images[:batch])  # warm-up (oneDNN primitives for this shape)
            seconds = median_time(lambda n=n: extractor.extract(images[:n]), args.repeats)
            print(f"inception features  threads={threads} batch={batch:3d}: {seconds / n:.3f} s/image")
    torch.set_num_threads(max(args.threads))

    from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric

    g = torch.Generator().manual_seed(0)
    for n in (150, 750, 3000):
        a = torch.rand(n, 2048, generator=g)
        b = torch.rand(n, 2048, generator=g) * 1.1
        ours = median_time(lambda a=a, b=b: frechet_distance(a, b), args.repeats)
        ref = median_time(
            lambda a=a, b=b: fid_statistics_to_metric(fid_features_to_statistics(a), fid_features_to_statistics(b), False), 1
        )
        kid = median_time(lambda a=a, b=b: kernel_inception_distance(a, b), 1)
        print(f"N={n:5d}: FID brushwork {ours:.2f} s, torch-fidelity {ref:.2f} s; KID (100 subsets of {min(n, 1000)}) {kid:.2f} s")


if __name__ == "__main__":
    main()
