"""``robaudit jacobian``: input-output Jacobian norms of the backbone and the defended model, with a plot."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from . import options as o
from .audit_commands import run_and_report

if TYPE_CHECKING:
    import pandas as pd

    from ..runner import RunSpec

JACOBIAN = "Jacobian"


def plot_profiles(rows: pd.DataFrame, path: Path) -> Path:
    """Write the mean singular-value profile per model (log y) to ``path``."""
    from ..audits.jacobian import singular_profiles
    from ..reports.figures import jacobian_figure, save_png

    return save_png(jacobian_figure(singular_profiles(rows)), path)


@o.audit_command(batch_size=16)
def jacobian_command(
    spec: RunSpec,
    report: o.ReportOptions,
    top_k: Annotated[
        int, typer.Option("--top-k", help="Singular values kept per image.", rich_help_panel=JACOBIAN)
    ] = 5,
    method: Annotated[
        str,
        typer.Option(
            "--method",
            help="auto (exact up to 100 classes), exact (one backward pass per class) or randomized "
            "(power iteration + Hutchinson probes).",
            rich_help_panel=JACOBIAN,
        ),
    ] = "auto",
    probes: Annotated[
        int, typer.Option("--probes", help="Hutchinson probes (randomized method).", rich_help_panel=JACOBIAN)
    ] = 16,
    power_iters: Annotated[
        int,
        typer.Option("--power-iters", help="Power iterations (randomized method).", rich_help_panel=JACOBIAN),
    ] = 20,
) -> None:
    """Jacobian of softmax probabilities w.r.t. pixels: Frobenius norm, top singular values, predicted-row
    norm, for the backbone and (with --defense) the defended model; writes OUT/jacobian.png."""
    from .. import plugins
    from ..data import parse_shard
    from ..reports.read import read_report
    from ..runner import report_path
    from .output import stderr

    audit = plugins.audits.get("jacobian")(
        top_k=top_k, method=method, probes=probes, power_iters=power_iters, seed=spec.seed
    )
    run_and_report(audit, spec, report)
    rows, _ = read_report(report_path(report.out, "jacobian", parse_shard(spec.shard)))
    stderr.print(f"plot: {plot_profiles(rows, report.out / 'jacobian.png')}")
