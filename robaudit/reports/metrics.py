"""Named metrics: a report folder turned into a flat ``name -> value`` map that policies can address.

Summaries are nested and differ per audit; a CI gate (and anyone comparing two runs) needs stable,
flat names such as ``eval.top1`` or ``attack.white.linf.eps=0.03.accuracy``. Every metric says what it
is (``kind``: a proportion of images, a number, or a flag), how much sampling noise it carries
(``samples`` behind a proportion, or a ``stderr`` where the summary provides one) and which direction is
better, so that a regression can be told apart from noise.

A folder holds one report per audit (``<audit>.parquet``; the shards ``<audit>.shard-i-of-n.parquet`` of
one run are read together). Sub-folders are separate model variants of a suite: their metrics are
collected from the variant folder itself, ``collect_metrics(DIR / variant)``.

The naming scheme is declared once, in :data:`SCHEME`; every built-in metric is created from its
entry, and ``python -m robaudit.reports.metrics --markdown`` prints the table that docs/ci.md embeds.
Audits from plugins name their own metrics with a classmethod ``metrics(summary) -> dict[str, Metric]``;
without one, the numeric and boolean top-level entries of their summary become ``<audit>.<key>``.
"""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from ..errors import InputError, RunError

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
    """One row of the naming scheme: a name pattern (``<...>`` marks a variable part) and its meaning."""

    pattern: str
    kind: Kind
    higher_is_better: bool | None
    description: str


SCHEME: tuple[Pattern, ...] = (
    Pattern("eval.top1", "proportion", True, "clean top-1 accuracy"),
    Pattern("eval.top5", "proportion", True, "clean top-5 accuracy (models with at least five classes)"),
    Pattern("eval.mean_confidence", "number", None, "mean softmax probability of the predicted class"),
    Pattern(
        "attack.<threat>.<eps_mode>.eps=<eps>.accuracy",
        "proportion",
        True,
        "accuracy under attack of the model under audit (the defended model, or the model itself without "
        "defenses); eps printed with %g, e.g. eps=0.03",
    ),
    Pattern(
        "attack.<threat>.<eps_mode>.eps=<eps>.<judge>.accuracy",
        "proportion",
        True,
        "the same examples judged by another model (backbone: the undefended model)",
    ),
    Pattern(
        "attack.<threat>.<eps_mode>.eps=<eps>.success_rate",
        "proportion",
        False,
        "fraction of images on which the attack succeeds (misclassified, or the target hit when targeted)",
    ),
    Pattern(
        "attack.<threat>.<eps_mode>.eps=<eps>.<judge>.success_rate",
        "proportion",
        False,
        "success rate judged by another model",
    ),
    Pattern(
        "attack.<threat>.<norm>.minimal.median",
        "number",
        True,
        "median size (in the run's norm) of the smallest successful perturbation; inf when fewer than half succeed",
    ),
    Pattern(
        "attack.<threat>.<norm>.minimal.<judge>.median",
        "number",
        True,
        "the same, judged by another model",
    ),
    Pattern(
        "attack.<threat>.<norm>.minimal.success_rate",
        "proportion",
        False,
        "fraction of images for which a minimal run found an adversarial example",
    ),
    Pattern(
        "attack.<threat>.<norm>.minimal.<judge>.success_rate",
        "proportion",
        False,
        "the same, judged by another model",
    ),
    Pattern("flags.gradient_masking", "flag", False, "true when any gradient-masking flag of the attack is raised"),
    Pattern(
        "flags.<flag>",
        "flag",
        False,
        "one gradient-masking symptom, e.g. flags.unbounded_attack_fails (absent when not evaluated)",
    ),
    Pattern(
        "corruptions.mCE",
        "number",
        False,
        "mean corruption error (x100) against the reference; carries its standard error",
    ),
    Pattern("corruptions.relative_mCE", "number", False, "relative mCE (x100) against the reference"),
    Pattern(
        "corruptions.accuracy",
        "proportion",
        True,
        "corruption accuracy: mean of the (corruption, severity) cell accuracies (RobustBench's figure)",
    ),
    Pattern("corruptions.clean_accuracy", "proportion", True, "accuracy on the uncorrupted images"),
    Pattern(
        "corruptions.mean_error",
        "proportion",
        False,
        "unnormalized mean corruption error (mean over corruptions of the mean over severities)",
    ),
    Pattern("corruptions.<corruption>.error", "proportion", False, "error on one corruption, mean over severities"),
    Pattern("corruptions.<corruption>.CE", "number", False, "corruption error (x100) against the reference"),
    Pattern("corruptions.band.<band>.accuracy", "proportion", True, "mean accuracy of a frequency band's cells"),
    Pattern("corruptions.noise.sigma=<sigma>.accuracy", "proportion", True, "accuracy at one Gaussian noise level"),
    Pattern("hybrid.f_rev", "number", None, "reversal frequency of hybrid images, mean over repeats"),
    Pattern("hybrid.f_rev_std", "number", None, "standard deviation of f_rev over repeats"),
    Pattern("spectrum.f0.5", "number", None, "f0.5 (cycles/pixel) of the mean perturbation power spectrum"),
    Pattern("spectrum.f0.5_median", "number", None, "median over images of the per-image f0.5"),
    Pattern(
        "jacobian.<role>.median_frobenius",
        "number",
        False,
        "median Frobenius norm of dp/dx (role: backbone or defended)",
    ),
    Pattern("jacobian.frobenius_ratio", "number", False, "defended / backbone median Frobenius norm"),
    Pattern("fourier-map.error", "proportion", False, "error under Fourier-basis noise, over all frequencies"),
    Pattern("fourier-map.band.<band>.error", "proportion", False, "error under Fourier-basis noise in one band"),
    Pattern(
        "<audit>.<key>",
        "number",
        None,
        "a plugin audit without its own metrics(): each numeric (or boolean: flag) top-level summary entry",
    ),
)
_BY_PATTERN = {p.pattern: p for p in SCHEME}

