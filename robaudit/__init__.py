"""robaudit: audit how robust an image classifier is, and make it more robust.

Every model is a module that takes pixels in [0, 1] and returns logits; audits yield per-sample rows; one
writer turns them into self-describing Parquet reports. Importing this package imports nothing heavy: the
Python API (:mod:`robaudit.api`) is loaded on first use.

    import robaudit
    model = robaudit.load_model("cifar_resnet20", weights="cifar10_resnet20.th")
    result = robaudit.attack(model, "npz:test.npz", eps=[2 / 255, 8 / 255])
    result.rows, result.summary, result.figures(), result.save("reports/")

Every registered audit is a function of the package named after it (``robaudit.corruptions``,
``robaudit.fourier_map``, a plugin's audit too); ``robaudit.audit(name, model, data, ...)`` runs one by name.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

#: the API's own names (each audit adds one more, from the registry)
_API = ("load_model", "defend", "audit", "Result", "as_model")


def __getattr__(attribute: str) -> Any:
    # Called for names the package does not hold yet. A submodule's name must fail here, so that ``from . import
    # plugins`` goes on to import it; any other name is the API's or an audit's.
    from importlib import import_module
    from pkgutil import iter_modules

    if attribute.startswith("_") or attribute in {m.name for m in iter_modules(__path__)}:
        raise AttributeError(f"module 'robaudit' has no attribute {attribute!r}")
    api = import_module("robaudit.api")
    if attribute in _API:
        return getattr(api, attribute)
    name = api.audit_for_attribute(attribute)
    if name is None:
        raise AttributeError(f"module 'robaudit' has no attribute {attribute!r}")
    return api.audit_function(name)


def __dir__() -> list[str]:
    from . import plugins
    from .api import python_name

    return sorted({*globals(), *_API, *(python_name(n) for n in plugins.audits.names())})
