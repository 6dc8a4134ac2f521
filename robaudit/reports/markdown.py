"""A folder of reports as key-number tables, and those tables as Markdown (e.g. for a CI job summary).

Reading a folder: every ``*.parquet`` under it that is a robaudit report (``.partial`` run folders and
hidden folders are left out) is read and summarized the way ``robaudit report summarize`` does: an audit
report through its audit's ``summarize``; a spectrum table (metadata with ``kind`` and a stored
``summary``) as stored. Reports are grouped by the folder that holds them: one folder is one *variant*
(one model, one defense setting...), and a suite folder with several sub-folders of reports gives several
variants, compared side by side. A folder holding only spectrum tables (``robaudit spectrum`` writes them
into ``<perturbations>-spectrum/``) belongs to the variant whose attack produced them, the nearest
enclosing folder with audit reports.

What a report says is reduced to format-free :class:`Table` objects and gradient-masking :class:`Flag`
entries; :mod:`.html` draws the same digest with figures, :func:`write_markdown` prints it as Markdown.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InputError, RobauditError

if TYPE_CHECKING:
    import pandas as pd

SPECTRUM = "spectrum"
#: how a flag that a summary reports is shown: raised (True), checked and clear (False), not run (None)
FLAG_STATES = {True: "raised", False: "clear", None: "not run"}
MD_FLAG_MARKS = {"raised": "🔴 **raised**", "clear": "🟢 clear", "not run": "⚪ not run"}
AUDIT_TITLES = {
    "eval": "Clean accuracy (eval)",
    "attack": "Adversarial attack",
    "corruptions": "Common corruptions",
    "hybrid": "Hybrid images (reversal frequency)",
    "jacobian": "Input-output Jacobian",
    "fourier-map": "Fourier heat map",
    SPECTRUM: "Perturbation spectrum",
    "corruption-spectrum": "Spectra of corruptions",
}


# -- the digest --------------------------------------------------------------------------------------------------


@dataclass
class Report:
    """One report file, read and summarized."""

    path: Path
    #: the audit name (``meta["audit"]``) or, for a stored-summary table, its ``kind``
    kind: str
    rows: pd.DataFrame
    meta: dict[str, Any]
    summary: dict[str, Any]
    #: the path relative to its variant's folder
    name: str = ""

    @property
    def title(self) -> str:
        return f"{AUDIT_TITLES.get(self.kind, self.kind)}: {self.name}"


@dataclass
class Variant:
    """The reports of one folder (one model / defense setting)."""

    name: str
    folder: Path
    reports: list[Report] = field(default_factory=list)

    def of_kind(self, kind: str) -> list[Report]:
        return [r for r in self.reports if r.kind == kind]

    def first(self, kind: str) -> Report | None:
        found = self.of_kind(kind)
        return found[0] if found else None


@dataclass
class Digest:
    """Every variant of a folder, and the files that could not be used (with the reason)."""

    root: Path
    variants: list[Variant]
    problems: list[str] = field(default_factory=list)

    @property
    def report_count(self) -> int:
        return sum(len(v.reports) for v in self.variants)


@dataclass
class Table:
    caption: str
    header: list[str]
    rows: list[list[str]]


@dataclass
class Flag:
    name: str
    #: "raised", "clear" or "not run"
    state: str
    evidence: str
    report: str


def report_files(root: Path) -> list[Path]:
    """Every ``*.parquet`` under ``root``, leaving out unfinished runs (``*.partial``) and hidden folders."""
    found = []
    for path in sorted(root.rglob("*.parquet")):
        folders = path.relative_to(root).parts[:-1]
        if any(part.endswith(".partial") or part.startswith(".") for part in folders):
            continue
        found.append(path)
    return found


def read_one(path: Path) -> Report:
    """Read and summarize one report; an InputError when it is no robaudit report or its audit is unknown."""
    from .read import read_report, summarize

    rows, meta = read_report(path)
    kind, summary = summarize(rows, meta, path)
    return Report(path, kind, rows, meta, summary)


def collect(folder: Path | str) -> Digest:
    """Read every report under ``folder`` and group them into variants (see the module docstring)."""
    root = Path(folder)
    if not root.exists():
        raise InputError(f"report folder {root} does not exist")
    if not root.is_dir():
        raise InputError(f"{root} is not a folder; name the folder that holds the reports (e.g. {root.parent})")
    problems: list[str] = []
    by_folder: dict[Path, list[Report]] = {}
    for path in report_files(root):
        try:
            report = read_one(path)
        except RobauditError as exc:
            problems.append(f"{path.relative_to(root)}: {exc}")
            continue
        by_folder.setdefault(path.parent, []).append(report)
    if not by_folder:
        detail = f" ({len(problems)} file(s) could not be used: {'; '.join(problems)})" if problems else ""
        raise InputError(f"{root} holds no robaudit reports (*.parquet written by an audit command){detail}")
    _attach_spectra(by_folder)
    variants = []
    for directory in sorted(by_folder, key=lambda d: (d != root, str(d))):
        name = root.resolve().name if directory == root else directory.relative_to(root).as_posix()
        reports = sorted(by_folder[directory], key=_report_order)
        for report in reports:
            report.name = report.path.relative_to(directory).as_posix()
        variants.append(Variant(name or str(root), directory, reports))
    return Digest(root, variants, problems)


def _attach_spectra(by_folder: dict[Path, list[Report]]) -> None:
    """Move spectrum-only folders into the nearest enclosing folder that holds audit reports."""
    for directory in sorted(by_folder, key=lambda d: -len(d.parts)):
        if any(r.kind != SPECTRUM for r in by_folder[directory]):
            continue
        for parent in directory.parents:
            if parent in by_folder and any(r.kind != SPECTRUM for r in by_folder[parent]):
                by_folder[parent].extend(by_folder.pop(directory))
                break


def _report_order(report: Report) -> tuple[int, str]:
    order = list(AUDIT_TITLES)
    return (order.index(report.kind) if report.kind in order else len(order), str(report.path))


# -- formatting --------------------------------------------------------------------------------------------------


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def pct(value: Any, digits: int = 1) -> str:
    return f"{100 * value:.{digits}f} %" if _finite(value) else "–"


def interval(pair: Any) -> str:
    if not pair or len(pair) != 2 or not all(_finite(v) for v in pair):
        return "–"
    return f"[{100 * pair[0]:.1f}, {100 * pair[1]:.1f}] %"


def num(value: Any, digits: int = 3) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    return f"{value:.{digits}g}" if _finite(value) else "–"


def text(value: Any) -> str:
    """Any summary value as table text."""
    if value is None:
        return "–"
    if isinstance(value, (bool, int, float)):
        return num(value)
    if isinstance(value, (list, tuple)):
        return ", ".join(text(v) for v in value)
    return str(value)


def _pairs(caption: str, pairs: Iterable[tuple[str, str]]) -> Table:
    return Table(caption, ["figure", "value"], [[k, v] for k, v in pairs])


# -- what each report says ---------------------------------------------------------------------------------------


def flags(report: Report) -> list[Flag]:
    """The gradient-masking flags of an attack report, with their evidence."""
    found = report.summary.get("flags") or {}
    return [
        Flag(str(name), FLAG_STATES.get(entry.get("flag"), "not run"), str(entry.get("evidence", "")), report.name)
        for name, entry in found.items()
    ]


def report_tables(report: Report) -> list[Table]:
    """The key numbers of one report as tables."""
    builder = _TABLES.get(report.kind, _generic_tables)
    return builder(report.summary, report.meta)


def _eval_tables(s: Mapping[str, Any], meta: Mapping[str, Any]) -> list[Table]:
    return [
        _pairs(
            "Clean accuracy",
            [
                ("top-1 accuracy", pct(s.get("top1"))),
                ("95 % interval (Wilson)", interval(s.get("top1_ci95"))),
                ("top-5 accuracy", pct(s.get("top5"))),
                ("mean confidence", pct(s.get("mean_confidence"))),
                ("images", text(s.get("samples"))),
                ("skipped images", text(s.get("skipped"))),
            ],
        )
    ]


def _attack_tables(s: Mapping[str, Any], meta: Mapping[str, Any]) -> list[Table]:
    tables = [
        _pairs(
            "Attack",
            [
                ("attack", str(meta.get("audit_repr", "attack"))),
                ("images", text(s.get("images"))),
                ("skipped images", text(s.get("skipped"))),
                ("gradient masking suspected", "yes" if s.get("gradient_masking") else "no"),
            ],
        )
    ]
    if s.get("curves"):
        tables.append(
            Table(
                "Accuracy under attack",
                ["threat", "judged by", "ε mode", "ε", "accuracy", "95 % interval", "success rate", "images"],
                [
                    [
                        str(c["threat"]),
                        str(c["judged_by"]),
                        str(c["eps_mode"]),
                        num(c["eps"], 4),
                        pct(c["accuracy"]),
                        interval(c.get("ci95")),
                        pct(c.get("success_rate")),
                        text(c.get("samples")),
                    ]
                    for c in s["curves"]
                ],
            )
        )
    if s.get("minimal"):
        tables.append(
            Table(
                "Minimal perturbations",
                ["threat", "judged by", "norm", "success rate", "median size", "median ρ (relative L2)", "images"],
                [
                    [
                        str(m["threat"]),
                        str(m["judged_by"]),
                        str(m["norm"]),
                        pct(m.get("success_rate")),
                        num(m.get("eps_at_50pct_success")),
                        num(m.get("median_rho")),
                        text(m.get("samples")),
                    ]
                    for m in s["minimal"]
                ],
            )
        )
    return tables


def _corruption_tables(s: Mapping[str, Any], meta: Mapping[str, Any]) -> list[Table]:
    mce = num(s.get("mCE"), 4)
    if _finite(s.get("mCE")) and _finite(s.get("mCE_stderr")):
        mce = f"{s['mCE']:.1f} ± {s['mCE_stderr']:.1f}"
    tables = [
        _pairs(
            "Summary",
            [
                ("clean accuracy", pct(s.get("clean_accuracy"))),
                ("corruption accuracy (mean of cells)", pct(s.get("corruption_accuracy"))),
                ("mean error (unnormalized mCE)", pct(s.get("mean_error"))),
                ("mCE (reference = 100)", mce),
                ("relative mCE", num(s.get("relative_mCE"), 4)),
                ("reference", text(s.get("reference"))),
                ("parameter set", text(s.get("param_set"))),
                ("images", text(s.get("samples"))),
                ("skipped images", text(s.get("skipped"))),
                *((("note", str(s["note"])),) if s.get("note") else ()),
            ],
        )
    ]
    if s.get("per_band"):
        tables.append(
            Table(
                "Accuracy per frequency band",
                ["band", "accuracy", "error", "rows"],
                [[str(b["band"]), pct(b["accuracy"]), pct(b["error"]), text(b.get("samples"))] for b in s["per_band"]],
            )
        )
    if s.get("per_corruption"):
        tables.append(
            Table(
                "Per corruption (mean over severities)",
                ["corruption", "group", "band", "accuracy", "error", "CE", "relative CE"],
                [
                    [
                        str(c["corruption"]),
                        text(c.get("group")),
                        text(c.get("band")),
                        pct(c.get("accuracy")),
                        pct(c.get("error")),
                        num(c.get("CE"), 4),
                        num(c.get("relative_CE"), 4),
                    ]
                    for c in s["per_corruption"]
                ],
            )
        )
    if s.get("noise_curve"):
        tables.append(
            Table(
                "Gaussian noise sweep",
                ["σ", "accuracy", "images"],
                [[num(p["sigma"]), pct(p["accuracy"]), text(p.get("samples"))] for p in s["noise_curve"]],
            )
        )
    return tables


def _hybrid_tables(s: Mapping[str, Any], meta: Mapping[str, Any]) -> list[Table]:
    f_rev = num(s.get("f_rev"))
    if _finite(s.get("f_rev")) and _finite(s.get("f_rev_std")) and (s.get("repeats") or 0) > 1:
        f_rev = f"{s['f_rev']:.3f} ± {s['f_rev_std']:.3f}"
    return [
        _pairs(
            "Reversal frequency",
            [
                ("f_rev", f_rev),
                ("units", text(s.get("f_rev_units"))),
                ("repeats", text(s.get("repeats"))),
                ("images", text(s.get("samples"))),
                ("skipped images", text(s.get("skipped"))),
                *((("note", str(s["f_rev_note"])),) if s.get("f_rev_note") else ()),
            ],
        )
    ]


def _jacobian_tables(s: Mapping[str, Any], meta: Mapping[str, Any]) -> list[Table]:
    models = s.get("models") or {}
    tables = [
        Table(
            f"Jacobian of the softmax w.r.t. pixels ({s.get('method', 'n/a')})",
            ["model", "defense", "median ‖J‖_F", "mean ‖J‖_F", "mean top σ", "mean predicted-row norm", "images"],
            [
                [
                    role,
                    text(m.get("defense")),
                    num(m.get("median_frobenius")),
                    num(m.get("mean_frobenius")),
                    num(m.get("mean_top_singular")),
                    num(m.get("mean_predicted_row_norm")),
                    text(m.get("samples")),
                ]
                for role, m in models.items()
            ],
        )
    ]
    if "median_frobenius_ratio" in s:
        tables.append(
            _pairs("Defense effect", [("median ‖J‖_F defended / backbone", num(s["median_frobenius_ratio"]))])
        )
    return tables


def _fourier_tables(s: Mapping[str, Any], meta: Mapping[str, Any]) -> list[Table]:
    worst = s.get("worst") or {}
    units = s.get("radius_units", "")
    bands = [
        (f"{b['band']} band error (radius {num(b['radius'][0])}–{num(b['radius'][1])} {units})", pct(b.get("error")))
        for b in s.get("bands", [])
    ]
    pairs = [
        ("mean error over all frequencies", pct(s.get("error"))),
        *bands,
        ("worst frequency (u, v)", f"({worst['u']}, {worst['v']}): {pct(worst['error'])}" if worst else "–"),
        ("images", text(s.get("samples"))),
    ]
    return [_pairs("Fourier heat map", pairs)]


def _spectrum_tables(s: Mapping[str, Any], meta: Mapping[str, Any]) -> list[Table]:
    quartiles = (
        f"{num(s.get('f_half_median'))} [{num(s.get('f_half_q25'))}, {num(s.get('f_half_q75'))}]"
        if _finite(s.get("f_half_median"))
        else "–"
    )
    return [
        _pairs(
            "Median radial frequency f0.5",
            [
                ("f0.5 of the mean spectrum", num(s.get("f_half_of_mean"))),
                ("per-image f0.5: median [q25, q75]", quartiles),
                ("units", text(s.get("units"))),
                ("perturbations", text(s.get("images"))),
                ("threat", text(s.get("threat"))),
                ("ε", "minimal" if s.get("eps") is None else num(s.get("eps"))),
                ("successful attacks only", text(s.get("successful_only"))),
                ("source", text(meta.get("source"))),
            ],
        )
    ]


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


def _generic_tables(s: Mapping[str, Any], meta: Mapping[str, Any]) -> list[Table]:
    """The summary of a report this module has no layout for (a plugin's audit, a new table kind): its scalar
    figures, then one table per mapping of scalars and per list of records."""
    tables = [_pairs("Summary", [(str(k), text(v)) for k, v in s.items() if _scalar(v)])]
    for key, value in s.items():
        if isinstance(value, Mapping) and value and all(_scalar(v) for v in value.values()):
            tables.append(_pairs(str(key), [(str(k), text(v)) for k, v in value.items()]))
        elif isinstance(value, list) and value and all(isinstance(v, Mapping) for v in value):
            columns = list(dict.fromkeys(str(k) for row in value for k, v in row.items() if _scalar(v)))
            tables.append(Table(str(key), columns, [[text(row.get(c)) for c in columns] for row in value]))
    return tables


_TABLES = {
    "eval": _eval_tables,
    "attack": _attack_tables,
    "corruptions": _corruption_tables,
    "hybrid": _hybrid_tables,
    "jacobian": _jacobian_tables,
    "fourier-map": _fourier_tables,
    SPECTRUM: _spectrum_tables,
}


# -- a variant at a glance ---------------------------------------------------------------------------------------


def clean_accuracy(variant: Variant) -> tuple[float | None, list[float] | None, str]:
    """Clean top-1 accuracy, its interval and where it comes from (the eval report, else corruptions)."""
    report = variant.first("eval")
    if report is not None and _finite(report.summary.get("top1")):
        return float(report.summary["top1"]), report.summary.get("top1_ci95"), report.name
    report = variant.first("corruptions")
    if report is not None and _finite(report.summary.get("clean_accuracy")):
        return float(report.summary["clean_accuracy"]), None, f"{report.name} (clean rows)"
    return None, None, ""


def _judge(entry: dict[str, Any], report: Report) -> str:
    """``""`` for the model under audit (so variants with and without defenses line up), else ``→judge``."""
    from .metrics import audited_judge

    return "" if audited_judge(entry["judged_by"], report.meta) else f"→{entry['judged_by']}"


def headline(variant: Variant) -> dict[str, str]:
    """The few numbers that characterize a variant, by column name (compared across variants)."""
    out: dict[str, str] = {}
    accuracy, _, _ = clean_accuracy(variant)
    out["clean top-1"] = pct(accuracy)
    for report in variant.of_kind("attack"):
        for c in report.summary.get("curves", []):
            out[f"acc {c['threat']}{_judge(c, report)} {c['eps_mode']} ε={num(c['eps'], 4)}"] = pct(c["accuracy"])
        for m in report.summary.get("minimal", []):
            out[f"median {m['norm']} {m['threat']}{_judge(m, report)}"] = num(m.get("eps_at_50pct_success"))
    masking = [f for r in variant.of_kind("attack") for f in flags(r)]
    if masking:
        raised = sum(f.state == "raised" for f in masking)
        checked = sum(f.state != "not run" for f in masking)
        out["masking flags raised"] = f"{raised} of {checked} checked" if checked else "not run"
    for report in variant.of_kind("corruptions"):
        s = report.summary
        out["mCE"] = num(s.get("mCE"), 4)
        out["corruption acc"] = pct(s.get("corruption_accuracy"))
        out["mean corruption error"] = pct(s.get("mean_error"))
    for report in variant.of_kind("hybrid"):
        out["f_rev"] = num(report.summary.get("f_rev"))
    for report in variant.of_kind(SPECTRUM):
        out[f"f0.5 ({report.summary.get('threat', '?')})"] = num(report.summary.get("f_half_of_mean"))
    for report in variant.of_kind("jacobian"):
        for role, m in (report.summary.get("models") or {}).items():
            out[f"median ‖J‖_F {role}"] = num(m.get("median_frobenius"))
    for report in variant.of_kind("fourier-map"):
        out["Fourier-map error"] = pct(report.summary.get("error"))
    return out


def comparison_table(variants: list[Variant]) -> Table:
    """The headline numbers of every variant side by side: one row per figure, one column per variant
    (variants are few, figures many; rows are the union of figures in order of appearance)."""
    lines = {v.name: headline(v) for v in variants}
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
    audits = [r.meta for r in variant.reports if r.kind != SPECTRUM] or [r.meta for r in variant.reports]

    def get(*keys: str) -> list[Any]:
        values = []
        for meta in audits:
            value: Any = meta
            for key in keys:
                value = value.get(key) if isinstance(value, dict) else None
            values.append(value)
        return values

    defenses = [
        ", ".join(str(d.get("repr", d)) for d in (m.get("identity", {}).get("defenses") or [])) or "none"
        for m in audits
    ]
    sha = [i or m for i, m in zip(get("identity", "weights_sha256"), get("model", "weights_sha256"), strict=True)]
    weights = [w or p for w, p in zip(get("model", "weights"), get("model", "pretrained_from"), strict=True)]
    versions = [
        ", ".join(
            f"{k} {v}" for k, v in (m.get("versions") or {}).items() if k in ("robaudit", "torch", "python") and v
        )
        for m in audits
    ]
    rows = [
        ("model", _distinct(get("model", "model"))),
        ("weights", _distinct(weights)),
        ("weights sha256", _distinct(sha)),
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
    return _pairs("Run", rows)


# -- Markdown ----------------------------------------------------------------------------------------------------


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
    attacks = variant.of_kind("attack")
    if not attacks:
        return ["⚪ not run: no attack report, gradient masking was not checked."]
    return [
        f"- {MD_FLAG_MARKS[f.state]} `{f.name}` ({md_escape(f.report)}): {md_escape(f.evidence)}"
        for report in attacks
        for f in flags(report)
    ]


def _md_variant(variant: Variant, level: int) -> list[str]:
    h = "#" * level
    parts = [f"{h} Run", md_table(run_metadata(variant))]
    key = headline(variant)
    parts += [f"{h} Key numbers", md_table(_pairs("Key numbers", key.items()))]
    parts += [f"{h} Gradient-masking checks", "\n".join(_md_flags(variant))]
    for report in variant.reports:
        parts.append(f"{h} {md_escape(report.title)}")
        for table in report_tables(report):
            parts += [f"**{md_escape(table.caption)}**", md_table(table)]
    return parts


def write_markdown(folder: Path | str) -> str:
    """The digest of ``folder`` as Markdown: metadata, key numbers, gradient-masking flags, per-audit tables;
    a comparison table first when the folder holds several variants."""
    digest = collect(folder)
    name = Path(folder).resolve().name
    parts = [
        f"# robaudit report: {md_escape(name)}",
        f"{digest.report_count} report(s) in {len(digest.variants)} variant(s) under {md_escape(str(folder))}.",
    ]
    if len(digest.variants) > 1:
        parts += ["## Comparison", md_table(comparison_table(digest.variants))]
        for variant in digest.variants:
            parts += [f"## Variant: {md_escape(variant.name)}", *_md_variant(variant, 3)]
    else:
        parts += _md_variant(digest.variants[0], 2)
    if digest.problems:
        parts += ["## Files not used", "\n".join(f"- {md_escape(p)}" for p in digest.problems)]
    return "\n\n".join(parts) + "\n"
