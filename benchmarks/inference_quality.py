"""Inference quality checks: fast path vs fp32 (PSNR), and tiled vs untiled output.

    PYTHONPATH=src python benchmarks/inference_quality.py --model SOURCE [--photos DIR] [--big-side 1536]

SOURCE is any model source (release folder, run folder, official .pth, published name). A
generator with *affine* instance norm in the common fork layout (``model.<i>.block.<j>``, e.g.
the trained G_A2B in the vintagify package on PyPI) can be given with ``--affine-pth FILE``; it
is loaded here only, for measuring, by giving brushwork's ResNet generator affine norms.

Prints, per photo, the PSNR of the fast path (default precision) against fp32 at 256x256 and at
the photo's own size, and for one large photo the difference between untiled output and tiled
output with each way of getting the instance-norm statistics.
"""

from __future__ import annotations

import argparse
import math
import statistics
from pathlib import Path

import torch
from PIL import Image
from torch import Tensor, nn

from brushwork.data.imageio import list_images, read_image
from brushwork.data.transforms import pil_to_uint8
from brushwork.inference import Stylizer
from brushwork.inference.sources import load_source
from brushwork.nn import build_generator
from brushwork.release import ReleaseConfig, release_config_for

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "monet2photo-small"


def load_affine_fork(path: Path) -> tuple[nn.Module, ReleaseConfig]:
    """A ResNet generator with affine instance norms saved as model.<i>.block.<j> (measuring only)."""
    sd = torch.load(path, map_location="cpu", weights_only=True)
    sd = {k.replace(".block.", ".conv_block."): v for k, v in sd.items()}
    n_blocks = len({k.split(".")[1] for k in sd if ".conv_block." in k})
    arch = {"name": f"resnet_{n_blocks}blocks", "ngf": int(sd["model.1.weight"].shape[0]), "norm": "instance",
            "dropout": False, "padding": "reflect", "in_channels": 3, "out_channels": 3}
    net = build_generator(**arch)
    for parent in list(net.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.InstanceNorm2d):
                setattr(parent, name, nn.InstanceNorm2d(child.num_features, affine=True))
    net.load_state_dict(sd, strict=True)
    return net.eval(), release_config_for(arch, direction="AtoB", source="A", target="B", train_size=256,
                                          provenance={"source_file": path.name})


def psnr(a: Tensor, b: Tensor) -> float:
    mse = float(((a.float() - b.float()) ** 2).mean())
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def as_uint8(img: Image.Image) -> Tensor:
    return pil_to_uint8(img).unsqueeze(0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model")
    parser.add_argument("--affine-pth", type=Path)
    parser.add_argument("--photos", type=Path, default=DATA / "testB")
    parser.add_argument("--count", type=int, default=8)
    parser.add_argument("--big", type=Path, help="photo for the tiling check (default: the first, upscaled)")
    parser.add_argument("--big-side", type=int, default=1536, help="long side of the tiling check image")
    parser.add_argument("--tile", type=int, default=512)
    args = parser.parse_args()
    if args.affine_pth:
        model, config = load_affine_fork(args.affine_pth)
    elif args.model:
        model, config = load_source(args.model)
    else:
        parser.error("give --model or --affine-pth")

    fp32 = Stylizer(model, config, device="cpu", precision="fp32", memory_budget=1 << 40)
    fast = Stylizer(model, config, device="cpu", precision="auto", memory_budget=1 << 40)
    print(f"fast path: {fast.precision}; model {config.architecture['name']} ngf {config.architecture['ngf']}")
    photos = list_images(args.photos)[: args.count]
    at256, native = [], []
    for path in photos:
        img = read_image(path).rgb
        for store, im in ((at256, img.resize((256, 256), Image.Resampling.BICUBIC)), (native, img)):
            x = as_uint8(im)
            store.append(psnr(fp32.translate(x), fast.translate(x)))
    print(f"PSNR fast vs fp32 over {len(photos)} photos: 256x256 median {statistics.median(at256):.1f} dB "
          f"(min {min(at256):.1f}); own size median {statistics.median(native):.1f} dB (min {min(native):.1f})")

    big = read_image(args.big or photos[0]).rgb
    scale = args.big_side / max(big.size)
    big = big.resize((round(big.width * scale) // 4 * 4, round(big.height * scale) // 4 * 4), Image.Resampling.BICUBIC)
    x = as_uint8(big)
    ref = fp32.translate(x)
    print(f"tiling check on {big.width}x{big.height}, tiles {args.tile}, fp32:")
    for stats_size in (8192, args.tile * 3 // 2, args.tile):
        for overlap in ((64, 128, 160) if stats_size == 8192 else (160,)):
            tiled = Stylizer(model, config, device="cpu", precision="fp32", tile_size=args.tile, tile_overlap=overlap,
                             stats_size=stats_size).translate(x)
            d = (tiled.int() - ref.int()).abs()
            label = "exact stats" if stats_size >= max(big.size) else f"stats at {stats_size}"
            print(f"  {label:<16} overlap {overlap:>3}: PSNR {psnr(tiled, ref):6.1f} dB, max |diff| {int(d.max()):3d}/255, "
                  f"mean {float(d.float().mean()):.3f}")


if __name__ == "__main__":
    main()
