"""brushwork's IS, FID and KID against torch-fidelity's own functions, and the known identities."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from brushwork.metrics import (
    InceptionExtractor,
    InceptionFeatures,
    MetricInputError,
    frechet_distance,
    inception_score,
    kernel_inception_distance,
)

REL = 1e-3


def rel_err(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-12)


@pytest.fixture(scope="session")
def ours(inception_weights: Path, image_sets: dict[str, Path]) -> dict[str, InceptionFeatures]:
    extractor = InceptionExtractor(inception_weights, device="cpu", batch_size=8)
    return {name: extractor.extract_files(sorted(folder.glob("*.png"))) for name, folder in image_sets.items()}


_REFERENCE = """
import json, sys
import torch_fidelity
metrics = torch_fidelity.calculate_metrics(
    input1=sys.argv[1], input2=sys.argv[2], isc=True, fid=True, kid=True,
    kid_subset_size=int(sys.argv[4]), feature_extractor_weights_path=sys.argv[3],
    cuda=False, cache=False, verbose=False, save_cpu_ram=True, batch_size=8,
)
print(json.dumps(metrics))
"""


@pytest.fixture(scope="session")
def theirs(inception_weights: Path, image_sets: dict[str, Path]) -> dict[str, float]:
    """torch-fidelity end to end on the same folders and weights (its own reading, batching and math).

    It runs in a child process with one BLAS/OpenMP thread: its FID takes the eigenvalues of a
    2048x2048 matrix in NumPy, whose thread count can only be set before NumPy loads (4.6 s with
    one thread, 43 s with two on a busy 2-core machine, measured).
    """
    one_thread = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-c", _REFERENCE, str(image_sets["fake"]), str(image_sets["real"]), str(inception_weights),
         "8"],  # kid_subset_size = min(N_fake, N_real, 1000), brushwork's choice
        env={**os.environ, **one_thread}, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_features_are_informative(ours: dict[str, InceptionFeatures]) -> None:
    # Guard for the parity checks below: random weights must still tell images apart.
    fake, real = ours["fake"], ours["real"]
    assert fake.pool.shape == (20, 2048) and fake.logits.shape == (20, 1008)
    assert real.pool.std(0).mean() > 1e-3
    assert (fake.pool.mean(0) - real.pool.mean(0)).norm() > 1e-2


def test_inception_score_matches_torch_fidelity(ours: dict[str, InceptionFeatures], theirs: dict[str, float]) -> None:
    score = inception_score(ours["fake"].logits)
    assert rel_err(score.mean, theirs["inception_score_mean"]) < REL
    assert abs(score.std - theirs["inception_score_std"]) < REL * theirs["inception_score_mean"]
    assert score.mean > 1.0


def test_fid_matches_torch_fidelity(ours: dict[str, InceptionFeatures], theirs: dict[str, float]) -> None:
    fid = frechet_distance(ours["fake"].pool, ours["real"].pool)
    assert fid > 0
    assert rel_err(fid, theirs["frechet_inception_distance"]) < REL


def test_kid_matches_torch_fidelity(ours: dict[str, InceptionFeatures], theirs: dict[str, float]) -> None:
    kid = kernel_inception_distance(ours["fake"].pool, ours["real"].pool)
    assert kid.subset_size == 8 and kid.subsets == 100
    assert rel_err(kid.mean, theirs["kernel_inception_distance_mean"]) < REL


def test_fid_of_a_set_with_itself_is_zero(ours: dict[str, InceptionFeatures]) -> None:
    real = ours["real"].pool
    between = frechet_distance(ours["fake"].pool, real)
    assert abs(frechet_distance(real, real)) < 1e-6 * between
    # order does not matter, and FID is symmetric
    assert abs(frechet_distance(real.flip(0), real)) < 1e-6 * between
    assert frechet_distance(real, ours["fake"].pool) == pytest.approx(between, rel=1e-9)


def test_kid_of_two_halves_of_one_set_is_near_zero(ours: dict[str, InceptionFeatures]) -> None:
    fake = ours["fake"].pool
    halves = kernel_inception_distance(fake[::2], fake[1::2])
    between = kernel_inception_distance(fake, ours["real"].pool)
    assert between.mean > 0
    assert abs(halves.mean) < 0.25 * between.mean


def test_identities_on_large_gaussian_samples() -> None:
    # With many samples the unbiased KID of one distribution is ~0 (and may be slightly
    # negative), while a small mean shift is clearly detected; FID's mean term is exact.
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(500, 32, generator=g), torch.randn(500, 32, generator=g)
    same = kernel_inception_distance(a, b, subsets=20)
    shifted = kernel_inception_distance(a, b + 0.5, subsets=20)
    assert shifted.mean > 0
    assert abs(same.mean) < 0.05 * shifted.mean
    shift = torch.full((32,), 0.25)
    assert frechet_distance(a, a + shift) == pytest.approx(float(shift @ shift), rel=1e-9)


@pytest.mark.parametrize(("n_a", "n_b", "dim"), [(20, 16, 64), (150, 100, 64)])
def test_fid_and_kid_match_torch_fidelity_math_below_and_above_the_feature_size(n_a: int, n_b: int, dim: int) -> None:
    # The low-rank path (N <= D) and the eigendecomposition path (N > D) against torch-fidelity's
    # own functions on the same features.
    from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric
    from torch_fidelity.metric_kid import kid_features_to_metric

    g = torch.Generator().manual_seed(n_a)
    a = torch.rand(n_a, dim, generator=g)
    b = torch.rand(n_b, dim, generator=g) * 1.2
    ref = fid_statistics_to_metric(fid_features_to_statistics(a), fid_features_to_statistics(b), False)
    assert rel_err(frechet_distance(a, b), ref["frechet_inception_distance"]) < 1e-6
    ref_kid = kid_features_to_metric(a, b, kid_subset_size=min(n_a, n_b), verbose=False)
    ours = kernel_inception_distance(a, b)
    assert rel_err(ours.mean, ref_kid["kernel_inception_distance_mean"]) < 1e-4
    assert abs(ours.std - ref_kid["kernel_inception_distance_std"]) < 1e-4 * abs(ours.mean)


def test_inception_score_matches_torch_fidelity_on_peaked_logits() -> None:
    from torch_fidelity.metric_isc import isc_features_to_metric

    logits = torch.randn(57, 1008, generator=torch.Generator().manual_seed(3)) * 4
    ref = isc_features_to_metric(logits)
    ours = inception_score(logits)
    assert rel_err(ours.mean, ref["inception_score_mean"]) < 1e-9
    assert ours.std == pytest.approx(ref["inception_score_std"], rel=1e-6)


def test_too_few_images_are_clear_errors() -> None:
    feats = torch.rand(9, 16)
    with pytest.raises(MetricInputError, match="at least 20 images"):
        inception_score(torch.rand(19, 1008))
    with pytest.raises(MetricInputError, match="FID needs at least 2"):
        frechet_distance(feats[:1], feats)
    with pytest.raises(MetricInputError, match="KID needs at least 2"):
        kernel_inception_distance(feats, feats[:1])
    with pytest.raises(MetricInputError, match="subset size"):
        kernel_inception_distance(feats, feats, subset_size=20)
    assert np.isfinite(kernel_inception_distance(feats[:2], feats[2:4]).mean)


def test_kid_subset_size_is_capped_at_1000() -> None:
    g = torch.Generator().manual_seed(1)
    result = kernel_inception_distance(torch.rand(1001, 8, generator=g), torch.rand(1200, 8, generator=g), subsets=2)
    assert result.subset_size == 1000
    assert kernel_inception_distance(torch.rand(30, 8), torch.rand(40, 8), subsets=2).subset_size == 30
