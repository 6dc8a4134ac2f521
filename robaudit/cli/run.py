"""``robaudit run SUITE``: run a suite file (or a built-in suite) of robaudit commands into one folder.

The suite machinery lives in :mod:`robaudit.suite`; this module reads the command line, prints the steps as
they run (each step's summary as a table, or one JSON document at the end with ``--json``) and is shared
with ``robaudit demo``, which is the built-in suite ``demo``.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from . import options as o

if TYPE_CHECKING:
    from ..suite import CommandTree, PlannedStep, StepRecord, Suite

SUITE = "Suite"


def command_tree() -> CommandTree:
    """The robaudit commands, as the suite runner sees them."""
    from ..suite import CommandTree
    from . import app

    return CommandTree(typer.main.get_command(app))


def load(name: str, *, sets: list[str] | None = None, force: Mapping[str, Any] | None = None) -> Suite:
    from ..suite import load_suite

    return load_suite(name, command_tree(), sets=sets, force=force)


class StepPrinter:
    """Tells people what the suite does: command lines and skips on stderr, summaries on stdout."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json

    def start(self, planned: PlannedStep, number: int, total: int, argv: list[str]) -> None:
        from .output import stderr

        stderr.print(
            f"[{number}/{total}] {planned.id}: {shlex.join(argv)}",
            style="bold",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )

    def skip(self, planned: PlannedStep, number: int, total: int, record: StepRecord) -> None:
        from .output import stderr

        stderr.print(f"[{number}/{total}] {planned.id}: finished before, skipped", markup=False, highlight=False)

    def done(self, planned: PlannedStep, record: StepRecord, stdout: str) -> None:
        from .output import print_summary
        from .output import stdout as console

        if self.as_json:
            return
        if isinstance(record.summary, dict):
            print_summary(f"{planned.id}: robaudit {planned.info.label}", record.summary)
        elif stdout.strip():
            console.print(stdout.rstrip(), markup=False, highlight=False)


def summaries(suite: Suite, records: Mapping[str, StepRecord]) -> dict[str, Any]:
    """Per step name (per variant, then step name, with variants) the summary each step printed."""
    if not suite.variants:
        return {s.name: records[s.name].summary for s in suite.steps}
    return {v.name: {s.name: records[f"{v.name}/{s.name}"].summary for s in suite.steps} for v in suite.variants}


def dry_run(suite: Suite, out: Path, as_json: bool) -> None:
    """Print every planned command line; step references stay as written."""
    from ..suite.execute import arguments, place, plan_suite, validate_plan
    from ..suite.references import map_strings, substitute
    from .output import print_json, stdout

    plan = plan_suite(suite, command_tree(), out)
    validate_plan(plan, suite, out)
    lines = []
    for planned in plan:

        def lookup(name: str, planned: PlannedStep = planned) -> str:
            value = place(name, planned, suite, out)
            return "{" + name + "}" if value is None else value

        options = {k: map_strings(v, lambda text: substitute(text, lookup)) for k, v in planned.options.items()}
        lines.append({"id": planned.id, "argv": ["robaudit", *arguments(planned, options)]})
    if as_json:
        print_json({"suite_sha256": suite.digest(), "steps": lines}, files={"out": out})
        return
    for line in lines:
        stdout.print(f"{line['id']}: {shlex.join(line['argv'])}", markup=False, highlight=False, soft_wrap=True)


def run_suite(
    suite: Suite, out: Path, *, resume: bool = False, overwrite: bool = False, as_json: bool = False
) -> dict[str, Any]:
    """Run ``suite`` into ``out``, printing as it goes; returns the summaries (see :func:`summaries`)."""
    from ..distributed import world
    from ..suite import MANIFEST_NAME, SuiteRun
    from .output import print_json, stderr

    if suite.description and not as_json and world().main:
        stderr.print(f"suite {suite.source}: {suite.description}", markup=False, highlight=False)
    run = SuiteRun(suite, command_tree(), out, resume=resume, overwrite=overwrite, reporter=StepPrinter(as_json))
    records = run.run()
    if not records and not world().main:  # under torchrun rank 0 tells how the suite went
        return {}
    result = summaries(suite, records)
    if as_json:
        print_json(result, files={"reports": out, "manifest": out / MANIFEST_NAME})
    else:
        stderr.print(f"suite finished: {len(records)} steps, manifest {out / MANIFEST_NAME}", markup=False)
    return result


def run_command(
    suite: Annotated[
        str | None,
        typer.Argument(
            help="A suite file (.toml) or a built-in suite name (demo, example, train).", show_default=False
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", "-o", help="Report folder (default: the suite's out, else robaudit-suite).", rich_help_panel=SUITE
        ),
    ] = None,
    sets: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="Change a value of the suite: run.limit=100, steps.2.eps=0.03, steps.NAME.KEY=V, variants.N.KEY=V, "
            "out=DIR (VALUE is read as TOML; repeatable).",
            rich_help_panel=SUITE,
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option("--model", "-m", help="Use this model in every step that takes --model.", rich_help_panel=SUITE),
    ] = None,
    device: Annotated[
        str | None,
        typer.Option("--device", help="Run every step on this device (auto, cpu, cuda:N).", rich_help_panel=SUITE),
    ] = None,
    limit: Annotated[
        int | None,
        typer.Option("--limit", help="Use N images in every step that takes --limit.", rich_help_panel=SUITE),
    ] = None,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="Continue an interrupted suite: skip finished steps, resume the one that stopped.",
            rich_help_panel=SUITE,
        ),
    ] = False,
    overwrite: Annotated[
        bool,
        typer.Option("--overwrite", help="Run again over an earlier run's folder and reports.", rich_help_panel=SUITE),
    ] = False,
    check_only: Annotated[
        bool,
        typer.Option("--dry-run", help="Check the suite and print each step's command line; run nothing."),
    ] = False,
    example: Annotated[
        bool,
        typer.Option("--example", help="Print a commented example suite (or the built-in SUITE, e.g. train) and exit."),
    ] = False,
    as_json: o.Json = False,
) -> None:
    """Run a suite: several audits and preparation steps described by one TOML file, into one folder, with a
    manifest (OUT/manifest.json) that records every step and allows --resume. See docs/suites.md."""
    from ..distributed import world
    from ..errors import InputError
    from ..suite import DEFAULT_OUT, example_text

    if (example or check_only) and not world().main:  # under torchrun, rank 0 prints it once
        return
    if example:
        print(example_text(suite or "example"), end="")
        return
    if suite is None:
        raise InputError("name a suite file or a built-in suite (robaudit run --example prints an example)")
    loaded = load(suite, sets=list(sets or []), force={"model": model, "device": device, "limit": limit})
    folder = out or Path(loaded.out or DEFAULT_OUT)
    if check_only:
        dry_run(loaded, folder, as_json)
        return
    run_suite(loaded, folder, resume=resume, overwrite=overwrite, as_json=as_json)
