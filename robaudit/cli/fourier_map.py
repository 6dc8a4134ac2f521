"""``robaudit fourier-map``: the Fourier heat map of Yin et al. (2019), with a PNG of the error over (u, v)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from . import options as o

if TYPE_CHECKING:
    from ..runner import RunSpec

FOURIER = "Fourier map"


@o.audit_command()
def fourier_map_command(
    spec: RunSpec,
    report: o.ReportOptions,
    norm: Annotated[
        float,
        typer.Option(
            "--norm", help="L2 norm ε of the perturbation per channel (4 suits 32×32).", rich_help_panel=FOURIER
        ),
    ] = 4.0,
    step: Annotated[
        int,
        typer.Option("--step", help="Use every s-th u and v (cost falls as 1/s²).", rich_help_panel=FOURIER),
    ] = 1,
) -> None:
    """Fourier heat map: the error rate when every image is perturbed along one Fourier basis image, per
    frequency (u, v), with a heat map of it."""
    from .. import plugins
    from .audit_commands import run_and_report
    from .output import stderr

    audit = plugins.audits.get("fourier-map")(norm=norm, step=step, seed=spec.seed)
    summary = run_and_report(audit, spec, report)
    stderr.print(f"plot: {plot_fourier_map(summary, report.out / 'fourier-map.png')}")


def plot_fourier_map(summary: dict[str, Any], path: Path) -> Path:
    """Heat map of the error rate over (u, v), DC in the centre, the half plane mirrored to the full one."""
    from ..reports.figures import fourier_map_figure, save_png

    return save_png(fourier_map_figure(summary), path)
