"""Printing for people (rich tables on stdout, progress on stderr) and for machines (``--json``)."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.table import Table

stdout = Console()
stderr = Console(stderr=True)


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if hasattr(value, "item"):
        return _clean(value.item())
    return value


def print_json(obj: Any) -> None:
    print(json.dumps(_clean(obj), indent=2, default=str))


def fmt(value: Any) -> str:
    if isinstance(value, float):
        return "n/a" if not math.isfinite(value) else f"{value:.4f}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(fmt(v) for v in value) + "]"
    return str(value)


def _nested_table(title: str, records: list[Mapping[str, Any]]) -> Table:
    columns = [k for k in records[0] if not isinstance(records[0][k], list) or len(records[0][k]) <= 2]
    table = Table(title=title, title_justify="left", header_style="bold")
    for column in columns:
        table.add_column(column, overflow="fold")
    for record in records:
        table.add_row(*(fmt(record.get(c)) for c in columns))
    return table


def print_summary(title: str, summary: Mapping[str, Any]) -> None:
    """Scalars in one metric/value table; lists of records and mappings of records as tables of their own."""
    table = Table(title=title, show_header=True, header_style="bold")
    table.add_column("metric")
    table.add_column("value", justify="right")
    nested = []
    for key, value in summary.items():
        if isinstance(value, list) and value and isinstance(value[0], Mapping):
            nested.append(_nested_table(key, value))
        elif isinstance(value, Mapping) and value and all(isinstance(v, Mapping) for v in value.values()):
            nested.append(_nested_table(key, [{"name": k, **v} for k, v in value.items()]))
        else:
            table.add_row(key, fmt(value))
    stdout.print(table)
    for extra in nested:
        stdout.print(extra)


@contextmanager
def progress_bar(description: str) -> Iterator[Any]:
    """A rich progress bar on stderr, shown from the first update on; yields a hook ``(done, total)``."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    bar = Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=stderr,
    )
    task = bar.add_task(description, total=None)

    def hook(done: int, total: int) -> None:
        if not bar.live.is_started:
            bar.start()
        bar.update(task, completed=done, total=total)

    try:
        yield hook
    finally:
        if bar.live.is_started:
            bar.stop()
