"""Side-by-side reports: an HTML page (metrics table + a thumbnail row per input) and a PNG grid.

The HTML embeds every thumbnail as a base64 JPEG, so the page alone shows every image wherever it
is opened; each thumbnail links to the full-size file, copied into ``<report>_files/`` beside it
(keep that folder with the page for the full-size views).
"""

from __future__ import annotations

import base64
import html
import io
import logging
import math
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont, ImageOps

from brushwork.data.imageio import ImageReadError, read_image
from brushwork.metrics.evaluate import SetResult, summary_notes
from brushwork.metrics.scores import METRICS
from brushwork.utils.files import atomic_path, atomic_write_text

log = logging.getLogger(__name__)


@dataclass
class MethodColumn:
    """One method in a report: its scores and its output file per input name."""

    name: str
    result: SetResult
    outputs: dict[str, Path]
    source: str = ""  # where the outputs came from (folder or model), shown in the table


def best_values(results: Sequence[SetResult]) -> dict[str, float]:
    """The best value per metric over results (min or max by the metric's direction), where >= 2 have one."""
    best: dict[str, float] = {}
    for key, info in METRICS.items():
        values = [r.metrics[key].value for r in results if key in r.metrics]
        values = [v for v in values if v is not None and math.isfinite(v)]
        if len(values) >= 2:
            best[key] = max(values) if info.higher_is_better else min(values)
    return best


def format_value(key: str, value: float | None, std: float | None = None) -> str:
    if value is None:
        return "n/a"
    digits = {"is": 3, "fid": 2, "kid": 4, "ssim": 3, "lpips": 3}.get(key, 4)
    text = f"{value:.{digits}f}"
    if std is not None and key in ("is", "kid"):
        text += f" ± {std:.{digits}f}"
    return text


