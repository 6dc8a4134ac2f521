"""Summaries of attack reports, and the gradient-masking flags derived from their rows.

A defense that breaks gradients instead of removing adversarial examples looks robust to gradient attacks
only (Athalye et al. 2018; the ImageNet cache paper found this for caches keyed on softmax outputs). Each
flag below is a symptom; every flag carries its evidence and the checks that evaluated it (``sources``), and
``flag = None`` means no evidence for it was collected. robaudit's own checks judge differences against
sampling noise: two accuracies differ when they are more than two standard errors of their difference
apart (with a floor of one image), so small runs do not raise false alarms; an empty group can never be
judged, so a comparison with one is "not evaluated", never an error.

robaudit's checks and AutoAttack's (Croce & Hein 2020, the reference implementation's ``checks``) share one
list; where both look at the same symptom they share a flag, raised when either raises it:

* ``accuracy_rises_with_eps``: a larger budget must not leave the model more accurate;
* ``unbounded_attack_fails``: an L∞ PGD with ε = the full pixel range must reach ~0 % accuracy (≤ 5 %);
* ``white_weaker_than_transfer``: attacking the defended model itself must not do worse than transferring
  examples made on the backbone (gray) or a surrogate (black);
* ``gradient_free_beats_gradient``: random noise at the largest budget must not succeed more often than
  the gradient attack on the same images (robaudit), and AutoAttack's gradient-free Square must not break
  images its gradient members left standing (AutoAttack's check: more than 0.2 % of the images);
* ``zero_or_nonfinite_gradients``: the input gradient of the loss must be finite and non-zero (≤ 5 % of
  images may fail this; robaudit), and AutoAttack's DLR-loss members must not meet zero gradients;
* ``randomized_outputs``: repeated forward passes must agree (AutoAttack; use ``version=rand`` otherwise);
* ``probability_outputs``: the model must return logits, not probabilities (AutoAttack);
* ``dynamic_defense``: the forward pass must not call autograd itself (AutoAttack: an inference-time
  optimisation defense needs an adaptive attack).

Only white-box evidence judges the model under audit: AutoAttack's verdicts and members count where the
defended model (the backbone without defenses) was attacked directly.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from itertools import pairwise
from typing import TYPE_CHECKING, Any

from ...reports.stats import wilson_interval

if TYPE_CHECKING:
    import pandas as pd

ROBAUDIT, AUTOATTACK = "robaudit", "autoattack"
#: AutoAttack's threshold for Square after the gradient members (``checks.check_square_sr``: 0.2 %)
SQUARE_THRESHOLD = 0.002
#: ``check`` of the rows an ensemble leaves per member and image, and the prefix of an attack's own verdicts
MEMBER_CHECK = "member"
VERDICT_PREFIX = "autoattack:"
#: the flags, in the order reports list them
FLAGS = (
    "accuracy_rises_with_eps",
    "unbounded_attack_fails",
    "white_weaker_than_transfer",
    "gradient_free_beats_gradient",
    "zero_or_nonfinite_gradients",
    "randomized_outputs",
    "probability_outputs",
    "dynamic_defense",
)
#: AutoAttack's model-level check (``check`` = ``autoattack:<name>``) behind each flag
VERDICT_FLAGS = {
    "zero-gradients": "zero_or_nonfinite_gradients",
    "randomized-outputs": "randomized_outputs",
    "probability-outputs": "probability_outputs",
    "dynamic-defense": "dynamic_defense",
}
#: what each AutoAttack verdict looks at, for its evidence
VERDICT_WHAT = {
    "zero-gradients": "zero input gradients of the DLR loss in APGD-T/APGD-DLR",
    "randomized-outputs": "outputs that change between 5 forward passes of the same images",
    "probability-outputs": "outputs that are probabilities (in [0, 1], summing to 1) instead of logits",
    "dynamic-defense": "autograd calls inside the forward pass (an inference-time optimisation)",
}

#: a part of a flag: (source, verdict or None when not evaluated, evidence)
Part = tuple[str, bool | None, str]


def _differs(p1: float, n1: int, p2: float, n2: int) -> bool | None:
    """Whether p2 exceeds p1 by more than two standard errors of the difference (floor: one image); None when
    either group is empty (nothing to compare)."""
    if n1 <= 0 or n2 <= 0 or not (math.isfinite(p1) and math.isfinite(p2)):
        return None
    se = math.sqrt(p1 * (1 - p1) / n1 + p2 * (1 - p2) / n2)
    return p2 - p1 > max(2 * se, 1 / min(n1, n2))


def _combine(parts: Iterable[Part]) -> dict[str, Any]:
    """One flag from the parts that check its symptom: raised when any evaluated part raises it, clear when
    every evaluated part is clear, None when none was evaluated; the evidence of every part."""
    parts = list(parts)
    evaluated = [p for p in parts if p[1] is not None]
    flag = any(bool(p[1]) for p in evaluated) if evaluated else None
    evidence = "; ".join(f"{source}: {text}" if len(parts) > 1 else text for source, _, text in parts)
    return {"flag": flag, "evidence": evidence, "sources": ", ".join(source for source, _, _ in evaluated)}


def _white(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows where the model under audit was attacked itself (white-box: the judge made the examples)."""
    return rows[(rows["threat"] == "white") & (rows["judged_by"] == rows["made_by"])]


