"""Judging a report folder (and optionally a baseline folder) against a policy.

Every rule is resolved first: its metric must exist in the report (and in the baseline when it compares
against one), the baseline must have been measured on the same data and samples, and a ``max_drop`` needs
a better direction. Any of these problems is an input error (exit 2) listing all of them, so a gate never
passes because something it was told to check is not there. Only then are limits and drops judged.
"""

from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import EXIT_GATE_FAILED, EXIT_OK, InputError, suggest
from ..reports.folder import Report, load_reports, report_files, variant_folders
from ..reports.metrics import Metric, metrics_of_reports
from .policy import Policy, Rule
from .stats import Drop, judge_drop

VERDICTS = ("pass", "warn", "fail", "skip")


@dataclass
class Outcome:
    """The verdict of one rule on one metric (a rule with a wildcard or variant ``*`` yields several)."""

    rule: Rule
    metric: str
    variant: str | None
    value: float | bool | None
    baseline: float | bool | None
    verdict: str
    reason: str
    drop: Drop | None = None

    @property
    def address(self) -> str:
        return f"{self.variant}/{self.metric}" if self.variant else self.metric

    @property
    def limit(self) -> str:
        return self.rule.limit_text()


@dataclass
class GateResult:
    outcomes: list[Outcome]
    confidence: float
    reports: Path
    baseline: Path | None
    notes: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return any(o.verdict == "fail" for o in self.outcomes)

    @property
    def exit_code(self) -> int:
        return EXIT_GATE_FAILED if self.failed else EXIT_OK

    def counts(self) -> dict[str, int]:
        return {v: sum(o.verdict == v for o in self.outcomes) for v in VERDICTS}

    def headline(self) -> str:
        counts = self.counts()
        parts = ", ".join(f"{counts[v]} {v}" for v in VERDICTS if counts[v])
        state = "FAILED" if self.failed else "passed"
        return f"robaudit gate {state}: {len(self.outcomes)} check(s): {parts or 'none'}"


class _Folder:
    """A report folder and its variant sub-folders, read and summarized once."""

    def __init__(self, root: Path, role: str) -> None:
        self.root, self.role = Path(root), role
        self._reports: dict[str | None, list[Report]] = {}
        self._metrics: dict[str | None, dict[str, Metric]] = {}

    def check_not_empty(self) -> None:
        if not self.root.is_dir() or not (report_files(self.root) or variant_folders(self.root)):
            load_reports(self.root)  # raises the right InputError: missing, not a folder, or no reports

    def variants(self) -> list[str]:
        return [p.name for p in variant_folders(self.root)]

    def path(self, variant: str | None) -> Path:
        return self.root / variant if variant else self.root

    def reports(self, variant: str | None) -> list[Report]:
        if variant not in self._reports:
            if variant is not None and not self.path(variant).is_dir():
                raise InputError(
                    f"the {self.role} folder {self.root} has no variant {variant!r}{suggest(variant, self.variants())}"
                )
            self._reports[variant] = load_reports(self.path(variant))
        return self._reports[variant]

    def metrics(self, variant: str | None) -> dict[str, Metric]:
        if variant not in self._metrics:
            self._metrics[variant] = metrics_of_reports(self.reports(variant))
        return self._metrics[variant]

    def report(self, variant: str | None, label: str) -> Report:
        return next(r for r in self.reports(variant) if r.label == label)


@dataclass
class _Target:
    rule: Rule
    variant: str | None
    metric: Metric
    baseline: Metric | None


