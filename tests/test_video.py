"""Video stylisation: what a clip keeps, what its frames become, stable normalisation, bad input.

Clips are made here with PyAV (a dozen small frames, an AAC sine track, a rotation) and the
networks are tiny, so the whole file runs in seconds.
"""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tests._inference_helpers import cli_fixture, tiny_generator, tiny_release

av = pytest.importorskip("av")

from brushwork.inference import Stylizer  # noqa: E402
from brushwork.inference.temporal import (  # noqa: E402
    DEFAULT_CUT_THRESHOLD,
    DEFAULT_SMOOTHING,
    FrameStylizer,
    NormTrack,
    SceneCutDetector,
    SmoothedNorm,
    StableModeError,
)
from brushwork.inference.video import VideoReadError, probe_video, stylize_video  # noqa: E402
from brushwork.nn.layers import InstanceNorm2d  # noqa: E402

CLI = Callable[[list[str]], tuple[int, str, str]]
_ = cli_fixture  # the `cli` fixture
RATE = Fraction(30000, 1001)


def moving_frames(n: int = 12, h: int = 48, w: int = 64, seed: int = 0) -> np.ndarray:
    """(n, h, w, 3) uint8: a smooth colour field sliding 3 px a frame, so every frame differs."""
    rng = np.random.default_rng(seed)
    coarse = torch.from_numpy(rng.uniform(0, 255, (1, 3, 6, 12 + n)).astype(np.float32))
    field = F.interpolate(coarse, size=(h, 2 * w + 3 * n), mode="bicubic", align_corners=False)[0].clamp(0, 255)
    return np.stack([field[:, :, 3 * t : 3 * t + w].permute(1, 2, 0).round().byte().numpy() for t in range(n)])


def make_clip(path: Path, frames: np.ndarray, *, fmt: str | None = None, rate: Fraction = RATE,
              pts: list[int] | None = None, time_base: Fraction | None = None, rotation: float | None = 90,
              audio: bool = True, encoder: str = "libx264", pix_fmt: str = "yuv420p",
              options: dict[str, str] | None = None) -> Path:
    """Write ``frames`` as a video with PyAV: H.264, optional display rotation and AAC sine audio."""
    with av.open(str(path), "w", format=fmt) as out:
        out.metadata["title"] = "a test clip"
        video = out.add_stream(encoder, rate=rate, options=options or {})
        video.width, video.height, video.pix_fmt = frames.shape[2], frames.shape[1], pix_fmt
        if time_base is not None:
            video.time_base = video.codec_context.time_base = time_base
        if rotation is not None:
            video.set_display_rotation(rotation)
        sound = out.add_stream("aac", rate=16000, layout="mono") if audio else None
        for i, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            frame.pts = pts[i] if pts is not None else i
            if time_base is not None:
                frame.time_base = time_base
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        if sound is not None:
            t = np.arange(round(16000 * len(frames) / float(rate))) / 16000
            chunk = av.AudioFrame.from_ndarray((0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None], format="fltp", layout="mono")
            chunk.sample_rate, chunk.pts = 16000, 0
            out.mux(sound.encode(chunk))
            out.mux(sound.encode(None))
    return path


def decode(path: Path) -> tuple[np.ndarray, list[float]]:
    """All frames (n, h, w, 3) uint8 and their times in seconds."""
    with av.open(str(path)) as container:
        frames = list(container.decode(video=0))
    return np.stack([f.to_ndarray(format="rgb24") for f in frames]), [float(f.pts * f.time_base) for f in frames]


def to_nchw(frames: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).contiguous()


@pytest.fixture(scope="module")
def stylizer() -> Stylizer:
    net, config = tiny_generator()
    return Stylizer(net, config, device="cpu", precision="fp32", channels_last=False, batch_size=4)


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clip(tmp_path_factory.mktemp("clips") / "clip.mp4", moving_frames())


