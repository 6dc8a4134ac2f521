"""What an attack report means: its named metrics (accuracy per threat and ε, minimal sizes, masking flags),
tables, key numbers and figures."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ...reports.content import ExamplePerturbation, FigureSpec, Table, interval, num, pairs, pct, text
from ...reports.metrics import Metric, Pattern, number_text, present

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

    from ...reports.folder import Report

CURVE = "attack.<threat>.<eps_mode>.eps=<eps>"
MINIMAL = "attack.<threat>.<norm>.minimal"
PATTERNS = (
    Pattern(
        f"{CURVE}.accuracy",
        "proportion",
        True,
        "accuracy under attack of the model under audit (the defended model, or the model itself without "
        "defenses); eps printed with %g, e.g. eps=0.03",
    ),
    Pattern(
        f"{CURVE}.<judge>.accuracy",
        "proportion",
        True,
        "the same examples judged by another model (backbone: the undefended model)",
    ),
    Pattern(
        f"{CURVE}.success_rate",
        "proportion",
        False,
        "fraction of images on which the attack succeeds (misclassified, or the target hit when targeted)",
    ),
    Pattern(f"{CURVE}.<judge>.success_rate", "proportion", False, "success rate judged by another model"),
    Pattern(
        f"{MINIMAL}.median",
        "number",
        True,
        "median size (in the run's norm) of the smallest successful perturbation; inf when fewer than half succeed",
    ),
    Pattern(f"{MINIMAL}.<judge>.median", "number", True, "the same, judged by another model"),
    Pattern(
        f"{MINIMAL}.success_rate",
        "proportion",
        False,
        "fraction of images for which a minimal run found an adversarial example",
    ),
    Pattern(f"{MINIMAL}.<judge>.success_rate", "proportion", False, "the same, judged by another model"),
    Pattern("flags.gradient_masking", "flag", False, "true when any gradient-masking flag of the attack is raised"),
    Pattern(
        "flags.<flag>",
        "flag",
        False,
        "one gradient-masking symptom, e.g. flags.unbounded_attack_fails (absent when not evaluated)",
    ),
)
_BY_PATTERN = {p.pattern: p for p in PATTERNS}


def audited_judge(judge: str, meta: Mapping[str, Any]) -> bool:
    """Whether ``judge`` is the model under audit: the defended one, or the backbone of an undefended model."""
    defended = bool(meta.get("identity", {}).get("defenses"))
    return judge == "defended" or (judge == "backbone" and not defended)


def metrics(summary: dict[str, Any], meta: dict[str, Any]) -> list[Metric]:
    out: list[Metric | None] = []
    for curve in summary.get("curves", []):
        stem = f"attack.{curve['threat']}.{curve['eps_mode']}.eps={number_text(curve['eps'])}"
        judge = "" if audited_judge(curve["judged_by"], meta) else f".{curve['judged_by']}"
        pattern = CURVE + (".<judge>" if judge else "")
        n = curve.get("samples")
        out.append(
            _BY_PATTERN[f"{pattern}.accuracy"].metric(f"{stem}{judge}.accuracy", curve.get("accuracy"), samples=n)
        )
        out.append(
            _BY_PATTERN[f"{pattern}.success_rate"].metric(
                f"{stem}{judge}.success_rate", curve.get("success_rate"), samples=n
            )
        )
    for run in summary.get("minimal", []):
        norm = run["norm"]
        stem = f"attack.{run['threat']}.{norm}.minimal"
        judge = "" if audited_judge(run["judged_by"], meta) else f".{run['judged_by']}"
        pattern = MINIMAL + (".<judge>" if judge else "")
        median = run.get(f"median_{norm}", run.get("eps_at_50pct_success"))
        out.append(_BY_PATTERN[f"{pattern}.median"].metric(f"{stem}{judge}.median", median))
        out.append(
            _BY_PATTERN[f"{pattern}.success_rate"].metric(
                f"{stem}{judge}.success_rate", run.get("success_rate"), samples=run["samples"]
            )
        )
    out.append(_BY_PATTERN["flags.gradient_masking"].metric("flags.gradient_masking", summary.get("gradient_masking")))
    for name, flag in summary.get("flags", {}).items():
        value = flag.get("flag") if isinstance(flag, Mapping) else flag
        out.append(_BY_PATTERN["flags.<flag>"].metric(f"flags.{name}", value))
    return present(out)


def tables(summary: dict[str, Any], meta: dict[str, Any]) -> list[Table]:
    s = summary
    out = [
        pairs(
            "Attack",
            [
                ("attack", str(meta.get("audit_repr", "attack"))),
                ("images", text(s.get("images"))),
                ("skipped images", text(s.get("skipped"))),
                ("gradient masking suspected", "yes" if s.get("gradient_masking") else "no"),
            ],
        )
    ]
    if s.get("curves"):
        out.append(
            Table(
                "Accuracy under attack",
                ["threat", "judged by", "ε mode", "ε", "accuracy", "95 % interval", "success rate", "images"],
                [
                    [
                        str(c["threat"]),
                        str(c["judged_by"]),
                        str(c["eps_mode"]),
                        num(c["eps"], 4),
                        pct(c["accuracy"]),
                        interval(c.get("ci95")),
                        pct(c.get("success_rate")),
                        text(c.get("samples")),
                    ]
                    for c in s["curves"]
                ],
            )
        )
    if s.get("evaluation"):
        out.append(Table("The figure to cite", ["evaluation"], [[e["figure"]] for e in s["evaluation"]]))
    if s.get("members"):
        out.append(
            Table(
                "Ensemble members, in the order they ran",
                ["threat", "ε mode", "ε", "member", "attacked", "broken", "accuracy after", "median queries"],
                [
                    [
                        str(m["threat"]),
                        str(m["eps_mode"]),
                        num(m["eps"], 4),
                        str(m["member"]),
                        text(m["attacked"]),
                        text(m["broken"]),
                        pct(m["accuracy_after"]),
                        num(m.get("median_queries")),
                    ]
                    for m in s["members"]
                ],
            )
        )
    if s.get("minimal"):
        out.append(
            Table(
                "Minimal perturbations",
                ["threat", "judged by", "norm", "success rate", "median size", "median ρ (relative L2)", "images"],
                [
                    [
                        str(m["threat"]),
                        str(m["judged_by"]),
                        str(m["norm"]),
                        pct(m.get("success_rate")),
                        num(m.get("eps_at_50pct_success")),
                        num(m.get("median_rho")),
                        text(m.get("samples")),
                    ]
                    for m in s["minimal"]
                ],
            )
        )
    return out


def _judge(entry: Mapping[str, Any], meta: Mapping[str, Any]) -> str:
    """``""`` for the model under audit (so variants with and without defenses line up), else ``→judge``."""
    return "" if audited_judge(entry["judged_by"], meta) else f"→{entry['judged_by']}"


def key_numbers(summary: dict[str, Any], meta: dict[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    for c in summary.get("curves", []):
        out[f"acc {c['threat']}{_judge(c, meta)} {c['eps_mode']} ε={num(c['eps'], 4)}"] = pct(c["accuracy"])
    for m in summary.get("minimal", []):
        out[f"median {m['norm']} {m['threat']}{_judge(m, meta)}"] = num(m.get("eps_at_50pct_success"))
    return out


def figures(report: Report) -> list[FigureSpec]:
    s, out = report.summary, []
    if s.get("curves"):
        fig = curves_figure(s, _num_classes(report.meta), clean_accuracies(report.rows))
        out.append(FigureSpec("accuracy-vs-eps", "Accuracy under attack vs ε per threat model (dashed: chance)", fig))
    if s.get("minimal"):
        fig = minimal_figure(s, minimal_sizes(report.rows))
        out.append(FigureSpec("minimal", "Minimal perturbations: success rate vs ε and size distribution", fig))
    return out


def example_perturbations(report: Report, limit: int) -> list[ExamplePerturbation]:
    """Kept perturbations (``--save-perturbations``) of up to ``limit`` images: one threat and judge (white,
    defended, when present), the largest ε, successful attacks first."""
    import math

    import numpy as np

    rows = report.rows
    if "perturbation" not in rows:
        return []
    kept = _main_rows(rows)
    kept = kept[kept["perturbation"].notna()]
    if kept.empty:
        return []
    threat = "white" if (kept["threat"] == "white").any() else kept["threat"].iloc[0]
    kept = kept[kept["threat"] == threat]
    judge = "defended" if (kept["judged_by"] == "defended").any() else kept["judged_by"].iloc[0]
    kept = kept[kept["judged_by"] == judge]
    if kept["eps"].notna().any():
        kept = kept[kept["eps"] == kept["eps"].max()]
    kept = kept.sort_values(["success", "index"], ascending=[False, True]).drop_duplicates("index").head(limit)
    out = []
    for record in kept.to_dict("records"):
        shape = tuple(int(v) for v in record["perturbation_shape"])
        values = np.asarray(record["perturbation"], dtype=np.float32)
        if values.size != int(np.prod(shape)):
            continue
        eps = record.get("eps")
        budget = f"ε={eps:g}" if isinstance(eps, (int, float)) and math.isfinite(eps) else "minimal"
        column = f"adversarial ({record.get('threat')}, {budget})"
        prediction = int(record["adv_prediction"])
        out.append(ExamplePerturbation(int(record["index"]), values.reshape(shape), column, prediction))
    return out


def _num_classes(meta: Mapping[str, Any]) -> int | None:
    value = (meta.get("data") or {}).get("num_classes") or (meta.get("model") or {}).get("num_classes")
    return int(value) if value else None


def _main_rows(rows: pd.DataFrame) -> pd.DataFrame:
    return rows[~rows["skipped"].astype(bool) & rows["check_name"].isna()]


def clean_accuracies(rows: pd.DataFrame) -> dict[str, float]:
    """The clean accuracy of each judge on the attacked images (an accuracy curve's value at ε = 0)."""
    main = _main_rows(rows)
    out = {}
    for judge, group in main.groupby("judged_by"):
        first = group.drop_duplicates("index")
        out[str(judge)] = float((first["clean_prediction"] == first["label"]).mean())
    return out


def minimal_sizes(rows: pd.DataFrame) -> dict[str, list[float]]:
    """Size of each image's smallest successful perturbation, per (threat, judge), in the attack's norm."""
    main = _main_rows(rows)
    main = main[main["success"].fillna(False).astype(bool)]
    sizes: dict[str, list[float]] = {}
    for (threat, judge, norm), group in main.groupby(["threat", "judged_by", "eps_mode"]):
        column = str(norm) if str(norm) in group else "l2"
        sizes[f"{threat}-box, judged by {judge}"] = group[column].astype(float).tolist()
    return sizes


def curves_figure(summary: Mapping[str, Any], num_classes: int | None, clean: Mapping[str, float]) -> Figure:
    """Accuracy vs ε, one line per (threat, judge, ε mode) with its Wilson band, starting at ε = 0 from the
    judge's clean accuracy on the attacked images; the chance level dashed."""
    from ...reports.plots import DASHES, MARKERS, finite, new_figure, no_data

    fig, (ax,) = new_figure(6.5, 4.2)
    curves = [c for c in summary.get("curves", []) if finite(c.get("eps"))]
    if not curves:
        no_data(ax, "no ε sweep in this report")
        return fig
    groups: dict[tuple[str, str, str], list[Mapping[str, Any]]] = {}
    for curve in curves:
        groups.setdefault((str(curve["threat"]), str(curve["judged_by"]), str(curve["eps_mode"])), []).append(curve)
    modes = {key[2] for key in groups}
    for k, ((threat, judge, mode), points) in enumerate(groups.items()):
        points = sorted(points, key=lambda c: float(c["eps"]))
        eps = [float(c["eps"]) for c in points]
        accuracy = [float(c["accuracy"]) for c in points]
        low, high = [c["ci95"][0] for c in points], [c["ci95"][1] for c in points]
        if judge in clean and eps[0] > 0:
            eps, accuracy = [0.0, *eps], [clean[judge], *accuracy]
            low, high = [clean[judge], *low], [clean[judge], *high]
        label = f"{threat}-box, judged by {judge}" + (f" ({mode})" if len(modes) > 1 else "")
        # curves often coincide (a defense that changes nothing): markers and dashes keep each one visible
        marker, dashes = MARKERS[k % len(MARKERS)], DASHES[k % len(DASHES)]
        (line,) = ax.plot(eps, accuracy, label=label, marker=marker, ls=dashes)
        ax.fill_between(eps, low, high, color=line.get_color(), alpha=0.2)
    if num_classes:
        ax.axhline(1 / num_classes, color="grey", ls="--", lw=0.9, label=f"chance (1/{num_classes})")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel(f"ε ({', '.join(sorted(modes))}, pixel units in [0, 1]; ε = 0: clean)")
    ax.set_ylabel("accuracy under attack")
    ax.set_title("Accuracy vs ε (shaded: 95 % Wilson interval)", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def minimal_figure(summary: Mapping[str, Any], sizes: Mapping[str, list[float]] | None = None) -> Figure:
    """Success rate vs ε from minimal perturbations (median marked), and their size histogram when given."""
    import numpy as np

    from ...reports.plots import finite, new_figure, no_data

    entries = summary.get("minimal", [])
    fig, axes = new_figure(11.0 if sizes else 6.5, 4.2, ncols=2 if sizes else 1)
    ax = axes[0]
    if not entries:
        no_data(ax, "no minimal-perturbation results")
        return fig
    norms = sorted({str(e["norm"]) for e in entries})
    for entry in entries:
        grid = np.asarray(entry.get("success_vs_eps") or [[0.0, 0.0]], dtype=float)
        label = f"{entry['threat']}-box, judged by {entry['judged_by']}"
        (line,) = ax.step(grid[:, 0], grid[:, 1], where="post", label=label)
        median = entry.get("eps_at_50pct_success")
        if finite(median):
            ax.axvline(float(median), color=line.get_color(), ls=":", lw=1, label=f"median = {float(median):.3g}")
    ax.set_ylim(-0.02, 1.02)
    largest = max((float(np.max(np.asarray(e.get("success_vs_eps") or [[0.0]])[:, 0])) for e in entries), default=0.0)
    # every success at size 0 (images misclassified before any attack) collapses the grid to one point
    ax.set_xlim(0, largest * 1.05 if largest > 0 else 1.0)
    ax.set_xlabel(f"perturbation size ({', '.join(norms)})")
    ax.set_ylabel("fraction of images fooled within ε")
    ax.set_title("Minimal adversarial perturbations: success vs ε", fontsize=10)
    ax.legend(fontsize=8)
    if sizes:
        hist = axes[1]
        for label, values in sizes.items():
            kept = np.asarray(values, dtype=float)
            kept = kept[np.isfinite(kept)]
            if len(kept):
                hist.hist(kept, bins=min(20, max(5, len(kept) // 2)), alpha=0.6, label=label)
        hist.set_xlabel(f"size of the smallest successful perturbation ({', '.join(norms)})")
        hist.set_ylabel("images")
        hist.set_title("Distribution of minimal perturbation sizes", fontsize=10)
        if hist.get_legend_handles_labels()[0]:
            hist.legend(fontsize=8)
    fig.tight_layout()
    return fig
