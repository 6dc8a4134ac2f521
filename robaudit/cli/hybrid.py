"""``robaudit hybrid``: the hybrid-image audit (reversal frequency f_rev), with a plot of D(f_mix)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from . import options as o

if TYPE_CHECKING:
    from ..runner import RunSpec

HYBRID = "Hybrid"


@o.audit_command()
def hybrid_command(
    spec: RunSpec,
    report: o.ReportOptions,
    fmix: Annotated[
        str | None,
        typer.Option(
            "--fmix",
            help="Mixing frequencies to sweep, comma-separated, normalized (1 = Nyquist); "
            "default: the 18-point grid of Li et al. 2023.",
            rich_help_panel=HYBRID,
        ),
    ] = None,
    repeats: Annotated[
        int, typer.Option("--repeats", help="Independent random pairings (f_rev: mean ± std).", rich_help_panel=HYBRID)
    ] = 1,
) -> None:
    """Hybrid images (low frequencies of one image, high of another class's): where the model's decision
    reverses from the high image to the low one (f_rev), with a plot of D(f_mix)."""
    from .. import plugins
    from .audit_commands import run_and_report
    from .output import stderr

    grid = o.floats(fmix, "--fmix")
    audit = plugins.audits.get("hybrid")(fmix=list(grid) if grid else None, repeats=repeats, seed=spec.seed)
    summary = run_and_report(audit, spec, report)
    stderr.print(f"plot: {plot_hybrid(summary, report.out / 'hybrid.png')}")


def plot_hybrid(summary: dict[str, Any], path: Path) -> Path:
    """D vs f_mix with its bootstrap 95 % band and the f_rev marker, as a PNG at ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curve = summary["curve"]
    f = [c["fmix"] for c in curve]
    fig, ax = plt.subplots(figsize=(6, 4))
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
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
