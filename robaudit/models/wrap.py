"""Any ``nn.Module`` as a robaudit model, and a loaded model as a plain ``nn.Module``.

The Python API accepts the user's own module (defined in a notebook, never registered): it must take pixels
in [0, 1] (N, C, H, W) and return logits, as every robaudit model does, so its normalization is its own
business and robaudit adds none. Wrapping puts it in eval mode with frozen parameters, as the command line
does with every model it loads (audits differentiate with respect to the input only), and identifies it by
the fingerprint of its state, so that a resumed run on other weights is refused.

The other way round, :func:`as_module` hands a loaded model to the user as the ``nn.Module`` it runs (the
defended one when defenses were composed), carrying what robaudit knows about it as attributes.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..errors import InputError
from . import LoadedModel, ModelSpec, Normalized, Preprocessing, resolve_device
from .caveats import state_sha256
from .finite import MONITOR

#: the attribute of a module handed out by :func:`as_module` that leads back to its loaded model
LOADED = "robaudit_model"


def wrap_module(module: nn.Module, *, device: str = "auto", sample: torch.Tensor | None = None) -> LoadedModel:
    """``module`` (pixels in [0, 1] -> logits) as a loaded model on ``device``; its class count and input
    size are read from one forward pass on ``sample`` (a batch of the images it will be audited on)."""
    known = getattr(module, LOADED, None)
    if isinstance(known, LoadedModel):
        return known
    if not isinstance(module, nn.Module):
        raise InputError(f"a model must be an nn.Module, got {type(module).__name__}")
    if sample is None:
        raise InputError(f"{type(module).__name__}: an nn.Module is read from one forward pass; pass images with it")
    dev = resolve_device(device)
    base = Normalized(module, (0.0,) * sample.shape[1], (1.0,) * sample.shape[1]).to(dev).eval()
    base.requires_grad_(False)
    with torch.no_grad():
        logits = base(sample[:1].to(dev))
    if logits.ndim != 2 or logits.shape[0] != 1:
        raise InputError(
            f"{type(module).__name__} must return logits of shape (N, classes); "
            f"on a batch of 1 it returned {tuple(logits.shape)}"
        )
    MONITOR.watch(base)
    name = f"python:{type(module).__module__}.{type(module).__qualname__}"
    return LoadedModel(
        spec=ModelSpec(name=name),
        module=base,
        base=base,
        preprocessing=Preprocessing(input_size=tuple(int(s) for s in sample.shape[1:])),  # type: ignore[arg-type]
        num_classes=int(logits.shape[1]),
        device=dev,
        provenance={
            "model": name,
            "resolved_by": "a Python object",
            "pretrained_from": None,
            "weights_origin": "object",
            "parameters_sha256": state_sha256(module),
            "caveats": [],
        },
    )


def as_module(model: LoadedModel) -> nn.Module:
    """The module ``model`` runs (pixels in [0, 1] -> logits), with ``preprocessing``, ``provenance``,
    ``num_classes``, ``defenses`` and ``fingerprint`` attributes and the way back to ``model``."""
    module = model.module
    attributes: dict[str, Any] = {
        LOADED: model,
        "preprocessing": model.preprocessing,
        "provenance": model.provenance,
        "num_classes": model.num_classes,
        "defenses": list(model.defenses),
    }
    for key, value in attributes.items():
        object.__setattr__(module, key, value)  # plain attributes, never registered as submodules
    return module


def fingerprint_of(module: nn.Module) -> str:
    """The fingerprint of a module handed out by :func:`as_module` (its model's, weights included)."""
    loaded = getattr(module, LOADED, None)
    if not isinstance(loaded, LoadedModel):
        raise InputError(f"{type(module).__name__} was not loaded by robaudit")
    return loaded.fingerprint
