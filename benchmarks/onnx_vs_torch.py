"""onnxruntime against torch on this machine: parity on real photos, then speed, in one run.

    PYTHONPATH=src python benchmarks/onnx_vs_torch.py                          # parity on 8 photos, speed at 256 and 512
    PYTHONPATH=src python benchmarks/onnx_vs_torch.py --sizes 256 512 1024 --parity 16 --tiled 768
    PYTHONPATH=src python benchmarks/onnx_vs_torch.py --model runs/monet/release/BtoA

The model is ``--model`` (any source), else the trained vintagify generator when that package is
installed (``pip install --no-deps vintagify==0.1.2``), else a randomly initialised
resnet_9blocks (ngf 64): the same network either way for speed. It is exported to a temporary
``.onnx`` and run through three ``Stylizer`` s, so padding and casts are counted alike:

- ``torch fp32``: fp32 in NCHW, the reference implementation's setting;
- ``torch auto``: the Stylizer's defaults on this machine (the speed probe's pick, brushwork.tuning);
- ``onnxruntime``: the ``.onnx`` through onnxruntime's CPU provider, as many threads as torch.

Speed: each round times every path once, in an order rotated from round to round, so load from
other processes hits all alike; medians over the rounds. Parity: PSNR and the largest 8-bit
difference of onnxruntime against torch fp32 on real photos (../shared/data) at 256 x 256 and at
301 x 203 (padded to 304 x 204); ``--tiled SIDE`` also compares the tiled paths on a photo
resized to SIDE x SIDE with tiles of SIDE / 2.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime
import torch
from PIL import Image
from torch import nn

from brushwork.inference import Stylizer
from brushwork.inference.onnx import export_onnx
from brushwork.inference.sources import ModelSourceError, load_source
from brushwork.nn import build_generator, init_weights
from brushwork.release import ReleaseConfig, release_config_for
from inference_quality import load_affine_fork  # benchmarks/, beside this script

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "monet2photo-small" / "testB"


def default_generator() -> tuple[nn.Module, ReleaseConfig, str]:
    """vintagify's trained CycleGAN generator if installed (affine instance norms, fork key layout:
    read by benchmarks/inference_quality.py's loader), else a random one of the same size."""
    spec = importlib.util.find_spec("vintagify")  # not imported: its package imports matplotlib
    pth = Path(next(iter(spec.submodule_search_locations))) / "resources" / "G_A2B_epoch33.pth" if spec else None
    if pth is not None and pth.is_file():
        try:
            model, config = load_source(pth)
        except ModelSourceError:
            model, config = load_affine_fork(pth)
        return model, config, "vintagify G_A2B_epoch33 (trained resnet_9blocks, ngf 64)"
    arch = {"name": "resnet_9blocks", "in_channels": 3, "out_channels": 3, "ngf": 64, "norm": "instance",
            "dropout": False, "padding": "reflect"}
    torch.manual_seed(0)
    config = release_config_for(arch, direction="AtoB", source="A", target="B", train_size=256, provenance={})
    return init_weights(build_generator(**arch)).eval(), config, "random-init resnet_9blocks (ngf 64)"


def photos(n: int) -> list[Image.Image]:
    files = sorted(DATA.glob("*.jpg")) if DATA.is_dir() else []
    if not files:
        raise SystemExit(f"no photos at {DATA}: the parity and speed inputs are real photos")
    return [Image.open(files[i % len(files)]).convert("RGB") for i in range(n)]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(((a.astype(np.float64) - b.astype(np.float64)) ** 2).mean())
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def parity(torch_path: Stylizer, onnx_path: Stylizer, n: int) -> None:
    print(f"\nparity, onnxruntime against torch fp32 on {n} real photos (8-bit outputs)")
    print(f"{'size':>9} {'PSNR min':>9} {'median':>8} {'max |diff| levels':>18} {'pixels differing':>17}")
    for w, h in ((256, 256), (301, 203)):
        values, worst, differing = [], 0, []
        for photo in photos(n):
            x = photo.resize((w, h), Image.Resampling.BICUBIC)
            a, b = np.asarray(torch_path(x)), np.asarray(onnx_path(x))
            values.append(psnr(a, b))
            diff = np.abs(a.astype(np.int32) - b.astype(np.int32))
            worst = max(worst, int(diff.max()))
            differing.append(float((diff > 0).mean()))
        print(f"{f'{w}x{h}':>9} {min(values):9.1f} {statistics.median(values):8.1f} {worst:18d} "
              f"{100 * statistics.mean(differing):16.3f}%")