def flicker(out: torch.Tensor, inp: torch.Tensor) -> float:
    """Mean |frame-to-frame change| of the output minus that of the input (8-bit levels)."""
    return float((out[1:].float() - out[:-1].float()).abs().mean() - (inp[1:].float() - inp[:-1].float()).abs().mean())


# ---------------------------------------------------------------------------------------------
# What a clip keeps


@pytest.mark.parametrize("suffix", [".mp4", ".mkv", ".mov"])
def test_round_trip_keeps_rate_size_frames_rotation_and_audio(tmp_path: Path, stylizer: Stylizer, clip: Path, suffix: str) -> None:
    target = tmp_path / f"out{suffix}"
    seen: list[tuple[int, int | None]] = []
    report = stylize_video(stylizer, clip, target, progress=lambda done, total: seen.append((done, total)))
    src, out = probe_video(clip), probe_video(target)
    assert (out.width, out.height) == (src.width, src.height) == (64, 48)
    assert out.rate == src.rate == RATE
    assert out.rotation == src.rotation == 90
    assert out.audio_codecs == ("aac",) and report.audio == ["aac copied"]
    with av.open(str(target)) as container:
        assert container.metadata.get("title") == "a test clip"
    frames, times = decode(target)
    _, src_times = decode(clip)
    assert len(frames) == report.frames == 12
    offset = times[0] - src_times[0]  # matroska may shift all streams by the AAC priming delay
    assert np.allclose(np.array(times) - offset, src_times, atol=1e-3)
    assert seen == [(4, 12), (8, 12), (12, 12)]  # progress in frames, per batch of 4


def test_variable_frame_rate_timestamps_are_kept(tmp_path: Path, stylizer: Stylizer) -> None:
    pts = [0, 33, 66, 120, 200, 233, 300, 400]  # milliseconds, irregular
    src = make_clip(tmp_path / "vfr.mkv", moving_frames(8), pts=pts, time_base=Fraction(1, 1000), rate=Fraction(30), audio=False)
    stylize_video(stylizer, src, tmp_path / "out.mp4")
    _, times = decode(tmp_path / "out.mp4")
    assert np.allclose(times, [p / 1000 for p in pts], atol=1e-3)


def test_avi_is_timed_by_frame_index_and_cannot_hold_rotation(tmp_path: Path, stylizer: Stylizer, clip: Path) -> None:
    report = stylize_video(stylizer, clip, tmp_path / "out.avi")
    assert any("cannot hold the rotation" in w for w in report.warnings) and report.audio == ["aac copied"]
    back = stylize_video(stylizer, tmp_path / "out.avi", tmp_path / "back.mp4")  # AVI in: B-frame pts are not usable
    frames, times = decode(tmp_path / "back.mp4")
    assert back.frames == len(frames) == 12 and probe_video(tmp_path / "back.mp4").rate == RATE
    assert np.allclose(times, [i / float(RATE) for i in range(12)], atol=1e-3)


def test_webm_output_is_vp9_with_audio_reencoded_to_opus(tmp_path: Path, stylizer: Stylizer, clip: Path) -> None:
    report = stylize_video(stylizer, clip, tmp_path / "out.webm")
    out = probe_video(tmp_path / "out.webm")
    assert out.codec == "vp9" and out.audio_codecs == ("opus",)
    assert report.audio == ["aac re-encoded to libopus"] and report.frames == 12


def test_odd_sizes_lose_one_row_and_column_with_a_warning(tmp_path: Path, stylizer: Stylizer) -> None:
    odd = make_clip(tmp_path / "odd.avi", moving_frames(4, h=49, w=65), encoder="ffv1", pix_fmt="bgr0", audio=False, rotation=None)
    assert decode(odd)[0].shape == (4, 49, 65, 3)
    report = stylize_video(stylizer, odd, tmp_path / "out.mp4")
    out = probe_video(tmp_path / "out.mp4")
    assert (out.width, out.height) == (64, 48) and report.frames == 4
    assert any("odd side" in w for w in report.warnings)


# ---------------------------------------------------------------------------------------------
# What the frames become


