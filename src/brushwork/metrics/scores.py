"""The scores: Inception Score, FID, KID (from Inception features) and SSIM, LPIPS (per image pair).

The distribution metrics follow the protocol of torch-fidelity, whose numbers match the original
TensorFlow code: IS over 10 splits of the images shuffled with seed 2020; FID from the
Gaussian fits of the pool3 features; KID as the unbiased MMD^2 with the cubic polynomial kernel
k(x, y) = (x.y / d + 1)^3 over 100 random subsets of size min(N, 1000) drawn with seed 2020 (so
brushwork and torch-fidelity draw the same subsets). They are computed here in float64 (KID's dot
products in float32).

Content preservation compares each input with its output: SSIM (Gaussian window 11, sigma 1.5,
on RGB in [0, 1]) and LPIPS (AlexNet backbone), both through torchmetrics. An output whose size
differs from its input's is resized to the input's size (bicubic, antialiased) first.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

IS_SPLITS = 10
IS_MIN_PER_SPLIT = 2
KID_SUBSETS = 100
KID_MAX_SUBSET = 1000
KID_FULL_KERNEL_MAX = 2500  # up to this many images per set, kernel matrices are computed once (<= 150 MB)
SEED = 2020  # torch-fidelity's default rng_seed: the same shuffles and subsets as its numbers


class MetricInputError(ValueError):
    """The images given cannot produce the metric asked for (too few, none, mismatched)."""


class MetricUnavailable(RuntimeError):
    """A metric cannot be computed here (e.g. its network weights are not on this machine)."""


@dataclass(frozen=True)
class MetricInfo:
    key: str
    label: str
    higher_is_better: bool


METRICS: dict[str, MetricInfo] = {
    "is": MetricInfo("is", "IS", True),
    "fid": MetricInfo("fid", "FID", False),
    "kid": MetricInfo("kid", "KID", False),
    "ssim": MetricInfo("ssim", "SSIM", True),
    "lpips": MetricInfo("lpips", "LPIPS", False),
}


@dataclass(frozen=True)
class MeanStd:
    mean: float
    std: float


# ---------------------------------------------------------------------------------------------
# distribution metrics


def inception_score(logits: Tensor, *, splits: int = IS_SPLITS, seed: int = SEED) -> MeanStd:
    """exp(E_x KL(p(y|x) || p(y))) per split of the shuffled images; mean and std over splits."""
    n = int(logits.shape[0])
    if n < IS_MIN_PER_SPLIT * splits:
        raise MetricInputError(
            f"the Inception Score needs at least {IS_MIN_PER_SPLIT * splits} images ({IS_MIN_PER_SPLIT} per split; "
            f"with one image per split it is 1 by definition), got {n}"
        )
    order = torch.from_numpy(np.random.RandomState(seed).permutation(n))
    log_p = logits.double()[order].log_softmax(dim=1)
    scores = []
    for i in range(splits):
        chunk = log_p[i * n // splits : (i + 1) * n // splits]
        log_marginal = torch.logsumexp(chunk, dim=0) - math.log(chunk.shape[0])  # log of mean p(y|x)
        kl = (chunk.exp() * (chunk - log_marginal)).sum(dim=1).mean()
        scores.append(math.exp(float(kl)))
    return MeanStd(float(np.mean(scores)), float(np.std(scores)))


def _check_pair(a: Tensor, b: Tensor, metric: str, minimum: int) -> None:
    if a.dim() != 2 or b.dim() != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"{metric}: expected two (N, D) feature matrices of equal D, got {tuple(a.shape)} and {tuple(b.shape)}")
    for name, feats in (("first", a), ("second", b)):
        if feats.shape[0] < minimum:
            raise MetricInputError(f"{metric} needs at least {minimum} images per set, the {name} set has {feats.shape[0]}")


def _covariance_factor(centered: Tensor) -> Tensor:
    """F with F @ F.T equal to the sample covariance of ``centered`` (N, D) rows."""
    n, d = centered.shape
    if n - 1 <= d:  # low rank: the scaled data itself is a factor (D, N)
        return centered.T / math.sqrt(n - 1)
    cov = centered.T @ centered / (n - 1)
    evals, evecs = torch.linalg.eigh(cov)
    return evecs * evals.clamp_min(0).sqrt()  # (D, D)


def frechet_distance(a: Tensor, b: Tensor) -> float:
    """FID between the Gaussian fits of two feature sets: |mu_a - mu_b|^2 + Tr(S_a + S_b - 2 (S_a S_b)^1/2).

    Tr((S_a S_b)^1/2) is the sum of the singular values of G = F_a^T F_b for any factors S = F F^T
    (the square roots of the eigenvalues of the symmetric G G^T). With the centred data as its
    own factor this is exact and cheap for N below the feature size, and no square root is ever
    taken of a negative rounding error.
    """
    _check_pair(a, b, "FID", 2)
    x, y = a.double(), b.double()
    mu_x, mu_y = x.mean(0), y.mean(0)
    xc, yc = x - mu_x, y - mu_y
    trace_x = float((xc * xc).sum()) / (x.shape[0] - 1)
    trace_y = float((yc * yc).sum()) / (y.shape[0] - 1)
    g = _covariance_factor(xc).T @ _covariance_factor(yc)
    gram = g @ g.T if g.shape[0] <= g.shape[1] else g.T @ g  # the smaller side; eigvalsh beats svdvals
    cross = float(torch.linalg.eigvalsh(gram).clamp_min(0).sqrt().sum())
    diff = mu_x - mu_y
    return float(diff @ diff) + trace_x + trace_y - 2.0 * cross


@dataclass(frozen=True)
class KIDResult:
    mean: float
    std: float
    subset_size: int
    subsets: int


def kernel_inception_distance(
    a: Tensor, b: Tensor, *, subset_size: int | None = None, subsets: int = KID_SUBSETS, seed: int = SEED
) -> KIDResult:
    """Unbiased MMD^2 with the kernel (x.y / d + 1)^3, averaged over random subsets of both sets.

    ``subset_size`` defaults to min(N_a, N_b, 1000). Values slightly below 0 are valid and mean
    the two sets are indistinguishable.
    """
    _check_pair(a, b, "KID", 2)
    n_a, n_b = int(a.shape[0]), int(b.shape[0])
    m = min(n_a, n_b, KID_MAX_SUBSET) if subset_size is None else subset_size
    if not 2 <= m <= min(n_a, n_b):
        raise MetricInputError(f"KID subset size {m} must be between 2 and the smaller set's size {min(n_a, n_b)}")
    x, y = a.float(), b.float()
    d = x.shape[1]

    def kernel(u: Tensor, v: Tensor) -> Tensor:
        # float32 dot products (as torch-fidelity), float64 kernel values and sums
        return ((u @ v.T).double() / d + 1) ** 3

    # Kernel matrices of the whole sets once, then each subset is a gather (when they fit in memory).
    full = max(n_a, n_b) <= KID_FULL_KERNEL_MAX
    if full:
        k_aa, k_bb, k_ab = kernel(x, x), kernel(y, y), kernel(x, y)
    rng = np.random.RandomState(seed)
    values = np.empty(subsets)
    for i in range(subsets):
        ia = torch.from_numpy(rng.choice(n_a, m, replace=False))
        ib = torch.from_numpy(rng.choice(n_b, m, replace=False))
        if full:
            k_xx, k_yy, k_xy = k_aa[ia][:, ia], k_bb[ib][:, ib], k_ab[ia][:, ib]
        else:
            xs, ys = x[ia], y[ib]
            k_xx, k_yy, k_xy = kernel(xs, xs), kernel(ys, ys), kernel(xs, ys)
        within = (k_xx.sum() - k_xx.diagonal().sum() + k_yy.sum() - k_yy.diagonal().sum()) / (m * (m - 1))
        values[i] = float(within - 2 * k_xy.sum() / (m * m))
    return KIDResult(float(values.mean()), float(values.std()), m, subsets)


# ---------------------------------------------------------------------------------------------
# content preservation


def match_size(output: Tensor, size: tuple[int, int]) -> Tensor:
    """uint8 (3, h, w) -> (3, H, W) with ``size`` = (H, W), bicubic with antialias (PIL)."""
    if tuple(output.shape[-2:]) == tuple(size):
        return output
    img = Image.fromarray(output.permute(1, 2, 0).numpy())
    img = img.resize((size[1], size[0]), Image.Resampling.BICUBIC)
    return torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1)


def ssim(source: Tensor, output: Tensor) -> float:
    """SSIM of one uint8 (3, H, W) pair on RGB in [0, 1] (Wang et al. 2004: Gaussian 11x11, sigma 1.5)."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    output = match_size(output, (int(source.shape[1]), int(source.shape[2])))
    x = source.unsqueeze(0).double() / 255.0
    y = output.unsqueeze(0).double() / 255.0
    return float(structural_similarity_index_measure(y, x, data_range=1.0, gaussian_kernel=True, sigma=1.5, kernel_size=11))


