"""Flicker and speed of video stylisation: per-frame against stable (smoothed) normalisation.

    PYTHONPATH=src python benchmarks/video_flicker.py --repeats 3

1. **A real clip with known motion.** Two shots of 256x192 at 24 fps made from two of the
   shared photos (monet2photo testB): a slow pan with a zoom in (1.75 s), a cut, a slow pan
   with a zoom out (1.25 s); every frame is rendered from its photo through a known affine map
   (bicubic ``grid_sample``), encoded with H.264 (CRF 12) with a sine audio track, and decoded
   again, so the stylisers see real codec output.
2. **Models.** The trained CycleGAN generator shipped in the ``vintagify`` package (photo ->
   "vintage", a ResNet-9 with affine instance norms; its state dict is renamed to brushwork's
   layout here), and a random-init ResNet-9 (ngf 16, init gain 0.2) as a second, untrained model.
3. **Scores**, over the frame pairs inside a shot (the pair across the cut is left out), in
   8-bit levels:

   - *flicker*: mean |out_t - out_{t-1}| minus the same for the input frames (how much more the
     output changes from frame to frame than the input does);
   - *warped error*: the previous output frame is warped onto the current one with the exact
     motion (known, since the clip was rendered from it: ``grid_sample`` with the composed affine
     map), then mean |out_t - warp(out_{t-1})| over the pixels both frames see; the same
     number for the input frames (resampling and codec error only) is subtracted;
   - *deviation*: mean |out - per-frame out|: how far a mode moves from the per-frame look.

4. **Speed**: ``stylize_video`` end to end (decode, stylise, encode, audio copy) per-frame and
   stable, interleaved, ``--repeats`` times; medians of the frames per second. Flicker and warped
   error are reported both for the in-memory frames (a smoothing sweep) and for the decoded
   output files of the end-to-end runs.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import tempfile
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn

from brushwork.inference import Stylizer
from brushwork.inference.temporal import DEFAULT_SMOOTHING, FrameStylizer, SceneCutDetector
from brushwork.inference.video import stylize_video
from brushwork.nn import build_generator, init_weights
from brushwork.nn.layers import InstanceNorm2d
from brushwork.release import release_config_for

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "monet2photo-small"
ARCH = {"name": "resnet_9blocks", "in_channels": 3, "out_channels": 3, "ngf": 64, "norm": "instance",
        "dropout": False, "padding": "reflect"}  # fmt: skip


@dataclass(frozen=True)
class Shot:
    """Frames ``start .. start + count - 1``: ``photo`` seen through a window whose centre moves
    from ``c0`` to ``c1`` and whose scale (photo pixels per frame pixel) goes from ``s0`` to ``s1``."""

    photo: int
    start: int
    count: int
    c0: tuple[float, float]
    c1: tuple[float, float]
    s0: float
    s1: float

    def at(self, t: int) -> tuple[float, float, float]:
        u = (t - self.start) / max(1, self.count - 1)
        u = 0.5 - 0.5 * np.cos(np.pi * u)  # ease in and out, like a camera operator
        cx = self.c0[0] + u * (self.c1[0] - self.c0[0])
        cy = self.c0[1] + u * (self.c1[1] - self.c0[1])
        return cx, cy, self.s0 + u * (self.s1 - self.s0)


def make_shots(fps: int) -> list[Shot]:
    n1, n2 = round(1.75 * fps), round(1.25 * fps)
    return [Shot(0, 0, n1, (110.0, 120.0), (146.0, 134.0), 0.90, 0.72),
            Shot(1, n1, n2, (150.0, 140.0), (112.0, 124.0), 0.74, 0.88)]  # fmt: skip


def pixel_grid(width: int, height: int) -> Tensor:
    """(H, W, 2) pixel-centre coordinates (x, y) of a width x height frame."""
    ys, xs = torch.meshgrid(torch.arange(height) + 0.5, torch.arange(width) + 0.5, indexing="ij")
    return torch.stack([xs, ys], -1).double()


def render(photo: Tensor, shot: Shot, t: int, width: int, height: int) -> Tensor:
    """Frame ``t`` (3, H, W) uint8: photo point q = c + s * (p - frame centre) for each pixel p."""
    cx, cy, s = shot.at(t)
    p = pixel_grid(width, height)
    q = torch.stack([cx + s * (p[..., 0] - width / 2), cy + s * (p[..., 1] - height / 2)], -1)
    ph, pw = photo.shape[-2:]
    grid = torch.stack([2 * q[..., 0] / pw - 1, 2 * q[..., 1] / ph - 1], -1)[None].float()
    out = F.grid_sample(photo[None], grid, mode="bicubic", padding_mode="border", align_corners=False)[0]
    return out.clamp(0, 255).round().to(torch.uint8)


def warp_previous(prev: Tensor, shots: list[Shot], t: int) -> tuple[Tensor, Tensor]:
    """Frame ``t - 1`` (3, H, W) float warped onto frame ``t`` with the known motion, and the mask
    of frame-t pixels that frame t - 1 sees (1 px from its border)."""
    shot = next(s for s in shots if s.start <= t < s.start + s.count)
    _, height, width = prev.shape
    cx, cy, s = shot.at(t)
    px, py, ps = shot.at(t - 1)
    p = pixel_grid(width, height)
    qx, qy = cx + s * (p[..., 0] - width / 2), cy + s * (p[..., 1] - height / 2)
    x, y = width / 2 + (qx - px) / ps, height / 2 + (qy - py) / ps  # the same photo point in frame t - 1
    grid = torch.stack([2 * x / width - 1, 2 * y / height - 1], -1)[None].float()
    warped = F.grid_sample(prev[None].float(), grid, mode="bilinear", padding_mode="border", align_corners=False)[0]
    mask = (x > 1) & (x < width - 1) & (y > 1) & (y < height - 1)
    return warped, mask


def scores(frames: Tensor, inputs: Tensor, shots: list[Shot]) -> dict[str, float]:
    """Flicker and warped error of (N, 3, H, W) uint8 ``frames`` relative to the ``inputs``, within shots."""
    pairs = [t for t in range(1, frames.shape[0]) if not any(s.start == t for s in shots)]

    def change(x: Tensor) -> float:
        return float(np.mean([(x[t].float() - x[t - 1].float()).abs().mean() for t in pairs]))

    def warped(x: Tensor) -> float:
        errs = []
        for t in pairs:
            w, mask = warp_previous(x[t - 1], shots, t)
            errs.append(float((x[t].float() - w).abs()[:, mask].mean()))
        return float(np.mean(errs))

    out_change, in_change = change(frames), change(inputs)
    out_warp, in_warp = warped(frames), warped(inputs)
    return {"change": out_change, "input_change": in_change, "flicker": out_change - in_change,
            "warped": out_warp, "input_warped": in_warp, "warped_excess": out_warp - in_warp}  # fmt: skip


def write_clip(frames: Tensor, path: Path, fps: int) -> None:
    """H.264 (CRF 12, near transparent) with a 440 Hz AAC track, like a camera's file."""
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=fps, options={"crf": "12", "preset": "medium"})
        video.width, video.height, video.pix_fmt = frames.shape[-1], frames.shape[-2], "yuv420p"
        audio = out.add_stream("aac", rate=44100, layout="mono")
        for i, frame in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(frame.permute(1, 2, 0).numpy(), format="rgb24")
            vf.pts = i
            out.mux(video.encode(vf))
        out.mux(video.encode(None))
        seconds = frames.shape[0] / fps
        t = np.arange(round(44100 * seconds)) / 44100
        af = av.AudioFrame.from_ndarray((0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None], format="fltp", layout="mono")
        af.sample_rate, af.pts = 44100, 0
        out.mux(audio.encode(af))
        out.mux(audio.encode(None))