#: summary -> metrics for the audits robaudit ships; ``meta`` is the report's metadata
MetricMaker = Callable[[Mapping[str, Any], Mapping[str, Any]], list[Metric]]


def metric_scheme() -> list[tuple[str, str, str]]:
    """The naming scheme as (pattern, kind, description) rows; the description ends with the better direction."""
    better = {True: "higher is better", False: "lower is better", None: "no better direction"}
    return [(p.pattern, p.kind, f"{p.description} ({better[p.higher_is_better]})") for p in SCHEME]


def scheme_markdown() -> str:
    """The Markdown table of :func:`metric_scheme` (embedded verbatim in docs/ci.md)."""
    lines = ["| metric | kind | meaning |", "|---|---|---|"]
    for pattern, kind, description in metric_scheme():
        lines.append(f"| `{pattern}` | {kind} | {description.replace('|', '/')} |")
    return "\n".join(lines) + "\n"


def _make(
    pattern: str, name: str, value: Any, *, samples: int | None = None, stderr: float | None = None
) -> Metric | None:
    """A metric described by its scheme entry, or None when the summary has no value for it."""
    if value is None:
        return None
    entry = _BY_PATTERN[pattern]
    converted: float | bool = bool(value) if entry.kind == "flag" else float(value)
    return Metric(
        name=name,
        value=converted,
        kind=entry.kind,
        samples=int(samples) if samples is not None and entry.kind == "proportion" else None,
        stderr=float(stderr) if stderr is not None and math.isfinite(float(stderr)) else None,
        higher_is_better=entry.higher_is_better,
        description=entry.description,
    )


def _present(metrics: Iterable[Metric | None]) -> list[Metric]:
    return [m for m in metrics if m is not None]


def _number(value: float) -> str:
    return f"{float(value):g}"


# ---------------------------------------------------------------------------------------------------------
# the built-in audits