def test_frames_are_the_stylizers_frames_in_order(tmp_path: Path, stylizer: Stylizer, clip: Path) -> None:
    """Exact before the codec: per-frame mode is ``Stylizer.translate`` of the decoded frames.

    After the codec: with CRF 0 (lossless H.264) the only change left is the RGB -> yuv420p
    conversion, so the file must equal the reference frames sent through that same conversion
    bit for bit. At the default CRF 18 the tolerance is the codec's own: each frame may be no
    further from its reference than an independent encoding of the reference frames with the
    same settings is (+0.5 level), and it must be nearer to its own reference than to any other
    frame, which fails if a frame was dropped, repeated or reordered.
    """
    decoded, _ = decode(clip)
    reference = stylizer.translate(to_nchw(decoded))  # in passes of batch_size (4), as the video path runs
    with FrameStylizer(stylizer, temporal="per-frame") as frames:
        batched = torch.cat([frames(to_nchw(decoded[i : i + 4])) for i in range(0, 12, 4)])
    assert torch.equal(batched, reference)  # (other batch sizes may round differently in the conv kernels)

    stylize_video(stylizer, clip, tmp_path / "lossless.mp4", temporal="per-frame", crf=0)
    got, _ = decode(tmp_path / "lossless.mp4")
    ref_rgb = reference.permute(0, 2, 3, 1).numpy()
    via_yuv = np.stack([
        av.VideoFrame.from_ndarray(np.ascontiguousarray(r), format="rgb24")
        .reformat(format="yuv420p", dst_colorspace="itu601", dst_color_range="MPEG").to_ndarray(format="rgb24")
        for r in ref_rgb
    ])  # fmt: skip
    assert np.array_equal(got, via_yuv)

    stylize_video(stylizer, clip, tmp_path / "crf18.mp4", temporal="per-frame")
    got, _ = decode(tmp_path / "crf18.mp4")
    direct, _ = decode(make_clip(tmp_path / "direct.mp4", ref_rgb, options={"crf": "18", "preset": "medium"},
                                 rotation=None, audio=False))
    codec_error = np.abs(direct.astype(np.float32) - ref_rgb).mean(axis=(1, 2, 3))
    dist = np.abs(got[:, None].astype(np.float32) - ref_rgb[None].astype(np.float32)).mean(axis=(2, 3, 4))  # (out, ref)
    assert (np.diag(dist) <= codec_error + 0.5).all(), (np.diag(dist), codec_error)
    assert np.array_equal(dist.argmin(axis=1), np.arange(12))


def test_side_by_side_and_size(tmp_path: Path, stylizer: Stylizer, clip: Path) -> None:
    report = stylize_video(stylizer, clip, tmp_path / "pair.mkv", size=24, side_by_side=True)
    assert (report.width, report.height) == (64, 24)
    frames, _ = decode(tmp_path / "pair.mkv")
    assert frames.shape == (12, 24, 64, 3)


# ---------------------------------------------------------------------------------------------
# Stable normalisation


def affine_generator(seed: int = 0) -> tuple[nn.Module, object]:
    """The tiny generator with affine instance norms (random weight and bias), as some models have."""
    net, config = tiny_generator(seed)
    torch.manual_seed(seed + 1)
    for parent in list(net.modules()):
        for name, child in parent.named_children():
            if isinstance(child, nn.InstanceNorm2d):
                norm = InstanceNorm2d(child.num_features, affine=True)
                nn.init.uniform_(norm.weight, 0.5, 1.5)
                nn.init.uniform_(norm.bias, -0.3, 0.3)
                setattr(parent, name, norm)
    return net.eval(), config


@pytest.mark.parametrize("affine", [False, True])
def test_stable_without_smoothing_is_per_frame_bit_for_bit(stylizer: Stylizer, clip: Path, affine: bool) -> None:
    if affine:
        net, config = affine_generator()
        stylizer = Stylizer(net, config, device="cpu", precision="fp32", channels_last=False, batch_size=4)  # type: ignore[arg-type]
    decoded = to_nchw(decode(clip)[0])
    with FrameStylizer(stylizer, temporal="stable", smoothing=0.0) as frames:
        out = torch.cat([frames(decoded[i : i + 4]) for i in range(0, 12, 4)])
    assert torch.equal(out, stylizer.translate(decoded))


