"""Summaries of attack reports, and the gradient-masking flags derived from their rows.

A defense that breaks gradients instead of removing adversarial examples looks robust to gradient attacks
only (Athalye et al. 2018; the ImageNet cache paper found this for caches keyed on softmax outputs). Each
flag below is a symptom; every flag carries its evidence, and ``None`` means the rows needed to judge it
were not run. Differences are judged against sampling noise: two accuracies differ when they are more than
two standard errors of their difference apart (with a floor of one image), so small runs do not raise
false alarms.

* ``accuracy_rises_with_eps``: a larger budget must not leave the model more accurate;
* ``unbounded_attack_fails``: an L∞ PGD with ε = the full pixel range must reach ~0 % accuracy (≤ 5 %);
* ``white_weaker_than_transfer``: attacking the defended model itself must not do worse than transferring
  examples made on the backbone (gray) or a surrogate (black);
* ``gradient_free_beats_gradient``: random noise at the largest budget must not succeed more often than
  the gradient attack on the same images;
* ``zero_or_nonfinite_gradients``: the input gradient of the loss must be finite and non-zero (≤ 5 % of
  images may fail this).
"""

from __future__ import annotations

import math
from itertools import pairwise
from typing import TYPE_CHECKING, Any

from ...reports.stats import wilson_interval

if TYPE_CHECKING:
    import pandas as pd


def _differs(p1: float, n1: int, p2: float, n2: int) -> bool:
    """Whether p2 exceeds p1 by more than two standard errors of the difference (floor: one image)."""
    se = math.sqrt(p1 * (1 - p1) / n1 + p2 * (1 - p2) / n2)
    return p2 - p1 > max(2 * se, 1 / min(n1, n2))


def _flag(value: bool | None, evidence: str) -> dict[str, Any]:
    return {"flag": value, "evidence": evidence}


def masking_flags(rows: pd.DataFrame) -> dict[str, dict[str, Any]]:
    import numpy as np

    main = rows[rows["check"].isna()]
    flags: dict[str, dict[str, Any]] = {}

    rises = []
    for (threat, judge), group in main.groupby(["threat", "judged_by"]):
        by_eps = group.groupby("eps")["correct"].agg(["mean", "count"]).sort_index()
        for (e1, a), (e2, b) in pairwise(by_eps.iterrows()):
            if _differs(a["mean"], int(a["count"]), b["mean"], int(b["count"])):
                rises.append(f"{threat}/{judge}: {a['mean']:.3f} at eps={e1:g} -> {b['mean']:.3f} at eps={e2:g}")
    evaluated = main["eps"].notna().any()
    flags["accuracy_rises_with_eps"] = _flag(
        bool(rises) if evaluated else None,
        "; ".join(rises) or ("accuracy never rises with eps beyond sampling noise" if evaluated else "no eps sweep"),
    )

    unbounded = rows[rows["check"] == "unbounded"]
    if len(unbounded):
        accuracy = float(unbounded["correct"].mean())
        flags["unbounded_attack_fails"] = _flag(
            accuracy > 0.05,
            f"L-inf PGD with eps = full pixel range leaves {accuracy:.1%} accuracy on {len(unbounded)} images "
            "(a working attack reaches ~0 %)",
        )
    else:
        flags["unbounded_attack_fails"] = _flag(None, "not run (checks off or minimal mode)")

    weaker = []
    white = main[(main["threat"] == "white") & (main["judged_by"] == "defended")]
    for threat in ("gray", "black"):
        other = main[(main["threat"] == threat) & (main["judged_by"] == "defended")]
        for eps, group in other.groupby("eps"):
            w = white[white["eps"] == eps]
            if len(w) and _differs(float(group["correct"].mean()), len(group), float(w["correct"].mean()), len(w)):
                weaker.append(
                    f"eps={eps:g}: white-box accuracy {w['correct'].mean():.3f} > {threat}-box "
                    f"{group['correct'].mean():.3f}"
                )
    comparable = len(white) and main["threat"].isin(["gray", "black"]).any()
    flags["white_weaker_than_transfer"] = _flag(
        bool(weaker) if comparable else None,
        "; ".join(weaker)
        or (
            "white-box is at least as strong as transfer"
            if comparable
            else "needs white and gray/black threats on a defended model"
        ),
    )

    noise = rows[rows["check"] == "gradient-free"]
    if len(noise):
        eps = noise["eps"].iloc[0]
        gradient = main[
            (main["threat"] == "white")
            & (main["eps"] == eps)
            & main["index"].isin(noise["index"])
            & (main["judged_by"] == noise["judged_by"].iloc[0])
        ]
        p_noise, p_grad = float(noise["success"].mean()), float(gradient["success"].mean())
        flags["gradient_free_beats_gradient"] = _flag(
            _differs(p_grad, len(gradient), p_noise, len(noise)),
            f"at eps={eps:g}: random noise succeeds on {p_noise:.1%}, the gradient attack on {p_grad:.1%} "
            f"of the same {len(noise)} images",
        )
    else:
        flags["gradient_free_beats_gradient"] = _flag(None, "not run (checks off or minimal mode)")

    gradients = rows[rows["check"] == "gradient"]["grad_norm"]
    if len(gradients):
        values = gradients.to_numpy(dtype=float)
        bad = float(np.mean(~np.isfinite(values) | (values == 0)))
        flags["zero_or_nonfinite_gradients"] = _flag(
            bad > 0.05,
            f"{bad:.1%} of {len(values)} images have a zero or non-finite input gradient "
            f"(median norm {np.nanmedian(values):.3g})",
        )
    else:
        flags["zero_or_nonfinite_gradients"] = _flag(None, "not run (checks off or minimal mode)")
    return flags