def eval_metrics(summary: Mapping[str, Any], meta: Mapping[str, Any]) -> list[Metric]:
    n = summary.get("samples")
    return _present(
        [
            _make("eval.top1", "eval.top1", summary.get("top1"), samples=n),
            _make("eval.top5", "eval.top5", summary.get("top5"), samples=n),
            _make("eval.mean_confidence", "eval.mean_confidence", summary.get("mean_confidence")),
        ]
    )


def audited_judge(judge: str, meta: Mapping[str, Any]) -> bool:
    """Whether ``judge`` is the model under audit: the defended one, or the backbone of an undefended model."""
    defended = bool(meta.get("identity", {}).get("defenses"))
    return judge == "defended" or (judge == "backbone" and not defended)


def attack_metrics(summary: Mapping[str, Any], meta: Mapping[str, Any]) -> list[Metric]:
    out: list[Metric | None] = []
    for curve in summary.get("curves", []):
        stem = f"attack.{curve['threat']}.{curve['eps_mode']}.eps={_number(curve['eps'])}"
        judge = "" if audited_judge(curve["judged_by"], meta) else f".{curve['judged_by']}"
        pattern = "attack.<threat>.<eps_mode>.eps=<eps>" + (".<judge>" if judge else "")
        n = curve.get("samples")
        out.append(_make(f"{pattern}.accuracy", f"{stem}{judge}.accuracy", curve.get("accuracy"), samples=n))
        out.append(
            _make(f"{pattern}.success_rate", f"{stem}{judge}.success_rate", curve.get("success_rate"), samples=n)
        )
    for run in summary.get("minimal", []):
        norm = run["norm"]
        stem = f"attack.{run['threat']}.{norm}.minimal"
        judge = "" if audited_judge(run["judged_by"], meta) else f".{run['judged_by']}"
        pattern = "attack.<threat>.<norm>.minimal" + (".<judge>" if judge else "")
        median = run.get(f"median_{norm}", run.get("eps_at_50pct_success"))
        out.append(_make(f"{pattern}.median", f"{stem}{judge}.median", median))
        out.append(
            _make(
                f"{pattern}.success_rate",
                f"{stem}{judge}.success_rate",
                run.get("success_rate"),
                samples=run["samples"],
            )
        )
    out.append(_make("flags.gradient_masking", "flags.gradient_masking", summary.get("gradient_masking")))
    for name, flag in summary.get("flags", {}).items():
        out.append(_make("flags.<flag>", f"flags.{name}", flag.get("flag") if isinstance(flag, Mapping) else flag))
    return _dedupe(_present(out))


def _dedupe(metrics: list[Metric]) -> list[Metric]:
    """First of each name: without defenses the ``defended`` and ``backbone`` judges are one model."""
    seen: dict[str, Metric] = {}
    for metric in metrics:
        seen.setdefault(metric.name, metric)
    return list(seen.values())


def corruptions_metrics(summary: Mapping[str, Any], meta: Mapping[str, Any]) -> list[Metric]:
    # Means of cell proportions over the same images are judged with the images' count: the variance of a
    # mean of proportions measured on n images is at most that of one proportion on n images (concavity of
    # p(1-p)), so the noise estimate errs on the safe (wide) side. Row counts per cell would understate it.
    n = summary.get("samples")
    out: list[Metric | None] = [
        _make("corruptions.mCE", "corruptions.mCE", summary.get("mCE"), stderr=summary.get("mCE_stderr")),
        _make("corruptions.relative_mCE", "corruptions.relative_mCE", summary.get("relative_mCE")),
        _make("corruptions.accuracy", "corruptions.accuracy", summary.get("corruption_accuracy"), samples=n),
        _make("corruptions.clean_accuracy", "corruptions.clean_accuracy", summary.get("clean_accuracy"), samples=n),
        _make("corruptions.mean_error", "corruptions.mean_error", summary.get("mean_error"), samples=n),
    ]
    for row in summary.get("per_corruption", []):
        name = row["corruption"]
        out.append(_make("corruptions.<corruption>.error", f"corruptions.{name}.error", row.get("error"), samples=n))
        out.append(_make("corruptions.<corruption>.CE", f"corruptions.{name}.CE", row.get("CE")))
    for row in summary.get("per_band", []):
        out.append(
            _make(
                "corruptions.band.<band>.accuracy",
                f"corruptions.band.{row['band']}.accuracy",
                row.get("accuracy"),
                samples=n,
            )
        )
    for row in summary.get("noise_curve", []):
        out.append(
            _make(
                "corruptions.noise.sigma=<sigma>.accuracy",
                f"corruptions.noise.sigma={_number(row['sigma'])}.accuracy",
                row.get("accuracy"),
                samples=row.get("samples", n),
            )
        )
    return _present(out)