def read_frames(path: Path) -> Tensor:
    with av.open(str(path)) as container:
        return torch.stack([torch.from_numpy(f.to_ndarray(format="rgb24")).permute(2, 0, 1)
                            for f in container.decode(video=0)])  # fmt: skip


def vintagify_stylizer() -> Stylizer | None:
    """The trained generator shipped in the ``vintagify`` package (installed with --no-deps), or None."""
    spec = importlib.util.find_spec("vintagify")  # not imported: its __init__ needs matplotlib
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "resources" / "G_A2B_epoch33.pth"
    if not path.is_file():
        return None
    net = build_generator(**ARCH)
    for parent in list(net.modules()):  # its norms are affine: instance norms with weight and bias
        for name, child in parent.named_children():
            if isinstance(child, nn.InstanceNorm2d):
                setattr(parent, name, InstanceNorm2d(child.num_features, affine=True))
    state = torch.load(path, map_location="cpu", weights_only=True)
    net.load_state_dict({k.replace(".block.", ".conv_block."): v for k, v in state.items()})  # its blocks say "block"
    config = release_config_for(ARCH, direction="AtoB", source="photo", target="vintage", train_size=256,
                                provenance={"source": "vintagify 0.1.2 G_A2B_epoch33.pth"})
    return Stylizer(net, config, batch_size=4, copy_model=False)


