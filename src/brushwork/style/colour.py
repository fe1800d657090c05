"""Statistical colour transfer: give a photo the colours of a painting, instantly, with no weights.

Three modes, all on (3, H, W) float RGB in [0, 1] (``content`` takes ``style``'s colours):

- ``reinhard`` (Reinhard, Ashikhmin, Gooch and Shirley 2001, "Color Transfer between Images"):
  RGB -> LMS (their eq. 2 matrix) -> log10 -> l-alpha-beta (their eq. 3), where the three axes are
  nearly decorrelated for natural images; each axis takes the style's mean and standard deviation
  (``(l - mean_c) * std_s / std_c + mean_s``), then the inverse path. Their log is undefined at
  black; we take ``log10(LMS + 1/255)`` (and ``10^x - 1/255`` back), which is invertible, equals
  theirs to within one 8-bit step of offset and keeps style == content an exact identity.
- ``histogram``: per RGB channel, exact CDF matching: each value goes to the style's quantile at
  its own mid-rank quantile (equal values stay equal), so the output's sorted values are the
  style's wherever the photo has no ties.
- ``mk`` (Pitie and Kokaram 2007, "The linear Monge-Kantorovitch linear colour mapping for
  example-based colour transfer"): the closed-form affine map between the two Gaussian colour
  distributions that moves pixels least, ``T = S^-1/2 (S^1/2 St S^1/2)^1/2 S^-1/2`` with ``S`` the
  content's RGB covariance, ``St`` the style's; ``out = T (x - mean_c) + mean_s`` has exactly the
  style's mean and covariance (statistics in float64, the map applied in the photo's dtype).

Also the YIQ luminance helpers behind ``preserve_colour`` of the CNN methods (Gatys, Bethge,
Hertzmann and Shechtman 2017, "Preserving Color in Neural Artistic Style Transfer": transfer
luminance only, with the style's luminance first matched to the photo's mean and deviation).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

COLOUR_MODES = ("reinhard", "histogram", "mk")

#: Reinhard et al. 2001, eq. 2: RGB -> LMS
RGB_TO_LMS = torch.tensor([[0.3811, 0.5783, 0.0402], [0.1967, 0.7244, 0.0782], [0.0241, 0.1288, 0.8444]], dtype=torch.float64)
#: eq. 3: log LMS -> l-alpha-beta
LMS_TO_LAB = torch.diag(torch.tensor([1 / math.sqrt(3), 1 / math.sqrt(6), 1 / math.sqrt(2)], dtype=torch.float64)) @ torch.tensor(
    [[1.0, 1.0, 1.0], [1.0, 1.0, -2.0], [1.0, -1.0, 0.0]], dtype=torch.float64
)
#: offset of the log (one 8-bit step), see the module docstring
LOG_OFFSET = 1.0 / 255.0
#: NTSC RGB -> YIQ
RGB_TO_YIQ = torch.tensor(
    [[0.299, 0.587, 0.114], [0.595716, -0.274453, -0.321263], [0.211456, -0.522591, 0.311135]], dtype=torch.float64
)
#: added to both covariances of ``mk`` (variances of [0, 1] pixels are ~1e-2): a flat photo stays finite
COV_EPS = 1e-10


def _apply(matrix: Tensor, x: Tensor) -> Tensor:
    """A 3x3 matrix applied to the channel axis of (3, ...) data, in the data's dtype."""
    return (matrix.to(device=x.device, dtype=x.dtype) @ x.reshape(3, -1)).reshape(x.shape)


def rgb_to_lab(rgb: Tensor) -> Tensor:
    """(3, ...) RGB -> Reinhard's l-alpha-beta (with the offset log10)."""
    return _apply(LMS_TO_LAB, torch.log10(_apply(RGB_TO_LMS, rgb) + LOG_OFFSET))


def lab_to_rgb(lab: Tensor) -> Tensor:
    """Inverse of :func:`rgb_to_lab` (exact matrix inverses)."""
    lms = torch.pow(10.0, _apply(torch.linalg.inv(LMS_TO_LAB), lab)) - LOG_OFFSET
    return _apply(torch.linalg.inv(RGB_TO_LMS), lms)


def _flat(x: Tensor) -> Tensor:
    if x.dim() != 3 or x.shape[0] != 3:
        raise ValueError(f"expected an RGB image (3, H, W), got shape {tuple(x.shape)}")
    return x.reshape(3, -1)