def hybrid_metrics(summary: Mapping[str, Any], meta: Mapping[str, Any]) -> list[Metric]:
    repeats = int(summary.get("repeats") or 0)
    spread = summary.get("f_rev_std")
    # f_rev is a mean over repeats: its standard error is the spread over repeats / sqrt(repeats)
    stderr = spread / math.sqrt(repeats) if spread is not None and repeats >= 2 else None
    return _present(
        [
            _make("hybrid.f_rev", "hybrid.f_rev", summary.get("f_rev"), stderr=stderr),
            _make("hybrid.f_rev_std", "hybrid.f_rev_std", spread),
        ]
    )


def spectrum_metrics(summary: Mapping[str, Any], meta: Mapping[str, Any]) -> list[Metric]:
    return _present(
        [
            _make("spectrum.f0.5", "spectrum.f0.5", summary.get("f_half_of_mean")),
            _make("spectrum.f0.5_median", "spectrum.f0.5_median", summary.get("f_half_median")),
        ]
    )


def jacobian_metrics(summary: Mapping[str, Any], meta: Mapping[str, Any]) -> list[Metric]:
    out: list[Metric | None] = [
        _make("jacobian.<role>.median_frobenius", f"jacobian.{role}.median_frobenius", figures.get("median_frobenius"))
        for role, figures in summary.get("models", {}).items()
    ]
    out.append(_make("jacobian.frobenius_ratio", "jacobian.frobenius_ratio", summary.get("median_frobenius_ratio")))
    return _present(out)


def fourier_map_metrics(summary: Mapping[str, Any], meta: Mapping[str, Any]) -> list[Metric]:
    n = summary.get("samples")
    out: list[Metric | None] = [_make("fourier-map.error", "fourier-map.error", summary.get("error"), samples=n)]
    for band in summary.get("bands", []):
        out.append(
            _make(
                "fourier-map.band.<band>.error", f"fourier-map.band.{band['band']}.error", band.get("error"), samples=n
            )
        )
    return _present(out)


BUILTIN: dict[str, MetricMaker] = {
    "eval": eval_metrics,
    "attack": attack_metrics,
    "corruptions": corruptions_metrics,
    "hybrid": hybrid_metrics,
    "spectrum": spectrum_metrics,
    "jacobian": jacobian_metrics,
    "fourier-map": fourier_map_metrics,
}


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


# ---------------------------------------------------------------------------------------------------------
# reading a folder

_SHARD = re.compile(r"^(?P<stem>.+)\.shard-(?P<i>\d+)-of-(?P<n>\d+)\.parquet$")


@dataclass
class Report:
    """One audit's finished report in a folder (the shards of a sharded run together), with its summary."""

    name: str
    paths: list[Path]
    meta: dict[str, Any]
    summary: dict[str, Any]
    #: the data-source indices of the images measured (None when the rows do not say)
    sample_ids: frozenset[int] | None = None

    @property
    def label(self) -> str:
        return self.paths[0].name if len(self.paths) == 1 else f"{self.name}.shard-*-of-{len(self.paths)}.parquet"


def report_files(folder: Path) -> list[Path]:
    """The finished reports directly in ``folder`` (unfinished ``.partial`` runs are not reports yet)."""
    return sorted(p for p in folder.glob("*.parquet") if p.is_file())