def random_stylizer() -> Stylizer:
    arch = {**ARCH, "ngf": 16}
    torch.manual_seed(0)
    net = init_weights(build_generator(**arch), gain=0.2)
    config = release_config_for(arch, direction="AtoB", source="A", target="B", train_size=256, provenance={})
    return Stylizer(net, config, batch_size=4, copy_model=False)


def run_frames(stylizer: Stylizer, frames: Tensor, temporal: str, smoothing: float) -> tuple[Tensor, float, list[int]]:
    start = time.perf_counter()
    with FrameStylizer(stylizer, temporal=temporal, smoothing=smoothing) as fs:
        out = torch.cat([fs(frames[i : i + stylizer.batch_size]) for i in range(0, frames.shape[0], stylizer.batch_size)])
        cuts = fs.cuts
    return out, time.perf_counter() - start, cuts


def fmt(row: dict[str, float]) -> str:
    return (f"flicker {row['flicker']:+6.2f}  warped excess {row['warped_excess']:+6.2f}  "
            f"(change {row['change']:.2f} vs input {row['input_change']:.2f}; warped {row['warped']:.2f} vs input {row['input_warped']:.2f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--height", type=int, default=192)
    parser.add_argument("--fps", type=int, default=24)
    parser.add_argument("--repeats", type=int, default=3, help="end-to-end runs of each mode (interleaved)")
    parser.add_argument("--sweep", type=float, nargs="*", default=[0.5, 0.8, 0.95], help="extra smoothing factors (in memory)")
    parser.add_argument("--models", default="vintagify,random", help="comma-separated: vintagify, random")
    parser.add_argument("--no-in-memory", action="store_true", help="skip the in-memory sweep (end-to-end runs only)")
    parser.add_argument("--overhead-repeats", type=int, default=7,
                        help="network-only timings of one batch, per-frame against stable, interleaved (0: skip)")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--keep", type=Path, default=None, help="keep the clips in this folder")
    args = parser.parse_args()
    photos_all = sorted((DATA / "testB").glob("*.jpg"))
    if not photos_all:
        raise SystemExit(f"the shared photos are not at {DATA}")
    names = [photos_all[14], photos_all[18]]  # a river town, snowy mountains (landscape photos)
    photos = [torch.from_numpy(np.array(Image.open(p).convert("RGB"))).permute(2, 0, 1).float() for p in names]
    shots = make_shots(args.fps)
    frames = torch.stack([render(photos[s.photo], s, t, args.width, args.height) for s in shots for t in range(s.start, s.start + s.count)])
    print(f"clip: {frames.shape[0]} frames {args.width}x{args.height} at {args.fps} fps, cut at frame {shots[1].start}; "
          f"photos {names[0].name!r}, {names[1].name!r}; torch threads {torch.get_num_threads()}")
    results: dict[str, object] = {"frames": frames.shape[0], "size": [args.width, args.height], "fps": args.fps}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = args.keep or Path(tmp_name)
        tmp.mkdir(parents=True, exist_ok=True)
        clip = tmp / "clip.mp4"
        write_clip(frames, clip, args.fps)
        decoded = read_frames(clip)
        detector = SceneCutDetector()
        flags = torch.cat([detector(decoded[i : i + 4]) for i in range(0, decoded.shape[0], 4)])
        within = [d for i, d in enumerate(detector.distances, start=1) if i != shots[1].start]
        print(f"scene cuts found at {flags.nonzero().flatten().tolist()}; histogram distance at the cut "
              f"{detector.distances[shots[1].start - 1]:.3f}, within shots at most {max(within):.3f} "
              f"(threshold {detector.threshold})")
        results["cut_distance"] = detector.distances[shots[1].start - 1]
        results["within_shot_max_distance"] = max(within)
        wanted = args.models.split(",")
        models = [("vintagify", vintagify_stylizer() if "vintagify" in wanted else None),
                  ("random-init ngf16", random_stylizer() if "random" in wanted else None)]  # fmt: skip
        for model_name, stylizer in models:
            if stylizer is None:
                if model_name == "vintagify" and "vintagify" in wanted:
                    print(f"{model_name}: not installed (pip install --no-deps vintagify==0.1.2); skipped")
                continue
            print(f"\n== {model_name}: {stylizer.describe()}")
            entry: dict[str, object] = {}
            if not args.no_in_memory:
                entry["in_memory"] = sweep(stylizer, decoded, shots, sorted({DEFAULT_SMOOTHING, *args.sweep}))
            if model_name == "vintagify" and args.repeats > 0:
                entry["end_to_end"] = end_to_end(stylizer, clip, decoded, shots, tmp, args.repeats)
            if model_name == "vintagify" and args.overhead_repeats > 0:
                entry["network_seconds_per_batch"] = overhead(stylizer, decoded, args.overhead_repeats)
            results[model_name] = entry
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


