"""What a report says, free of any output format: tables, gradient-masking flags, figures.

Audits describe their summaries with these objects (``Audit.tables``, ``Audit.flags``, ``Audit.figures``);
the presentation layer draws them as HTML, Markdown or terminal tables without knowing any audit. The
number formatting helpers live here too, so that every table prints a percentage or an interval the same
way.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeGuard

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: how a flag that a summary reports is shown: raised (True), checked and clear (False), not run (None)
FLAG_STATES = {True: "raised", False: "clear", None: "not run"}


@dataclass
class Table:
    caption: str
    header: list[str]
    rows: list[list[str]]


@dataclass
class Flag:
    """One symptom an audit checked: ``state`` is "raised", "clear" or "not run"; ``report`` names the file."""

    name: str
    state: str
    evidence: str
    report: str = ""


@dataclass
class FigureSpec:
    """One figure of a report: a file-safe ``name`` (unique within the audit), a caption, the figure."""

    name: str
    caption: str
    figure: Figure


@dataclass
class ExamplePerturbation:
    """A perturbation an audit kept for the image of data index ``index``, to show beside it: ``delta``
    (C, H, W) in pixel units, the ``column`` heading it is shown under, and the model's prediction on the
    perturbed image (a class index; None if the audit did not judge it)."""

    index: int
    delta: Any
    column: str
    prediction: int | None = None


# -- numbers as table text ---------------------------------------------------------------------------------------


def finite(value: Any) -> TypeGuard[float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def pct(value: Any, digits: int = 1) -> str:
    return f"{100 * value:.{digits}f} %" if finite(value) else "–"


def interval(pair: Any) -> str:
    if not pair or len(pair) != 2 or not all(finite(v) for v in pair):
        return "–"
    return f"[{100 * pair[0]:.1f}, {100 * pair[1]:.1f}] %"


def num(value: Any, digits: int = 3) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    return f"{value:.{digits}g}" if finite(value) else "–"


def text(value: Any) -> str:
    """Any summary value as table text."""
    if value is None:
        return "–"
    if isinstance(value, (bool, int, float)):
        return num(value)
    if isinstance(value, (list, tuple)):
        return ", ".join(text(v) for v in value)
    return str(value)


def pairs(caption: str, items: Iterable[tuple[str, str]]) -> Table:
    """A two-column figure/value table."""
    return Table(caption, ["figure", "value"], [[k, v] for k, v in items])


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


def generic_tables(summary: Mapping[str, Any]) -> list[Table]:
    """Any summary as tables: its scalar figures, then one table per mapping of scalars and per list of records
    (what an audit without its own ``tables`` shows)."""
    tables = [pairs("Summary", [(str(k), text(v)) for k, v in summary.items() if _scalar(v)])]
    for key, value in summary.items():
        if isinstance(value, Mapping) and value and all(_scalar(v) for v in value.values()):
            tables.append(pairs(str(key), [(str(k), text(v)) for k, v in value.items()]))
        elif isinstance(value, list) and value and all(isinstance(v, Mapping) for v in value):
            columns = list(dict.fromkeys(str(k) for row in value for k, v in row.items() if _scalar(v)))
            tables.append(Table(str(key), columns, [[text(row.get(c)) for c in columns] for row in value]))
    return tables


def summary_flags(summary: Mapping[str, Any]) -> list[Flag]:
    """The flags of a summary that follows the convention ``{"flags": {name: {"flag": bool|None, "evidence":
    str}}}`` (``flag`` None: not checked)."""
    found = summary.get("flags") or {}
    if not isinstance(found, Mapping):
        return []
    return [
        Flag(str(name), FLAG_STATES.get(entry.get("flag"), "not run"), str(entry.get("evidence", "")))
        for name, entry in found.items()
        if isinstance(entry, Mapping)
    ]
