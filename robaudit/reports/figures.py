"""Figures of audit summaries: one builder per figure, each returning a matplotlib ``Figure``.

Builders take what a finished report yields (a summary dict, or arrays stored in its metadata) and draw
nothing else, so the audit commands (a PNG next to the report) and the HTML report (inline SVG, and a PNG
under ``figures/``) show the same picture. Figures are made without ``pyplot``: no global figure registry,
no GUI backend, nothing to close, and safe to build many of them in one process.

:func:`save_png` writes a figure to a file; :func:`to_svg` renders it as SVG text that can be inlined in
an HTML page (element ids are prefixed so that several figures can share one document).
"""

from __future__ import annotations

import io
import math
import re
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeGuard

import numpy as np

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

PNG_DPI = 120
MARKERS = ("o", "s", "^", "D", "v", "P")
DASHES = ("-", "--", "-.", ":")
#: one colour per frequency band, for corruption bars (low frequencies warm, high ones cool)
BAND_COLOURS = {"low": "#d95f02", "mid": "#7570b3", "high": "#1b9e77"}


def new_figure(width: float = 6.0, height: float = 4.0, ncols: int = 1) -> tuple[Figure, list[Axes]]:
    """A figure with ``ncols`` axes side by side."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    return fig, list(axes)


def save_png(fig: Figure, path: Path, dpi: int = PNG_DPI) -> Path:
    """Write ``fig`` as a PNG at ``path`` (parent folders created) and return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=dpi, metadata={"Software": None})
    return path


