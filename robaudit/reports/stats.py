"""Interval estimates for proportions measured on a finite sample of images."""

from __future__ import annotations

import math

Z95 = 1.959964


def wilson_bounds(p: float, n: float, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a proportion ``p`` measured on ``n`` images; (nan, nan) when n = 0.

    Preferred over the normal approximation because it stays inside [0, 1] and keeps its coverage for
    accuracies near 0 or 1 and for the small samples audits often run on.
    """
    if n == 0:
        return math.nan, math.nan
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(max(p * (1 - p), 0.0) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval (95 % by default) of ``successes`` out of ``n``; (nan, nan) when n = 0."""
    return wilson_bounds(successes / n if n else math.nan, n, z)
