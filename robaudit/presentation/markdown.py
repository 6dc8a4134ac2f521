"""A folder of reports as Markdown (e.g. a CI job summary): metadata, key numbers, flags, every report's tables."""

from __future__ import annotations

from pathlib import Path

from ..reports.content import Table, pairs
from ..reports.folder import Variant, load_folder
from .digest import (
    comparison_table,
    flag_checkers,
    flag_reports,
    key_numbers,
    model_caveats,
    report_flags,
    report_tables,
    run_metadata,
    verdict,
)

MD_FLAG_MARKS = {"raised": "🔴 **raised**", "clear": "🟢 clear", "not run": "⚪ not run"}


def md_escape(value: str) -> str:
    """Text safe inside a Markdown table cell: no line breaks, and markup characters taken literally."""
    value = " ".join(str(value).split())
    for char in "\\`*_[]<>|":
        value = value.replace(char, "\\" + char)
    return value


def md_table(table: Table) -> str:
    lines = [
        "| " + " | ".join(md_escape(h) for h in table.header) + " |",
        "|" + "|".join("---" for _ in table.header) + "|",
        *("| " + " | ".join(md_escape(c) for c in row) + " |" for row in table.rows),
    ]
    return "\n".join(lines)


def _md_flags(variant: Variant) -> list[str]:
    reports = flag_reports(variant)
    if not reports:
        checkers = ", ".join(f"robaudit {name}" for name in flag_checkers()) or "an audit that checks flags"
        return [f"⚪ not run: no report here checks for gradient masking (run {checkers})."]
    return [
        f"- {MD_FLAG_MARKS[f.state]} `{f.name}` ({md_escape(f.report)}): {md_escape(f.evidence)}"
        for report in reports
        for f in report_flags(report)
    ]


def _md_variant(variant: Variant, level: int) -> list[str]:
    h = "#" * level
    caveats = model_caveats(variant)
    parts = []
    if caveats:
        lines = [f"- ⚠️ **{md_escape(c.name)}** ({md_escape(c.report)}): {md_escape(c.evidence)}" for c in caveats]
        parts += [f"{h} Model caveats", "\n".join(lines)]
    parts += [f"{h} Run", md_table(run_metadata(variant))]
    parts += [f"{h} Key numbers", md_table(pairs("Key numbers", key_numbers(variant).items()))]
    parts += [f"{h} Gradient-masking checks", "\n".join(_md_flags(variant))]
    for report in variant.reports:
        parts.append(f"{h} {md_escape(report.title)}")
        for table in report_tables(report):
            parts += [f"**{md_escape(table.caption)}**", md_table(table)]
    return parts


def write_markdown(folder: Path | str) -> str:
    """The digest of ``folder`` as Markdown: metadata, key numbers, gradient-masking flags, per-report tables;
    a comparison table first when the folder holds several variants."""
    loaded = load_folder(folder)
    name = Path(folder).resolve().name
    parts = [
        f"# robaudit report: {md_escape(name)}",
        f"{loaded.report_count} report(s) in {len(loaded.variants)} variant(s) under {md_escape(str(folder))}.",
        md_escape(" ".join(verdict(loaded.variants))),
    ]
    if len(loaded.variants) > 1:
        parts += ["## Comparison", md_table(comparison_table(loaded.variants))]
        for variant in loaded.variants:
            parts += [f"## Variant: {md_escape(variant.name)}", *_md_variant(variant, 3)]
    else:
        parts += _md_variant(loaded.variants[0], 2)
    if loaded.problems:
        parts += ["## Files not used", "\n".join(f"- {md_escape(p)}" for p in loaded.problems)]
    return "\n\n".join(parts) + "\n"