def test_stable_mode_without_instance_norms_runs_per_frame_and_says_so(tmp_path: Path, clip: Path) -> None:
    net, config = tiny_generator(norm="none")
    plain = Stylizer(net, config, device="cpu", precision="fp32", channels_last=False, batch_size=4)
    report = stylize_video(plain, clip, tmp_path / "out.mkv", crf=0)
    assert report.temporal == "per-frame" and any("no instance norms" in w for w in report.warnings)


def test_smoothed_norm_is_the_ema_of_the_statistics() -> None:
    """One layer against the formula, with a restart, a batch split in two, and affine parameters."""
    torch.manual_seed(0)
    x = torch.randn(7, 5, 6, 8) * torch.rand(7, 5, 1, 1) * 3 + torch.randn(7, 5, 1, 1)
    restarts = torch.tensor([False, False, False, False, True, False, False])
    original = nn.InstanceNorm2d(5, affine=True)
    nn.init.uniform_(original.weight, 0.5, 1.5)
    nn.init.uniform_(original.bias, -0.5, 0.5)
    a, eps = 0.7, original.eps
    mean, var = x.mean((2, 3)).double(), x.var((2, 3), unbiased=False).double() + eps
    expected = []
    m, v = mean[0], var[0]
    for t in range(7):
        if t > 0 and not restarts[t]:
            m, v = a * m + (1 - a) * mean[t], a * v + (1 - a) * var[t]
        else:
            m, v = mean[t], var[t]
        y = (x[t].double() - m[:, None, None]) / v.sqrt()[:, None, None]
        expected.append(y * original.weight.double()[:, None, None] + original.bias.double()[:, None, None])
    track = NormTrack(a)
    norm = SmoothedNorm(original, track)
    with torch.inference_mode():
        track.begin(restarts)
        got = torch.cat([norm(x[:3]), norm(x[3:])])  # the stylizer may split a pass: the cursor follows
    torch.testing.assert_close(got.double(), torch.stack(expected), atol=1e-5, rtol=1e-5)


def jittery_frames(n: int = 16, h: int = 32, w: int = 48) -> torch.Tensor:
    """A still, smooth background with a white square of random size and place in every frame:
    a small change of the picture that moves every layer's statistics (seeded)."""
    g = torch.Generator().manual_seed(0)
    base = F.interpolate(torch.rand(1, 3, 5, 7, generator=g) * 255, size=(h, w), mode="bicubic", align_corners=False)
    frames = base.clamp(0, 255).repeat(n, 1, 1, 1)
    for t in range(n):
        s = int(torch.randint(5, 12, (1,), generator=g))
        y, x = int(torch.randint(0, h - s, (1,), generator=g)), int(torch.randint(0, w - s, (1,), generator=g))
        frames[t, :, y : y + s, x : x + s] = 255
    return frames.round().to(torch.uint8)


def test_stable_mode_lowers_the_flicker_of_jittering_statistics(stylizer: Stylizer) -> None:
    frames = jittery_frames()
    per_frame = flicker(stylizer.translate(frames), frames)
    scores = {}
    for a in (0.5, 0.9):
        with FrameStylizer(stylizer, temporal="stable", smoothing=a) as fs:
            out = torch.cat([fs(frames[i : i + 4]) for i in range(0, 16, 4)])
        assert fs.cuts == [0]  # the square moves the histogram too little to look like a cut
        scores[a] = flicker(out, frames)
    assert scores[0.9] < scores[0.5] < per_frame, (scores, per_frame)  # the longer the memory, the steadier


