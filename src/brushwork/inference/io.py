"""Files in, files out: the batch side of the inference pipeline (what ``brushwork stylize`` runs).

:func:`collect_inputs` expands files, folders (recursively) and globs into items that remember
their path relative to what the user named, so that outputs mirror the input tree;
:func:`stylize_files` reads, stylises (same-size images batched) and writes each one, and goes on
past bad files, returning a :class:`BatchReport` that lists what failed and why.
"""

from __future__ import annotations

import glob
import logging
import os
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from brushwork.data.imageio import (
    FORMAT_BY_SUFFIX,
    ImageReadError,
    ImageWriteError,
    LoadedImage,
    list_images,
    nested_folder,
    read_image,
    save_image,
)
from brushwork.inference.stylizer import MIN_SIDE, ImageTooSmallError, Stylizer

log = logging.getLogger(__name__)

#: Input formats written back in the same format; anything else becomes PNG.
SAME_FORMAT_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".tga")
#: Output formats that keep an alpha channel.
ALPHA_SUFFIXES = (".png", ".webp", ".tif", ".tiff", ".tga")


#: Decoded images waiting for a batch partner are flushed beyond this many pixels (~150 MB of RGB).
MAX_PENDING_PIXELS = 50_000_000


class OutputFolderError(OSError):
    """The output folder cannot be created or written; the message names it."""


@dataclass(frozen=True)
class InputItem:
    """One input file and its path relative to the folder or glob it came from."""

    path: Path
    relative: Path


@dataclass
class BatchReport:
    written: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)  # output existed and --overwrite was not given
    failed: list[tuple[Path, str]] = field(default_factory=list)  # (input, one-line reason)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0
    pixels: int = 0

    @property
    def ok(self) -> bool:
        return not self.failed


def _glob_base(pattern: str) -> Path:
    parts = Path(pattern).parts
    base: list[str] = []
    for part in parts:
        if glob.has_magic(part):
            break
        base.append(part)
    return Path(*base) if base else Path(".")


def collect_inputs(inputs: Iterable[str | Path], *, out_dir: Path | None = None) -> tuple[list[InputItem], list[tuple[Path, str]]]:
    """Expand files, folders (recursive) and globs; also return the inputs that matched nothing.

    An ``out_dir`` inside an input folder or below a glob's base is left out of that input (and
    logged), so that a second run never stylises the first run's outputs.
    """
    items: list[InputItem] = []
    missing: list[tuple[Path, str]] = []
    for raw in inputs:
        text = str(raw)
        path = Path(text).expanduser()
        if path.is_dir():
            exclude = [out_dir] if out_dir is not None and nested_folder(out_dir, path) is not None else []
            if exclude:
                log.info("leaving out %s: it is the output folder, inside the input folder %s", out_dir, path)
            found = list_images(path, recursive=True, exclude=exclude)
            if not found:
                missing.append((path, "folder holds no image files"))
            items += [InputItem(p, p.relative_to(path)) for p in found]
        elif path.exists():
            items.append(InputItem(path, Path(path.name)))
        elif glob.has_magic(text):
            base = _glob_base(text)
            matches = sorted(Path(m) for m in glob.glob(os.path.expanduser(text), recursive=True))
            files = [m for m in matches if m.is_file()]
            if out_dir is not None:
                kept = [m for m in files if nested_folder(m, out_dir) is None]
                if len(kept) < len(files):
                    log.info("leaving out %d file(s) matching %s inside the output folder %s", len(files) - len(kept), text, out_dir)
                    files = kept
            if not files:
                missing.append((path, "no files match this pattern"))
            for m in files:
                try:
                    rel = m.relative_to(base)
                except ValueError:
                    rel = Path(m.name)
                items.append(InputItem(m, rel))
        else:
            missing.append((path, "file does not exist"))
    return items, missing


def output_suffix(source: Path, fmt: str | None) -> str:
    """``fmt`` (png, jpg, ...) when given, else the input's own format where it can be written well."""
    if fmt:
        suffix = "." + fmt.lower().lstrip(".")
        if suffix not in FORMAT_BY_SUFFIX or suffix == ".gif":
            valid = ", ".join(sorted(s.lstrip(".") for s in SAME_FORMAT_SUFFIXES))
            raise ValueError(f"--format {fmt!r} is not supported; expected one of {valid}")
        return suffix
    suffix = source.suffix.lower()
    return suffix if suffix in SAME_FORMAT_SUFFIXES else ".png"