def evaluate(
    policy: Policy,
    reports: Path,
    baseline: Path | None = None,
    *,
    allow_mismatch: bool = False,
    allow_random_weights: bool = False,
) -> GateResult:
    """Judge ``reports`` (a folder) by ``policy``; ``baseline`` (a folder) for the ``max_drop`` rules.

    Reports of a model with random weights (``model.weights_origin`` in their metadata) are refused, as
    measuring an untrained network, unless ``allow_random_weights``."""
    current = _Folder(reports, "report")
    current.check_not_empty()
    base = _Folder(baseline, "baseline") if baseline is not None else None
    if base is not None:
        base.check_not_empty()
    problems: list[str] = []
    notes: list[str] = []
    targets: list[_Target] = []
    for rule in policy.rules:
        targets += _resolve(rule, current, base, problems)
    if base is not None:
        _check_samples(targets, current, base, problems if not allow_mismatch else notes, allow_mismatch)
        if not any(rule.max_drop is not None for rule in policy.rules):
            notes.append("no rule has max_drop: the baseline was not compared")
    _check_weights(targets, current, problems if not allow_random_weights else notes, allow_random_weights)
    if problems:
        raise InputError("; ".join(dict.fromkeys(problems)))
    outcomes = [_judge(t, policy.confidence, has_baseline=base is not None) for t in targets]
    return GateResult(outcomes, policy.confidence, Path(reports), Path(baseline) if baseline else None, notes)


def _variants_of(rule: Rule, folder: _Folder, problems: list[str]) -> list[str | None]:
    if rule.variant == "*":
        variants = folder.variants()
        if not variants:
            problems.append(f"{rule.where}: variant = '*' but {folder.root} has no sub-folders with reports")
        return list(variants)
    if rule.variant is None and not report_files(folder.root) and folder.variants():
        problems.append(
            f"{rule.where}: {folder.root} holds reports only in its variant sub-folders "
            f'({", ".join(folder.variants())}); add variant = "NAME" or variant = "*" to the rule'
        )
        return []
    return [rule.variant]


def _resolve(rule: Rule, current: _Folder, base: _Folder | None, problems: list[str]) -> list[_Target]:
    """The (metric, baseline metric) pairs a rule applies to; what cannot be resolved goes to ``problems``."""
    targets = []
    for variant in _variants_of(rule, current, problems):
        try:
            metrics = current.metrics(variant)
        except InputError as exc:
            problems.append(str(exc))  # a folder's problem, the same for every rule: reported once
            continue
        names = _matching(rule.metric, metrics)
        where = current.path(variant)
        if not names:
            problems.append(f"{rule.where}: {_missing(rule.metric, metrics, where)}")
            continue
        for name in names:
            metric = metrics[name]
            problem = _unusable(rule, metric)
            if problem:
                problems.append(f"{rule.where}: {problem}")
                continue
            before = None
            if rule.max_drop is not None and base is not None:
                try:
                    before = base.metrics(variant).get(name)
                except InputError as exc:
                    problems.append(str(exc))
                    continue
                if before is None:
                    problems.append(
                        f"{rule.where}: the baseline {base.path(variant)} has no metric {name!r} "
                        "(a newer metric: drop max_drop from the rule until the baseline has it)"
                    )
                    continue
            targets.append(_Target(rule, variant, metric, before))
    return targets


def _matching(pattern: str, metrics: dict[str, Metric]) -> list[str]:
    if any(c in pattern for c in "*?["):
        return [name for name in metrics if fnmatch.fnmatchcase(name, pattern)]
    return [pattern] if pattern in metrics else []


def _missing(name: str, metrics: dict[str, Metric], folder: Path) -> str:
    unfinished = sorted(p.name for p in folder.glob("*.parquet.partial"))
    extra = f"; unfinished runs: {', '.join(unfinished)}" if unfinished else ""
    close = suggest(name, metrics) or f" (it has {len(metrics)}; list them with --list-metrics)"
    return f"the reports in {folder} have no metric {name!r}{close}{extra}"


def _unusable(rule: Rule, metric: Metric) -> str | None:
    if isinstance(metric.value, float) and math.isnan(metric.value):
        return f"{metric.name} is undefined (NaN) in {metric.report}: no images were measured"
    if rule.max_drop is not None and rule.direction is None and metric.higher_is_better is None:
        return f'{metric.name} has no better direction; add direction = "higher" or "lower" to use max_drop on it'
    bools = [t for t in rule.thresholds if isinstance(t.limit, bool)]
    if bools and metric.kind != "flag":
        return f"{metric.name} is a {metric.kind}; compare it with a number, not {bools[0].limit}"
    return None


