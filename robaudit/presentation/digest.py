"""What a folder of reports says, format-free: run metadata, key numbers, flags and tables per variant.

Each report is described by the audit that wrote it (``Audit.tables``, ``Audit.key_numbers``,
``Audit.flags``, ``Audit.clean_accuracy``); this module knows no audit by name, so a plugin's audit is shown
like a built-in one. A report without an audit (a table with a stored summary) is shown as generic tables.
:mod:`.html` draws the digest with figures, :mod:`.markdown` prints it as Markdown.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..reports.content import Flag, Table, generic_tables, pairs, pct
from ..reports.folder import Report, Variant

MASKING_KEY = "masking flags raised"


def model_caveats(variant: Variant) -> list[Flag]:
    """What the reports' models come with (random weights, unknown normalization): one raised flag per
    distinct caveat, naming the reports that share it (:mod:`robaudit.models.caveats`)."""
    found: dict[tuple[str, str], list[str]] = {}
    for report in variant.reports:
        for caveat in (report.meta.get("model") or {}).get("caveats") or []:
            if isinstance(caveat, dict):
                key = (str(caveat.get("code", "")), str(caveat.get("message", "")))
                found.setdefault(key, []).append(report.name)
    return [
        Flag(f"model caveat: {code}", "raised", message, ", ".join(names)) for (code, message), names in found.items()
    ]


def report_tables(report: Report) -> list[Table]:
    """The key numbers of one report as tables."""
    audit = report.audit
    return audit.tables(report.summary, report.meta) if audit is not None else generic_tables(report.summary)


def report_flags(report: Report) -> list[Flag]:
    """The flags one report raised or cleared, with the report's name."""
    audit = report.audit
    if audit is None:
        return []
    return [Flag(f.name, f.state, f.evidence, f.report or report.name) for f in audit.flags(report.summary)]


def flag_reports(variant: Variant) -> list[Report]:
    """The reports of a variant whose audits check flags (e.g. the attack's gradient-masking checks)."""
    return [r for r in variant.reports if r.audit is not None and r.audit.raises_flags]


def flag_checkers() -> list[str]:
    """The registered audits that check flags, to name in a "not checked" note."""
    from .. import plugins

    names = []
    for entry in plugins.audits.entries():
        try:
            if entry.load().raises_flags:
                names.append(entry.name)
        except Exception:  # a broken plugin must not break a page about other reports
            continue
    return names


def clean_accuracy(variant: Variant) -> tuple[float | None, list[float] | None, str]:
    """Clean top-1 accuracy, its interval and the report it comes from: the first report (in report order)
    whose audit measured one."""
    for report in variant.reports:
        audit = report.audit
        found = audit.clean_accuracy(report.summary) if audit is not None else None
        if found is not None:
            return found[0], found[1], report.name
    return None, None, ""


def key_numbers(variant: Variant) -> dict[str, str]:
    """The few numbers that characterize a variant, by label (compared across variants)."""
    accuracy, _, _ = clean_accuracy(variant)
    out: dict[str, str] = {"clean top-1": pct(accuracy)}
    for report in variant.reports:
        audit = report.audit
        if audit is not None:
            for key, value in audit.key_numbers(report.summary, report.meta).items():
                out.setdefault(key, value)
    checked = [f for report in flag_reports(variant) for f in report_flags(report)]
    if checked:
        raised = sum(f.state == "raised" for f in checked)
        run = sum(f.state != "not run" for f in checked)
        out[MASKING_KEY] = f"{raised} of {run} checked" if run else "not run"
    return out


def comparison_table(variants: list[Variant]) -> Table:
    """The key numbers of every variant side by side: one row per figure, one column per variant
    (variants are few, figures many; rows are the union of figures in order of appearance)."""
    lines = {v.name: key_numbers(v) for v in variants}
    figures = list(dict.fromkeys(k for line in lines.values() for k in line))
    return Table(
        "Comparison of key numbers",
        ["figure", *lines],
        [[f, *(line.get(f, "–") for line in lines.values())] for f in figures],
    )


