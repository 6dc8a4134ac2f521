"""The CI gate: fail a build when robustness falls below a floor or regresses beyond noise.

A policy (:mod:`.policy`, a TOML file of rules) names metrics of a report folder
(:mod:`robaudit.reports.metrics`) and puts absolute limits on them (``min``, ``max``, ``equals``, or the
compact ``check = "corruptions.mCE <= 80"``), and/or a ``max_drop`` against a baseline folder, usually the
reports of the last release. Drops are judged against sampling noise (:mod:`.stats`), so re-running an
audit on a few different images does not fail a build, while a real regression does.
:func:`evaluate` returns a :class:`GateResult`; :mod:`.output` renders it as JSON, JUnit XML and Markdown.
Exit codes of ``robaudit gate``: 0 passed (warnings allowed), 1 a fail-level rule failed, 2 a bad policy,
a missing metric, a baseline measured on other data or a report of a model with random weights (unless
``--allow-random-weights``).
"""

from __future__ import annotations

from .evaluate import GateResult, Outcome, evaluate
from .policy import Policy, Rule, Threshold, load_policy, parse_policy
from .stats import Drop, judge_drop, newcombe_interval

__all__ = [
    "Drop",
    "GateResult",
    "Outcome",
    "Policy",
    "Rule",
    "Threshold",
    "evaluate",
    "judge_drop",
    "load_policy",
    "newcombe_interval",
    "parse_policy",
]
