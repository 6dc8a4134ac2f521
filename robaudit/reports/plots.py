"""Drawing helpers shared by every audit's figures: a new figure, PNG and inline-SVG output, a picture grid.

Figures are made without ``pyplot``: no global figure registry, no GUI backend, nothing to close, and safe
to build many of them in one process. matplotlib is imported only when a figure is drawn.

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

if TYPE_CHECKING:
    import numpy as np
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

PNG_DPI = 120
MARKERS = ("o", "s", "^", "D", "v", "P")
DASHES = ("-", "--", "-.", ":")
#: one colour per frequency band (low frequencies warm, high ones cool)
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


def finite(value: Any) -> TypeGuard[float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def no_data(ax: Axes, message: str) -> None:
    """Say on an empty axes why there is nothing to draw."""
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, color="grey")
    ax.set_xticks([])
    ax.set_yticks([])


#: a path with at least one folder (absolute, home-relative or relative): its last component is kept
_PATH = re.compile(r"(?<![\w.])(?:[A-Za-z]:|~|\.{1,2})?(?:[/\\][^/\\\s,()=']+)*[/\\]([^/\\\s,()=']+)")


def legend_label(label: str, width: int = 70) -> str:
    """A legend label (a defended model's description) without the folders of the paths it names (a figure
    is shared; its reader's folders are not the author's) and wrapped onto several lines."""
    return "\n".join(textwrap.wrap(_PATH.sub(r"\1", label), width))


def interval_bars_figure(
    values: Mapping[str, tuple[float | None, Sequence[float] | None]], xlabel: str, title: str
) -> Figure:
    """One horizontal bar per label for a proportion with its interval: ``{label: (value, (low, high))}``."""
    import numpy as np

    labels = [k for k, (v, _) in values.items() if finite(v)]
    fig, (ax,) = new_figure(6.0, 1.2 + 0.45 * max(len(labels), 1))
    if not labels:
        no_data(ax, "nothing measured")
        return fig
    points = [float(values[k][0]) for k in labels]  # type: ignore[arg-type]
    bounds = [values[k][1] or (v, v) for k, v in zip(labels, points, strict=True)]
    lower = [max(v - float(lo), 0.0) for v, (lo, _) in zip(points, bounds, strict=True)]
    upper = [max(float(hi) - v, 0.0) for v, (_, hi) in zip(points, bounds, strict=True)]
    positions = np.arange(len(labels))[::-1]
    ax.barh(positions, points, xerr=[lower, upper], color="#4c72b0", capsize=4, height=0.6)
    for y, v, up in zip(positions, points, upper, strict=True):
        ax.text(min(v + up, 1.0) + 0.015, y, f"{v:.1%}", va="center", fontsize=8)
    ax.set_yticks(positions, labels)
    ax.set_xlim(0, 1.12)
    ax.set_xlabel(xlabel)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def image_grid_figure(
    images: Sequence[Sequence[np.ndarray | None]], column_titles: Sequence[str], row_titles: Sequence[Sequence[str]]
) -> Figure:
    """A grid of (H, W, 3) images in [0, 1]: ``images[row][column]`` (None leaves a cell blank), each titled
    by ``row_titles[row][column]`` under the column's heading."""
    import numpy as np
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