def _lab_mean_std(log_lms: Tensor) -> tuple[Tensor, Tensor]:
    """Mean and standard deviation of each l-alpha-beta axis, from the log-LMS data's mean and covariance."""
    lab = LMS_TO_LAB.to(log_lms.dtype)
    cov = torch.cov(log_lms, correction=0).double()
    mean = lab.double() @ log_lms.mean(1).double()
    return mean, (lab.double() @ cov @ lab.double().T).diagonal().clamp_min(0).sqrt()


def reinhard(content: Tensor, style: Tensor) -> Tensor:
    """Mean and standard deviation of each l-alpha-beta axis matched to the style's; unclipped RGB.

    Equal to ``lab_to_rgb((lab(c) - mean_c) * std_s / std_c + mean_s)``, in fewer passes: the
    per-axis affine map is folded into one 3x3 map of the log-LMS values, and the natural log
    replaces log10 (the two differ by a constant factor on all three axes, which the matching
    cancels exactly). Computed in the content's dtype (float32 photos: errors of order 1e-7).
    """
    dtype = content.dtype
    c = torch.log(_apply(RGB_TO_LMS, _flat(content)) + LOG_OFFSET)
    s = torch.log(_apply(RGB_TO_LMS, _flat(style).to(dtype)) + LOG_OFFSET)
    (mc, sc), (ms, ss) = _lab_mean_std(c), _lab_mean_std(s)
    scale = ss / sc.clamp_min(1e-12)
    lab, lab_inv = LMS_TO_LAB, torch.linalg.inv(LMS_TO_LAB)
    k = lab_inv @ torch.diag(scale) @ lab  # log-LMS -> matched log-LMS, all in float64
    offset = lab_inv @ (ms - scale * mc)
    z = k.to(dtype) @ c + offset.to(dtype).view(3, 1)
    return _apply(torch.linalg.inv(RGB_TO_LMS), torch.exp(z) - LOG_OFFSET).reshape(content.shape)


def _interp(x: Tensor, xp: Tensor, fp: Tensor) -> Tensor:
    """numpy.interp for increasing ``xp``: linear between points, constant beyond the ends."""
    idx = torch.searchsorted(xp, x).clamp(1, xp.numel() - 1)
    x0, x1, f0, f1 = xp[idx - 1], xp[idx], fp[idx - 1], fp[idx]
    t = ((x - x0) / (x1 - x0).clamp_min(1e-300)).clamp(0, 1)
    return f0 + t * (f1 - f0)


def _grid_levels(x: Tensor) -> Tensor | None:
    """The integer levels of 1-d data that lies on the 8-bit grid (each value k / 255), else None."""
    levels = (x * 255).round()
    return levels.long() if bool((levels / 255 == x).all()) else None


def _sorted_value(counts: Tensor, index: Tensor) -> Tensor:
    """The ``index``-th smallest of the 8-bit data with level histogram ``counts``, in [0, 1]."""
    return torch.searchsorted(torch.cumsum(counts, 0), index, right=True).clamp(max=255).double() / 255


def match_channel(values: Tensor, reference: Tensor) -> Tensor:
    """1-d ``values`` mapped to ``reference``'s quantile at each value's mid-rank quantile.

    The reference's quantile function interpolates linearly between its sorted values, the i-th
    of m sitting at quantile ``(i + 1/2) / m``. Data on the 8-bit grid (photos) take a histogram
    path with the same result: 256 levels instead of a sort of every pixel.
    """
    n, m = values.numel(), reference.numel()
    grid, ref_grid = _grid_levels(values), _grid_levels(reference)
    if grid is not None:
        counts = torch.bincount(grid, minlength=256)
        inverse, quantile = grid, (torch.cumsum(counts, 0) - counts / 2).double() / n  # per level
    else:
        _, inverse, counts = torch.unique(values, sorted=True, return_inverse=True, return_counts=True)
        quantile = (torch.cumsum(counts, 0) - counts / 2).double() / n
    if ref_grid is not None:
        ref_counts = torch.bincount(ref_grid, minlength=256)
        position = (quantile * m - 0.5).clamp(0, m - 1)
        low = position.floor().long()
        high = (low + 1).clamp(max=m - 1)
        v0, v1 = _sorted_value(ref_counts, low), _sorted_value(ref_counts, high)
        mapped = v0 + (position - low) * (v1 - v0)
    else:
        ref_sorted = reference.double().sort().values
        if m == 1:
            return ref_sorted.expand(n).to(values.dtype)
        ref_quantile = (torch.arange(m, dtype=torch.float64, device=values.device) + 0.5) / m
        mapped = _interp(quantile, ref_quantile, ref_sorted)
    return mapped.to(values.dtype)[inverse]


