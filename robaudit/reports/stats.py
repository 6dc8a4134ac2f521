"""Interval estimates for proportions measured on a finite sample of images."""

from __future__ import annotations

import math


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """The Wilson score interval for a binomial proportion (95 % by default); (nan, nan) when n = 0.

    Preferred over the normal approximation because it stays inside [0, 1] and keeps its coverage for
    accuracies near 0 or 1 and for the small samples audits often run on.
    """
    if n == 0:
        return math.nan, math.nan
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)
