"""A small typed registry of named things (models, defenses, attacks, audits, data sources).

Entries are registered either eagerly (an object, e.g. from a decorator in a plugin file) or lazily (a
``"module:attribute"`` target from an entry point, imported only when the entry is first used), so that
listing names never imports torch. Every entry remembers where it came from; registering a name twice from
different places is an error that names both, because silently letting one plugin shadow another makes
results depend on installation order.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Generic, TypeVar

from .errors import InputError, RobauditError, suggest

T = TypeVar("T")

BUILTIN_SOURCE = "robaudit (built-in)"
RUNTIME_SOURCE = "runtime"


def import_target(target: str) -> Any:
    """Import ``"package.module:attr.sub"`` and return the attribute."""
    module_name, _, attr = target.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in filter(None, attr.split(".")):
        obj = getattr(obj, part)
    return obj


def import_file(path: Path, module_name: str) -> ModuleType:
    """Import a loose Python file as ``module_name``; a failure is an InputError naming the file."""
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise InputError(f"cannot import {path} as a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except RobauditError:
        raise
    except Exception as exc:
        sys.modules.pop(module_name, None)
        raise InputError(f"importing {path} failed: {type(exc).__name__}: {exc}") from exc
    return module


@dataclass
class Entry(Generic[T]):
    """One registered name: where it came from, what it points to, and (once loaded) the object."""

    name: str
    source: str
    target: str
    help: str = ""
    _obj: T | None = field(default=None, repr=False)

    @property
    def loaded(self) -> bool:
        return self._obj is not None

    def load(self) -> T:
        if self._obj is None:
            try:
                self._obj = import_target(self.target)
            except (ImportError, AttributeError) as exc:
                raise RobauditError(
                    f"{self.name!r} from {self.source} points to {self.target!r}, which cannot be imported: {exc}"
                ) from exc
            if not self.help:
                self.help = first_line(getattr(self._obj, "__doc__", None))
        return self._obj


def first_line(doc: str | None) -> str:
    return (doc or "").strip().split("\n", 1)[0].strip()


def target_of(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}:{getattr(obj, '__qualname__', type(obj).__name__)}"


class Registry(Generic[T]):
    """Names -> entries for one kind of thing (``kind`` is used in messages, e.g. "model")."""

    def __init__(self, group: str, kind: str, discover: Callable[[Registry[T]], None] | None = None) -> None:
        self.group = group
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}
        self._discover = discover
        self._discovered = discover is None
        self._source_override: str | None = None

    # -- filling -----------------------------------------------------------------------------------------
    def _add(self, entry: Entry[T]) -> None:
        old = self._entries.get(entry.name)
        if old is not None and (old.source, old.target) != (entry.source, entry.target):
            raise InputError(
                f"{self.kind} name {entry.name!r} is registered twice: by {old.source} ({old.target}) "
                f"and by {entry.source} ({entry.target}); uninstall or disable one of them "
                "(ROBAUDIT_DISABLE_PLUGINS=<distribution name>)"
            )
        self._entries[entry.name] = entry

    def add_lazy(self, name: str, target: str, *, source: str, help: str = "") -> None:
        """Register ``name`` to be imported from ``target`` ("module:attr") on first use."""
        self._add(Entry(name=name, source=source, target=target, help=help))

    def register(self, name: str, obj: T | None = None, *, help: str = "", source: str | None = None) -> Any:
        """Register ``obj`` under ``name``; without ``obj``, return a decorator that does it."""

        def add(o: T) -> T:
            src = source or self._source_override or RUNTIME_SOURCE
            self._add(Entry(name=name, source=src, target=target_of(o), help=help or first_line(o.__doc__), _obj=o))
            return o

        return add if obj is None else add(obj)

    def unregister(self, name: str) -> None:
        self._entries.pop(name, None)

    @contextmanager
    def registering_as(self, source: str) -> Iterator[None]:
        """Attribute registrations made inside the block (e.g. by a plugin file) to ``source``."""
        previous, self._source_override = self._source_override, source
        try:
            yield
        finally:
            self._source_override = previous

    # -- reading -----------------------------------------------------------------------------------------
    def _ensure(self) -> None:
        if not self._discovered:
            self._discovered = True
            assert self._discover is not None
            self._discover(self)

    def __contains__(self, name: object) -> bool:
        self._ensure()
        return name in self._entries

    def names(self) -> list[str]:
        self._ensure()
        return sorted(self._entries)

    def entries(self) -> list[Entry[T]]:
        self._ensure()
        return [self._entries[n] for n in sorted(self._entries)]

    def entry(self, name: str) -> Entry[T]:
        self._ensure()
        try:
            return self._entries[name]
        except KeyError:
            known = ", ".join(self.names()) or "none"
            raise InputError(f"unknown {self.kind} {name!r}{suggest(name, self._entries)}; known: {known}") from None

    def get(self, name: str) -> T:
        return self.entry(name).load()
