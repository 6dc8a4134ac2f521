"""Named metrics: a report folder turned into a flat ``name -> value`` map that policies can address.

Summaries are nested and differ per audit; a CI gate (and anyone comparing two runs) needs stable,
flat names such as ``eval.top1`` or ``attack.white.linf.eps=0.03.accuracy``. Every metric says what it
is (``kind``: a proportion of images, a number, or a flag), how much sampling noise it carries
(``samples`` behind a proportion, or a ``stderr`` where the summary provides one) and which direction is
better, so that a regression can be told apart from noise.

Each audit names its own metrics (``Audit.metrics``) and declares their naming scheme
(``Audit.metric_patterns``: the rows of docs/ci.md); an audit that declares none gets
``<audit>.<key>`` for every numeric or boolean entry of its summary. This module knows no audit: it asks
the audit registry. ``python -m robaudit.reports.metrics --markdown`` prints the built-in scheme.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal

from ..errors import InputError, RunError

if TYPE_CHECKING:
    from pathlib import Path

    from .folder import Report

Kind = Literal["proportion", "number", "flag"]


@dataclass(frozen=True)
class Metric:
    """One named figure of a report.

    ``samples`` is the number of images behind a proportion (its binomial noise); ``stderr`` a standard
    error the summary provides for a number; ``higher_is_better`` is None when neither direction is a
    regression by itself (e.g. a frequency). ``report`` names the report file(s) it came from.
    """

    name: str
    value: float | bool
    kind: Kind
    samples: int | None = None
    stderr: float | None = None
    higher_is_better: bool | None = None
    description: str = ""
    report: str = ""


@dataclass(frozen=True)
class Pattern:
    """One row of a naming scheme: a name pattern (``<...>`` marks a variable part) and its meaning."""

    pattern: str
    kind: Kind
    higher_is_better: bool | None
    description: str

    def metric(
        self, name: str, value: Any, *, samples: int | None = None, stderr: float | None = None
    ) -> Metric | None:
        """The metric ``name`` of this pattern, or None when the summary has no value for it."""
        if value is None:
            return None
        converted: float | bool = bool(value) if self.kind == "flag" else float(value)
        return Metric(
            name=name,
            value=converted,
            kind=self.kind,
            samples=int(samples) if samples is not None and self.kind == "proportion" else None,
            stderr=float(stderr) if stderr is not None and math.isfinite(float(stderr)) else None,
            higher_is_better=self.higher_is_better,
            description=self.description,
        )


def present(metrics: Iterable[Metric | None]) -> list[Metric]:
    """The metrics that have a value, first of each name (without defenses the ``defended`` and ``backbone``
    judges of an attack are one model, and name the same metric)."""
    seen: dict[str, Metric] = {}
    for metric in metrics:
        if metric is not None:
            seen.setdefault(metric.name, metric)
    return list(seen.values())


def number_text(value: float) -> str:
    """A number as it appears inside a metric name: ``eps=0.03``, ``sigma=0.05``."""
    return f"{float(value):g}"


GENERIC = Pattern(
    "<audit>.<key>",
    "number",
    None,
    "an audit without its own metrics: each numeric (or boolean: flag) top-level summary entry",
)


def flatten_summary(audit: str, summary: Mapping[str, Any]) -> list[Metric]:
    """``<audit>.<key>`` for every numeric or boolean top-level entry (and ``<audit>.<key>.<sub>`` one level down)."""
    out = []
    for key, value in summary.items():
        if isinstance(value, Mapping):
            out += [
                metric
                for sub, inner in value.items()
                if (metric := _plain(f"{audit}.{key}.{sub}", inner, f"{key}.{sub} of the {audit} summary"))
            ]
        elif metric := _plain(f"{audit}.{key}", value, f"{key} of the {audit} summary"):
            out.append(metric)
    return out


def _plain(name: str, value: Any, description: str) -> Metric | None:
    if isinstance(value, bool):
        return Metric(name, value, "flag", description=description)
    if isinstance(value, (int, float)):
        return Metric(name, float(value), "number", description=description)
    return None


# -- the metrics of reports ----------------------------------------------------------------------------------------


def report_metrics(report: Report) -> dict[str, Metric]:
    """The named metrics of one report, as its audit names them (a derived table without an audit: flattened)."""
    audit = report.audit
    metrics = (
        audit.metrics(report.summary, report.meta)
        if audit is not None
        else flatten_summary(report.kind, report.summary)
    )
    if not isinstance(metrics, list) or not all(isinstance(m, Metric) for m in metrics):
        raise RunError(f"audit {report.kind}: metrics(summary, metadata) must return a list of robaudit Metric objects")
    return {m.name: m if m.report else replace(m, report=report.label) for m in metrics}


def metrics_of_reports(reports: Iterable[Report]) -> dict[str, Metric]:
    out: dict[str, Metric] = {}
    for report in reports:
        for name, metric in report_metrics(report).items():
            if name in out:
                raise InputError(
                    f"metric {name} comes from both {out[name].report} and {metric.report}; keep one report per "
                    "audit in a folder (put model variants into sub-folders)"
                )
            out[name] = metric
    return out


def collect_metrics(folder: Path) -> dict[str, Metric]:
    """All named metrics of the reports directly in ``folder`` (sub-folders are variants: collect them apiece)."""
    from .folder import load_reports

    return metrics_of_reports(load_reports(folder))


# -- the naming scheme ------------------------------------------------------------------------------------------


def metric_scheme(builtin_only: bool = True) -> list[tuple[str, str, str]]:
    """The naming scheme of the registered audits as (pattern, kind, description) rows, in report order; the
    description ends with the better direction. ``builtin_only`` leaves plugins' audits out (the docs table)."""
    from .. import plugins
    from ..registry import BUILTIN_SOURCE

    entries = [e for e in plugins.audits.entries() if not builtin_only or e.source == BUILTIN_SOURCE]
    audits = sorted((e.load() for e in entries), key=lambda a: (a.order, a.name))
    patterns = [p for audit in audits for p in audit.metric_patterns] + [GENERIC]
    better = {True: "higher is better", False: "lower is better", None: "no better direction"}
    return [(p.pattern, p.kind, f"{p.description} ({better[p.higher_is_better]})") for p in patterns]


def scheme_markdown() -> str:
    """The Markdown table of :func:`metric_scheme` (embedded verbatim in docs/ci.md)."""
    lines = ["| metric | kind | meaning |", "|---|---|---|"]
    for pattern, kind, description in metric_scheme():
        lines.append(f"| `{pattern}` | {kind} | {description.replace('|', '/')} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args != ["--markdown"]:
        print("usage: python -m robaudit.reports.metrics --markdown", file=sys.stderr)
        return 2
    sys.stdout.write(scheme_markdown())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