def thumbnail_data_uri(path: Path, size: int) -> str | None:
    try:
        img = read_image(path).rgb
    except ImageReadError as exc:
        log.warning("cannot show %s in the report: %s", path, exc)
        return None
    img.thumbnail((size, size), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def safe_name(name: str) -> str:
    """``name`` usable as a folder name."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "method"


def _copy(src: Path, dst: Path) -> None:
    if dst.exists() and dst.resolve() == src.resolve():
        return  # already in place (outputs of a model run are written there)
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)


_CSS = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #222; }
h1 { font-size: 20px; } h2 { font-size: 16px; margin-top: 28px; }
table { border-collapse: collapse; }
table.metrics td, table.metrics th { border: 1px solid #ccc; padding: 4px 10px; text-align: right; }
table.metrics th:first-child, table.metrics td:first-child { text-align: left; }
td.best { font-weight: bold; background: #e3f4e3; }
td.best::after { content: " \\2605"; color: #2a7d2a; }
td.na { color: #999; }
.notes { color: #555; font-size: 12px; }
table.gallery td { vertical-align: top; padding: 4px; text-align: center; font-size: 12px; }
table.gallery th { font-size: 13px; padding: 4px; }
table.gallery img { display: block; border: 1px solid #ddd; }
.missing { display: flex; align-items: center; justify-content: center; background: #f0f0f0; color: #999; border: 1px dashed #bbb; }
.name { text-align: left !important; font-family: monospace; }
"""


def write_html_report(
    out: Path,
    *,
    inputs: dict[str, Path],
    methods: Sequence[MethodColumn],
    reference: str | None = None,
    protocol: dict[str, Any] | None = None,
    title: str = "brushwork comparison",
    thumb_size: int = 192,
) -> Path:
    """Write the HTML report to ``out`` and the full-size images to ``<out stem>_files/``."""
    assets = out.parent / f"{out.stem}_files"
    best = best_values([m.result for m in methods])
    shown = [k for k in METRICS if any(k in m.result.metrics for m in methods)]
    esc = html.escape
    parts: list[str] = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>{esc(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{esc(title)}</h1>",
        f"<p class='notes'>{len(inputs)} inputs, {len(methods)} methods"
        + (f"; reference set for FID/KID: {esc(reference)}" if reference else "; no reference set (FID/KID need --real)")
        + f"; written {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}.</p>",
    ]

    # metrics table
    arrows = {k: ("&uarr;" if METRICS[k].higher_is_better else "&darr;") for k in shown}
    parts.append("<h2>Metrics</h2><table class='metrics'><tr><th>method</th>")
    parts += [f"<th>{METRICS[k].label} {arrows[k]}</th>" for k in shown]
    parts.append("<th>matched</th><th>missing</th><th>extra</th></tr>")
    for m in methods:
        parts.append(f"<tr><td title='{esc(m.source)}'>{esc(m.name)}</td>")
        for k in shown:
            mv = m.result.metrics.get(k)
            if mv is None or mv.value is None:
                reason = mv.unavailable if mv is not None and mv.unavailable else "not computed"
                parts.append(f"<td class='na' title='{esc(reason)}'>n/a</td>")
                continue
            cls = " class='best'" if k in best and mv.value == best[k] else ""
            parts.append(f"<td{cls}>{esc(format_value(k, mv.value, mv.std))}</td>")
        matched = len(m.outputs)
        parts.append(f"<td>{matched}/{len(inputs)}</td><td>{len(m.result.missing)}</td><td>{len(m.result.extra)}</td></tr>")
    parts.append("</table>")
    parts.append(
        "<p class='notes'>&uarr; higher is better, &darr; lower is better; &#9733; marks the best value per column. "
        "Hover over n/a for the reason.</p>"
    )
    notes = []
    for m in methods:
        if m.result.missing:
            notes.append(f"<li><b>{esc(m.name)}</b>: no output for {len(m.result.missing)} input(s): {esc(', '.join(m.result.missing))}</li>")
        if m.result.extra:
            notes.append(f"<li><b>{esc(m.name)}</b>: {len(m.result.extra)} output(s) match no input: {esc(', '.join(m.result.extra))}</li>")
    notes += [f"<li>{esc(text)}</li>" for text in summary_notes([m.result for m in methods])]
    if notes:
        parts.append("<h2>Notes</h2><ul class='notes'>" + "".join(notes) + "</ul>")
    if protocol:
        parts.append("<details class='notes'><summary>protocol</summary><ul>")
        parts += [f"<li>{esc(str(k))}: {esc(str(v))}</li>" for k, v in protocol.items()]
        parts.append("</ul></details>")

    # gallery
    parts.append("<h2>Images</h2><p class='notes'>Click an image to open it at full size.</p>")
    parts.append("<table class='gallery'><tr><th>name</th><th>input</th>")
    parts += [f"<th>{esc(m.name)}</th>" for m in methods]
    parts.append("</tr>")
    dirs = {m.name: f"{i + 1:02d}_{safe_name(m.name)}" for i, m in enumerate(methods)}
    for name, src in inputs.items():
        parts.append(f"<tr><td class='name'>{esc(name)}</td>")
        # full-size copies keep the relative paths, so that same-named files of subfolders never clash
        parts.append(_cell(src, assets / "inputs" / f"{name}{src.suffix}", out.parent, thumb_size, caption=""))
        for m in methods:
            path = m.outputs.get(name)
            if path is None:
                parts.append(f"<td><div class='missing' style='width:{thumb_size}px;height:{thumb_size}px'>missing</div></td>")
                continue
            scores = m.result.per_image.get(name, {})
            caption = " ".join(f"{METRICS[k].label} {scores[k]:.3f}" for k in ("ssim", "lpips") if k in scores)
            parts.append(_cell(path, assets / dirs[m.name] / f"{name}{path.suffix}", out.parent, thumb_size, caption=caption))
        parts.append("</tr>")
    parts.append("</table></body></html>")
    atomic_write_text(out, "\n".join(parts))
    return out


def _cell(src: Path, full: Path, base: Path, thumb_size: int, caption: str) -> str:
    uri = thumbnail_data_uri(src, thumb_size)
    if uri is None:
        return f"<td><div class='missing' style='width:{thumb_size}px;height:{thumb_size}px'>unreadable</div></td>"
    _copy(src, full)
    href = html.escape(full.relative_to(base).as_posix(), quote=True)
    cap = f"<div>{html.escape(caption)}</div>" if caption else ""
    return f"<td><a href='{href}' target='_blank'><img src='{uri}' alt='{html.escape(src.name)}'></a>{cap}</td>"


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has one bitmap size only
        return ImageFont.load_default()


def write_grid(
    out: Path, *, headers: Sequence[str], rows: Sequence[Sequence[Path | None]], cell: int = 256, pad: int = 4
) -> Path:
    """A PNG grid for papers: one column per header (input, methods...), one row per image."""
    if not rows:
        raise ValueError("a grid needs at least one row")
    font = _font(max(12, cell // 14))
    label_h = max(20, cell // 8)
    cols = len(headers)
    width = cols * cell + (cols + 1) * pad
    height = label_h + len(rows) * cell + (len(rows) + 1) * pad
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    for c, text in enumerate(headers):
        x = pad + c * (cell + pad)
        box = draw.textbbox((0, 0), text, font=font)
        draw.text((x + (cell - (box[2] - box[0])) / 2, (label_h - (box[3] - box[1])) / 2), text, fill="black", font=font)
    for r, row in enumerate(rows):
        y = label_h + pad + r * (cell + pad)
        for c, path in enumerate(row):
            x = pad + c * (cell + pad)
            img = None
            if path is not None:
                try:
                    img = read_image(path).rgb
                except ImageReadError as exc:
                    log.warning("grid: %s", exc)
            if img is None:
                draw.rectangle((x, y, x + cell - 1, y + cell - 1), fill=(235, 235, 235))
                draw.text((x + 8, y + 8), "missing", fill=(150, 150, 150), font=font)
                continue
            img = ImageOps.contain(img, (cell, cell), Image.Resampling.LANCZOS)  # fit the cell, up or down
            canvas.paste(img, (x + (cell - img.width) // 2, y + (cell - img.height) // 2))
    with atomic_path(out) as tmp:
        canvas.save(tmp, format="PNG")
    return out
