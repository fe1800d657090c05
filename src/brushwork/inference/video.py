"""Videos in, videos out: decode with PyAV, stylise the frames in batches, encode, keep the rest.

    >>> from brushwork.inference import Stylizer
    >>> from brushwork.inference.video import stylize_video
    >>> stylize_video(Stylizer.from_pretrained("style_monet"), "clip.mp4", "out/clip.mp4")

What is kept from the input: the frame timestamps (so the frame rate, constant, variable or
rational like 30000/1001; AVI is constant-rate by design and is retimed by frame index), the
resolution (odd sides lose their last row or column: yuv420p needs even ones), the pixel aspect
ratio, the rotation (the display matrix, applied by players, since frames are stylised as
stored), the colour tags (BT.601/709 matrix, range, primaries, transfer), the container's tags
(title, creation time, location) and every audio stream:
copied packet for packet where the output container can hold its codec, else re-encoded (AAC,
Opus for WebM). Subtitle and data streams are not carried over.

The output is encoded with H.264 (libx264, yuv420p, CRF 18) unless ``codec`` says otherwise
(VP9 is the default for ``.webm``, which cannot hold H.264); the container follows the output's
suffix. It is written to a temporary file beside the target and renamed over it only when
complete, so a failure or Ctrl-C leaves no partial file.

Inputs are checked before anything is written (:func:`probe_video`): an empty file, a file that
is no video, one without a video stream, or one whose codec this FFmpeg cannot decode each raise
a :class:`VideoReadError` naming the file; a file that ends early (fewer frames than its
container announces) raises one after decoding, and its partial output is removed.
"""

from __future__ import annotations

import contextlib
import io
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from brushwork.inference.temporal import DEFAULT_CUT_THRESHOLD, DEFAULT_SMOOTHING, FrameStylizer
from brushwork.utils.files import atomic_path

if TYPE_CHECKING:
    from brushwork.inference.io import BatchReport, InputItem
    from brushwork.inference.pipeline import ImagePipeline

log = logging.getLogger(__name__)

#: Suffixes treated as videos, and the FFmpeg muxer that writes each.
MUXER_BY_SUFFIX = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm", ".avi": "avi"}
VIDEO_SUFFIXES = tuple(MUXER_BY_SUFFIX)

Progress = Callable[[int, "int | None"], None]  # (frames written so far, frames expected or None)


class VideoReadError(ValueError):
    """A video cannot be read (empty, not a video, no video stream, unknown codec, truncated)."""


class VideoWriteError(OSError):
    """A video cannot be written (unsupported codec or container, encoder failure)."""


@dataclass(frozen=True)
class VideoCodec:
    """An output video codec: the FFmpeg encoder, its quality option and the containers that hold it."""

    name: str
    encoder: str
    quality_range: tuple[int, int]  # CRF: lower is better and bigger
    default_quality: int
    options: dict[str, str]
    suffixes: tuple[str, ...]

    def encoder_options(self, quality: int) -> dict[str, str]:
        return {"crf": str(quality), **self.options}


VIDEO_CODECS = {
    "h264": VideoCodec("h264", "libx264", (0, 51), 18, {"preset": "medium"}, (".mp4", ".m4v", ".mov", ".mkv", ".avi")),
    "vp9": VideoCodec("vp9", "libvpx-vp9", (0, 63), 31, {"b": "0", "row-mt": "1", "deadline": "good", "cpu-used": "4"},
                      (".webm", ".mkv", ".mp4")),
    "av1": VideoCodec("av1", "libsvtav1", (1, 63), 35, {"preset": "8"}, (".webm", ".mkv", ".mp4")),
}  # fmt: skip


def is_video_file(path: Path | str) -> bool:
    return Path(path).suffix.lower() in MUXER_BY_SUFFIX