def _sample_differences(now: Report, before: Report) -> list[str]:
    """How the data and the measured images of two reports differ (empty: the same images of the same data)."""
    differences = []
    fingerprints = [r.meta.get("identity", {}).get("data_fingerprint") for r in (before, now)]
    if None not in fingerprints and fingerprints[0] != fingerprints[1]:
        described = [r.meta.get("data", {}).get("description") or "?" for r in (before, now)]
        differences.append(
            f"data {described[0]} (fingerprint {fingerprints[0][:12]}) -> {described[1]} "
            f"(fingerprint {fingerprints[1][:12]})"
        )
    if now.sample_ids is not None and before.sample_ids is not None and now.sample_ids != before.sample_ids:
        common = len(now.sample_ids & before.sample_ids)
        differences.append(f"images {len(before.sample_ids)} -> {len(now.sample_ids)}, {common} in common")
    return differences


def _check_samples(targets: list[_Target], current: _Folder, base: _Folder, sink: list[str], allowed: bool) -> None:
    """A baseline measured on other data or other images cannot tell a regression from a change of test set."""
    seen: set[tuple[str | None, str]] = set()
    for target in targets:
        if target.baseline is None or (target.variant, target.metric.report) in seen:
            continue
        seen.add((target.variant, target.metric.report))
        now = current.report(target.variant, target.metric.report)
        before = base.report(target.variant, target.baseline.report)
        differences = _sample_differences(now, before)
        if differences:
            where = current.path(target.variant) / target.metric.report
            advice = "compared anyway (--allow-mismatch)" if allowed else "pass --allow-mismatch to compare anyway"
            sink.append(
                f"{where} was measured on other data or images than its baseline ({'; '.join(differences)}); {advice}"
            )


def _check_weights(targets: list[_Target], current: _Folder, sink: list[str], allowed: bool) -> None:
    """A report of a model with random weights measures an untrained network: it cannot pass a gate."""
    seen: set[tuple[str | None, str]] = set()
    for target in targets:
        key = (target.variant, target.metric.report)
        if key in seen:
            continue
        seen.add(key)
        model = current.report(target.variant, target.metric.report).meta.get("model") or {}
        if model.get("weights_origin") == "random":
            where = current.path(target.variant) / target.metric.report
            advice = "judged anyway (--allow-random-weights)" if allowed else "pass --allow-random-weights to judge it"
            sink.append(f"{where} audits {model.get('model', 'a model')} with random weights; {advice}")


def _judge(target: _Target, confidence: float, *, has_baseline: bool) -> Outcome:
    rule, metric = target.rule, target.metric
    failures, passes = [], []
    for threshold in rule.thresholds:
        text = f"{_show(metric.value)} {threshold}" if threshold.holds(metric.value) else None
        if text:
            passes.append(text)
        else:
            failures.append(f"{_show(metric.value)} is not {threshold}")
    drop = None
    if rule.max_drop is not None and target.baseline is not None:
        better = rule.direction if rule.direction is not None else bool(metric.higher_is_better)
        drop = judge_drop(metric, target.baseline, rule.max_drop, better, confidence)
        (failures if drop.failed else passes).append(drop.describe())
    if failures:
        verdict, reason = ("fail" if rule.level == "fail" else "warn"), "; ".join(failures)
    elif passes:
        verdict, reason = "pass", "; ".join(passes)
    else:
        verdict = "skip"
        reason = "max_drop needs --baseline" if not has_baseline else "nothing to check"
    return Outcome(
        rule,
        metric.name,
        target.variant,
        metric.value,
        target.baseline.value if target.baseline is not None else None,
        verdict,
        reason,
        drop,
    )


def _show(value: float | bool) -> str:
    return str(value).lower() if isinstance(value, bool) else f"{value:.4g}"
