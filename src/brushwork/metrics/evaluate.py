"""Evaluating sets of outputs: matching outputs to inputs, planning which metrics can run, scoring.

Used by ``brushwork evaluate``, ``brushwork compare`` and the training-time evaluation hook.
A metric asked for explicitly (``required``) that cannot run is an error naming what is missing;
one merely wanted is reported as unavailable with the reason.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from brushwork.data.imageio import IMAGE_EXTENSIONS, ImageReadError, list_images, nested_folder
from brushwork.metrics.features import (
    PROTOCOL,
    FeatureCache,
    InceptionExtractor,
    InceptionFeatures,
    ProgressFn,
    load_uint8,
)
from brushwork.metrics.scores import (
    IS_MIN_PER_SPLIT,
    IS_SPLITS,
    KID_SUBSETS,
    LPIPS,
    METRICS,
    MetricInputError,
    MetricUnavailable,
    frechet_distance,
    inception_score,
    kernel_inception_distance,
    match_size,
    ssim,
)

log = logging.getLogger(__name__)

INCEPTION_METRICS = ("is", "fid", "kid")
CONTENT_METRICS = ("ssim", "lpips")
# Below the feature dimension the covariance of the pool3 features is rank-deficient and FID is
# biased far upward (same-distribution sets score ~124 at N=120); compare only at equal N.
FID_RELIABLE_N = 2048

SMALL_N_FID_WARNING = (
    f"FID with fewer than {FID_RELIABLE_N} images per set is strongly biased upward (the 2048-d covariance "
    "is rank-deficient): compare FIDs only at equal N and protocol, and prefer KID for small sets"
)

ProgressFactory = Callable[[str, int], ProgressFn]


def parse_metrics(text: str | None) -> list[str] | None:
    """``"fid,kid"`` -> ``["fid", "kid"]``; None stays None; unknown names are a MetricInputError."""
    if text is None:
        return None
    names = [part.strip().lower() for part in text.split(",") if part.strip()]
    unknown = [n for n in names if n not in METRICS]
    if unknown or not names:
        raise MetricInputError(f"unknown metric {unknown[0] if unknown else text!r}; expected a comma-separated list of {', '.join(METRICS)}")
    return list(dict.fromkeys(names))


def images_in(folder: Path, what: str, *, recursive: bool = False, exclude: Collection[Path] = ()) -> list[Path]:
    """The image files of ``folder`` (sorted), or a MetricInputError saying what is wrong.

    ``recursive`` reads subfolders too (as ``brushwork stylize`` writes them); folders of
    ``exclude`` that lie inside ``folder`` (outputs written into an input folder) are left out.
    """
    if not folder.exists():
        raise MetricInputError(f"{what} folder {folder} does not exist")
    if not folder.is_dir():
        raise MetricInputError(f"{what} {folder} is not a folder")
    nested = [e for e in exclude if nested_folder(e, folder) is not None]
    for inner in nested:
        log.info("%s: leaving out %s, which lies inside %s", what, inner, folder)
    files = list_images(folder, recursive=recursive, exclude=nested)
    if not files:
        raise MetricInputError(f"{what} folder {folder} holds no images (looked for {', '.join(IMAGE_EXTENSIONS)})")
    return files


def relative_name(path: Path, root: Path, *, strip_suffixes: Sequence[str] = ()) -> str:
    """``root/sub/photo_fake.png`` -> ``sub/photo`` (with ``_fake`` stripped): the key that pairs files."""
    rel = path.relative_to(root)
    stem = rel.stem
    for suffix in strip_suffixes:
        if suffix and stem.endswith(suffix) and len(stem) > len(suffix):
            stem = stem[: -len(suffix)]
            break
    return (rel.parent / stem).as_posix()


def by_name(files: Sequence[Path], root: Path, *, strip_suffixes: Sequence[str] = ()) -> dict[str, Path]:
    """Files keyed by :func:`relative_name` below ``root``; clashing names are an error."""
    out: dict[str, Path] = {}
    for path in files:
        name = relative_name(path, root, strip_suffixes=strip_suffixes)
        if name in out:
            raise MetricInputError(
                f"{out[name]} and {path} both have the name {name!r}; outputs are matched to inputs by relative path "
                "without extension, so these must be unique within a folder"
            )
        out[name] = path
    return out


@dataclass
class Matching:
    """Inputs paired with outputs by name, and the names on either side without a partner."""

    pairs: list[tuple[str, Path, Path]]  # (name, input, output), in input order
    missing: list[str]  # inputs with no output
    extra: list[str]  # outputs with no input


def match_by_name(
    inputs: Sequence[Path], outputs: Sequence[Path], *, input_root: Path, output_root: Path, strip_suffixes: Sequence[str] = ()
) -> Matching:
    """Pair ``input_root/sub/x.jpg`` with ``output_root/sub/x.png``: the relative path without extension,
    as ``brushwork stylize`` mirrors it."""
    ins = by_name(inputs, input_root)
    outs = by_name(outputs, output_root, strip_suffixes=strip_suffixes)
    pairs = [(name, path, outs[name]) for name, path in ins.items() if name in outs]
    missing = [name for name in ins if name not in outs]
    extra = [name for name in outs if name not in ins]
    return Matching(pairs, missing, extra)


@dataclass
class MetricValue:
    """One metric of one set: a value (and std), or the reason it is unavailable."""

    value: float | None = None
    std: float | None = None
    n: int | None = None
    unavailable: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        if self.unavailable is not None:
            return {"unavailable": self.unavailable}
        out: dict[str, Any] = {"value": self.value}
        if self.std is not None:
            out["std"] = self.std
        if self.n is not None:
            out["n"] = self.n
        out.update(self.details)
        return out


@dataclass
class SetResult:
    """The metrics of one set of outputs (a method, or ``--fake``)."""

    name: str
    n_outputs: int
    metrics: dict[str, MetricValue]
    per_image: dict[str, dict[str, float]] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)  # one line per skipped output or input of this set

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "n_outputs": self.n_outputs,
            "metrics": {k: v.to_dict() for k, v in self.metrics.items()},
            "missing": self.missing,
            "extra": self.extra,
            "unreadable": self.unreadable,
            "warnings": self.warnings,
            "per_image": self.per_image,
        }


def _runs(reasons: dict[str, str | None], metric: str) -> bool:
    """Whether ``metric`` was wanted and nothing stops it (see :meth:`Evaluator.plan`)."""
    return metric in reasons and reasons[metric] is None


class Evaluator:
    """Scores sets of output images against a reference set and against their inputs.

    ``wanted`` metrics are computed when possible; ``required`` ones must be computable or the
    call fails with a MetricInputError (or InceptionWeightsError / MetricUnavailable).
    A file that cannot be read is left out of every score and recorded in :attr:`unreadable`
    (path -> one-line reason), so that one bad image does not stop an evaluation.
    """

    def __init__(
        self,
        *,
        wanted: Collection[str] = tuple(METRICS),
        required: Collection[str] = (),
        inception_weights: str | Path | None = None,
        device: str | torch.device = "cpu",
        batch_size: int = 32,
        cache: FeatureCache | None = None,
        lpips_net: str = "alex",
        download: bool | None = None,
        progress: ProgressFactory | None = None,
    ) -> None:
        self.wanted = [m for m in METRICS if m in set(wanted) | set(required)]
        self.required = set(required)
        self.inception_weights = inception_weights
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.cache = cache
        self.lpips_net = lpips_net
        self.download = download
        self.progress = progress
        self._extractor: InceptionExtractor | None = None
        self._lpips: LPIPS | None = None
        self._lpips_reason: str | None = None
        self._lpips_checked = False
        self._real: dict[tuple[Path, ...], InceptionFeatures] = {}
        self.unreadable: dict[Path, str] = {}

    # -- resources, created on first use ------------------------------------------------------

    def load_extractor(self) -> InceptionExtractor:
        """Find the weights and build the network now (errors surface here, before any slow work)."""
        return self.extractor

    @property
    def extractor(self) -> InceptionExtractor:
        if self._extractor is None:
            self._extractor = InceptionExtractor(
                self.inception_weights, device=self.device, batch_size=self.batch_size, download=self.download
            )
        return self._extractor

    @property
    def loaded_extractor(self) -> InceptionExtractor | None:
        return self._extractor

    def lpips(self) -> tuple[LPIPS | None, str | None]:
        if not self._lpips_checked:
            self._lpips_checked = True
            try:
                self._lpips = LPIPS(self.lpips_net, device=self.device)
            except MetricUnavailable as exc:
                if "lpips" in self.required:
                    raise
                self._lpips_reason = str(exc)
                log.debug("LPIPS is unavailable: %s", exc)
        return self._lpips, self._lpips_reason

    def _progress(self, what: str, total: int) -> ProgressFn | None:
        return self.progress(what, total) if self.progress is not None else None

    def skip_unreadable(self, path: Path, reason: str) -> None:
        """Leave ``path`` out of the scores and report it (``reason`` names the file)."""
        if path not in self.unreadable:
            log.error("skipping %s", reason)
            self.unreadable[path] = reason

    def _read(self, path: Path) -> Tensor | None:
        if path in self.unreadable:
            return None
        try:
            return load_uint8(path)
        except ImageReadError as exc:
            self.skip_unreadable(path, str(exc))
            return None

    def features(self, paths: Sequence[Path], what: str, *, cache: bool = False) -> InceptionFeatures:
        """Features of the readable files of ``paths``; unreadable ones are skipped and recorded."""
        readable = [p for p in paths if p not in self.unreadable]
        if readable:
            try:
                return self.extractor.extract_files(
                    readable, cache=self.cache if cache else None,
                    progress=self._progress(f"Inception features: {what}", len(readable)),
                    on_unreadable=lambda path, exc: self.skip_unreadable(path, str(exc)),
                )
            except MetricInputError:
                if any(p not in self.unreadable for p in readable):
                    raise
        first = next((self.unreadable[p] for p in paths if p in self.unreadable), "")
        raise MetricInputError(f"{what}: none of its {len(paths)} images can be read (first: {first})")

    def real_features(self, paths: Sequence[Path]) -> InceptionFeatures:
        """Features of the reference set: kept in memory and, with a cache, on disk."""
        key = tuple(paths)
        if key not in self._real:
            self._real[key] = self.features(paths, "reference set", cache=True)
        return self._real[key]

    # -- planning -----------------------------------------------------------------------------

    def plan(self, *, n_outputs: int, n_real: int | None, n_pairs: int | None, where: str = "") -> dict[str, str | None]:
        """For each wanted metric, None if it can run, else the reason it cannot (raises if required)."""
        reasons: dict[str, str | None] = {}
        label = f" ({where})" if where else ""
        for metric in self.wanted:
            reason: str | None = None
            if metric == "is" and n_outputs < IS_MIN_PER_SPLIT * IS_SPLITS:
                reason = (
                    f"the Inception Score needs at least {IS_MIN_PER_SPLIT * IS_SPLITS} images "
                    f"({IS_MIN_PER_SPLIT} per split of {IS_SPLITS}), got {n_outputs}{label}"
                )
            elif metric in ("fid", "kid"):
                if n_real is None:
                    reason = f"{metric.upper()} needs a reference set of real images (--real)"
                elif min(n_outputs, n_real) < 2:
                    reason = f"{metric.upper()} needs at least 2 images per set, got {n_outputs} outputs{label} and {n_real} real"
            elif metric in CONTENT_METRICS:
                if n_pairs is None:
                    reason = f"{metric.upper()} compares outputs with their inputs; give the inputs (--source)"
                elif n_pairs == 0:
                    reason = f"{metric.upper()}: no output matches an input by name{label}"
            if reason is not None and metric in self.required:
                hint = ",".join(m for m in self.wanted if m != metric)
                raise MetricInputError(reason + (f"; leave it out with --metrics {hint}" if hint else ""))
            reasons[metric] = reason
        return reasons

    # -- scoring ------------------------------------------------------------------------------

    def evaluate(
        self,
        name: str,
        outputs: Sequence[Path],
        *,
        real: Sequence[Path] | None = None,
        matching: Matching | None = None,
    ) -> SetResult:
        """Score ``outputs`` (against ``real`` and, through ``matching``, against their inputs)."""
        if not outputs:
            raise MetricInputError(f"{name}: no output images to evaluate")
        n_pairs = len(matching.pairs) if matching is not None else None
        reasons = self.plan(n_outputs=len(outputs), n_real=len(real) if real is not None else None, n_pairs=n_pairs, where=name)
        result = SetResult(name, len(outputs), {})
        if matching is not None:
            result.missing, result.extra = list(matching.missing), list(matching.extra)
        if any(_runs(reasons, m) for m in INCEPTION_METRICS):
            fake = self.features(outputs, name)
            real_feats = self.real_features(real) if real is not None and any(_runs(reasons, m) for m in ("fid", "kid")) else None
            if len(fake) < len(outputs) or (real_feats is not None and real is not None and len(real_feats) < len(real)):
                # unreadable files were left out: check the metrics again against what was read
                n_real = len(real_feats) if real_feats is not None else (len(real) if real is not None else None)
                reasons = self.plan(n_outputs=len(fake), n_real=n_real, n_pairs=n_pairs, where=f"{name}, unreadable files left out")
            self._score_distribution(result, reasons, fake, real_feats)
        if matching is not None and any(_runs(reasons, m) for m in CONTENT_METRICS):
            self._score_content(result, reasons, matching)
        for metric in self.wanted:
            if reasons[metric] is not None:
                result.metrics[metric] = MetricValue(unavailable=reasons[metric])
        result.metrics = {m: result.metrics[m] for m in self.wanted if m in result.metrics}
        own = list(dict.fromkeys([*outputs, *(src for _, src, _ in (matching.pairs if matching else []))]))
        result.unreadable = [self.unreadable[p] for p in own if p in self.unreadable]
        result.n_outputs = sum(p not in self.unreadable for p in outputs)
        return result

    def _score_distribution(
        self, result: SetResult, reasons: dict[str, str | None], fake: InceptionFeatures, real: InceptionFeatures | None
    ) -> None:
        if _runs(reasons, "is"):
            score = inception_score(fake.logits)
            result.metrics["is"] = MetricValue(score.mean, score.std, len(fake), details={"splits": IS_SPLITS})
        if real is None:
            return
        n = min(len(fake), len(real))
        if _runs(reasons, "fid"):
            result.metrics["fid"] = MetricValue(frechet_distance(fake.pool, real.pool), None, len(fake), details={"n_real": len(real)})
            if n < FID_RELIABLE_N:
                result.warnings.append(SMALL_N_FID_WARNING)
        if _runs(reasons, "kid"):
            kid = kernel_inception_distance(fake.pool, real.pool)
            result.metrics["kid"] = MetricValue(
                kid.mean, kid.std, len(fake), details={"n_real": len(real), "subset_size": kid.subset_size, "subsets": KID_SUBSETS}
            )

    def _score_content(self, result: SetResult, reasons: dict[str, str | None], matching: Matching) -> None:
        want_ssim = _runs(reasons, "ssim")
        lpips = None
        if _runs(reasons, "lpips"):
            lpips, why = self.lpips()
            if lpips is None:
                reasons["lpips"] = why
        if not want_ssim and lpips is None:
            return
        tick = self._progress(f"content preservation: {result.name}", len(matching.pairs))
        for name, src_path, out_path in matching.pairs:
            src, out = self._read(src_path), self._read(out_path)
            if src is None or out is None:  # recorded in self.unreadable
                if tick is not None:
                    tick(1)
                continue
            out = match_size(out, (int(src.shape[1]), int(src.shape[2])))  # once, for both scores
            scores: dict[str, float] = {}
            if want_ssim:
                scores["ssim"] = ssim(src, out)
            if lpips is not None:
                scores["lpips"] = lpips(src, out)
            result.per_image[name] = scores
            if tick is not None:
                tick(1)
        for metric, runs in (("ssim", want_ssim), ("lpips", lpips is not None)):
            values = [s[metric] for s in result.per_image.values() if metric in s]
            if values:
                t = torch.tensor(values, dtype=torch.float64)
                result.metrics[metric] = MetricValue(float(t.mean()), float(t.std(correction=0)), len(values))
            elif runs:
                reason = f"{metric.upper()}: no input/output pair of {result.name} could be read"
                if metric in self.required:
                    raise MetricInputError(reason)
                reasons[metric] = reason


def protocol_dict(extractor: InceptionExtractor | None) -> dict[str, Any]:
    """What the numbers mean: recorded in every JSON result."""
    out: dict[str, Any] = dict(PROTOCOL)
    out.update({
        "inception_score": f"{IS_SPLITS} splits of the shuffled images (seed 2020), mean and std",
        "kid": f"unbiased MMD^2, kernel (x.y/2048 + 1)^3, {KID_SUBSETS} subsets of size min(N, 1000), seed 2020",
        "ssim": "Gaussian window 11, sigma 1.5, RGB in [0, 1]; outputs resized to their input's size",
        "lpips": "torchmetrics LPIPS, AlexNet backbone, inputs in [0, 1]",
    })  # fmt: skip
    if extractor is not None:
        out["weights_file"] = str(extractor.weights_path.resolve())
        out["weights_sha256"] = extractor.weights_sha256
    return out


def summary_notes(results: Sequence[SetResult]) -> list[str]:
    """Warnings and reasons for unavailable metrics, each once, naming the sets it concerns."""
    grouped: dict[str, list[str]] = {}
    for r in results:
        for w in r.warnings:
            grouped.setdefault(w, []).append(r.name)
        for key, mv in r.metrics.items():
            if mv.unavailable:
                grouped.setdefault(f"{METRICS[key].label} n/a: {mv.unavailable}", []).append(r.name)
    multi = len(results) > 1
    return [f"{text} [{', '.join(names)}]" if multi else text for text, names in grouped.items()]