def tiled_parity(model: nn.Module, config: ReleaseConfig, onnx_file: Path, side: int) -> None:
    photo = photos(1)[0].resize((side, side), Image.Resampling.BICUBIC)
    tiles = {"tile_size": side // 2, "memory_budget": 1 << 40}
    runs = {
        "torch tiled": Stylizer(model, config, device="cpu", precision="fp32", channels_last=False, **tiles),
        "onnx tiled": Stylizer.from_pretrained(onnx_file, **tiles),
        "onnx untiled": Stylizer.from_pretrained(onnx_file, memory_budget=1 << 40),
    }
    out = {name: np.asarray(s(photo)) for name, s in runs.items()}
    print(f"\ntiled, {side}x{side} photo in tiles of {side // 2} (overlap {runs['onnx tiled'].tile_overlap}), "
          "statistics from the whole image")
    for a, b in (("onnx tiled", "torch tiled"), ("onnx tiled", "onnx untiled")):
        d = np.abs(out[a].astype(np.int32) - out[b].astype(np.int32))
        print(f"  {a} vs {b}: PSNR {psnr(out[a], out[b]):.1f} dB, max |diff| {int(d.max())} levels")


def speed(paths: dict[str, Stylizer], sizes: list[int], repeats: int, warmup: int) -> None:
    """Wall seconds per image, and CPU seconds (all threads of this process: less sensitive to
    other processes' load than wall time, but blind to threads that wait)."""
    print(f"\nspeed, s/image (medians of interleaved rounds), batch 1, {torch.get_num_threads()} threads; wall (CPU)")
    names = list(paths)
    print(f"{'size':>6} {'rounds':>6} " + " ".join(f"{n:>18}" for n in names) + " " + " ".join(f"{'x ' + n:>14}" for n in names[1:]))
    for size in sizes:
        x = torch.from_numpy(np.array(photos(1)[0].resize((size, size), Image.Resampling.BICUBIC))).permute(2, 0, 1)[None]
        rounds = max(3, repeats * 256 * 256 // (size * size)) if size > 256 else repeats
        for _ in range(warmup):
            for s in paths.values():
                s.translate(x)
        wall: dict[str, list[float]] = {n: [] for n in names}
        cpu: dict[str, list[float]] = {n: [] for n in names}
        for r in range(rounds):
            order = names[r % len(names):] + names[: r % len(names)]
            for name in order:
                start, start_cpu = time.perf_counter(), time.process_time()
                paths[name].translate(x)
                wall[name].append(time.perf_counter() - start)
                cpu[name].append(time.process_time() - start_cpu)
        med = {n: statistics.median(t) for n, t in wall.items()}
        med_cpu = {n: statistics.median(t) for n, t in cpu.items()}
        base = med[names[0]]
        print(f"{size:>6} {rounds:>6} " + " ".join(f"{med[n]:9.3f} ({med_cpu[n]:6.2f})" for n in names) + " "
              + " ".join(f"{base / med[n]:13.2f}x" for n in names[1:]), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="any model source (default: vintagify's generator, else a random resnet_9blocks)")
    parser.add_argument("--sizes", type=int, nargs="*", default=[256, 512])
    parser.add_argument("--repeats", type=int, default=7, help="rounds at 256 (fewer at larger sizes, at least 3)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--parity", type=int, default=8, help="photos for the parity figures (0: none)")
    parser.add_argument("--tiled", type=int, default=0, help="also compare tiled paths on a SIDE x SIDE photo")
    args = parser.parse_args()

    if args.model:
        model, config = load_source(args.model)
        what = args.model
    else:
        model, config, what = default_generator()
    with tempfile.TemporaryDirectory() as tmp:
        exported = export_onnx(model, config, Path(tmp) / "model.onnx", where=what)
        big = {"memory_budget": 1 << 40}  # untiled at every size
        paths = {
            "torch fp32": Stylizer(model, config, device="cpu", precision="fp32", channels_last=False, **big),
            "torch auto": Stylizer(model, config, device="cpu", **big),
            "onnxruntime": Stylizer.from_pretrained(exported.path, **big),
        }
        print(f"model: {what}; torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, "
              f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads")
        print(f"export: opset {exported.opset}, max |onnxruntime - torch| {exported.max_abs_error:.2g} on the check input")
        for name, s in paths.items():
            print(f"  {name}: {s.describe()}")
        if args.parity:
            parity(paths["torch fp32"], paths["onnxruntime"], args.parity)
        if args.tiled:
            tiled_parity(model, config, exported.path, args.tiled)
        if args.sizes:
            speed(paths, args.sizes, args.repeats, args.warmup)


if __name__ == "__main__":
    main()
