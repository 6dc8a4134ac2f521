"""Audit commands, made from the audit registry: one command per audit, and ``robaudit audit NAME``.

Each registered audit (a plugin's too) becomes ``robaudit NAME``: the shared model, data and run options
(:mod:`.options`) plus the audit's own declared options (``Audit.options``), with the shared
``--batch-size``/``--chunk-size`` defaults the audit asks for. ``robaudit audit NAME --option key=value``
runs any registered audit with the same shared options, for audits whose name a built-in command already
uses or for scripts that take the audit's name as data. Both end in :func:`run_and_report`: run with a
progress bar, print the summary, write every figure of the audit as a PNG next to the report.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from . import options as o

if TYPE_CHECKING:
    from ..audits.base import Audit
    from ..runner import RunSpec

#: the subcommand name of an audit inside a command group of the same name (``robaudit corruptions audit``)
AUDIT = "audit"


def run_and_report(audit: Audit, spec: RunSpec, report: o.ReportOptions) -> dict[str, Any]:
    """Run ``audit`` with a progress bar, print the summary derived from the report, write its figures.
    Under torchrun only rank 0, which wrote the report, prints and writes figures (the others return {})."""
    from ..distributed import world
    from ..reports.folder import read_group
    from ..reports.plots import save_png
    from ..runner import run_audit
    from .output import print_json, print_summary, progress_bar, stderr

    with progress_bar(f"{audit.name}") as hook:
        result = run_audit(audit, spec, report.out, resume=report.resume, overwrite=report.overwrite, progress=hook)
    if not world().main:
        return {}
    finished = read_group([result.path])
    if result.chunks_resumed:
        stderr.print(f"resumed: {result.chunks_resumed} of {result.chunks_total} chunks were already done")
    figures = [
        save_png(figure.figure, report.out / f"{figure.name}.png")
        for figure in (type(audit).figures(finished) if finished.audit is not None else [])
    ]
    for message in result.exported:
        stderr.print(message)
    if report.as_json:
        files = {"report": result.path, "figures": figures, "exports": [e.target for e in audit.exports()]}
        print_json(finished.summary, files=files, audit=audit.name)
    else:
        described = finished.meta.get("data", {}).get("description", "")
        print_summary(f"{audit.name}: {_model_label(spec)} on {described}", finished.summary)
        stderr.print(f"report: {result.path}")
    for path in figures:  # on stderr either way: the people watching a --json run see them too
        stderr.print(f"plot: {path}")
    return finished.summary


def _model_label(spec: RunSpec) -> str:
    if spec.model is None:
        return "no model"
    defended = " + ".join(spec.defenses)
    return f"{spec.model.name} + {defended}" if defended else spec.model.name


def _shared_parameters(audit: type[Audit]) -> list[inspect.Parameter]:
    """The shared options of an audit command: ``--model`` (optional for audits that can run without one),
    then data and run options with the audit's batch and chunk sizes as defaults."""
    defaults = {"batch_size": audit.batch_size, "chunk_size": audit.chunk_size}
    return [
        o.parameter(option, default=defaults.get(option.name, option.default))
        for option in o.SHARED
        if option.name != "model"
    ]


def _split(values: dict[str, Any], audit: type[Audit]) -> tuple[RunSpec, o.ReportOptions, dict[str, Any]]:
    shared = {option.name: values.pop(option.name) for option in o.SHARED}
    report = o.ReportOptions(shared["out"], shared["resume"], shared["overwrite"], shared["as_json"])
    return o.run_spec(shared), report, values


def command_for(audit: type[Audit]) -> Any:
    """The typer command function of ``audit``: its own options first, then the shared ones."""
    title = audit.title or audit.name

    def command(**values: Any) -> None:
        spec, report, own = _split(values, audit)
        run_and_report(audit.build(spec, own), spec, report)

    model = o.parameter(o.MODEL_OPTIONS[0], default=None)
    own = [o.parameter(option, title) for option in audit.options]
    parameters = [model, *own, *_shared_parameters(audit)]
    command.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in parameters}
    command.__doc__ = _help(audit)
    return command


def _help(audit: type[Audit]) -> str:
    return inspect.getdoc(audit) or f"The {audit.name} audit."


def click_command(audit: type[Audit], name: str) -> Any:
    """The click command ``robaudit NAME`` of an audit (typer builds it from the generated signature)."""
    app = typer.Typer(add_completion=False)
    app.command(name, context_settings={"help_option_names": ["-h", "--help"]})(command_for(audit))
    return typer.main.get_command(app)


def generic_command(name: str = "", option: list[str] | None = None, **values: Any) -> None:
    """Run any registered audit by name: robaudit audit NAME [--option key=value ...] with the shared options;
    without NAME, list the registered audits."""
    from .. import plugins
    from ..errors import InputError
    from ..params import parse_value
    from .output import stdout

    if not name:
        for entry in plugins.audits.entries():
            stdout.print(f"{entry.name}  [dim]({entry.source})[/dim]", highlight=False)
        return
    audit = plugins.audits.get(name)
    declared = {d.name: d for d in audit.options}
    given: dict[str, Any] = {}
    for item in option or []:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise InputError(f"--option takes KEY=VALUE, got {item!r}")
        key = key.strip().replace("-", "_")
        known = declared.get(key)
        if known is not None and known.multiple:
            given.setdefault(key, []).append(text)
        else:
            given[key] = text if known is not None and known.type in (str, Path) else parse_value(text)
    spec, report, _ = _split(values, audit)
    run_and_report(audit.build(spec, given), spec, report)


generic_command.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
    [
        inspect.Parameter(
            "name",
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
            default="",
            annotation=Annotated[str, typer.Argument(help="A registered audit; none: list them.", show_default=False)],
        ),
        inspect.Parameter(
            "option",
            inspect.Parameter.KEYWORD_ONLY,
            default=None,
            annotation=Annotated[
                list[str] | None,
                typer.Option("--option", "-O", help="KEY=VALUE: one of the audit's own options (repeatable)."),
            ],
        ),
        o.parameter(o.MODEL_OPTIONS[0], default=None),
        *(o.parameter(option) for option in o.SHARED if option.name != "model"),
    ]
)
