"""An audit's own options, declared once as plain data: the command line, the Python API and suites read them.

An :class:`Option` names the keyword it sets (``Audit.from_options`` receives it), its help, default and
command-line type, and optionally ``parse``, which turns the command-line text into the value the audit
takes (``"0.1,0.2"`` → ``(0.1, 0.2)``). ``parse`` also accepts the already-parsed value, so the Python
API can pass ``fmix=[0.1, 0.2]`` and the command line ``--fmix 0.1,0.2`` to the same code.

Nothing here imports anything heavy: option declarations are read for ``robaudit --help``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InputError, suggest


@dataclass(frozen=True)
class Option:
    """One option of an audit (see the module docstring)."""

    name: str
    help: str
    default: Any = None
    #: the command-line type: str, int, float, bool or Path
    type: type = str
    #: command-line spellings; default ``--name-with-dashes``
    flags: tuple[str, ...] = ()
    #: repeatable on the command line; the value is a list
    multiple: bool = False
    #: a boolean written ``--name/--no-name`` (a plain boolean option is a flag that switches it on)
    negatable: bool = False
    parse: Callable[[Any], Any] | None = None
    #: the heading of the group of options it is listed under in ``--help`` (default: the audit's title)
    panel: str = ""

    @property
    def cli_flags(self) -> tuple[str, ...]:
        return self.flags or ("--" + self.name.replace("_", "-"),)

    @property
    def long_flag(self) -> str:
        return next(f for f in self.cli_flags if f.startswith("--"))

    def convert(self, value: Any) -> Any:
        if value is None or self.parse is None:
            return value
        return self.parse(value)


def resolve(options: Sequence[Option], values: Mapping[str, Any], *, audit: str) -> dict[str, Any]:
    """Every option's value: the given one (converted), else its default; unknown names are errors."""
    known = {o.name: o for o in options}
    for name in values:
        if name not in known:
            raise InputError(
                f"audit {audit!r} has no option {name!r}{suggest(name, known)}; "
                f"its options: {', '.join(known) or 'none'}"
            )
    return {name: option.convert(values.get(name, option.default)) for name, option in known.items()}


# -- parsers shared by the built-in audits ----------------------------------------------------------------------


def _items(value: Any) -> list[Any]:
    """Comma-separated text, or a sequence whose text items may hold commas too, as a flat list."""
    if isinstance(value, str):
        return [p.strip() for p in value.split(",") if p.strip()]
    if isinstance(value, Iterable):
        return [p for item in value for p in (_items(item) if isinstance(item, str) else [item])]
    return [value]


def float_list(value: Any, option: str = "") -> tuple[float, ...]:
    """``"0.1,0.2"`` or ``[0.1, 0.2]`` → ``(0.1, 0.2)``."""
    try:
        return tuple(float(v) for v in _items(value))
    except (TypeError, ValueError):
        raise InputError(f"{option or 'this option'} takes comma-separated numbers, got {value!r}") from None


def fraction(item: Any) -> float:
    """``"8/255"`` → 0.0313…, ``"0.5"`` or 0.5 → 0.5."""
    if not isinstance(item, str):
        return float(item)
    num, sep, den = item.partition("/")
    return float(num) / float(den) if sep else float(num)


def budget_list(value: Any) -> list[float]:
    """``"0.01,2/255"`` or ``[0.01, "2/255"]`` → [0.01, 0.00784...]; fractions because budgets are often k/255."""
    values = []
    for item in _items(value):
        try:
            values.append(fraction(item))
        except (TypeError, ValueError, ZeroDivisionError):
            raise InputError(f"--eps takes comma-separated numbers or fractions (8/255), got {item!r}") from None
    return values


def names(value: Any) -> list[str]:
    """Repeated and/or comma-separated names (``--threat white,gray --threat black``) as one list."""
    return [str(v) for v in _items(value)]


def path_text(value: Any) -> str:
    """A path as the text an audit's parameters record (JSON-friendly)."""
    return str(Path(value))