def _distinct(values: Iterable[Any]) -> str:
    seen = list(dict.fromkeys(str(v) for v in values if v not in (None, "", [])))
    return " | ".join(seen) if seen else "–"


def _span(dates: list[str]) -> str:
    if not dates:
        return "–"
    return dates[0] if dates[0] == dates[-1] else f"{dates[0]} … {dates[-1]}"


def run_metadata(variant: Variant) -> Table:
    """Model, weights, defenses, data, seed, versions, device and date of a variant's runs (distinct values
    joined with ``|`` where its reports differ)."""
    metas = [r.meta for r in variant.reports]

    def get(*keys: str) -> list[Any]:
        values = []
        for meta in metas:
            value: Any = meta
            for key in keys:
                value = value.get(key) if isinstance(value, dict) else None
            values.append(value)
        return values

    defenses = [
        ", ".join(str(d.get("repr", d)) for d in (m.get("identity", {}).get("defenses") or [])) or "none" for m in metas
    ]
    sha = [i or m for i, m in zip(get("identity", "weights_sha256"), get("model", "weights_sha256"), strict=True)]
    weights = [
        " ".join(str(x) for x in (o, w or p) if x)
        for o, w, p in zip(
            get("model", "weights_origin"), get("model", "weights"), get("model", "pretrained_from"), strict=True
        )
    ]
    versions = [
        ", ".join(
            f"{k} {v}" for k, v in (m.get("versions") or {}).items() if k in ("robaudit", "torch", "python") and v
        )
        for m in metas
    ]
    rows = [
        ("folder", variant.name),
        ("model", _distinct(get("model", "model"))),
        ("weights", _distinct(weights)),
        ("weights sha256", _distinct(sha)),
        ("parameters sha256", _distinct(get("model", "parameters_sha256"))),
        ("model fingerprint", _distinct(get("identity", "model_fingerprint"))),
        ("defenses", _distinct(defenses)),
        ("data", _distinct(get("data", "description"))),
        ("data fingerprint", _distinct(get("identity", "data_fingerprint"))),
        ("seed", _distinct(get("seed"))),
        ("versions", _distinct(versions)),
        ("device", _distinct(get("device"))),
        ("host", _distinct(get("host"))),
        ("robaudit git", _distinct(get("robaudit_git_sha"))),
        ("finished", _span(sorted(str(v) for v in get("finished_at") if v))),
    ]
    return pairs("Run", rows)


def verdict(variants: list[Variant]) -> list[str]:
    """The page's opening paragraph, as sentences: per variant, its headline numbers in words and the flags it
    raised; then what no report covers (the registered audits that were not run). Weights recorded as random
    are said first: nothing else on such a page describes a real model."""
    sentences: list[str] = []
    for variant in variants:
        numbers = key_numbers(variant)
        masking = numbers.pop(MASKING_KEY, None)
        shown = [f"{label} {value}" for label, value in list(numbers.items())[:VERDICT_NUMBERS] if value != "–"]
        name = f"{variant.name}: " if len(variants) > 1 else ""
        random = any((r.meta.get("model") or {}).get("weights_origin") == "random" for r in variant.reports)
        warning = "random weights (an untrained network; these numbers describe no real model): " if random else ""
        sentence = f"{name}{warning}{'; '.join(shown) or 'no headline number'}."
        found = [f for report in flag_reports(variant) for f in report_flags(report)]
        raised = [f.name for f in found if f.state == "raised"]
        checked = sum(f.state != "not run" for f in found)
        if raised:
            sentence += f" Gradient masking suspected ({', '.join(raised)}): robust accuracies are upper bounds."
        elif checked:
            sentence += f" No gradient-masking symptom in {checked} checks."
        elif masking is not None:
            sentence += " Gradient masking not checked."
        sentences.append(sentence)
    run = {r.kind for v in variants for r in v.reports}
    missing = [name for name in _registered_audits() if name not in run]
    if missing:
        sentences.append(f"Not covered here: {', '.join(missing)} (audits not run on these models).")
    return sentences


#: how many key numbers of a variant the verdict names
VERDICT_NUMBERS = 5


def _registered_audits() -> list[str]:
    from .. import plugins

    return list(plugins.audits.names())
