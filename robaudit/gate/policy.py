"""The gate policy: a TOML file of rules on named metrics.

```toml
confidence = 0.95                 # of the intervals that judge drops against a baseline

[[rule]]
metric = "attack.white.linf.eps=0.03.accuracy"
min = 0.25                        # absolute floor; max = ... a ceiling; equals = ... an exact value
max_drop = 0.02                   # allowed regression against --baseline beyond sampling noise
level = "fail"                    # or "warn"

[[rule]]
check = "corruptions.mCE <= 80"   # the compact form: <, <=, >, >=, ==, !=
```

Optional keys of a rule: ``name`` (its label in reports), ``direction`` (``higher`` or ``lower`` is better,
for metrics without one, or to override it) and ``variant`` (the sub-folder of a suite's report folder to
read; ``"*"`` applies the rule to every variant). A metric name may contain ``*`` wildcards; the rule then
applies to every metric that matches. Errors name the line of the offending rule and key.
"""

from __future__ import annotations

import math
import operator
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InputError, suggest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 reads TOML with the tomli backport
    import tomli as tomllib

OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
}
RULE_KEYS = ("name", "metric", "check", "min", "max", "equals", "max_drop", "direction", "level", "variant")
TOP_KEYS = ("confidence", "rule")
LEVELS = ("fail", "warn")
DIRECTIONS = {"higher": True, "lower": False}
DEFAULT_CONFIDENCE = 0.95
_CHECK = re.compile(r"^\s*(?P<metric>[^\s<>=!]+)\s*(?P<op><=|>=|==|!=|<|>)\s*(?P<value>\S+)\s*$")
_RULE_HEADER = re.compile(r"^\s*\[\[\s*rule\s*\]\]")
_ANY_HEADER = re.compile(r"^\s*\[")


@dataclass(frozen=True)
class Threshold:
    """An absolute limit: the metric's value ``op`` ``limit`` must hold."""

    op: str
    limit: float | bool

    def holds(self, value: float | bool) -> bool:
        return bool(OPERATORS[self.op](value, self.limit))

    def __str__(self) -> str:
        limit = str(self.limit).lower() if isinstance(self.limit, bool) else f"{self.limit:g}"
        return f"{self.op} {limit}"


@dataclass(frozen=True)
class Rule:
    index: int
    metric: str
    thresholds: tuple[Threshold, ...] = ()
    max_drop: float | None = None
    #: higher_is_better given by the rule (None: the metric's own)
    direction: bool | None = None
    level: str = "fail"
    variant: str | None = None
    name: str | None = None
    line: int | None = None

    @property
    def label(self) -> str:
        return self.name or f"rule {self.index}"

    @property
    def where(self) -> str:
        return f"{self.label}" + (f" (line {self.line})" if self.line else "")

    def limit_text(self) -> str:
        parts = [str(t) for t in self.thresholds]
        if self.max_drop is not None:
            parts.append(f"drop <= {self.max_drop:g}")
        return "; ".join(parts)


@dataclass(frozen=True)
class Policy:
    rules: tuple[Rule, ...]
    confidence: float = DEFAULT_CONFIDENCE
    source: str = "policy"


def load_policy(path: Path) -> Policy:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"policy file {path} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read policy file {path}: {exc}") from exc
    return parse_policy(text, str(path))


