"""Evaluation metrics: Inception Score, FID, KID and content preservation (SSIM, LPIPS).

This package imports nothing from :mod:`brushwork.training` (training may import it). See
docs/metrics.md for the exact protocol.
"""

from brushwork.metrics.evaluate import (
    Evaluator,
    Matching,
    MetricValue,
    SetResult,
    images_in,
    match_by_name,
)
from brushwork.metrics.features import (
    FeatureCache,
    InceptionExtractor,
    InceptionFeatures,
    load_uint8,
)
from brushwork.metrics.scores import (
    LPIPS,
    METRICS,
    KIDResult,
    MeanStd,
    MetricInputError,
    MetricUnavailable,
    frechet_distance,
    inception_score,
    kernel_inception_distance,
    ssim,
)
from brushwork.metrics.weights import InceptionWeightsError, find_inception_weights

__all__ = [
    "LPIPS",
    "METRICS",
    "Evaluator",
    "FeatureCache",
    "InceptionExtractor",
    "InceptionFeatures",
    "InceptionWeightsError",
    "KIDResult",
    "Matching",
    "MeanStd",
    "MetricInputError",
    "MetricUnavailable",
    "MetricValue",
    "SetResult",
    "find_inception_weights",
    "frechet_distance",
    "images_in",
    "inception_score",
    "kernel_inception_distance",
    "load_uint8",
    "match_by_name",
    "ssim",
]