def resolve_codec(codec: str | None, suffix: str, crf: int | None = None) -> tuple[VideoCodec, int]:
    """The codec and quality to write a ``suffix`` file with; ValueError naming the valid choices."""
    suffix = suffix.lower()
    if suffix not in MUXER_BY_SUFFIX:
        raise ValueError(f"unknown video suffix {suffix!r}; expected one of {', '.join(VIDEO_SUFFIXES)}")
    name = codec or ("vp9" if suffix == ".webm" else "h264")
    if name not in VIDEO_CODECS:
        raise ValueError(f"unknown video codec {name!r}; expected one of {', '.join(VIDEO_CODECS)}")
    spec = VIDEO_CODECS[name]
    if suffix not in spec.suffixes:
        raise ValueError(f"a {suffix} file cannot hold {name} video; use {' or '.join(c for c, s in VIDEO_CODECS.items() if suffix in s.suffixes)}")
    low, high = spec.quality_range
    quality = spec.default_quality if crf is None else crf
    if not low <= quality <= high:
        raise ValueError(f"--crf for {name} must be in {low}..{high} (lower is better), got {quality}")
    return spec, quality


# ---------------------------------------------------------------------------------------------
# Reading


@dataclass(frozen=True)
class AudioPlan:
    """One input audio stream and how it reaches the output: ``copy`` or ``encode`` with ``encoder``."""

    index: int
    codec: str
    action: str  # copy | encode
    encoder: str | None = None

    def describe(self) -> str:
        return f"{self.codec} copied" if self.action == "copy" else f"{self.codec} re-encoded to {self.encoder}"


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe_video` learns from a file's header and first frame."""

    path: Path
    format: str
    codec: str
    width: int
    height: int
    rate: Fraction  # average frame rate (nominal, for headers and constant-rate containers)
    time_base: Fraction
    announced_frames: int | None  # the container's frame count (MP4, MOV, AVI); None: not announced
    duration: float | None  # seconds from the first frame to the end of the last, where announced
    rotation: float  # counter-clockwise degrees of the display matrix (0: none)
    display_matrix: tuple[int, ...] | None
    sample_aspect_ratio: Fraction | None
    colour: dict[str, int]  # colorspace, color_range, color_primaries, color_trc of the first frame
    audio_codecs: tuple[str, ...]

    @property
    def fps(self) -> float:
        return float(self.rate)

    @property
    def frames(self) -> int | None:
        """The frame count announced, or estimated from the duration (for progress); None: unknown."""
        if self.announced_frames:
            return self.announced_frames
        return round(self.duration * self.rate) if self.duration else None

    def check_complete(self, decoded: int, span: float | None) -> None:
        """A :class:`VideoReadError` if ``decoded`` frames covering ``span`` seconds fall clearly
        short of what the container announces (a truncated or damaged file)."""
        if self.announced_frames:
            if self.announced_frames - decoded > max(2, self.announced_frames // 100):
                raise VideoReadError(f"{self.path}: truncated or damaged: {decoded} of the {self.announced_frames} "
                                     "frames it announces could be decoded")  # fmt: skip
        elif self.duration and span is not None and span < self.duration - max(2 / self.rate, 0.01 * self.duration):
            raise VideoReadError(f"{self.path}: truncated or damaged: frames for {span:.2f} s of the {self.duration:.2f} s "
                                 "it announces could be decoded")  # fmt: skip


@contextlib.contextmanager
def _open_input(path: Path) -> Iterator[Any]:
    import av

    if not path.is_file():
        raise VideoReadError(f"{path}: file does not exist")
    if path.stat().st_size == 0:
        raise VideoReadError(f"{path}: file is empty (0 bytes)")
    try:
        container = av.open(str(path), "r")
    except av.FFmpegError as exc:
        if _looks_like_video(path):
            raise VideoReadError(f"{path}: damaged or truncated video, it cannot be opened ({_why(exc)})") from None
        raise VideoReadError(f"{path}: not a video file FFmpeg can read ({_why(exc)})") from None
    try:
        yield container
    finally:
        container.close()


def _looks_like_video(path: Path) -> bool:
    """Whether the file starts like an MP4/MOV, Matroska/WebM or AVI file (then a failed open means damage)."""
    with open(path, "rb") as fh:
        head = fh.read(12)
    return head[4:8] in (b"ftyp", b"moov", b"mdat", b"wide", b"free") or head[:4] == b"\x1a\x45\xdf\xa3" or (
        head[:4] == b"RIFF" and head[8:12] == b"AVI ")


def _why(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return str(text).splitlines()[0].rstrip(".")


def _video_stream(container: Any, path: Path) -> Any:
    if not container.streams.video:
        kinds = sorted({s.type for s in container.streams}) or ["none"]
        raise VideoReadError(f"{path}: has no video stream (streams: {', '.join(kinds)})")
    stream = container.streams.video[0]
    if stream.codec_context is None or not stream.codec_context.is_decoder:
        raise VideoReadError(f"{path}: its video codec is unknown to this FFmpeg build, so it cannot be decoded")
    return stream


def _matroska_duration(stream: Any) -> float | None:
    text = stream.metadata.get("DURATION") or stream.metadata.get("duration")
    if not text:
        return None
    try:
        h, m, s = text.split(":")
        return int(h) * 3600 + int(m) * 60 + float(s)
    except ValueError:
        return None


def _stream_seconds(stream: Any) -> float | None:
    """The video stream's announced duration in seconds, from its first frame; None if not announced."""
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    seconds = _matroska_duration(stream)
    if seconds and stream.start_time and stream.time_base:
        seconds -= float(stream.start_time * stream.time_base)  # matroska's tag counts from 0, not from the first frame
    return seconds if seconds and seconds > 0 else None


def probe_video(path: Path | str) -> VideoInfo:
    """Open ``path``, check it is a decodable video and read its properties from the first frame."""
    import av

    path = Path(path)
    with _open_input(path) as container:
        stream = _video_stream(container, path)
        first = None
        try:
            for frame in container.decode(stream):
                first = frame
                break
        except av.FFmpegError as exc:
            raise VideoReadError(f"{path}: the video stream cannot be decoded ({_why(exc)})") from None
        if first is None:
            raise VideoReadError(f"{path}: the video stream holds no frames (truncated or empty)")
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate or Fraction(30)
        matrix = None
        for side in first.side_data:
            if side.type.name == "DISPLAYMATRIX":
                matrix = tuple(int(v) for v in np.frombuffer(bytes(side), dtype="<i4"))
        rotation = float(first.rotation) if matrix is not None else 0.0
        if matrix is None and stream.metadata.get("rotate"):  # the old tag: clockwise degrees
            with contextlib.suppress(ValueError):
                rotation = -float(stream.metadata["rotate"]) % 360
        sar = stream.codec_context.sample_aspect_ratio
        return VideoInfo(
            path=path, format=container.format.name, codec=stream.codec.name, width=first.width, height=first.height,
            rate=Fraction(rate), time_base=Fraction(stream.time_base or Fraction(1, 1) / rate),
            announced_frames=int(stream.frames) or None, duration=_stream_seconds(stream),
            rotation=rotation, display_matrix=matrix, sample_aspect_ratio=Fraction(sar) if sar else None,
            colour={"colorspace": first.colorspace, "color_range": first.color_range,
                    "color_primaries": first.color_primaries, "color_trc": first.color_trc},
            audio_codecs=tuple(s.codec_context.name if s.codec_context is not None else "unknown" for s in container.streams.audio),
        )  # fmt: skip


def _audio_plans(container: Any, muxer: str) -> tuple[list[AudioPlan], list[str]]:
    """How each audio stream reaches a ``muxer`` file: copied if the muxer accepts it, else re-encoded."""
    import av

    plans, warnings = [], []
    encoder = "libopus" if muxer == "webm" else "aac"
    for stream in container.streams.audio:
        name = stream.codec_context.name if stream.codec_context is not None else "unknown"
        try:
            with av.open(io.BytesIO(), "w", format=muxer) as probe:  # does the muxer take this codec as it is?
                probe.add_stream_from_template(stream)
                probe.start_encoding()
            plans.append(AudioPlan(stream.index, name, "copy"))
            continue
        except (av.FFmpegError, ValueError) as exc:
            log.debug("audio stream %d (%s) cannot be copied into %s: %s", stream.index, name, muxer, exc)
        if stream.codec_context is None or not stream.codec_context.is_decoder:
            warnings.append(f"audio stream {stream.index} ({name}) can be neither copied into {muxer} nor decoded: left out")
            continue
        plans.append(AudioPlan(stream.index, name, "encode", encoder))
    return plans, warnings


# ---------------------------------------------------------------------------------------------
# Writing


@dataclass
class VideoReport:
    source: Path
    target: Path
    frames: int = 0
    seconds: float = 0.0
    width: int = 0
    height: int = 0
    fps: float = 0.0
    temporal: str = "stable"
    cuts: list[int] = field(default_factory=list)  # frame indices where stable mode restarted its average
    audio: list[str] = field(default_factory=list)  # what happened to each audio stream
    warnings: list[str] = field(default_factory=list)

    @property
    def frames_per_second(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


#: Container tags that describe the file rather than the content; the output's muxer writes its own.
_MUXER_TAGS = {"encoder", "major_brand", "minor_version", "compatible_brands", "duration"}
_SWS_COLORSPACE = {1: "itu709", 9: "bt2020", 10: "bt2020"}  # AVColorSpace -> swscale matrix; else BT.601


class _VideoWriter:
    """Encodes stylised RGB frames into the output container with the input's timing and tags."""

    def __init__(self, out: Any, info: VideoInfo, spec: VideoCodec, quality: int, width: int, height: int,
                 constant_rate: bool) -> None:
        self.out = out
        self.constant_rate = constant_rate  # AVI: one tick per frame
        self.time_base = Fraction(1) / info.rate if constant_rate else info.time_base
        self.step = max(1, round(1 / (info.rate * self.time_base)))  # ticks per frame at the nominal rate
        stream = out.add_stream(spec.encoder, rate=info.rate)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.time_base = self.time_base
        ctx = stream.codec_context
        ctx.time_base = self.time_base
        stream.options = spec.encoder_options(quality)
        if info.sample_aspect_ratio:
            ctx.sample_aspect_ratio = info.sample_aspect_ratio
        full_range = info.colour.get("color_range") == 2
        ctx.color_range = 2 if full_range else 1
        for key in ("colorspace", "color_primaries", "color_trc"):
            if info.colour.get(key) not in (None, 2):  # 2: unspecified
                setattr(ctx, key, info.colour[key])
        self.sws = {"dst_colorspace": _SWS_COLORSPACE.get(info.colour.get("colorspace") or 2, "itu601"),
                    "dst_color_range": "JPEG" if full_range else "MPEG"}
        if info.display_matrix is not None:
            stream.set_display_matrix(list(info.display_matrix))
        elif info.rotation:
            stream.set_display_rotation(info.rotation)
        self.stream = stream
        self.last_pts: int | None = None
        self.retimed = 0

    def timestamp(self, index: int, pts: int | None, time_base: Fraction | None) -> int:
        """The output pts of frame ``index``: the input's, rescaled, or one step on where it is missing or repeats."""
        if self.constant_rate or pts is None or time_base is None:
            new = index * self.step if self.constant_rate else None
        else:
            new = round(pts * time_base / self.time_base)
        if new is None or (self.last_pts is not None and new <= self.last_pts):
            if not self.constant_rate:
                self.retimed += 1
            new = 0 if self.last_pts is None else self.last_pts + self.step
        self.last_pts = new
        return new

    def write(self, rgb: np.ndarray, pts: int) -> None:
        import av

        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p", **self.sws)
        frame.pts = pts
        frame.time_base = self.time_base
        try:
            self.out.mux(self.stream.encode(frame))
        except av.FFmpegError as exc:
            raise VideoWriteError(f"encoding with {self.stream.codec_context.name} failed ({_why(exc)})") from None

    def flush(self) -> None:
        import av

        try:
            self.out.mux(self.stream.encode(None))
        except av.FFmpegError as exc:
            raise VideoWriteError(f"encoding with {self.stream.codec_context.name} failed ({_why(exc)})") from None


class _AudioCopier:
    """Carries the input's audio streams across: packets remuxed, or decoded and re-encoded."""

    def __init__(self, out: Any, container: Any, plans: list[AudioPlan]) -> None:
        import av

        self.out = out
        self.streams: dict[int, tuple[AudioPlan, Any, Any]] = {}
        for plan in plans:
            source = container.streams[plan.index]
            if plan.action == "copy":
                self.streams[plan.index] = (plan, out.add_stream_from_template(source), None)
                continue
            rate = 48000 if plan.encoder == "libopus" else (source.rate or 48000)
            layout = source.layout.name if source.channels <= 2 or plan.encoder != "libopus" else "stereo"
            target = out.add_stream(plan.encoder, rate=rate, layout=layout)
            resampler = av.AudioResampler(format=target.codec_context.format.name if target.codec_context.format else "fltp",
                                          layout=layout, rate=rate)
            self.streams[plan.index] = (plan, target, resampler)

    def input_streams(self, container: Any) -> list[Any]:
        return [container.streams[i] for i in self.streams]

    def handle(self, packet: Any) -> None:
        import av

        plan, target, resampler = self.streams[packet.stream.index]
        if plan.action == "copy":
            if packet.dts is None or packet.size == 0:  # the demuxer's end-of-stream marker
                return
            packet.stream = target
            self.out.mux(packet)
            return
        try:
            for frame in packet.decode():
                for part in resampler.resample(frame):
                    self.out.mux(target.encode(part))
        except av.FFmpegError as exc:
            raise VideoWriteError(f"audio stream {plan.index} ({plan.codec}) could not be re-encoded ({_why(exc)})") from None

    def flush(self) -> None:
        for plan, target, resampler in self.streams.values():
            if plan.action == "encode":
                for part in resampler.resample(None):
                    self.out.mux(target.encode(part))
                self.out.mux(target.encode(None))


def _frames(container: Any, stream: Any, audio: _AudioCopier, path: Path) -> Iterator[Any]:
    """The decoded video frames in order; audio packets go to ``audio`` as they come by.

    Only reading and decoding errors become a :class:`VideoReadError` here (writing errors are
    the writer's), so that a damaged input is named as such.
    """
    import av

    packets = container.demux(stream, *audio.input_streams(container))
    count = 0
    while True:
        try:
            packet = next(packets)
            decoded = packet.decode() if packet.stream.index == stream.index else None
        except StopIteration:
            return
        except av.FFmpegError as exc:
            raise VideoReadError(f"{path}: damaged or truncated after {count} frames ({_why(exc)})") from None
        if decoded is None:
            audio.handle(packet)
            continue
        count += len(decoded)
        yield from decoded


def _even(n: int) -> int:
    return max(2, n - n % 2)


def _target_size(width: int, height: int, size: int | None) -> tuple[int, int]:
    """The frame size to stylise at: the input's, or its short side scaled to ``size`` (aspect kept)."""
    if size is None:
        return width, height
    scale = size / min(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def stylize_video(
    stylizer: ImagePipeline,
    source: Path | str,
    target: Path | str,
    *,
    temporal: str = "stable",
    smoothing: float = DEFAULT_SMOOTHING,
    cut_threshold: float = DEFAULT_CUT_THRESHOLD,
    codec: str | None = None,
    crf: int | None = None,
    size: int | None = None,
    side_by_side: bool = False,
    progress: Progress | None = None,
) -> VideoReport:
    """Stylise the video ``source`` into ``target`` (container from its suffix); see the module docstring.

    ``stylizer`` is an image pipeline (:class:`~brushwork.inference.Stylizer` or another kind);
    frames go through it in batches of its ``batch_size``. ``temporal``: ``stable`` (norm statistics smoothed over frames with factor
    ``smoothing``, restarted at scene cuts found with ``cut_threshold``) or ``per-frame``;
    ``size``: stylise at this short side; ``side_by_side``: input and output next to each other;
    ``progress(done, total)`` is called after each batch of frames.
    """
    source, target = Path(source), Path(target)
    spec, quality = resolve_codec(codec, target.suffix, crf)
    muxer = MUXER_BY_SUFFIX[target.suffix.lower()]
    start = time.perf_counter()
    info = probe_video(source)
    width, height = _target_size(info.width, info.height, size)
    out_w, out_h = _even(width * (2 if side_by_side else 1)), _even(height)
    report = VideoReport(source, target, width=out_w, height=out_h, fps=info.fps, temporal=temporal)
    if (out_w, out_h) != (width * (2 if side_by_side else 1), height):
        report.warnings.append(f"{source}: frames of {width}x{height} have an odd side; written at {out_w}x{out_h} (yuv420p needs even sides)")
    try:
        _transcode(stylizer, info, target, report, spec, quality, muxer, width=width, height=height,
                   temporal=temporal, smoothing=smoothing, cut_threshold=cut_threshold,
                   side_by_side=side_by_side, progress=progress)
    except VideoWriteError as exc:
        raise VideoWriteError(f"{source}: {exc}") from None
    report.seconds = time.perf_counter() - start
    return report


def _transcode(stylizer: ImagePipeline, info: VideoInfo, target: Path, report: VideoReport, spec: VideoCodec, quality: int,
               muxer: str, *, width: int, height: int, temporal: str, smoothing: float, cut_threshold: float,
               side_by_side: bool, progress: Progress | None) -> None:
    import av

    source, out_w, out_h = info.path, report.width, report.height
    batch_size = max(1, stylizer.batch_size)
    if muxer == "avi" and info.rotation:
        report.warnings.append(f"{source}: an AVI file cannot hold the rotation of {info.rotation:g} degrees; it is left out")
    with _open_input(source) as container:
        stream = _video_stream(container, source)
        stream.thread_type = "AUTO"
        plans, audio_warnings = _audio_plans(container, muxer)
        report.warnings += [f"{source}: {w}" for w in audio_warnings]
        report.audio = [p.describe() for p in plans]
        with atomic_path(target) as tmp, _output(tmp, muxer) as out, FrameStylizer(
                stylizer, temporal=temporal, smoothing=smoothing, cut_threshold=cut_threshold) as frames:
            for key, value in container.metadata.items():  # title, creation time, location...
                if key.lower() not in _MUXER_TAGS:
                    out.metadata[key] = value
            writer = _VideoWriter(out, info, spec, quality, out_w, out_h, constant_rate=muxer == "avi" or info.format == "avi")
            audio = _AudioCopier(out, container, plans)
            pending: list[tuple[np.ndarray, int]] = []

            def run_batch() -> None:
                batch = torch.from_numpy(np.stack([rgb for rgb, _ in pending])).permute(0, 3, 1, 2).contiguous()  # as images are
                styled = frames(batch).permute(0, 2, 3, 1).numpy()
                for (rgb, pts), out_rgb in zip(pending, styled, strict=True):
                    picture = np.concatenate([rgb, out_rgb], axis=1) if side_by_side else out_rgb
                    writer.write(np.ascontiguousarray(picture[:out_h, :out_w]), pts)
                report.frames += len(pending)
                pending.clear()
                if progress:
                    progress(report.frames, info.frames)

            decoded = 0
            first = last = None  # seconds
            for frame in _frames(container, stream, audio, source):
                resize = {} if (frame.width, frame.height) == (width, height) else {"width": width, "height": height}
                rgb = frame.to_ndarray(format="rgb24", **resize)  # (asking for the same size still rescales)
                pending.append((rgb, writer.timestamp(decoded, frame.pts, frame.time_base)))
                decoded += 1
                if frame.pts is not None and frame.time_base is not None:
                    last = float(frame.pts * frame.time_base)
                    first = last if first is None else first
                if len(pending) >= batch_size:
                    run_batch()
            if pending:
                run_batch()
            info.check_complete(decoded, None if first is None or last is None else last - first + 1 / info.fps)
            writer.flush()
            try:
                audio.flush()
            except av.FFmpegError as exc:
                raise VideoWriteError(f"audio could not be re-encoded ({_why(exc)})") from None
            report.cuts = list(frames.cuts)
            report.temporal = frames.temporal
            report.warnings += [f"{source}: {w}" for w in frames.warnings]
        if writer.retimed:
            report.warnings.append(f"{source}: {writer.retimed} frame(s) had missing or repeated timestamps; retimed at {float(info.rate):.3f} fps")


@contextlib.contextmanager
def _output(path: Path, muxer: str) -> Iterator[Any]:
    """An output container on ``path``; on an error its close (trailer) failing must not hide the error."""
    import av

    options = {"movflags": "+faststart"} if muxer in ("mp4", "mov") else {}
    try:
        out = av.open(str(path), "w", format=muxer, options=options)
    except av.FFmpegError as exc:
        raise VideoWriteError(f"the output file cannot be created ({_why(exc)})") from None
    try:
        yield out
    except BaseException:
        with contextlib.suppress(Exception):
            out.close()
        raise
    try:
        out.close()
    except av.FFmpegError as exc:
        raise VideoWriteError(f"cannot finish the video file ({_why(exc)})") from None


# ---------------------------------------------------------------------------------------------
# Many files (what ``brushwork stylize`` runs for the videos among its inputs)

FileProgress = Callable[["InputItem", int, "int | None"], None]  # (item, frames done, frames expected)


def stylize_video_files(
    stylizer: ImagePipeline,
    items: list[InputItem],
    out_dir: Path,
    *,
    overwrite: bool = False,
    progress: FileProgress | None = None,
    **options: Any,
) -> tuple[BatchReport, list[VideoReport]]:
    """Stylise each video of ``items`` into ``out_dir`` under its relative path and name.

    Bad videos are reported in the returned :class:`~brushwork.inference.io.BatchReport` (one
    line each, naming the file) and leave no output; the others are still written. ``options``
    go to :func:`stylize_video`.
    """
    from brushwork.inference.io import BatchReport, check_output_folder
    from brushwork.inference.stylizer import ImageTooLargeForModeError, ImageTooSmallError
    from brushwork.inference.temporal import StableModeError

    report, videos = BatchReport(), []
    start = time.perf_counter()
    check_output_folder(out_dir)
    seen: dict[Path, Path] = {}
    for item in items:
        target = out_dir / item.relative
        if target in seen:
            report.failed.append((item.path, f"{item.path}: output {target} would also be written from {seen[target]}; skipped"))
            continue
        seen[target] = item.path
        if target.exists() and not overwrite:
            report.skipped.append(target)
            continue

        def frames_done(done: int, total: int | None, item: InputItem = item) -> None:
            if progress:
                progress(item, done, total)

        try:
            video = stylize_video(stylizer, item.path, target, progress=frames_done, **options)
        except (VideoReadError, VideoWriteError, StableModeError, ImageTooSmallError, ImageTooLargeForModeError, OSError,
                RuntimeError) as exc:
            message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            if not message.startswith(str(item.path)):
                message = f"{item.path}: {message}"
            log.error("%s", message)
            report.failed.append((item.path, message))
            continue
        videos.append(video)
        report.written.append(target)
        report.warnings += video.warnings
        report.pixels += video.frames * video.width * video.height
    report.seconds = time.perf_counter() - start
    return report, videos
