"""Printing for people (rich tables on stdout, progress on stderr) and for machines (``--json``).

When stdout is not a terminal (a pipe, a file, CI) tables are printed at full width instead of wrapped at
80 columns; when stderr is not a terminal the progress bar becomes plain lines (done/total, rate, ETA)
written every few seconds, so that a log shows how far a long run got.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TextIO

from rich.console import Console
from rich.table import Table

#: width of tables printed to a pipe or file: wide enough that no cell is ever folded
PIPE_WIDTH = 1000
#: seconds between two plain progress lines
PROGRESS_EVERY = 10.0


def _console(stream: TextIO, *, stderr: bool) -> Console:
    terminal = stream.isatty()
    return Console(stderr=stderr, width=None if terminal else PIPE_WIDTH)


stdout = _console(sys.stdout, stderr=False)
stderr = _console(sys.stderr, stderr=True)


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


def envelope(
    command: str,
    exit_code: int,
    *,
    result: Any = None,
    files: Mapping[str, Any] | None = None,
    error: Mapping[str, str] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """What every command prints with ``--json`` (docs/usage.md, "Machine-readable output"): the command,
    its exit code, the files it wrote, its ``result`` (an audit's summary, a listing, ...) and ``error``
    (None, or the message and its kind) — the same keys for every command, success or failure."""
    from .. import __version__

    return {
        "robaudit": __version__,
        "command": command,
        "exit_code": exit_code,
        **extra,
        "files": {
            k: str(v) if not isinstance(v, (list, tuple)) else [str(p) for p in v] for k, v in (files or {}).items()
        },
        "result": result,
        "error": dict(error) if error is not None else None,
    }


def print_json(result: Any, *, files: Mapping[str, Any] | None = None, exit_code: int = 0, **extra: Any) -> None:
    """Print the ``--json`` envelope of the running command (named by click's context)."""
    context = _current_context()
    command = context.command_path.partition(" ")[2] if context is not None else ""
    # a group whose default subcommand is its audit (``corruptions`` runs ``corruptions audit``) is named as typed
    command = command.removesuffix(" audit")
    write_json(envelope(command, exit_code, result=result, files=files, **extra))


def _current_context() -> Any:
    """The running command's click context (typer may run its vendored copy of click)."""
    try:
        from typer._click import globals as click_globals
    except ImportError:
        from click import globals as click_globals  # type: ignore[no-redef]
    return click_globals.get_current_context(silent=True)


def write_json(document: Mapping[str, Any]) -> None:
    print(json.dumps(_clean(document), indent=2, default=str), flush=True)


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
    # the title on its own line: as a table title it would be wrapped to the (narrow) table's width
    stdout.print(title, style="bold", highlight=False, markup=False)
    table = Table(show_header=True, header_style="bold")
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


def _duration(seconds: float) -> str:
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def plain_progress(description: str, write: Callable[[str], None], every: float = PROGRESS_EVERY) -> Any:
    """A progress hook ``(done, total)`` that writes a line at most every ``every`` seconds, and at the end."""
    started = time.monotonic()
    last = -math.inf
    finished = False

    def hook(done: int, total: int) -> None:
        nonlocal last, finished
        now = time.monotonic()
        if (now - last < every and done < total) or (finished and done >= total):
            return
        last, finished = now, done >= total
        elapsed = now - started
        rate = done / elapsed if elapsed > 0 else 0.0
        eta = (total - done) / rate if rate > 0 else math.nan
        share = f" ({100 * done / total:.0f} %)" if total else ""
        remaining = _duration(eta) if math.isfinite(eta) else "?"
        write(
            f"{description}: {done}/{total}{share}, {rate:.1f} images/s, elapsed {_duration(elapsed)}, ETA {remaining}"
        )

    return hook


@contextmanager
def progress_bar(description: str) -> Iterator[Any]:
    """Progress on stderr, shown from the first update on; yields a hook ``(done, total)``: a rich bar on a
    terminal, plain lines elsewhere. Under torchrun every rank writes plain lines (a live bar would be torn
    by the other ranks' lines on the same terminal): rank 0 the whole job's progress, the others their own,
    each line naming its rank."""
    from ..distributed import world

    here = world()
    if here.active:
        label = f"{description} (all {here.size} ranks)" if here.main else f"{description} [rank {here.rank}]"
        yield plain_progress(label, lambda line: print(line, file=sys.stderr, flush=True))
        return
    if not sys.stderr.isatty():
        yield plain_progress(description, lambda line: print(line, file=sys.stderr, flush=True))
        return
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