def _checks(rows: pd.DataFrame, name: str) -> pd.DataFrame:
    return rows[rows["check_name"] == name]


def _rises(main: pd.DataFrame) -> Part:
    rises, compared = [], False
    for (threat, judge), group in main[main["eps"].notna()].groupby(["threat", "judged_by"]):
        by_eps = group.groupby("eps")["correct"].agg(["mean", "count"]).sort_index()
        for (e1, a), (e2, b) in pairwise(by_eps.iterrows()):
            verdict = _differs(float(a["mean"]), int(a["count"]), float(b["mean"]), int(b["count"]))
            compared = compared or verdict is not None
            if verdict:
                rises.append(
                    f"{threat}/{judge}: {a['mean']:.3f} at eps={eps_text(e1)} -> {b['mean']:.3f} at eps={eps_text(e2)}"
                )
    if not compared:
        evaluated = main["eps"].notna().any()
        return ROBAUDIT, None, "a single eps: nothing to compare" if evaluated else "no eps sweep"
    return ROBAUDIT, bool(rises), "; ".join(rises) or "accuracy never rises with eps beyond sampling noise"


def _unbounded(rows: pd.DataFrame) -> Part:
    unbounded = _checks(rows, "unbounded")
    if not len(unbounded):
        return ROBAUDIT, None, "not run (checks off or minimal mode)"
    accuracy = float(unbounded["correct"].mean())
    return (
        ROBAUDIT,
        accuracy > 0.05,
        f"L-inf PGD with eps = full pixel range leaves {accuracy:.1%} accuracy on {len(unbounded)} images "
        "(a working attack reaches ~0 %)",
    )


def _weaker(main: pd.DataFrame) -> Part:
    weaker, compared = [], False
    white = main[(main["threat"] == "white") & (main["judged_by"] == "defended")]
    for threat in ("gray", "black"):
        other = main[(main["threat"] == threat) & (main["judged_by"] == "defended")]
        for eps, group in other.groupby("eps"):
            w = white[white["eps"] == eps]
            verdict = _differs(float(group["correct"].mean()), len(group), float(w["correct"].mean()), len(w))
            compared = compared or verdict is not None
            if verdict:
                weaker.append(
                    f"eps={eps_text(eps)}: white-box accuracy {w['correct'].mean():.3f} > {threat}-box "
                    f"{group['correct'].mean():.3f}"
                )
    if not compared:
        return ROBAUDIT, None, "needs white and gray/black threats at a common eps on a defended model"
    return ROBAUDIT, bool(weaker), "; ".join(weaker) or "white-box is at least as strong as transfer"