def check_output_folder(out_dir: Path) -> None:
    """Create ``out_dir`` and prove it writable now, rather than failing on every file later."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=".brushwork-write-test-", dir=out_dir)
        os.close(fd)
        os.unlink(name)
    except OSError as exc:
        raise OutputFolderError(f"output folder {out_dir} cannot be written ({exc.strerror or exc})") from None


def resize_short_side(img: Image.Image, size: int) -> Image.Image:
    w, h = img.size
    short = min(w, h)
    if short == size:
        return img
    scale = size / short
    new = (max(1, round(w * scale)), max(1, round(h * scale)))
    return img.resize(new, Image.Resampling.LANCZOS if scale < 1 else Image.Resampling.BICUBIC)


def side_by_side(left: Image.Image, right: Image.Image) -> Image.Image:
    canvas = Image.new("RGB", (left.width + right.width, max(left.height, right.height)))
    canvas.paste(left.convert("RGB"), (0, 0))
    canvas.paste(right.convert("RGB"), (left.width, 0))
    return canvas


@dataclass
class _Pending:
    item: InputItem
    target: Path
    image: LoadedImage


Progress = Callable[[InputItem, str], None]  # (item, status: written|skipped|failed)


def stylize_files(
    stylizer: Stylizer,
    items: list[InputItem],
    out_dir: Path,
    *,
    fmt: str | None = None,
    size: int | None = None,
    pair: bool = False,
    overwrite: bool = False,
    progress: Progress | None = None,
) -> BatchReport:
    """Stylise ``items`` into ``out_dir`` (relative paths kept); bad files are reported, not fatal."""
    report = BatchReport()
    start = time.perf_counter()
    check_output_folder(out_dir)
    suffix_for = {item.path: output_suffix(item.path, fmt) for item in items}
    seen: dict[Path, Path] = {}
    todo: list[tuple[InputItem, Path]] = []
    for item in items:
        target = out_dir / item.relative.with_suffix(suffix_for[item.path])
        if target in seen:
            _fail(report, progress, item, f"{item.path}: output {target} would also be written from {seen[target]}; skipped")
            continue
        seen[target] = item.path
        if target.exists() and not overwrite:
            report.skipped.append(target)
            if progress:
                progress(item, "skipped")
            continue
        todo.append((item, target))

    buckets: dict[tuple[int, int], list[_Pending]] = {}
    pending_count = pending_pixels = 0
    max_pending = max(2 * stylizer.batch_size, 4)
    for item, target in todo:
        loaded = _read(report, progress, item)
        if loaded is None:
            continue
        if size is not None:
            loaded.rgb = resize_short_side(loaded.rgb, size)
            if loaded.alpha is not None:
                loaded.alpha = loaded.alpha.resize(loaded.rgb.size, Image.Resampling.BICUBIC)
        if min(loaded.rgb.size) < MIN_SIDE:
            w, h = loaded.rgb.size
            _fail(report, progress, item, f"{item.path}: image is {w}x{h} pixels; brushwork needs at least {MIN_SIDE}x{MIN_SIDE}")
            continue
        bucket = buckets.setdefault(loaded.rgb.size, [])
        bucket.append(_Pending(item, target, loaded))
        pending_count += 1
        pending_pixels += loaded.rgb.width * loaded.rgb.height
        if len(bucket) >= stylizer.batch_size or pending_count >= max_pending or pending_pixels > MAX_PENDING_PIXELS:
            key = loaded.rgb.size if len(bucket) >= stylizer.batch_size else max(buckets, key=lambda k: len(buckets[k]))
            pending_count -= len(buckets[key])
            pending_pixels -= len(buckets[key]) * key[0] * key[1]
            _flush(stylizer, buckets.pop(key), report, progress, pair=pair)
    for key in list(buckets):
        _flush(stylizer, buckets.pop(key), report, progress, pair=pair)
    report.seconds = time.perf_counter() - start
    return report


def _fail(report: BatchReport, progress: Progress | None, item: InputItem, message: str) -> None:
    log.error("%s", message)
    report.failed.append((item.path, message))
    if progress:
        progress(item, "failed")


def _read(report: BatchReport, progress: Progress | None, item: InputItem) -> LoadedImage | None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            loaded = read_image(item.path)
        except ImageReadError as exc:
            _fail(report, progress, item, str(exc))
            return None
    for w in caught:
        message = str(w.message)
        log.warning("%s", message)
        report.warnings.append(message)
    return loaded


def _flush(stylizer: Stylizer, batch: list[_Pending], report: BatchReport, progress: Progress | None, *, pair: bool) -> None:
    try:
        outputs = stylizer.stylize_rgb([p.image.rgb for p in batch])
    except (ImageTooSmallError, ValueError, RuntimeError) as exc:  # one bad batch must not stop the run
        for p in batch:
            _fail(report, progress, p.item, f"{p.item.path}: stylising failed ({str(exc).splitlines()[0]})")
        return
    for p, out in zip(batch, outputs, strict=True):
        loaded = p.image
        alpha = loaded.alpha
        if pair:
            out, alpha = side_by_side(loaded.rgb, out), None
        elif alpha is not None and p.target.suffix.lower() not in ALPHA_SUFFIXES:
            message = f"{p.item.path}: alpha channel dropped, {p.target.suffix} cannot hold it (use --format png)"
            log.warning("%s", message)
            report.warnings.append(message)
            alpha = None
        try:
            save_image(out, p.target, alpha=alpha, icc_profile=loaded.icc_profile)
        except ImageWriteError as exc:
            _fail(report, progress, p.item, str(exc))
            continue
        report.written.append(p.target)
        report.pixels += out.width * out.height
        if progress:
            progress(p.item, "written")