def sweep(stylizer: Stylizer, decoded: Tensor, shots: list[Shot], factors: list[float]) -> dict[str, dict[str, object]]:
    """Per-frame and stable at each smoothing factor, on the decoded frames in memory (before any encoding)."""
    per_frame, _, _ = run_frames(stylizer, decoded, "per-frame", 0.0)
    rows: dict[str, dict[str, object]] = {"per-frame": dict(scores(per_frame, decoded, shots))}
    print(f"  per-frame        {fmt(rows['per-frame'])}")  # type: ignore[arg-type]
    for a in factors:
        out, _, cuts = run_frames(stylizer, decoded, "stable", a)
        row: dict[str, object] = dict(scores(out, decoded, shots))
        row["deviation"] = float((out.float() - per_frame.float()).abs().mean())
        row["cuts"] = cuts
        rows[f"stable {a}"] = row
        print(f"  stable a={a:<5}   {fmt(row)}  deviation {row['deviation']:.2f}  cuts {cuts}")  # type: ignore[arg-type]
    return rows


def overhead(stylizer: Stylizer, decoded: Tensor, repeats: int) -> dict[str, float]:
    """Seconds for one batch of frames through the network alone, per-frame and stable, interleaved; medians."""
    batch = decoded[4 : 4 + stylizer.batch_size]
    times: dict[str, list[float]] = {"per-frame": [], "stable": []}
    with FrameStylizer(stylizer, temporal="stable") as stable:
        stable(decoded[:4])  # the average has a past: smoothing is on for the timed batches
        for r in range(repeats):
            for mode in (("per-frame", "stable") if r % 2 == 0 else ("stable", "per-frame")):
                run = stylizer.translate if mode == "per-frame" else stable
                start = time.perf_counter()
                run(batch)
                times[mode].append(time.perf_counter() - start)
    medians = {mode: statistics.median(v) for mode, v in times.items()}
    print(f"  network only, {batch.shape[0]} frames a batch, median of {repeats}: per-frame {medians['per-frame']:.2f} s, "
          f"stable {medians['stable']:.2f} s ({medians['stable'] / medians['per-frame'] - 1:+.1%})")
    return medians


def end_to_end(stylizer: Stylizer, clip: Path, decoded: Tensor, shots: list[Shot], tmp: Path, repeats: int) -> dict[str, object]:
    """``stylize_video`` on the clip file, both modes interleaved; fps medians, scores of the files."""
    fps: dict[str, list[float]] = {"per-frame": [], "stable": []}
    file_scores: dict[str, dict[str, float]] = {}
    for r in range(repeats):
        for mode in (("per-frame", "stable") if r % 2 == 0 else ("stable", "per-frame")):
            target = tmp / f"out-{mode}.mp4"
            report = stylize_video(stylizer, clip, target, temporal=mode)
            fps[mode].append(report.frames_per_second)
            if mode not in file_scores:
                out = read_frames(target)
                assert out.shape == decoded.shape, (out.shape, decoded.shape)
                file_scores[mode] = scores(out, decoded, shots)
                with av.open(str(target)) as c:
                    v = c.streams.video[0]
                    file_scores[mode]["rate"] = str(Fraction(v.average_rate))
                    file_scores[mode]["audio"] = [s.codec_context.name for s in c.streams.audio]
            print(f"  run {r + 1} {mode:9} {report.frames_per_second:.3f} frames/s ({report.frames} frames, {report.seconds:.1f} s)")
    summary = {mode: {"fps_median": statistics.median(v), "fps_runs": v, **file_scores[mode]} for mode, v in fps.items()}
    for mode, row in summary.items():
        print(f"  {mode:9} end to end: median {row['fps_median']:.3f} frames/s; output file {fmt(row)}")  # type: ignore[arg-type]
    return summary


if __name__ == "__main__":
    main()