def _noise(rows: pd.DataFrame, main: pd.DataFrame) -> Part:
    noise = _checks(rows, "gradient-free")
    if not len(noise):
        return ROBAUDIT, None, "not run (checks off, minimal mode, or an L1 budget: no noise attack in L1)"
    eps = noise["eps"].iloc[0]
    gradient = main[
        (main["threat"] == "white")
        & (main["eps"] == eps)
        & main["index"].isin(noise["index"])
        & (main["judged_by"] == noise["judged_by"].iloc[0])
    ]
    if not len(gradient):
        return ROBAUDIT, None, "the gradient attack has no white-box rows to compare with (needs the white threat)"
    p_noise, p_grad = float(noise["success"].mean()), float(gradient["success"].mean())
    return (
        ROBAUDIT,
        _differs(p_grad, len(gradient), p_noise, len(noise)),
        f"at eps={eps_text(eps)}: {noise['attack'].iloc[0]} succeeds on {p_noise:.1%}, the gradient attack on "
        f"{p_grad:.1%} of the same {len(noise)} images",
    )


def _square(rows: pd.DataFrame, main: pd.DataFrame) -> Part | None:
    """AutoAttack's Square check over the whole run: what Square broke after the gradient members before it."""
    members = _white(_checks(rows, MEMBER_CHECK))
    if not len(members) or "square" not in set(members["attack"]):
        return None
    found, raised = [], False
    for eps, group in members.groupby("eps"):
        images = _white(main[main["eps"] == eps])["index"].nunique()
        square = group[group["attack"] == "square"]
        broken = int(square["source_success"].sum())
        share = broken / images if images else 0.0
        raised = raised or share > SQUARE_THRESHOLD
        found.append(
            f"eps={eps_text(eps)}: Square broke {broken} of {images} images ({share:.1%}) after the gradient members"
        )
    return (
        AUTOATTACK,
        raised,
        "; ".join(found) + f" (raised above {SQUARE_THRESHOLD:.1%}, the reference's threshold)",
    )


def _gradients(rows: pd.DataFrame) -> Part:
    import numpy as np

    gradients = _checks(rows, "gradient")["grad_norm"]
    if not len(gradients):
        return ROBAUDIT, None, "not run (checks off or minimal mode)"
    values = gradients.to_numpy(dtype=float)
    bad = float(np.mean(~np.isfinite(values) | (values == 0)))
    finite = values[np.isfinite(values)]
    median = f"{np.median(finite):.3g}" if len(finite) else "n/a"
    return (
        ROBAUDIT,
        bad > 0.05,
        f"{bad:.1%} of {len(values)} images have a zero or non-finite input gradient (median norm {median})",
    )


def _verdict(rows: pd.DataFrame, name: str) -> Part | None:
    """AutoAttack's own check ``name`` over the white-box rows: raised where any batch raised it."""
    found = _white(_checks(rows, VERDICT_PREFIX + name))
    if not len(found):
        return None
    raised = found[found["check_raised"].fillna(False).astype(bool)]
    text = f"{VERDICT_WHAT[name]}: raised on {raised['index'].nunique()} of {found['index'].nunique()} checked images"
    notes = raised["note"].dropna()
    if len(notes):
        text += f" ({notes.iloc[0]})"
    return AUTOATTACK, bool(len(raised)), text


