"""References inside suite values: ``{out}``, ``{steps.NAME.KEY}`` and friends.

A string value of a step may name places and earlier results, filled in just before the step runs:

- ``{out}``: the folder this step's variant writes into (the suite's folder without variants);
- ``{root}``: the suite's folder (shared by all variants); ``{variant}``: the variant's name;
- ``{suite_dir}``: the folder holding the suite file, for files kept beside it;
- ``{steps.NAME.KEY}``: a result of the earlier step NAME of the same variant: KEY is looked up in the
  step's summary first, then in everything the step printed (dotted keys and list positions go deeper:
  ``{steps.attack.curves.0.accuracy}``); ``{steps.NAME.report}`` is the step's report path.

``{{`` and ``}}`` stand for literal braces.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

from ..errors import InputError, suggest

PLACES = ("out", "root", "variant", "suite_dir")
_TOKEN = re.compile(r"\{\{|\}\}|\{([^{}]*)\}")
#: what a step reference stands for while the suite is only being checked: parses as a number and a word
PLACEHOLDER = "0"


def names_in(text: str) -> Iterator[str]:
    """The reference names used in ``text`` (without braces)."""
    for match in _TOKEN.finditer(text):
        if match.group(1) is not None:
            yield match.group(1).strip()


def substitute(text: str, lookup: Callable[[str], str]) -> str:
    """``text`` with each ``{name}`` replaced by ``lookup(name)`` and doubled braces undoubled."""

    def replace(match: re.Match[str]) -> str:
        token = match.group(0)
        if token in ("{{", "}}"):
            return token[0]
        return lookup(match.group(1).strip())

    return _TOKEN.sub(replace, text)


def map_strings(value: Any, function: Callable[[str], str]) -> Any:
    """``value`` with ``function`` applied to every string in it (lists included)."""
    if isinstance(value, str):
        return function(value)
    if isinstance(value, list):
        return [map_strings(v, function) for v in value]
    return value


def strings_in(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for item in value:
            yield from strings_in(item)


def check_name(name: str, earlier: list[str], where: str) -> None:
    """Fail unless ``name`` is a place or a reference to a step among ``earlier``."""
    if name in PLACES:
        return
    parts = name.split(".")
    if parts[0] != "steps":
        raise InputError(f"{where}: unknown reference {{{name}}}{suggest(name, [*PLACES, 'steps.NAME.KEY'])}")
    if len(parts) < 3 or not all(parts):
        raise InputError(f"{where}: write a step reference as {{steps.NAME.KEY}}, got {{{name}}}")
    if parts[1] not in earlier:
        raise InputError(
            f"{where}: {{{name}}} refers to {parts[1]!r}, which is not an earlier step"
            + (suggest(parts[1], earlier) if earlier else " (there is no earlier step)")
        )


def dig(value: Any, keys: list[str]) -> tuple[bool, Any]:
    """Follow ``keys`` (mapping keys or list positions) into ``value``: (found, value)."""
    for key in keys:
        if isinstance(value, dict) and key in value:
            value = value[key]
        elif isinstance(value, list) and key.lstrip("-").isdigit() and -len(value) <= int(key) < len(value):
            value = value[int(key)]
        else:
            return False, None
    return True, value


def lookup_result(name: str, result: Any, report: str | None, where: str) -> Any:
    """The value ``{steps.NAME.KEY...}`` stands for, from the step's printed ``result`` and its report path."""
    keys = name.split(".")[2:]
    if keys == ["report"] and report is not None:
        return report
    # the step's --json envelope: its result first (an audit's summary), then the files it wrote
    envelope = result if isinstance(result, dict) else {}
    sources = [envelope.get("result"), envelope.get("files"), envelope]
    for source in sources:
        found, value = dig(source, keys)
        if found:
            return value
    known = sorted({*(k for s in sources if isinstance(s, dict) for k in s), "report"})
    raise InputError(f"{where}: {{{name}}}: the step has no result {'.'.join(keys)!r}{suggest(keys[0], known)}")