def histogram_match(content: Tensor, style: Tensor) -> Tensor:
    """Per-channel exact CDF matching in RGB."""
    c, s = _flat(content), _flat(style)
    return torch.stack([match_channel(c[i], s[i]) for i in range(3)]).reshape(content.shape)


def _sqrtm(sym: Tensor) -> tuple[Tensor, Tensor]:
    """Square root and inverse square root of a symmetric positive (semi)definite matrix."""
    eigenvalues, vectors = torch.linalg.eigh(sym)
    root = eigenvalues.clamp_min(0).sqrt()
    inv_root = torch.where(root > 0, 1 / root.clamp_min(1e-300), torch.zeros_like(root))
    return vectors @ torch.diag(root) @ vectors.T, vectors @ torch.diag(inv_root) @ vectors.T


def mk_matrix(cov_content: Tensor, cov_style: Tensor) -> Tensor:
    """Pitie and Kokaram's ``T = Sc^-1/2 (Sc^1/2 Ss Sc^1/2)^1/2 Sc^-1/2``: symmetric, ``T Sc T = Ss``."""
    root, inv_root = _sqrtm(cov_content)
    middle, _ = _sqrtm(root @ cov_style @ root)
    return inv_root @ middle @ inv_root


def monge_kantorovich(content: Tensor, style: Tensor) -> Tensor:
    """The linear Monge-Kantorovich colour mapping (computed in float64); unclipped RGB."""
    c, s = _flat(content), _flat(style)
    c64, s64 = c.double(), s.double()  # the statistics in float64; the map applied in the content's dtype
    mc, ms = c64.mean(1, keepdim=True), s64.mean(1, keepdim=True)
    eye = torch.eye(3, dtype=torch.float64, device=c.device) * COV_EPS
    cov_c = torch.cov(c64, correction=0) + eye
    cov_s = torch.cov(s64, correction=0) + eye
    t = mk_matrix(cov_c, cov_s)
    offset = ms - t @ mc
    out = t.to(c.dtype) @ c + offset.to(c.dtype)
    return out.reshape(content.shape)


_MODES = {"reinhard": reinhard, "histogram": histogram_match, "mk": monge_kantorovich}


def transfer_colour(content: Tensor, style: Tensor, mode: str = "reinhard", *, clip: bool = True) -> Tensor:
    """``content`` (3, H, W) in [0, 1] with ``style``'s colour statistics; clipped to [0, 1] unless ``clip`` is False."""
    try:
        fn = _MODES[mode]
    except KeyError:
        raise ValueError(f"unknown colour transfer mode {mode!r}; expected one of {', '.join(COLOUR_MODES)}") from None
    out = fn(content, style)
    return out.clamp(0, 1) if clip else out


# ---------------------------------------------------------------------------------------------
# Luminance-only transfer (preserve_colour of Gatys and AdaIN)


def rgb_to_yiq(rgb: Tensor) -> Tensor:
    """(3, ...) or (N, 3, ...) RGB -> YIQ."""
    if rgb.dim() == 4:
        return torch.stack([rgb_to_yiq(x) for x in rgb])
    return _apply(RGB_TO_YIQ, rgb)


def yiq_to_rgb(yiq: Tensor) -> Tensor:
    if yiq.dim() == 4:
        return torch.stack([yiq_to_rgb(x) for x in yiq])
    return _apply(torch.linalg.inv(RGB_TO_YIQ), yiq)


def luminance_image(rgb: Tensor) -> Tensor:
    """(3, H, W) -> its luminance Y repeated in three channels (a gray RGB image)."""
    return rgb_to_yiq(rgb)[:1].expand_as(rgb).contiguous()


def matched_luminance(style: Tensor, content: Tensor) -> Tensor:
    """The style's luminance (as gray RGB) shifted and scaled to the content's luminance mean and deviation."""
    ys, yc = rgb_to_yiq(style)[0], rgb_to_yiq(content)[0]
    y = (ys - ys.mean()) * (yc.std(correction=0) / ys.std(correction=0).clamp_min(1e-6)) + yc.mean()
    return y.clamp(0, 1).expand(3, *y.shape).contiguous()


def with_chroma_of(stylised: Tensor, photo: Tensor) -> Tensor:
    """The stylised image's luminance with the photo's I and Q (its colours), clipped to [0, 1]."""
    out = rgb_to_yiq(photo).clone()
    out[0] = rgb_to_yiq(stylised)[0]
    return yiq_to_rgb(out).clamp(0, 1)
