"""What a corruptions report means: its named metrics, tables, key numbers and figures."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ...reports.content import FigureSpec, Table, finite, num, pairs, pct, text
from ...reports.metrics import Metric, Pattern, number_text, present

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from ...reports.folder import Report

MCE = Pattern(
    "corruptions.mCE", "number", False, "mean corruption error (x100) against the reference; carries its standard error"
)
RELATIVE_MCE = Pattern("corruptions.relative_mCE", "number", False, "relative mCE (x100) against the reference")
ACCURACY = Pattern(
    "corruptions.accuracy",
    "proportion",
    True,
    "corruption accuracy: mean of the (corruption, severity) cell accuracies (RobustBench's figure)",
)
CLEAN = Pattern("corruptions.clean_accuracy", "proportion", True, "accuracy on the uncorrupted images")
MEAN_ERROR = Pattern(
    "corruptions.mean_error",
    "proportion",
    False,
    "unnormalized mean corruption error (mean over corruptions of the mean over severities)",
)
ERROR = Pattern("corruptions.<corruption>.error", "proportion", False, "error on one corruption, mean over severities")
CE = Pattern("corruptions.<corruption>.CE", "number", False, "corruption error (x100) against the reference")
BAND = Pattern("corruptions.band.<band>.accuracy", "proportion", True, "mean accuracy of a frequency band's cells")
NOISE = Pattern("corruptions.noise.sigma=<sigma>.accuracy", "proportion", True, "accuracy at one Gaussian noise level")
PATTERNS = (MCE, RELATIVE_MCE, ACCURACY, CLEAN, MEAN_ERROR, ERROR, CE, BAND, NOISE)


def metrics(summary: dict[str, Any], metadata: dict[str, Any]) -> list[Metric]:
    # Means of cell proportions over the same images are judged with the images' count: the variance of a
    # mean of proportions measured on n images is at most that of one proportion on n images (concavity of
    # p(1-p)), so the noise estimate errs on the safe (wide) side. Row counts per cell would understate it.
    n = summary.get("samples")
    out: list[Metric | None] = [
        MCE.metric("corruptions.mCE", summary.get("mCE"), stderr=summary.get("mCE_stderr")),
        RELATIVE_MCE.metric("corruptions.relative_mCE", summary.get("relative_mCE")),
        ACCURACY.metric("corruptions.accuracy", summary.get("corruption_accuracy"), samples=n),
        CLEAN.metric("corruptions.clean_accuracy", summary.get("clean_accuracy"), samples=n),
        MEAN_ERROR.metric("corruptions.mean_error", summary.get("mean_error"), samples=n),
    ]
    for row in summary.get("per_corruption", []):
        name = row["corruption"]
        out.append(ERROR.metric(f"corruptions.{name}.error", row.get("error"), samples=n))
        out.append(CE.metric(f"corruptions.{name}.CE", row.get("CE")))
    for row in summary.get("per_band", []):
        out.append(BAND.metric(f"corruptions.band.{row['band']}.accuracy", row.get("accuracy"), samples=n))
    for row in summary.get("noise_curve", []):
        name = f"corruptions.noise.sigma={number_text(row['sigma'])}.accuracy"
        out.append(NOISE.metric(name, row.get("accuracy"), samples=row.get("samples", n)))
    return present(out)


def tables(summary: dict[str, Any], metadata: dict[str, Any]) -> list[Table]:
    s = summary
    mce = num(s.get("mCE"), 4)
    if finite(s.get("mCE")) and finite(s.get("mCE_stderr")):
        mce = f"{s['mCE']:.1f} ± {s['mCE_stderr']:.1f}"
    out = [
        pairs(
            "Summary",
            [
                ("clean accuracy", pct(s.get("clean_accuracy"))),
                ("corruption accuracy (mean of cells)", pct(s.get("corruption_accuracy"))),
                ("mean error (unnormalized mCE)", pct(s.get("mean_error"))),
                ("mCE (reference = 100)", mce),
                ("relative mCE", num(s.get("relative_mCE"), 4)),
                ("reference", text(s.get("reference"))),
                ("parameter set", text(s.get("param_set"))),
                ("images", text(s.get("samples"))),
                ("skipped images", text(s.get("skipped"))),
                *((("note", str(s["note"])),) if s.get("note") else ()),
            ],
        )
    ]
    if s.get("per_band"):
        out.append(
            Table(
                "Accuracy per frequency band",
                ["band", "accuracy", "error", "rows"],
                [[str(b["band"]), pct(b["accuracy"]), pct(b["error"]), text(b.get("samples"))] for b in s["per_band"]],
            )
        )
    if s.get("per_corruption"):
        out.append(
            Table(
                "Per corruption (mean over severities)",
                ["corruption", "group", "band", "accuracy", "error", "CE", "relative CE"],
                [
                    [
                        str(c["corruption"]),
                        text(c.get("group")),
                        text(c.get("band")),
                        pct(c.get("accuracy")),
                        pct(c.get("error")),
                        num(c.get("CE"), 4),
                        num(c.get("relative_CE"), 4),
                    ]
                    for c in s["per_corruption"]
                ],
            )
        )
    if s.get("noise_curve"):
        out.append(
            Table(
                "Gaussian noise sweep",
                ["σ", "accuracy", "images"],
                [[num(p["sigma"]), pct(p["accuracy"]), text(p.get("samples"))] for p in s["noise_curve"]],
            )
        )
    return out


def key_numbers(summary: dict[str, Any], metadata: dict[str, Any]) -> dict[str, str]:
    return {
        "mCE": num(summary.get("mCE"), 4),
        "corruption acc": pct(summary.get("corruption_accuracy")),
        "mean corruption error": pct(summary.get("mean_error")),
    }


def figures(report: Report) -> list[FigureSpec]:
    s = report.summary
    out = [
        FigureSpec("corruptions", "Error (or CE) per corruption, coloured by frequency band", errors_figure(s)),
        FigureSpec("corruptions-heatmap", "Accuracy per corruption and severity", heatmap_figure(s)),
    ]
    if s.get("noise_curve"):
        out.append(FigureSpec("corruptions-noise", "Accuracy vs Gaussian noise σ", noise_curve_figure(s)))
    return out


# -- figures -------------------------------------------------------------------------------------------------------


def errors_figure(summary: dict[str, Any]) -> Figure:
    """Per-corruption CE (reference = 100) when a reference exists, else the mean error, coloured by band."""
    import numpy as np
    from matplotlib.patches import Patch

    from ...reports.plots import BAND_COLOURS, new_figure, no_data

    rows = list(summary.get("per_corruption", []))
    fig, (ax,) = new_figure(max(6.0, 0.45 * len(rows) + 2), 4.2)
    if not rows:
        no_data(ax, "no corruption results")
        return fig
    use_ce = all(finite(r.get("CE")) for r in rows)
    values = [float(r["CE"]) if use_ce else float(r["error"]) for r in rows]
    colours = [BAND_COLOURS.get(str(r.get("band")), "#888888") for r in rows]
    positions = np.arange(len(rows))
    ax.bar(positions, values, color=colours)
    # headroom above the tallest bar (and the reference line) keeps the legend off the bars
    ax.set_ylim(0, 1.35 * max([*values, 100.0 if use_ce else 1.0]))
    ax.set_xticks(positions, [str(r["corruption"]) for r in rows], rotation=60, ha="right", fontsize=8)
    if use_ce:
        ax.axhline(100, color="black", lw=0.8, ls="--", label=f"reference ({summary.get('reference') or '?'}) = 100")
        ax.set_ylabel("corruption error CE (reference = 100)")
        mce = summary.get("mCE")
        ax.set_title(f"Corruption error per corruption (mCE = {mce:.1f})" if finite(mce) else "CE", fontsize=10)
    else:
        ax.set_ylabel("top-1 error (mean over severities)")
        ax.set_title("Error per corruption (no mCE reference)", fontsize=10)
        clean = summary.get("clean_accuracy")
        if finite(clean):
            ax.axhline(1 - float(clean), color="black", lw=0.8, ls="--", label=f"clean error {1 - float(clean):.1%}")
    handles = [Patch(color=c, label=f"{band} frequency") for band, c in BAND_COLOURS.items()]
    extra, _ = ax.get_legend_handles_labels()
    ax.legend(handles=[*extra, *handles], fontsize=7, ncols=2, loc="upper left")
    fig.tight_layout()
    return fig


def heatmap_figure(summary: dict[str, Any]) -> Figure:
    """Accuracy per corruption × severity, with the mCE (or the mean error without a reference) in the title."""
    import numpy as np

    from ...reports.plots import new_figure, no_data

    cells = list(summary.get("per_cell", []))
    names = list(dict.fromkeys(str(c["corruption"]) for c in cells))
    severities = sorted({int(c["severity"]) for c in cells})
    fig, (ax,) = new_figure(6.5, max(3.0, 0.32 * len(names) + 1.5))
    if not cells:
        no_data(ax, "no corruption cells")
        return fig
    grid = np.full((len(names), len(severities)), np.nan)
    for cell in cells:
        grid[names.index(str(cell["corruption"])), severities.index(int(cell["severity"]))] = cell["accuracy"]
    image = ax.imshow(np.ma.masked_invalid(grid), cmap="RdYlGn", vmin=0, vmax=1, aspect="auto")
    for (i, j), value in np.ndenumerate(grid):
        if np.isfinite(value):
            ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=7)
    ax.set_xticks(range(len(severities)), [str(s) for s in severities])
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.set_xlabel("severity")
    mce, stderr = summary.get("mCE"), summary.get("mCE_stderr")
    if finite(mce):
        title = f"mCE = {mce:.1f}" + (f" ± {stderr:.1f}" if finite(stderr) else "")
    elif finite(summary.get("mean_error")):
        title = f"mean error = {summary['mean_error']:.1%} (no mCE reference)"
    else:
        title = "accuracy per corruption and severity"
    ax.set_title(title, fontsize=10)
    fig.colorbar(image, ax=ax, label="accuracy")
    fig.tight_layout()
    return fig


def noise_curve_figure(summary: dict[str, Any]) -> Figure:
    """Accuracy vs the σ of additive Gaussian noise, with the clean accuracy for reference."""
    from ...reports.plots import new_figure, no_data

    points = sorted(summary.get("noise_curve", []), key=lambda p: float(p["sigma"]))
    fig, (ax,) = new_figure(6.0, 4.0)
    if not points:
        no_data(ax, "no noise sweep (run with --noise-levels)")
        return fig
    ax.plot([p["sigma"] for p in points], [p["accuracy"] for p in points], marker="o", label="Gaussian noise")
    clean = summary.get("clean_accuracy")
    if finite(clean):
        ax.axhline(float(clean), color="grey", ls="--", lw=0.9, label=f"clean {float(clean):.1%}")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("noise σ (pixel units in [0, 1])")
    ax.set_ylabel("accuracy")
    ax.set_title("Accuracy under additive Gaussian noise", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