def png_bytes(fig: Figure, dpi: int = PNG_DPI) -> bytes:
    """The PNG encoding of ``fig``."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, metadata={"Software": None})
    return buffer.getvalue()


def to_svg(fig: Figure, prefix: str = "fig") -> str:
    """``fig`` as an ``<svg>`` element for inlining in HTML: no XML prolog, no creation date, and every id
    (with the references to it) prefixed by ``prefix-`` so that ids of different figures never collide."""
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None})
    text = buffer.getvalue()
    text = text[text.index("<svg") :]
    text = re.sub(r"<metadata>.*?</metadata>\s*", "", text, flags=re.DOTALL)
    ids = set(re.findall(r'\sid="([^"]+)"', text))

    def rename(match: re.Match[str]) -> str:
        head, name, tail = match.group(1), match.group(2), match.group(3)
        return f"{head}{prefix}-{name}{tail}" if name in ids else match.group(0)

    text = re.sub(r'(\sid=")([^"]+)(")', rename, text)
    text = re.sub(r'(href="#)([^"]+)(")', rename, text)
    return re.sub(r"(url\(#)([^)]+)(\))", rename, text)


def _finite(value: Any) -> TypeGuard[float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _no_data(ax: Axes, message: str) -> None:
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, color="grey")
    ax.set_xticks([])
    ax.set_yticks([])


# -- clean accuracy and attacks ------------------------------------------------------------------------------


def clean_accuracy_figure(summaries: Mapping[str, Mapping[str, Any]]) -> Figure:
    """Top-1 accuracy with its 95 % interval, one horizontal bar per eval summary (keyed by label)."""
    labels = list(summaries)
    fig, (ax,) = new_figure(6.0, 1.2 + 0.45 * len(labels))
    if not labels:
        _no_data(ax, "no clean accuracy measured")
        return fig
    values = [float(summaries[k].get("top1", math.nan)) for k in labels]
    intervals = [summaries[k].get("top1_ci95") or [v, v] for k, v in zip(labels, values, strict=True)]
    lower = [max(v - float(lo), 0.0) for v, (lo, _) in zip(values, intervals, strict=True)]
    upper = [max(float(hi) - v, 0.0) for v, (_, hi) in zip(values, intervals, strict=True)]
    positions = np.arange(len(labels))[::-1]
    ax.barh(positions, values, xerr=[lower, upper], color="#4c72b0", capsize=4, height=0.6)
    for y, v, up in zip(positions, values, upper, strict=True):
        ax.text(min(v + up, 1.0) + 0.015, y, f"{v:.1%}", va="center", fontsize=8)
    ax.set_yticks(positions, labels)
    ax.set_xlim(0, 1.12)
    ax.set_xlabel("clean top-1 accuracy (95 % Wilson interval)")
    ax.set_title("Clean accuracy", fontsize=10)
    fig.tight_layout()
    return fig


def attack_curves_figure(
    summary: Mapping[str, Any], num_classes: int | None = None, clean_accuracy: float | None = None
) -> Figure:
    """Accuracy vs ε, one line per (threat, judge, ε mode) with its Wilson band, and the chance level."""
    fig, (ax,) = new_figure(6.5, 4.2)
    curves = [c for c in summary.get("curves", []) if _finite(c.get("eps"))]
    if not curves:
        _no_data(ax, "no ε sweep in this report")
        return fig
    groups: dict[tuple[str, str, str], list[Mapping[str, Any]]] = {}
    for curve in curves:
        groups.setdefault((str(curve["threat"]), str(curve["judged_by"]), str(curve["eps_mode"])), []).append(curve)
    modes = {key[2] for key in groups}
    for k, ((threat, judge, mode), points) in enumerate(groups.items()):
        points = sorted(points, key=lambda c: float(c["eps"]))
        eps = [float(c["eps"]) for c in points]
        label = f"{threat}-box, judged by {judge}" + (f" ({mode})" if len(modes) > 1 else "")
        # curves often coincide (a defense that changes nothing): markers and dashes keep each one visible
        marker, dashes = MARKERS[k % len(MARKERS)], DASHES[k % len(DASHES)]
        (line,) = ax.plot(eps, [c["accuracy"] for c in points], label=label, marker=marker, ls=dashes)
        ax.fill_between(
            eps, [c["ci95"][0] for c in points], [c["ci95"][1] for c in points], color=line.get_color(), alpha=0.2
        )
    if num_classes:
        ax.axhline(1 / num_classes, color="grey", ls="--", lw=0.9, label=f"chance (1/{num_classes})")
    if _finite(clean_accuracy):
        ax.scatter([0], [clean_accuracy], marker="*", s=90, color="black", zorder=3, label="clean (eval)")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel(f"ε ({', '.join(sorted(modes))}, pixel units in [0, 1])")
    ax.set_ylabel("accuracy under attack")
    ax.set_title("Accuracy vs ε (shaded: 95 % Wilson interval)", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def minimal_figure(summary: Mapping[str, Any], sizes: Mapping[str, Sequence[float]] | None = None) -> Figure:
    """Success rate vs ε from minimal perturbations (median marked), and their size histogram when given."""
    entries = summary.get("minimal", [])
    fig, axes = new_figure(11.0 if sizes else 6.5, 4.2, ncols=2 if sizes else 1)
    ax = axes[0]
    if not entries:
        _no_data(ax, "no minimal-perturbation results")
        return fig
    norms = sorted({str(e["norm"]) for e in entries})
    for entry in entries:
        grid = np.asarray(entry.get("success_vs_eps") or [[0.0, 0.0]], dtype=float)
        label = f"{entry['threat']}-box, judged by {entry['judged_by']}"
        (line,) = ax.step(grid[:, 0], grid[:, 1], where="post", label=label)
        median = entry.get("eps_at_50pct_success")
        if _finite(median):
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
            finite = np.asarray(values, dtype=float)
            finite = finite[np.isfinite(finite)]
            if len(finite):
                hist.hist(finite, bins=min(20, max(5, len(finite) // 2)), alpha=0.6, label=label)
        hist.set_xlabel(f"size of the smallest successful perturbation ({', '.join(norms)})")
        hist.set_ylabel("images")
        hist.set_title("Distribution of minimal perturbation sizes", fontsize=10)
        if hist.get_legend_handles_labels()[0]:
            hist.legend(fontsize=8)
    fig.tight_layout()
    return fig


# -- corruptions -----------------------------------------------------------------------------------------------


def corruption_errors_figure(summary: Mapping[str, Any]) -> Figure:
    """Per-corruption CE (reference = 100) when a reference exists, else the mean error, coloured by band."""
    rows = list(summary.get("per_corruption", []))
    fig, (ax,) = new_figure(max(6.0, 0.45 * len(rows) + 2), 4.2)
    if not rows:
        _no_data(ax, "no corruption results")
        return fig
    use_ce = all(_finite(r.get("CE")) for r in rows)
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
        ax.set_title(f"Corruption error per corruption (mCE = {mce:.1f})" if _finite(mce) else "CE", fontsize=10)
    else:
        ax.set_ylabel("top-1 error (mean over severities)")
        ax.set_title("Error per corruption (no mCE reference)", fontsize=10)
        clean = summary.get("clean_accuracy")
        if _finite(clean):
            ax.axhline(1 - float(clean), color="black", lw=0.8, ls="--", label=f"clean error {1 - float(clean):.1%}")
    from matplotlib.patches import Patch

    handles = [Patch(color=c, label=f"{band} frequency") for band, c in BAND_COLOURS.items()]
    extra, _ = ax.get_legend_handles_labels()
    ax.legend(handles=[*extra, *handles], fontsize=7, ncols=2, loc="upper left")
    fig.tight_layout()
    return fig


def corruption_heatmap_figure(summary: Mapping[str, Any]) -> Figure:
    """Accuracy per corruption × severity, with the mCE (or the mean error without a reference) in the title."""
    cells = list(summary.get("per_cell", []))
    names = list(dict.fromkeys(str(c["corruption"]) for c in cells))
    severities = sorted({int(c["severity"]) for c in cells})
    fig, (ax,) = new_figure(6.5, max(3.0, 0.32 * len(names) + 1.5))
    if not cells:
        _no_data(ax, "no corruption cells")
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
    if _finite(mce):
        title = f"mCE = {mce:.1f}" + (f" ± {stderr:.1f}" if _finite(stderr) else "")
    elif _finite(summary.get("mean_error")):
        title = f"mean error = {summary['mean_error']:.1%} (no mCE reference)"
    else:
        title = "accuracy per corruption and severity"
    ax.set_title(title, fontsize=10)
    fig.colorbar(image, ax=ax, label="accuracy")
    fig.tight_layout()
    return fig


def noise_curve_figure(summary: Mapping[str, Any]) -> Figure:
    """Accuracy vs the σ of additive Gaussian noise, with the clean accuracy for reference."""
    points = sorted(summary.get("noise_curve", []), key=lambda p: float(p["sigma"]))
    fig, (ax,) = new_figure(6.0, 4.0)
    if not points:
        _no_data(ax, "no noise sweep (run with --noise-levels)")
        return fig
    ax.plot([p["sigma"] for p in points], [p["accuracy"] for p in points], marker="o", label="Gaussian noise")
    clean = summary.get("clean_accuracy")
    if _finite(clean):
        ax.axhline(float(clean), color="grey", ls="--", lw=0.9, label=f"clean {float(clean):.1%}")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("noise σ (pixel units in [0, 1])")
    ax.set_ylabel("accuracy")
    ax.set_title("Accuracy under additive Gaussian noise", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


# -- frequency probes --------------------------------------------------------------------------------------------


def hybrid_figure(summary: Mapping[str, Any]) -> Figure:
    """D vs f_mix with its bootstrap 95 % band and the f_rev marker."""
    fig, (ax,) = new_figure(6.0, 4.0)
    curve = summary.get("curve") or []
    if not curve:
        _no_data(ax, summary.get("f_rev_note") or "no hybrid rows")
        return fig
    f = [c["fmix"] for c in curve]
    ax.fill_between(f, [c["D_ci95"][0] for c in curve], [c["D_ci95"][1] for c in curve], alpha=0.3, label="95 % CI")
    ax.plot(f, [c["D"] for c in curve], marker="o", label="D = acc(low) − acc(high)")
    ax.plot(f, [c["p_low"] - c["p_high"] for c in curve], ls="--", label="mean p(low) − p(high)")
    ax.axhline(0, color="grey", lw=0.8)
    if summary.get("f_rev") is not None:
        ax.axvline(summary["f_rev"], color="red", ls=":", label=f"f_rev = {summary['f_rev']:.3f}")
    ax.set_xscale("symlog", linthresh=0.03)
    ax.set_xlim(0, max(f))
    ax.set_xlabel("f_mix (normalized, 1 = Nyquist)")
    ax.set_ylabel("D")
    ax.set_title(summary.get("f_rev_note") or "hybrid images: reversal frequency", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def spectrum_figure(
    summary: Mapping[str, Any],
    grid: Sequence[float],
    cumulative: Sequence[float],
    mean_power: np.ndarray | None = None,
) -> Figure:
    """Radial cumulative power of perturbations with the f0.5 marker; beside it, when ``mean_power`` (the
    unshifted mean 2-D spectrum) is given, its log image with DC in the centre.

    ``summary``, ``grid`` and ``cumulative`` are what ``spectrum.parquet`` stores in its metadata.
    """
    fig, axes = new_figure(10.0 if mean_power is not None else 6.0, 4.0, ncols=2 if mean_power is not None else 1)
    left = axes[0]
    left.plot(grid, cumulative, marker="o", ms=3)
    left.axhline(0.5, color="grey", lw=0.8, ls="--")
    half = summary.get("f_half_of_mean")
    if _finite(half):
        left.axvline(float(half), color="red", lw=1, label=f"f0.5 = {float(half):.3f}")
        left.legend()
    left.set_xlabel("radius (cycles/pixel; Nyquist 0.5)")
    left.set_ylabel("cumulative power fraction")
    left.set_title("Radial cumulative power", fontsize=10)
    if mean_power is not None:
        right = axes[1]
        power = np.fft.fftshift(np.asarray(mean_power, dtype=float))
        f = np.fft.fftshift(np.fft.fftfreq(power.shape[-1]))
        with np.errstate(divide="ignore", invalid="ignore"):
            image = right.imshow(np.log10(power), origin="lower", extent=(f[0], f[-1], f[0], f[-1]), cmap="magma")
        fig.colorbar(image, ax=right, label="log10 mean power")
        right.set_xlabel("fx (cycles/pixel)")
        right.set_ylabel("fy (cycles/pixel)")
        right.set_title("Mean power spectrum (DC removed)", fontsize=10)
    fig.tight_layout()
    return fig


def corruption_spectra_figure(rows: Sequence[Mapping[str, Any]]) -> Figure:
    """Radial cumulative power of each corruption's difference image (rows of ``spectrum.difference_spectra``,
    with their ``cumulative`` (grid, values)), coloured by frequency band, f0.5 in the legend."""
    fig, (ax,) = new_figure(7.0, 4.5)
    if not rows:
        _no_data(ax, "no corruption spectra")
        return fig
    for row in rows:
        grid, curve = row["cumulative"]
        label = f"{row['corruption']} s{row['severity']} (f0.5 {row['f_half_of_mean']:.3f})"
        ax.plot(grid, curve, color=BAND_COLOURS.get(str(row["band"]), "#888888"), lw=1, label=label)
    ax.axhline(0.5, color="grey", lw=0.8, ls="--")
    ax.set_xlabel("radius (cycles/pixel; Nyquist 0.5)")
    ax.set_ylabel("cumulative power fraction")
    ax.set_title("Difference-image spectra, coloured by frequency band", fontsize=10)
    ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    return fig


def jacobian_figure(profiles: Mapping[str, Sequence[float] | np.ndarray]) -> Figure:
    """Mean singular-value profile per model (log y); ``profiles`` as :func:`~robaudit.audits.jacobian.
    singular_profiles` returns them."""
    import textwrap

    from matplotlib.ticker import MaxNLocator

    fig, (ax,) = new_figure(6.0, 4.6)
    if not profiles:
        _no_data(ax, "no Jacobian rows")
        return fig
    for label, profile in profiles.items():
        # defended models have long descriptions (the cache's parameters): wrap them below the axes
        wrapped = "\n".join(textwrap.wrap(label, 70))
        ax.plot(range(1, len(profile) + 1), profile, marker="o", label=wrapped)
    ax.set_yscale("log")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("singular value rank")
    ax.set_ylabel("mean singular value of ∂p/∂x")
    ax.set_title("Jacobian singular-value profile")
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.18), frameon=False)
    fig.tight_layout()
    return fig


def fourier_grid(cells: Sequence[Mapping[str, Any]]) -> tuple[list[int], list[int], np.ndarray]:
    """The full (u, v) plane of a Fourier-map summary's half-plane cells: rows ``us``, columns ``vs``.

    A real perturbation at (u, v) equals the one at (−u, −v), so the half plane is mirrored; a Nyquist
    index (−n/2 with n even) is its own alias at +n/2, so it is shown on both edges.
    """
    measured = {(int(c["u"]), int(c["v"])): float(c["error"]) for c in cells}
    full = dict(measured)
    full.update({(-u, -v): e for (u, v), e in measured.items()})
    for axis in (0, 1):
        low = min(key[axis] for key in full)
        if low < 0 and -low not in {key[axis] for key in measured}:
            for key, e in list(full.items()):
                if key[axis] == low:
                    full[(-low, key[1]) if axis == 0 else (key[0], -low)] = e
    full.update({(-u, -v): e for (u, v), e in list(full.items())})
    us = sorted({u for u, _ in full})
    vs = sorted({v for _, v in full})
    grid = np.full((len(us), len(vs)), np.nan)
    for (u, v), e in full.items():
        grid[us.index(u), vs.index(v)] = e
    return us, vs, grid


def fourier_map_figure(summary: Mapping[str, Any]) -> Figure:
    """Heat map of the error rate over (u, v), DC in the centre."""
    fig, (ax,) = new_figure(5.5, 4.5)
    cells = summary.get("map") or []
    if not cells:
        _no_data(ax, "no Fourier-map rows")
        return fig
    us, vs, grid = fourier_grid(cells)
    image = ax.imshow(np.ma.masked_invalid(grid), cmap="viridis", vmin=0, vmax=1, origin="lower")

    def ticks(values: list[int]) -> list[int]:
        return [k for k in range(len(values)) if len(values) <= 17 or k % 4 == 0]

    ax.set_yticks(ticks(us), [str(us[k]) for k in ticks(us)])
    ax.set_xticks(ticks(vs), [str(vs[k]) for k in ticks(vs)])
    ax.set_ylabel("u (rows)")
    ax.set_xlabel("v (columns)")
    ax.set_title("error rate per Fourier basis perturbation", fontsize=9)
    fig.colorbar(image, ax=ax, label="error rate")
    fig.tight_layout()
    return fig


# -- example images ----------------------------------------------------------------------------------------------


def image_grid_figure(
    images: Sequence[Sequence[np.ndarray | None]], column_titles: Sequence[str], row_titles: Sequence[Sequence[str]]
) -> Figure:
    """A grid of (H, W, 3) images in [0, 1]: ``images[row][column]`` (None leaves a cell blank), each titled
    by ``row_titles[row][column]`` under the column's heading."""
    from matplotlib.figure import Figure

    rows, columns = len(images), len(column_titles)
    fig = Figure(figsize=(1.3 * columns, 1.5 * rows + 0.3))
    axes = fig.subplots(rows, columns, squeeze=False)
    for r in range(rows):
        for c in range(columns):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            picture = images[r][c]
            if picture is None:
                ax.axis("off")
                continue
            ax.imshow(np.clip(picture, 0, 1), interpolation="nearest")
            heading = textwrap.fill(column_titles[c], 20) + "\n" if r == 0 else ""
            ax.set_title(heading + row_titles[r][c], fontsize=7.5)
    fig.tight_layout()
    return fig