def test_a_scene_cut_restarts_the_statistics(stylizer: Stylizer) -> None:
    shot_a = jittery_frames(6)
    shot_b = (jittery_frames(6) * 0.4).to(torch.uint8)  # another shot: a darker picture
    frames = torch.cat([shot_a, shot_b])
    per_frame = stylizer.translate(frames)
    with FrameStylizer(stylizer, temporal="stable", smoothing=0.9) as fs:
        out = torch.cat([fs(frames[i : i + 4]) for i in range(0, 12, 4)])  # the cut falls inside a batch
    assert fs.cuts == [0, 6]
    assert torch.equal(out[6], per_frame[6])  # a restart: the frame's own statistics, bit for bit
    assert not torch.equal(out[7], per_frame[7])  # and smoothing again from there
    with FrameStylizer(stylizer, temporal="stable", smoothing=0.9, cut_threshold=1.0) as fs:
        blind = torch.cat([fs(frames[i : i + 4]) for i in range(0, 12, 4)])
    assert fs.cuts == [0] and not torch.equal(blind[6], per_frame[6])  # no cut found: shot A's statistics leak in


def test_scene_cut_detector_across_batches() -> None:
    frames = torch.cat([jittery_frames(5), (jittery_frames(5) * 0.4).to(torch.uint8)])
    detector = SceneCutDetector()
    flags = torch.cat([detector(frames[:5]), detector(frames[5:])])  # the cut is the first frame of a batch
    assert flags.nonzero().flatten().tolist() == [0, 5]
    assert max(d for i, d in enumerate(detector.distances) if i != 4) < DEFAULT_CUT_THRESHOLD < detector.distances[4]


def test_stable_mode_needs_frames_that_fit_in_one_pass(tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "short.mp4", moving_frames(3), audio=False)
    net, config = tiny_generator()
    small = Stylizer(net, config, device="cpu", precision="fp32", channels_last=False, memory_budget=1000)
    with pytest.raises(StableModeError, match="do not fit the memory budget"):
        stylize_video(small, clip, tmp_path / "out" / "short.mp4")
    assert list((tmp_path / "out").iterdir()) == []
    assert stylize_video(small, clip, tmp_path / "out" / "short.mp4", temporal="per-frame").frames == 3  # tiled frames


# ---------------------------------------------------------------------------------------------
# Bad input, atomic output, the command line