def masking_flags(rows: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Every flag of :data:`FLAGS` from finished rows (any subset of threats, checks and attacks)."""
    for column in ("check_raised", "note", "queries"):  # reports written before these columns existed
        if column not in rows:
            rows = rows.assign(**{column: None})
    main = rows[rows["check_name"].isna()]
    missing = (AUTOATTACK, None, "not run (AutoAttack's own check: --attack autoattack)")
    parts: dict[str, list[Part]] = {
        "accuracy_rises_with_eps": [_rises(main)],
        "unbounded_attack_fails": [_unbounded(rows)],
        "white_weaker_than_transfer": [_weaker(main)],
        "gradient_free_beats_gradient": [_noise(rows, main)],
        "zero_or_nonfinite_gradients": [_gradients(rows)],
        "randomized_outputs": [],
        "probability_outputs": [],
        "dynamic_defense": [],
    }
    square = _square(rows, main)
    if square is not None:
        parts["gradient_free_beats_gradient"].append(square)
    for name, flag in VERDICT_FLAGS.items():
        verdict = _verdict(rows, name)
        if verdict is not None:
            parts[flag].append(verdict)
        elif flag != "zero_or_nonfinite_gradients":
            parts[flag].append(missing)
    return {name: _combine(parts[name]) for name in FLAGS}


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
    """Minimal-perturbation statistics over the images the judge classifies correctly before the attack: an
    image that is already wrong needs no perturbation and says nothing about the model's robustness."""
    import numpy as np

    out = []
    for (threat, judge, norm), group in main.groupby(["threat", "judged_by", "eps_mode"]):
        clean = group[group["clean_prediction"] == group["label"]]
        found = clean[clean["success"].astype(bool)]
        sizes = np.where(clean["success"].astype(bool), clean[norm].astype(float), np.inf)
        grid = np.linspace(0, float(found[norm].max()) if len(found) else 0.0, 21)
        median = float(np.median(sizes)) if len(sizes) else math.nan
        out.append(
            {
                "threat": threat,
                "judged_by": judge,
                "norm": norm,
                "images": len(group),
                "samples": len(clean),
                "basis": (
                    f"the {len(clean)} images {judge} classifies correctly before the attack "
                    f"({len(group) - len(clean)} already misclassified are left out)"
                ),
                "success_rate": float(clean["success"].mean()) if len(clean) else math.nan,
                "median_rho": float(found["rel_l2"].median()) if len(found) else math.nan,
                "mean_rho": float(found["rel_l2"].mean()) if len(found) else math.nan,
                f"median_{norm}": median,
                "eps_at_50pct_success": median,
                "success_vs_eps": [[float(e), float(np.mean(sizes <= e))] for e in grid] if len(sizes) else [],
            }
        )
    return out


def _members(rows: pd.DataFrame, main: pd.DataFrame) -> list[dict[str, Any]]:
    """Per threat and ε, what each member of an ensemble broke, in the order they ran, and the accuracy left
    on the attacked model after it (AutoAttack's "robust accuracy after APGD-CE: ..." lines). A member that
    found no image left to attack is listed with 0."""
    # every judge of a row shares the attacked model's verdict (source_success): count each image once
    members = _checks(rows, MEMBER_CHECK).drop_duplicates(subset=["threat", "eps", "index", "attack"])
    if not len(members):
        return []
    # each member attacks a subset of the images the one before it attacked, so first appearance is run order
    order = list(dict.fromkeys(members["attack"]))
    out = []
    for (threat, eps), shown in main[main["eps"].notna()].groupby(["threat", "eps"], sort=True):
        images = shown["index"].nunique()
        group = members[(members["threat"] == threat) & (members["eps"] == eps)]
        standing: int | None = None
        for member in order:
            mine = group[group["attack"] == member]
            broken = int(mine["source_success"].sum())
            # the first member attacks every image the model got right: what it attacked is what stood
            standing = (len(mine) if standing is None else standing) - broken
            queries = mine["queries"].dropna().astype(float)
            out.append(
                {
                    "threat": threat,
                    "eps_mode": str(shown["eps_mode"].iloc[0]),
                    "eps": float(shown["eps"].iloc[0]),
                    "member": member,
                    "attacked": len(mine),
                    "broken": broken,
                    "accuracy_after": standing / images if images else math.nan,
                    "median_queries": float(queries.median()) if len(queries) else None,
                }
            )
    return out


MEMBER_NAMES = {"apgd-ce": "APGD-CE", "apgd-dlr": "APGD-DLR", "apgd-t": "APGD-T", "fab-t": "FAB-T", "square": "Square"}
NORM_NAMES = {"linf": "L∞", "range-linf": "L∞", "l2": "L2", "rel-l2": "relative L2", "l1": "L1"}
THREAT_NAMES = {
    "white": "white-box",
    "gray": "gray-box (examples made on the undefended backbone)",
    "black": "black-box (examples made on the surrogate)",
}


def attack_label(spec: str) -> str:
    """The attack as the literature names it: ``AutoAttack (standard)``, ``APGD-CE``, ``PGD-10``, ..."""
    from ...errors import InputError
    from ...params import parse_spec

    try:
        name, params = parse_spec(spec, "--attack")
    except InputError:
        return spec
    if name == "autoattack":
        version = params.get("version", "standard")
        members = params.get("attacks")
        return f"AutoAttack ({version}: {members})" if members else f"AutoAttack ({version})"
    if name == "pgd":
        steps, restarts = params.get("steps", 10), params.get("restarts", 1)
        return f"PGD-{steps}" + (f" × {restarts} restarts" if restarts != 1 else "")
    return MEMBER_NAMES.get(name, spec)


def eps_text(value: Any) -> str:
    """ε as people write it: a short decimal (``0.03``) as is, else ``k/255`` where it is a whole number of
    8-bit levels (``8/255``, not ``0.0313725``), else the number."""
    eps = float(value)
    text = f"{eps:g}"
    levels = round(eps * 255)
    if len(text) > 6 and levels > 0 and abs(levels / 255 - eps) < 1e-9:
        return f"{levels}/255"
    return text


def _evaluation(curves: list[dict[str, Any]], metadata: dict[str, Any]) -> list[dict[str, str]]:
    """The citable sentence per threat and ε, on the model under audit."""
    identity = metadata.get("identity", {})
    params = identity.get("params", {})
    defended = bool(identity.get("defenses"))
    label = attack_label(str(params.get("attack", "pgd")))
    if params.get("targeted"):
        label = f"targeted {label}"
    out = []
    for c in curves:
        if c["judged_by"] != ("defended" if defended else "backbone") or not math.isfinite(float(c["eps"])):
            continue
        mode = str(c["eps_mode"])
        budget = f"{NORM_NAMES.get(mode, mode)} ε = {eps_text(float(c['eps']))}"
        if mode == "rel-l2":
            budget += " × ‖x‖₂"
        elif mode == "range-linf":
            budget += " × pixel range"
        lo, hi = c["ci95"]
        out.append(
            {
                "figure": f"robust accuracy under {label}, {THREAT_NAMES.get(c['threat'], c['threat'])}, {budget}, "
                f"n = {c['samples']}: {c['accuracy']:.1%} (95 % CI {lo:.1%}–{hi:.1%})"
            }
        )
    return out


def attack_summary(rows: pd.DataFrame, metadata: dict[str, Any]) -> dict[str, Any]:
    done = rows[~rows["skipped"].astype(bool)]
    main = done[done["check_name"].isna()]
    params = metadata.get("identity", {}).get("params", {})
    summary: dict[str, Any] = {"images": int(main["index"].nunique()), "skipped": int(rows["skipped"].sum())}
    if params.get("minimal"):
        summary["minimal"] = _minimal(main)
    else:
        summary["curves"] = _curves(main)
        summary["evaluation"] = _evaluation(summary["curves"], metadata)
        members = _members(done, main)
        if members:
            summary["members"] = members
    summary["flags"] = masking_flags(done)
    summary["gradient_masking"] = any(f["flag"] for f in summary["flags"].values())
    return summary