LPIPS_BACKBONES = {"alex": ("alexnet", "AlexNet_Weights"), "vgg": ("vgg16", "VGG16_Weights"), "squeeze": ("squeezenet1_1", "SqueezeNet1_1_Weights")}


def lpips_unavailable_reason(net: str = "alex") -> str | None:
    """None when LPIPS with backbone ``net`` can run without downloading; else what is missing."""
    if net not in LPIPS_BACKBONES:
        raise ValueError(f"unknown LPIPS backbone {net!r}; expected one of {', '.join(LPIPS_BACKBONES)}")
    try:
        import torchmetrics.functional.image.lpips as tm_lpips
        import torchvision.models as tvm
    except ImportError as exc:
        return f"LPIPS needs torchmetrics and torchvision ({exc})"
    linear = Path(tm_lpips.__file__).parent / "lpips_models" / f"{net}.pth"
    if not linear.is_file():
        return f"LPIPS: torchmetrics' linear-layer weights {linear} are missing; reinstall torchmetrics"
    from brushwork.metrics.weights import hub_checkpoint_dir

    _, weights_enum = LPIPS_BACKBONES[net]
    url = getattr(tvm, weights_enum).DEFAULT.url
    backbone = hub_checkpoint_dir() / url.rsplit("/", 1)[-1]
    if not backbone.is_file():
        return (
            f"LPIPS ({net}) needs torchvision's ImageNet backbone weights, which are not on this machine: "
            f"download {url} and place it at {backbone}"
        )
    return None


class LPIPS:
    """LPIPS (Zhang et al. 2018) between image pairs through torchmetrics; never downloads.

    Raises :class:`MetricUnavailable` when the backbone weights are not in torch hub's cache.
    """

    def __init__(self, net: str = "alex", *, device: str | torch.device = "cpu") -> None:
        reason = lpips_unavailable_reason(net)
        if reason is not None:
            raise MetricUnavailable(reason)
        from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity

        self.net = net
        self.device = torch.device(device)
        self.metric: Any = LearnedPerceptualImagePatchSimilarity(net_type=net, normalize=True).to(self.device)

    @torch.inference_mode()
    def __call__(self, source: Tensor, output: Tensor) -> float:
        """LPIPS of one uint8 (3, H, W) pair (0 = identical; lower is closer)."""
        output = match_size(output, (int(source.shape[1]), int(source.shape[2])))
        x = (source.unsqueeze(0).float() / 255.0).to(self.device)
        y = (output.unsqueeze(0).float() / 255.0).to(self.device)
        value = float(self.metric(y, x))
        self.metric.reset()
        return value
