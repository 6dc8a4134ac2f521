"""Is a drop against the baseline real, or sampling noise? The decision rule of ``max_drop``.

The *drop* of a metric is how much worse it got: ``baseline − current`` when higher is better,
``current − baseline`` when lower is better. An interval for it at the policy's ``confidence`` (two-sided,
z = Φ⁻¹(1 − (1 − confidence)/2)) comes from the metric's kind:

* proportions (accuracies, error and success rates, with n images each): Newcombe's hybrid score
  interval (Newcombe 1998, method 10) for the difference of two independent proportions. With Wilson
  score intervals [l₁, u₁] for p₁ on n₁ images and [l₂, u₂] for p₂ on n₂ images, the interval for
  p₁ − p₂ is ``[p₁ − p₂ − √((p₁ − l₁)² + (u₂ − p₂)²),  p₁ − p₂ + √((u₁ − p₁)² + (p₂ − l₂)²)]``;
* numbers with a standard error (e.g. the mCE): the normal interval drop ± z·√(se₁² + se₂²) (a side
  without a standard error counts as exact);
* numbers without any noise estimate, and flags (false = 0, true = 1): the interval is the drop itself,
  i.e. they are compared exactly.

The drop is *significant* when the whole interval lies above 0. A ``max_drop`` rule fails if and only if
the drop is significant AND the measured drop exceeds ``max_drop``: a change within noise never fails,
and neither does a real but tolerated one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

from ..reports.metrics import Metric
from ..reports.stats import wilson_bounds


def z_value(confidence: float) -> float:
    """The two-sided normal quantile: 1.96 for 0.95."""
    return NormalDist().inv_cdf(1 - (1 - confidence) / 2)


def newcombe_interval(p1: float, n1: float, p2: float, n2: float, confidence: float = 0.95) -> tuple[float, float]:
    """Newcombe's hybrid score interval for ``p1 - p2`` (independent samples of n1 and n2 images)."""
    z = z_value(confidence)
    l1, u1 = wilson_bounds(p1, n1, z)
    l2, u2 = wilson_bounds(p2, n2, z)
    difference = p1 - p2
    return (
        difference - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2),
        difference + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2),
    )


@dataclass(frozen=True)
class Drop:
    """How much worse the current value is than the baseline (positive: worse), with its interval."""

    drop: float
    low: float
    high: float
    #: "newcombe", "normal" or "exact"
    method: str
    max_drop: float
    confidence: float

    @property
    def significant(self) -> bool:
        return self.low > 0

    @property
    def failed(self) -> bool:
        return self.significant and self.drop > self.max_drop

    def describe(self) -> str:
        if self.drop > 0:
            change = f"regressed by {self.drop:.4g}"
        else:
            change = f"improved by {-self.drop:.4g}" if self.drop < 0 else "unchanged"
        if self.method == "exact":
            noise = "compared exactly (no noise estimate)"
        else:
            noise = f"{self.confidence:.0%} CI of the drop [{self.low:.4g}, {self.high:.4g}] ({self.method})"
        exact = self.method == "exact"
        if self.failed:
            return f"{change} > max_drop {self.max_drop:g}{'' if exact else ', beyond noise'}: {noise}"
        if self.significant:
            return f"{change}, {'' if exact else 'beyond noise but '}within max_drop {self.max_drop:g}: {noise}"
        if exact or self.high < 0:
            return f"{change}: {noise}"
        return f"{change}, within noise: {noise}"


def judge_drop(
    current: Metric, baseline: Metric, max_drop: float, higher_is_better: bool, confidence: float = 0.95
) -> Drop:
    """The drop of ``current`` against ``baseline`` and whether it breaks ``max_drop`` (see the module doc)."""
    sign = 1.0 if higher_is_better else -1.0
    now, before = float(current.value), float(baseline.value)
    drop = sign * (before - now)
    if math.isnan(drop):  # both infinite the same way: no change
        drop = 0.0
    if not math.isfinite(drop):
        return Drop(drop, drop, drop, "exact", max_drop, confidence)
    if current.kind == "proportion" and current.samples and baseline.samples:
        low, high = newcombe_interval(before, baseline.samples, now, current.samples, confidence)
        if not higher_is_better:
            low, high = -high, -low
        return Drop(drop, low, high, "newcombe", max_drop, confidence)
    spread = math.sqrt((current.stderr or 0.0) ** 2 + (baseline.stderr or 0.0) ** 2)
    if current.kind == "number" and spread > 0:
        half = z_value(confidence) * spread
        return Drop(drop, drop - half, drop + half, "normal", max_drop, confidence)
    return Drop(drop, drop, drop, "exact", max_drop, confidence)
