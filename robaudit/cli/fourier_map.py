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
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    cells = {(c["u"], c["v"]): c["error"] for c in summary["map"]}
    cells.update({(-u, -v): e for (u, v), e in list(cells.items())})
    # a Nyquist index (-n/2, n even) is its own alias at +n/2: show it on both edges
    for axis in (0, 1):
        low = min(key[axis] for key in cells)
        if low < 0 and -low not in {c["uv"[axis]] for c in summary["map"]}:
            for key, e in list(cells.items()):
                if key[axis] == low:
                    cells[(-low, key[1]) if axis == 0 else (key[0], -low)] = e
    cells.update({(-u, -v): e for (u, v), e in list(cells.items())})
    us = sorted({u for u, _ in cells})
    vs = sorted({v for _, v in cells})
    grid = np.full((len(us), len(vs)), np.nan)
    for (u, v), e in cells.items():
        grid[us.index(u), vs.index(v)] = e
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    image = ax.imshow(np.ma.masked_invalid(grid), cmap="viridis", vmin=0, vmax=1, origin="lower")
    ticks = lambda values: [k for k in range(len(values)) if len(values) <= 17 or k % 4 == 0]  # noqa: E731
    ax.set_yticks(ticks(us), [str(us[k]) for k in ticks(us)])
    ax.set_xticks(ticks(vs), [str(vs[k]) for k in ticks(vs)])
    ax.set_ylabel("u (rows)")
    ax.set_xlabel("v (columns)")
    ax.set_title("error rate per Fourier basis perturbation", fontsize=9)
    fig.colorbar(image, ax=ax, label="error rate")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
