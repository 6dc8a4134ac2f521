"""Corruption error metrics: CE, mCE, relative mCE, unnormalized mean error, corruption accuracy.

With ``E[c][s]`` the top-1 error of a model on corruption ``c`` at severity ``s`` and ``R[c][s]`` the error of
a reference model (AlexNet for ImageNet-C, as Hendrycks & Dietterich; any baseline report otherwise):

* ``CE_c = Σ_s E[c][s] / Σ_s R[c][s]``, and ``mCE`` = 100 × the mean of ``CE_c`` over the 15 common
  corruptions (the reference scores 100 by construction);
* relative ``CE_c = Σ_s (E[c][s] − E_clean) / Σ_s (R[c][s] − R_clean)``, relative mCE likewise;
* the unnormalized mean error = mean over corruptions of ``mean_s E[c][s]``;
* the corruption accuracy (RobustBench's figure) = the unweighted mean of the 15 × 5 cell accuracies.

The standard error of the mCE treats each cell error as a binomial proportion of its sample count and the
reference as exact (the published AlexNet table is a constant): ``Var(CE_c) = Σ_s E(1−E)/n / (Σ_s R)²``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

#: AlexNet top-1 error on ImageNet-C per corruption and severity 1..5 (Hendrycks' published table)
ALEXNET_ERRORS: dict[str, tuple[float, float, float, float, float]] = {
    "gaussian_noise": (0.69528, 0.82542, 0.93554, 0.98138, 0.99452),
    "shot_noise": (0.71224, 0.85108, 0.93574, 0.98182, 0.99146),
    "impulse_noise": (0.78374, 0.89808, 0.94870, 0.98720, 0.99548),
    "defocus_blur": (0.65624, 0.73202, 0.85036, 0.91364, 0.94714),
    "glass_blur": (0.64308, 0.75054, 0.88806, 0.91622, 0.93344),
    "motion_blur": (0.58430, 0.70048, 0.82108, 0.89750, 0.92638),
    "zoom_blur": (0.70008, 0.76992, 0.80784, 0.84198, 0.87198),
    "snow": (0.71726, 0.88392, 0.86468, 0.91870, 0.94952),
    "frost": (0.61390, 0.79734, 0.88790, 0.89942, 0.93430),
    "fog": (0.67474, 0.76050, 0.84378, 0.87260, 0.94500),
    "brightness": (0.45140, 0.48502, 0.54048, 0.62166, 0.72440),
    "contrast": (0.64548, 0.76150, 0.88874, 0.97760, 0.99270),
    "elastic_transform": (0.52596, 0.70116, 0.55686, 0.64076, 0.80554),
    "pixelate": (0.52218, 0.54620, 0.73728, 0.87092, 0.91262),
    "jpeg_compression": (0.51002, 0.54718, 0.57294, 0.65458, 0.74778),
    "speckle_noise": (0.66192, 0.74440, 0.90246, 0.94548, 0.97268),
    "gaussian_blur": (0.54732, 0.70444, 0.82574, 0.89864, 0.95940),
    "spatter": (0.47196, 0.62194, 0.75052, 0.84132, 0.90182),
    "saturate": (0.59342, 0.65514, 0.51174, 0.70834, 0.82260),
}
#: AlexNet's clean top-1 error as the ImageNet-C paper's tables give it (for the relative mCE)
ALEXNET_CLEAN_ERROR = 0.435
ALEXNET = "AlexNet (ImageNet-C table)"

#: errors per corruption, per severity (severity -> error)
CellErrors = Mapping[str, Mapping[int, float]]


def corruption_error(model: Mapping[int, float], reference: Mapping[int, float]) -> float:
    """``Σ_s E_s / Σ_s R_s`` over the severities both have."""
    severities = sorted(set(model) & set(reference))
    denominator = sum(reference[s] for s in severities)
    return sum(model[s] for s in severities) / denominator if denominator > 0 else math.nan


def relative_corruption_error(
    model: Mapping[int, float], model_clean: float, reference: Mapping[int, float], reference_clean: float
) -> float:
    """``Σ_s (E_s − E_clean) / Σ_s (R_s − R_clean)``."""
    severities = sorted(set(model) & set(reference))
    denominator = sum(reference[s] - reference_clean for s in severities)
    numerator = sum(model[s] - model_clean for s in severities)
    return numerator / denominator if denominator > 0 else math.nan


def corruption_error_stderr(
    model: Mapping[int, float], samples: Mapping[int, int], reference: Mapping[int, float]
) -> float:
    """Standard error of ``CE_c`` from the binomial noise of the model's cell errors."""
    severities = sorted(set(model) & set(reference))
    denominator = sum(reference[s] for s in severities)
    variance = sum(model[s] * (1 - model[s]) / max(samples[s], 1) for s in severities)
    return math.sqrt(variance) / denominator if denominator > 0 else math.nan


def mean_corruption_error(
    errors: CellErrors,
    reference: CellErrors,
    corruptions: list[str],
    samples: Mapping[str, Mapping[int, int]] | None = None,
) -> tuple[float, float | None]:
    """mCE (×100) over ``corruptions`` and, given the cell sample counts, its standard error (×100)."""
    ces = [corruption_error(errors[c], reference[c]) for c in corruptions]
    mce = 100 * sum(ces) / len(ces)
    if samples is None:
        return mce, None
    variance = sum(corruption_error_stderr(errors[c], samples[c], reference[c]) ** 2 for c in corruptions)
    return mce, 100 * math.sqrt(variance) / len(corruptions)