def bad_inputs(folder: Path, clip: Path) -> dict[str, tuple[Path, str]]:
    """Files that must each fail with a message naming them, and the words that message has."""
    folder.mkdir()
    (folder / "empty.mp4").write_bytes(b"")
    (folder / "notes.mp4").write_text("not a video\n" * 50)
    with av.open(str(folder / "sound.mp4"), "w") as out:  # audio only
        stream = out.add_stream("aac", rate=16000, layout="mono")
        chunk = av.AudioFrame.from_ndarray(np.zeros((1, 4000), np.float32), format="fltp", layout="mono")
        chunk.sample_rate, chunk.pts = 16000, 0
        out.mux(stream.encode(chunk))
        out.mux(stream.encode(None))
    data = clip.read_bytes()  # PyAV writes the index (moov) at the end: cut it off
    (folder / "cut.mp4").write_bytes(data[: len(data) // 2])
    at = data.index(b"avc1", data.index(b"stsd"))  # the sample entry's codec tag -> an unknown codec
    (folder / "alien.mp4").write_bytes(data[:at] + b"zzzz" + data[at + 4 :])
    mkv = make_clip(folder / "full.mkv", moving_frames(), audio=False).read_bytes()
    (folder / "full.mkv").unlink()
    (folder / "short.mkv").write_bytes(mkv[: len(mkv) * 3 // 4])  # plays, but ends early
    return {
        "empty.mp4": (folder / "empty.mp4", "file is empty"),
        "notes.mp4": (folder / "notes.mp4", "not a video file"),
        "sound.mp4": (folder / "sound.mp4", "has no video stream"),
        "cut.mp4": (folder / "cut.mp4", "damaged or truncated"),
        "alien.mp4": (folder / "alien.mp4", "codec is unknown"),
        "short.mkv": (folder / "short.mkv", "truncated or damaged"),
    }


def test_bad_videos_are_one_line_errors_with_no_output(tmp_path: Path, clip: Path, cli: CLI) -> None:
    bad = bad_inputs(tmp_path / "bad", clip)
    model = tiny_release(tmp_path / "model")
    out_dir = tmp_path / "out"
    code, out, err = cli(["stylize", *[str(p) for p, _ in bad.values()], str(clip), "-m", str(model), "-o", str(out_dir), "--no-progress"])
    assert code == 1
    assert f"1 written, 0 skipped (exist; --overwrite to replace), {len(bad)} failed" in out
    failures = err.split("failed:\n", 1)[1].splitlines()
    assert len(failures) == len(bad)
    for line, (path, words) in zip(failures, bad.values(), strict=True):
        assert line.strip().startswith(f"{path}: ") and words in line, line
    assert sorted(p.name for p in out_dir.iterdir()) == ["clip.mp4"]  # no partial files, no temporaries


def test_api_raises_video_read_error(tmp_path: Path, stylizer: Stylizer, clip: Path) -> None:
    bad = bad_inputs(tmp_path / "bad", clip)
    for path, words in bad.values():
        with pytest.raises(VideoReadError, match=words):
            stylize_video(stylizer, path, tmp_path / "out" / path.name)
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


@pytest.mark.parametrize("failure", [RuntimeError("disk on fire"), KeyboardInterrupt()])
def test_a_failure_mid_encode_leaves_no_file(tmp_path: Path, stylizer: Stylizer, clip: Path, monkeypatch: pytest.MonkeyPatch,
                                             failure: BaseException) -> None:
    from brushwork.inference import video

    target = tmp_path / "out" / "clip.mp4"
    target.parent.mkdir()
    target.write_bytes(b"the previous version")
    real_write = video._VideoWriter.write
    calls = {"n": 0}

    def failing_write(self: object, rgb: np.ndarray, pts: int) -> None:
        calls["n"] += 1
        if calls["n"] == 7:
            raise failure
        real_write(self, rgb, pts)  # type: ignore[arg-type]

    monkeypatch.setattr(video._VideoWriter, "write", failing_write)
    with pytest.raises(type(failure)):
        stylize_video(stylizer, clip, target)
    assert calls["n"] == 7
    assert [p.name for p in target.parent.iterdir()] == ["clip.mp4"] and target.read_bytes() == b"the previous version"


def test_cli_mixes_images_and_videos_and_keeps_names(tmp_path: Path, clip: Path, cli: CLI) -> None:
    from PIL import Image

    model = tiny_release(tmp_path / "model")
    Image.fromarray(moving_frames(1)[0]).save(tmp_path / "still.png")
    webm = make_clip(tmp_path / "take.webm", moving_frames(6), audio=False, encoder="libvpx-vp9", rotation=None)
    out_dir = tmp_path / "out"
    args = ["stylize", str(clip), str(tmp_path / "still.png"), str(webm), "-m", str(model), "-o", str(out_dir)]
    code, out, err = cli([*args, "--temporal", "per-frame", "--crf", "30"])
    assert code == 0, err
    assert sorted(p.name for p in out_dir.iterdir()) == ["clip.mp4", "still.png", "take.webm"]
    assert "3 written" in out and "video frames/s" in out and "aac copied" in out
    assert probe_video(out_dir / "take.webm").codec == "vp9"
    code, out, _ = cli([*args, "--no-progress"])
    assert code == 0 and "0 written, 3 skipped" in out
    code, _, err = cli([*args, "--temporal", "smooth"])
    assert code == 2 and "--temporal" in err
    code, _, err = cli([*args, "--video-codec", "h264", "--overwrite"])  # a .webm cannot hold H.264
    assert code == 2 and "cannot hold h264" in err


def test_cli_defaults_are_the_library_defaults() -> None:
    import inspect

    from brushwork.cli.stylize import stylize

    params = inspect.signature(stylize).parameters
    assert params["smoothing"].default == DEFAULT_SMOOTHING
    assert params["cut_threshold"].default == DEFAULT_CUT_THRESHOLD
