"""``robaudit gate``: judge a report folder by a policy; exit 1 when a fail-level rule fails (for CI)."""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ..errors import EXIT_GATE_FAILED, InputError
from . import options as o

if TYPE_CHECKING:
    from ..gate import GateResult
    from ..reports.metrics import Metric

SUMMARY_ENV = "GITHUB_STEP_SUMMARY"
_STYLES = {"pass": "green", "warn": "yellow", "fail": "bold red", "skip": "dim"}


def gate_command(
    reports: Annotated[Path, typer.Argument(help="Report folder to judge (model variants of a suite in sub-folders).")],
    policy: Annotated[
        Path | None, typer.Option("--policy", "-p", help="The gate policy: a TOML file of rules.")
    ] = None,
    baseline: Annotated[
        Path | None,
        typer.Option("--baseline", "-b", help="Reports of the last release, for the max_drop rules."),
    ] = None,
    junit: Annotated[
        Path | None, typer.Option("--junit", help="Also write JUnit XML here (one testcase per checked metric).")
    ] = None,
    allow_mismatch: Annotated[
        bool,
        typer.Option("--allow-mismatch", help="Compare with a baseline measured on other data or images anyway."),
    ] = False,
    allow_random_weights: Annotated[
        bool,
        typer.Option(
            "--allow-random-weights", help="Judge reports of a model with random weights (refused otherwise)."
        ),
    ] = False,
    list_metrics: Annotated[
        bool, typer.Option("--list-metrics", help="List the metrics of the report folder and exit.")
    ] = False,
    as_json: o.Json = False,
) -> None:
    """Check reports against a policy: floors, ceilings, and drops against a baseline beyond sampling noise.

    Exit codes: 0 passed (warnings allowed), 1 a fail-level rule failed, 2 bad policy, reports or baseline,
    or a report of a model with random weights (unless --allow-random-weights).

    With $GITHUB_STEP_SUMMARY set (GitHub Actions), a Markdown table of the verdicts is appended to it.
    """
    if list_metrics:
        _list_metrics(reports, as_json)
        return
    if policy is None:
        raise InputError("--policy GATE.toml is required (or --list-metrics to see what a policy can name)")
    from rich.markup import escape

    from ..gate import evaluate, load_policy
    from ..gate.output import junit_xml, markdown, result_json
    from .output import print_json, stderr

    result = evaluate(
        load_policy(policy),
        reports,
        baseline,
        allow_mismatch=allow_mismatch,
        allow_random_weights=allow_random_weights,
    )
    if junit is not None:
        _write(junit, junit_xml(result), "--junit")
    summary_file = os.environ.get(SUMMARY_ENV)
    if summary_file:
        _append(Path(summary_file), markdown(result))
    if as_json:
        print_json(result_json(result), exit_code=EXIT_GATE_FAILED if result.failed else 0)
    else:
        _print_table(result)
    for note in result.notes:
        stderr.print(f"[yellow]note:[/yellow] {escape(note)}", highlight=False, soft_wrap=True)
    if result.failed:
        raise typer.Exit(EXIT_GATE_FAILED)


def _print_table(result: GateResult) -> None:
    from rich.markup import escape
    from rich.table import Table

    from ..gate.output import show
    from .output import stdout

    table = Table(title=escape(f"gate: {result.reports}"), title_justify="left", header_style="bold")
    for column in ("rule", "metric", "value", "baseline", "limit", "verdict", "reason"):
        table.add_column(column, overflow="fold", justify="right" if column in ("value", "baseline") else "left")
    for outcome in result.outcomes:
        style = _STYLES[outcome.verdict]
        table.add_row(
            escape(outcome.rule.label),
            escape(outcome.address),
            show(outcome.value),
            show(outcome.baseline),
            outcome.limit,
            f"[{style}]{outcome.verdict}[/{style}]",
            escape(outcome.reason),
        )
    stdout.print(table)
    style = "bold red" if result.failed else "green"
    stdout.print(f"[{style}]{result.headline()}[/{style}]", highlight=False)


def _list_metrics(reports: Path, as_json: bool) -> None:
    from rich.markup import escape
    from rich.table import Table

    from ..gate.output import show
    from ..reports.folder import report_files, variant_folders
    from ..reports.metrics import collect_metrics
    from .output import print_json, stdout

    if reports.is_dir() and not report_files(reports) and variant_folders(reports):
        sets: dict[str | None, dict[str, Metric]] = {v.name: collect_metrics(v) for v in variant_folders(reports)}
    else:
        sets = {None: collect_metrics(reports)}
    if as_json:
        print_json([_metric_json(variant, m) for variant, metrics in sets.items() for m in metrics.values()])
        return
    better = {True: "higher", False: "lower", None: "-"}
    for variant, metrics in sets.items():
        title = escape(f"metrics of {reports / variant if variant else reports}")
        table = Table(title=title, title_justify="left")
        table.add_column("metric", overflow="fold", min_width=30)
        for column in ("kind", "value", "n", "stderr", "better", "report"):
            table.add_column(column, overflow="fold")
        for m in metrics.values():
            stderr = show(m.stderr) if m.stderr is not None else "-"
            samples = str(m.samples) if m.samples is not None else "-"
            row = (m.name, m.kind, show(m.value), samples, stderr, better[m.higher_is_better], m.report)
            table.add_row(*(escape(cell) for cell in row))
        stdout.print(table)


def _metric_json(variant: str | None, metric: Metric) -> dict[str, Any]:
    return {"variant": variant, **asdict(metric)}


def _write(path: Path, text: str, option: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    except OSError as exc:
        raise InputError(f"{option} {path}: cannot write ({exc.strerror or exc})") from exc


def _append(path: Path, text: str) -> None:
    try:
        with path.open("a", encoding="utf-8") as handle:
            handle.write(text)
    except OSError as exc:
        raise InputError(f"${SUMMARY_ENV} {path}: cannot append the summary ({exc.strerror or exc})") from exc