def _curves(main: pd.DataFrame) -> list[dict[str, Any]]:
    curves = []
    for (threat, judge, mode, eps), group in main.groupby(["threat", "judged_by", "eps_mode", "eps"], dropna=False):
        n, correct = len(group), int(group["correct"].sum())
        lo, hi = wilson_interval(correct, n)
        curves.append(
            {
                "threat": threat,
                "judged_by": judge,
                "eps_mode": mode,
                "eps": eps,
                "samples": n,
                "accuracy": correct / n,
                "ci95": [lo, hi],
                "success_rate": float(group["success"].mean()),
            }
        )
    return curves


def _minimal(main: pd.DataFrame) -> list[dict[str, Any]]:
    import numpy as np

    out = []
    for (threat, judge, norm), group in main.groupby(["threat", "judged_by", "eps_mode"]):
        found = group[group["success"]]
        sizes = np.where(group["success"], group[norm], np.inf)
        grid = np.linspace(0, float(found[norm].max()) if len(found) else 0.0, 21)
        out.append(
            {
                "threat": threat,
                "judged_by": judge,
                "norm": norm,
                "samples": len(group),
                "success_rate": float(group["success"].mean()),
                "median_rho": float(found["rel_l2"].median()) if len(found) else math.nan,
                "mean_rho": float(found["rel_l2"].mean()) if len(found) else math.nan,
                f"median_{norm}": float(np.median(sizes)),
                "eps_at_50pct_success": float(np.median(sizes)),
                "success_vs_eps": [[float(e), float(np.mean(sizes <= e))] for e in grid],
            }
        )
    return out


def attack_summary(rows: pd.DataFrame, metadata: dict[str, Any]) -> dict[str, Any]:
    done = rows[~rows["skipped"]]
    main = done[done["check"].isna()]
    params = metadata.get("identity", {}).get("params", {})
    summary: dict[str, Any] = {"images": int(main["index"].nunique()), "skipped": int(rows["skipped"].sum())}
    if params.get("minimal"):
        summary["minimal"] = _minimal(main)
    else:
        summary["curves"] = _curves(main)
    summary["flags"] = masking_flags(done)
    summary["gradient_masking"] = any(f["flag"] for f in summary["flags"].values())
    return summary
