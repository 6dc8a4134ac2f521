"""A gate result for machines and CI systems: JSON, JUnit XML (one testcase per check) and Markdown."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from typing import Any

from .evaluate import GateResult, Outcome


def show(value: float | bool | None) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value).lower()
    return f"{value:.4g}"


def _plain(value: float | bool | None) -> float | bool | str | None:
    """JSON has no inf or NaN: such values become the strings "inf", "-inf", "nan"."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def outcome_json(outcome: Outcome) -> dict[str, Any]:
    drop = outcome.drop
    return {
        "rule": outcome.rule.label,
        "line": outcome.rule.line,
        "level": outcome.rule.level,
        "metric": outcome.metric,
        "variant": outcome.variant,
        "value": _plain(outcome.value),
        "baseline": _plain(outcome.baseline),
        "limit": outcome.limit,
        "verdict": outcome.verdict,
        "reason": outcome.reason,
        "drop": None
        if drop is None
        else {
            "drop": _plain(drop.drop),
            "interval": [_plain(drop.low), _plain(drop.high)],
            "method": drop.method,
            "significant": drop.significant,
            "max_drop": drop.max_drop,
        },
    }


def result_json(result: GateResult) -> dict[str, Any]:
    return {
        "passed": not result.failed,
        "exit_code": result.exit_code,
        "reports": str(result.reports),
        "baseline": str(result.baseline) if result.baseline else None,
        "confidence": result.confidence,
        "counts": result.counts(),
        "notes": result.notes,
        "checks": [outcome_json(o) for o in result.outcomes],
    }


def _testcase_name(outcome: Outcome) -> str:
    return f"{outcome.rule.label}: {outcome.address}"


def junit_xml(result: GateResult) -> str:
    """JUnit XML: a failed fail-level check is a <failure>; a warning passes with the reason in <system-out>;
    a check that could not run (max_drop without a baseline) is <skipped>."""
    counts = result.counts()
    attributes = {
        "tests": str(len(result.outcomes)),
        "failures": str(counts["fail"]),
        "errors": "0",
        "skipped": str(counts["skip"]),
    }
    root = ET.Element("testsuites", {"name": "robaudit gate", **attributes})
    suite = ET.SubElement(root, "testsuite", {"name": f"robaudit gate {result.reports}", **attributes})
    properties = ET.SubElement(suite, "properties")
    for name, value in (("confidence", result.confidence), ("baseline", result.baseline or "")):
        ET.SubElement(properties, "property", {"name": name, "value": str(value)})
    for outcome in result.outcomes:
        case = ET.SubElement(suite, "testcase", {"classname": "robaudit.gate", "name": _testcase_name(outcome)})
        detail = (
            f"metric {outcome.address} = {show(outcome.value)}; baseline {show(outcome.baseline)}; "
            f"limit {outcome.limit}; {outcome.reason}"
        )
        if outcome.verdict == "fail":
            failure = ET.SubElement(case, "failure", {"message": outcome.reason, "type": "robaudit.gate"})
            failure.text = detail
        elif outcome.verdict == "skip":
            ET.SubElement(case, "skipped", {"message": outcome.reason})
        else:
            out = ET.SubElement(case, "system-out")
            out.text = ("WARNING: " if outcome.verdict == "warn" else "") + detail
    if result.notes:
        ET.SubElement(suite, "system-out").text = "\n".join(result.notes)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


_ICONS = {"pass": "✅ pass", "warn": "⚠️ warn", "fail": "❌ fail", "skip": "⏭️ skip"}


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown(result: GateResult) -> str:
    """A Markdown section for a CI job summary ($GITHUB_STEP_SUMMARY)."""
    lines = [
        f"### {result.headline()}",
        "",
        f"Reports `{result.reports}`"
        + (f", baseline `{result.baseline}`" if result.baseline else "")
        + f", confidence {result.confidence:g}.",
        "",
        "| rule | metric | value | baseline | limit | verdict | reason |",
        "|---|---|---|---|---|---|---|",
    ]
    for o in result.outcomes:
        cells = [o.rule.label, f"`{o.address}`", show(o.value), show(o.baseline), o.limit, _ICONS[o.verdict], o.reason]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    lines += [f"\n> {note}" for note in result.notes]
    return "\n".join(lines) + "\n\n"