def unfinished_runs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*.parquet.partial") if p.is_dir())


def variant_folders(folder: Path) -> list[Path]:
    """Sub-folders holding reports: the model variants of a suite."""
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.endswith(".partial") and report_files(p))


def _group_shards(files: list[Path]) -> dict[str, list[Path]]:
    groups: dict[str, list[Path]] = {}
    for path in files:
        match = _SHARD.match(path.name)
        groups.setdefault(match["stem"] if match else path.stem, []).append(path)
    for stem, paths in groups.items():
        shards = [m for p in paths if (m := _SHARD.match(p.name))]
        if not shards:
            if len(paths) > 1:
                raise InputError(f"{paths[0].parent}: several reports named {stem}")
            continue
        total = {int(m["n"]) for m in shards}
        present = {int(m["i"]) for m in shards}
        if len(shards) != len(paths) or len(total) != 1 or present != set(range(total.pop())):
            names = ", ".join(p.name for p in paths)
            raise InputError(
                f"{paths[0].parent}: the shards of {stem} are incomplete or mixed ({names}); "
                "finish every shard --shard i/n of the run"
            )
    return groups


def load_reports(folder: Path) -> list[Report]:
    """Every finished report directly in ``folder``, summarized; an InputError when there is none."""
    folder = Path(folder)
    if not folder.exists():
        raise InputError(f"report folder {folder} does not exist")
    if not folder.is_dir():
        raise InputError(f"{folder} is not a folder; name the folder that holds the reports")
    files = report_files(folder)
    if not files:
        raise InputError(f"{folder} holds no reports (*.parquet){_empty_hint(folder)}")
    return [_load_group(stem, paths) for stem, paths in _group_shards(files).items()]


def _empty_hint(folder: Path) -> str:
    variants = variant_folders(folder)
    unfinished = unfinished_runs(folder)
    if variants:
        return f"; its sub-folders {', '.join(v.name for v in variants)} do: name one of them"
    if unfinished:
        return f"; unfinished runs are in {', '.join(p.name for p in unfinished)} (finish them with --resume)"
    return ""


def _load_group(stem: str, paths: list[Path]) -> Report:
    import pandas as pd

    from .read import read_report, summarize

    parts = [read_report(p) for p in paths]
    meta = parts[0][1]
    rows = pd.concat([frame for frame, _ in parts], ignore_index=True) if len(parts) > 1 else parts[0][0]
    ids = frozenset(int(i) for i in rows["index"].unique()) if "index" in rows else None
    kind, summary = summarize(rows, meta, paths[0])
    return Report(kind, paths, meta, summary, ids)


def report_metrics(report: Report) -> dict[str, Metric]:
    """The named metrics of one report: built-in scheme, the audit's own ``metrics()``, or its flattened summary."""
    maker = BUILTIN.get(report.name)
    metrics = maker(report.summary, report.meta) if maker is not None else _plugin_metrics(report)
    return {m.name: _with_report(m, report.label) for m in metrics}


def _plugin_metrics(report: Report) -> list[Metric]:
    from .. import plugins

    audit = plugins.audits.get(report.name) if "audit" in report.meta else None
    own = getattr(audit, "metrics", None)
    if own is None:
        return flatten_summary(report.name, report.summary)
    named = own(report.summary)
    if not isinstance(named, Mapping) or not all(isinstance(m, Metric) for m in named.values()):
        raise RunError(f"audit {report.name}: metrics(summary) must return a dict of robaudit Metric objects")
    return [m if m.name == key else _renamed(m, key) for key, m in named.items()]


def _renamed(metric: Metric, name: str) -> Metric:
    return replace(metric, name=name)


def _with_report(metric: Metric, label: str) -> Metric:
    return metric if metric.report else replace(metric, report=label)


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
    return metrics_of_reports(load_reports(folder))


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args != ["--markdown"]:
        print("usage: python -m robaudit.reports.metrics --markdown", file=sys.stderr)
        return 2
    sys.stdout.write(scheme_markdown())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