def parse_policy(text: str, source: str = "policy") -> Policy:
    """A :class:`Policy` from TOML text; InputError naming the line (and key) of anything malformed."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(_decode_error(text, source, exc)) from None
    unknown = [k for k in data if k not in TOP_KEYS]
    if unknown:
        key = unknown[0]
        raise InputError(
            f"{source}: line {_key_line(text, key, 0, None) or '?'}: unknown key {key!r}"
            f"{suggest(key, TOP_KEYS) or f' (top-level keys: {TOP_KEYS[0]}; rules go in [[rule]] tables)'}"
        )
    confidence = _confidence(data.get("confidence", DEFAULT_CONFIDENCE), text, source)
    tables = data.get("rule")
    if tables is None:
        raise InputError(f"{source}: no rules; add [[rule]] tables with metric = ... and a limit")
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        line = _header_line(text) or _key_line(text, "rule", 0, None)
        raise InputError(f"{source}: line {line or '?'}, key 'rule': write rules as [[rule]] tables (double brackets)")
    spans = _rule_spans(text)
    rules = tuple(
        _rule(i + 1, table, text, source, spans[i] if i < len(spans) else None) for i, table in enumerate(tables)
    )
    return Policy(rules, confidence, source)


def _decode_error(text: str, source: str, exc: Exception) -> str:
    message = str(exc)
    found = re.search(r"line (\d+)", message)
    line = int(found.group(1)) if found else getattr(exc, "lineno", None)
    if not line:
        return f"{source}: malformed TOML: {message}"
    lines = text.splitlines()
    content = lines[line - 1].strip() if 0 < line <= len(lines) else ""
    key = re.match(r"\s*[\"']?([A-Za-z0-9_.-]+)[\"']?\s*=", content)
    where = f", key {key.group(1)!r}" if key else ""
    reason = re.sub(r" \(at line.*\)$", "", message)
    return f"{source}: line {line}{where}: malformed TOML ({reason}): {content}"


def _rule_spans(text: str) -> list[tuple[int, int]]:
    """(first, last) line numbers of each [[rule]] table, in order."""
    lines = text.splitlines()
    starts = [i + 1 for i, line in enumerate(lines) if _RULE_HEADER.match(line)]
    spans = []
    for start in starts:
        end = next((j for j in range(start + 1, len(lines) + 1) if _ANY_HEADER.match(lines[j - 1])), len(lines) + 1)
        spans.append((start, end - 1))
    return spans


def _header_line(text: str) -> int | None:
    """The line of a single-bracket [rule] table (a common slip for [[rule]])."""
    return next((i + 1 for i, line in enumerate(text.splitlines()) if re.match(r"^\s*\[\s*rule\s*\]", line)), None)


def _key_line(text: str, key: str, first: int, last: int | None) -> int | None:
    pattern = re.compile(rf"^\s*[\"']?{re.escape(key)}[\"']?\s*=")
    lines = text.splitlines()
    for number in range(first + 1, (last or len(lines)) + 1):
        if pattern.match(lines[number - 1]):
            return number
    return None


def _confidence(value: Any, text: str, source: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < float(value) < 1:
        line = _key_line(text, "confidence", 0, None)
        raise InputError(
            f"{source}: line {line or '?'}, key 'confidence': must be a number between 0 and 1, got {value!r}"
        )
    return float(value)


class _RuleReader:
    """Reads one [[rule]] table; every complaint names the rule, its line and the key."""

    def __init__(self, index: int, table: Mapping[str, Any], text: str, source: str, span: tuple[int, int] | None):
        self.index, self.table, self.text, self.source, self.span = index, table, text, source, span

    def line(self, key: str | None = None) -> int | None:
        if self.span is None:
            return None
        return (_key_line(self.text, key, self.span[0], self.span[1]) if key else None) or self.span[0]

    def fail(self, key: str | None, problem: str) -> InputError:
        line = self.line(key)
        where = f"line {line}: " if line else ""
        return InputError(f"{self.source}: {where}rule {self.index}{f', key {key!r}' if key else ''}: {problem}")

    def number(self, key: str, *, least: float | None = None) -> float | None:
        value = self.table.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(key, f"must be a number, got {value!r}")
        if math.isnan(value):  # TOML allows nan; a limit of nan would judge nothing
            raise self.fail(key, "must be a number, got nan")
        if least is not None and value < least:
            raise self.fail(key, f"must be >= {least:g}, got {value!r}")
        return float(value)

    def choice(self, key: str, choices: Mapping[str, Any] | tuple[str, ...]) -> str | None:
        value = self.table.get(key)
        if value is None:
            return None
        if value not in choices:
            raise self.fail(
                key, f"{value!r} is not one of {', '.join(map(repr, choices))}{suggest(str(value), choices)}"
            )
        return str(value)

    def text_value(self, key: str) -> str | None:
        value = self.table.get(key)
        if value is None:
            return None
        if not isinstance(value, str) or not value.strip():
            raise self.fail(key, f"must be a non-empty string, got {value!r}")
        return value.strip()


def _rule(index: int, table: Mapping[str, Any], text: str, source: str, span: tuple[int, int] | None) -> Rule:
    read = _RuleReader(index, table, text, source, span)
    for key in table:
        if key not in RULE_KEYS:
            hint = suggest(key, RULE_KEYS) or f" (keys: {', '.join(RULE_KEYS)})"
            raise read.fail(key, f"unknown key{hint}")
    metric, thresholds = read.text_value("metric"), []
    check = read.text_value("check")
    if check is not None:
        if metric is not None:
            raise read.fail("check", "give either metric = ... or check = ..., not both")
        metric, threshold = _parse_check(check, read)
        thresholds.append(threshold)
    if metric is None:
        raise read.fail(None, 'names no metric: add metric = "..." (robaudit gate DIR --list-metrics lists them)')
    for key, op in (("min", ">="), ("max", "<=")):
        if (limit := read.number(key)) is not None:
            thresholds.append(Threshold(op, limit))
    if "equals" in table:
        value = table["equals"]
        if not isinstance(value, (bool, int, float)) or (isinstance(value, float) and math.isnan(value)):
            raise read.fail("equals", f"must be a number or true/false, got {value!r}")
        thresholds.append(Threshold("==", value if isinstance(value, bool) else float(value)))
    max_drop = read.number("max_drop", least=0.0)
    if not thresholds and max_drop is None:
        raise read.fail(None, f"{metric}: nothing to check; give min, max, equals, check or max_drop")
    direction = read.choice("direction", DIRECTIONS)
    return Rule(
        index=index,
        metric=metric,
        thresholds=tuple(thresholds),
        max_drop=max_drop,
        direction=DIRECTIONS[direction] if direction else None,
        level=read.choice("level", LEVELS) or "fail",
        variant=read.text_value("variant"),
        name=read.text_value("name"),
        line=read.line(),
    )


def _parse_check(check: str, read: _RuleReader) -> tuple[str, Threshold]:
    match = _CHECK.match(check)
    if not match:
        raise read.fail("check", f"{check!r} is not METRIC OP VALUE with OP one of {' '.join(OPERATORS)}")
    raw = match["value"]
    value: float | bool
    if raw.lower() in ("true", "false"):
        value = raw.lower() == "true"
    else:
        try:
            value = float(raw)
            if math.isnan(value):
                raise ValueError
        except ValueError:
            raise read.fail("check", f"{raw!r} in {check!r} is not a number or true/false") from None
    return match["metric"], Threshold(match["op"], value)
