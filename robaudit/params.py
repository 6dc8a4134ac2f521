"""``NAME[:key=value,...]`` option strings (``--defense``, ``--attack``) and checking them against a factory.

Values are read as booleans (``true``/``false``), ``none``, integers, floats, or else kept as strings. The
parameter names are checked against the factory's keyword parameters, so a typo is an error that suggests
the intended name instead of a silently ignored setting. :func:`build` turns such a string into an object
through a registry (attacks and defenses alike), and :class:`Parameterized` is the one ``repr`` of things
built from keyword parameters.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any, ClassVar

from .errors import InputError, suggest

if TYPE_CHECKING:
    from .registry import Registry


def parse_value(text: str) -> Any:
    lowered = text.lower()
    if lowered in {"true", "false"}:
        return lowered == "true"
    if lowered in {"none", "null"}:
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse_spec(text: str, option: str) -> tuple[str, dict[str, Any]]:
    """``"cache:path=runs/c,theta=50"`` -> ``("cache", {"path": "runs/c", "theta": 50})``."""
    name, _, rest = text.partition(":")
    params: dict[str, Any] = {}
    for item in filter(None, (p.strip() for p in rest.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InputError(f"{option} {text!r}: expected NAME:key=value,..., got {item!r}")
        if key.strip() in params:
            raise InputError(f"{option} {text!r} gives {key.strip()!r} twice; give each parameter once")
        params[key.strip()] = parse_value(value.strip())
    if not name:
        raise InputError(f"{option} {text!r} names nothing")
    return name, params


def parameters_of(factory: Any) -> dict[str, inspect.Parameter]:
    """The keyword parameters a factory (a class or a function) accepts."""
    custom = getattr(factory, "accepted_parameters", None)
    if callable(custom):  # factories that forward **params to another library declare what they accept
        accepted: dict[str, inspect.Parameter] = custom()
        return accepted
    target = factory.__init__ if inspect.isclass(factory) else factory
    return {
        n: p
        for n, p in inspect.signature(target).parameters.items()
        if n != "self" and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
    }


def check_params(kind: str, name: str, factory: Any, params: dict[str, Any]) -> None:
    """Unknown names are errors (with a suggestion); required parameters must be present."""
    accepted = parameters_of(factory)
    for key in params:
        if key not in accepted:
            raise InputError(
                f"{kind} {name!r} has no parameter {key!r}{suggest(key, accepted)}; "
                f"its parameters: {', '.join(accepted) or 'none'}"
            )
    missing = [n for n, p in accepted.items() if p.default is inspect.Parameter.empty and n not in params]
    if missing:
        raise InputError(f"{kind} {name!r} needs {', '.join(f'{m}=...' for m in missing)}")


class Parameterized:
    """Something built from keyword parameters that its ``repr`` shows, e.g. ``pgd(eps_step=0.01, steps=10)``.

    Attacks, defenses and audits share it: the ``repr`` is what reports record (an ``attack`` or ``defense``
    column, the run's ``audit_repr``) and what tests use as ids, so it must show every parameter, sorted.
    """

    name: ClassVar[str]
    params: dict[str, Any]

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in sorted(self.params.items()))
        return f"{self.name}({args})"


def build(registry: Registry[Any], text: str, *, option: str, expected: type) -> Any:
    """Instantiate ``NAME[:key=value,...]`` (the text of ``option``) through ``registry``.

    Parameter names are checked against the factory first, so a typo is an error with a suggestion; the
    factory must return an instance of ``expected`` (a plugin returning something else is named).
    """
    name, params = parse_spec(text, option)
    factory = registry.get(name)
    check_params(registry.kind, name, factory, params)
    made = factory(**params)
    if not isinstance(made, expected):
        raise InputError(f"{registry.kind} factory {name!r} returned {type(made).__name__}, not a {expected.__name__}")
    return made
