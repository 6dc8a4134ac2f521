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
    from ..reports.figures import hybrid_figure, save_png

    return save_png(hybrid_figure(summary), path)
