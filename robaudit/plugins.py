"""Plugins: the entry-point groups, loose plugin files, and the switch that turns third-party ones off.

robaudit's own models, data sources, audits and training regularizers are declared as entry points of the ``robaudit``
distribution and so are found the same way as any plugin's. Entry-point metadata is read without importing
anything; the object behind a name is imported the first time the name is used.

``ROBAUDIT_DISABLE_PLUGINS`` turns off third-party autoloading: ``1``/``all`` disables every distribution
other than robaudit, a comma-separated list disables those distributions only. ``--plugins-dir DIR`` (or
:func:`load_plugin_dir`) imports every ``*.py`` file in DIR; such a file registers with the decorators of
the registries below, e.g. ``@robaudit.plugins.models.register("my_net")``.
"""

from __future__ import annotations

import os
from contextlib import ExitStack
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from .errors import InputError, RobauditError
from .registry import BUILTIN_SOURCE, Registry, import_file

DISABLE_ENV = "ROBAUDIT_DISABLE_PLUGINS"
GROUPS = {
    "models": "robaudit.models",
    "defenses": "robaudit.defenses",
    "attacks": "robaudit.attacks",
    "audits": "robaudit.audits",
    "datasets": "robaudit.datasets",
    "regularizers": "robaudit.regularizers",
}


def _normalize(dist: str) -> str:
    return dist.lower().replace("_", "-")


def disabled_distributions() -> set[str] | None:
    """None when nothing is disabled, an empty set meaning "all third-party", or the named ones."""
    value = os.environ.get(DISABLE_ENV, "").strip()
    if not value or value.lower() in {"0", "false", "no"}:
        return None
    if value.lower() in {"1", "true", "yes", "all", "*"}:
        return set()
    return {_normalize(v) for v in value.split(",") if v.strip()}


def _discover(registry: Registry[Any]) -> None:
    disabled = disabled_distributions()
    for ep in entry_points(group=registry.group):
        dist = ep.dist.name if ep.dist is not None else "unknown distribution"
        builtin = _normalize(dist) == "robaudit"
        if not builtin and disabled is not None and (not disabled or _normalize(dist) in disabled):
            continue
        version = ep.dist.version if ep.dist is not None else "?"
        source = BUILTIN_SOURCE if builtin else f"{dist} {version}"
        registry.add_lazy(ep.name, ep.value, source=source)
    if not any(e.source == BUILTIN_SOURCE for e in registry.entries()) and registry.group in _BUILTIN_GROUPS:
        raise RobauditError(
            "robaudit's built-in entry points are missing: install the package (pip install -e .) "
            "instead of running it from a bare source tree"
        )


# Groups in which robaudit itself registers something; the others are filled by later features or plugins.
_BUILTIN_GROUPS = {
    "robaudit.models",
    "robaudit.datasets",
    "robaudit.audits",
    "robaudit.defenses",
    "robaudit.attacks",
    "robaudit.regularizers",
}

models: Registry[Any] = Registry(GROUPS["models"], "model", _discover)
defenses: Registry[Any] = Registry(GROUPS["defenses"], "defense", _discover)
attacks: Registry[Any] = Registry(GROUPS["attacks"], "attack", _discover)
audits: Registry[Any] = Registry(GROUPS["audits"], "audit", _discover)
datasets: Registry[Any] = Registry(GROUPS["datasets"], "data source", _discover)
#: extra loss terms for ``robaudit train --regularizer`` (see :mod:`robaudit.training.regularizer`)
regularizers: Registry[Any] = Registry(GROUPS["regularizers"], "regularizer", _discover)

REGISTRIES: dict[str, Registry[Any]] = {
    "models": models,
    "defenses": defenses,
    "attacks": attacks,
    "audits": audits,
    "datasets": datasets,
    "regularizers": regularizers,
}


def load_plugin_dir(directory: str | Path) -> list[Path]:
    """Import every ``*.py`` file of ``directory`` (sorted), attributing what it registers to the file."""
    root = Path(directory)
    if not root.is_dir():
        raise InputError(f"--plugins-dir {str(directory)!r} is not a directory")
    loaded = []
    for path in sorted(root.glob("*.py")):
        with ExitStack() as stack:
            for registry in REGISTRIES.values():
                stack.enter_context(registry.registering_as(f"file {path}"))
            import_file(path, f"robaudit_plugin_file_{path.stem}")
        loaded.append(path)
    return loaded
