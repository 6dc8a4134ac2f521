"""Reading a network's activations at named layers as one feature vector per image (the cache's keys).

Layers are module names of the backbone (``layer3.2``, ``layer4.1``, ``blocks.11``) or the aliases
``penultimate`` (the input of the classifier layer: the global-pooled features), ``logits`` and ``probs``
(softmax of the logits). A spatial activation (N, C, H, W) is global-average-pooled (``pool="avg"``, the
default) or flattened whole (``pool="flatten"``, as the original CIFAR cache model did); token sequences
(N, T, C) are averaged over tokens. Several layers are concatenated and the result is L2-normalized per
image, so that a dot product of two keys is their cosine similarity.

Activations are captured with forward hooks registered for one forward pass only, so the captured tensors
stay in the autograd graph: gradients of a cache's output reach the input pixels.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError, RunError, suggest

ALIASES = ("penultimate", "logits", "probs")
POOLS = ("avg", "flatten")


def classifier_of(backbone: nn.Module) -> nn.Module:
    """The final classification layer: timm's ``get_classifier()``, else the last ``nn.Linear``."""
    getter = getattr(backbone, "get_classifier", None)
    if callable(getter):
        head = getter()
        if isinstance(head, nn.Module) and not isinstance(head, nn.Identity):
            return head
    linears = [m for m in backbone.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise InputError("cannot find the classifier layer for 'penultimate' (no nn.Linear); name a layer instead")
    return linears[-1]


def parse_layers(text: str | list[str]) -> list[str]:
    layers = [p.strip() for p in (text.split("+") if isinstance(text, str) else text) if p.strip()]
    if not layers:
        raise InputError("no cache layer given (e.g. penultimate, layer3.2, or layer3.1+layer3.2)")
    return layers


class FeatureReader:
    """Runs the pixel model once and returns (L2-normalized features, logits)."""

    def __init__(self, base: nn.Module, layers: list[str], pool: str = "avg") -> None:
        if pool not in POOLS:
            raise InputError(f"pool must be one of {', '.join(POOLS)}, got {pool!r}")
        backbone: nn.Module = getattr(base, "backbone", base)
        modules = dict(backbone.named_modules())
        for layer in layers:
            if layer not in ALIASES and layer not in modules:
                names = [n for n in modules if n]
                shown = ", ".join(names[:40]) + (f" ... ({len(names)} in all)" if len(names) > 40 else "")
                raise InputError(
                    f"the model has no layer {layer!r}{suggest(layer, names + list(ALIASES))}; "
                    f"aliases: {', '.join(ALIASES)}; layers: {shown}"
                )
        self.layers = list(layers)
        self.pool = pool
        self._modules = {layer: modules[layer] for layer in layers if layer not in ALIASES}
        self._classifier = classifier_of(backbone) if "penultimate" in layers else None

    def _reduce(self, activation: torch.Tensor) -> torch.Tensor:
        if activation.ndim == 4:
            return activation.flatten(1) if self.pool == "flatten" else activation.mean(dim=(2, 3))
        if activation.ndim == 3:
            return activation.mean(dim=1)
        return activation.flatten(1)

    def __call__(self, base: nn.Module, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        captured: dict[str, torch.Tensor] = {}

        def keep(name: str) -> Callable[[nn.Module, tuple[torch.Tensor, ...], object], None]:
            def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: object) -> None:
                captured[name] = output[0] if isinstance(output, (tuple, list)) else output  # type: ignore[assignment]

            return hook

        handles = [module.register_forward_hook(keep(name)) for name, module in self._modules.items()]
        if self._classifier is not None:
            handles.append(
                self._classifier.register_forward_pre_hook(
                    lambda module, inputs: captured.__setitem__("penultimate", inputs[0])
                )
            )
        try:
            logits = base(pixels)
        finally:
            for handle in handles:
                handle.remove()
        parts = []
        for layer in self.layers:
            if layer == "logits":
                activation = logits
            elif layer == "probs":
                activation = logits.softmax(dim=1)
            elif layer in captured:
                activation = captured[layer]
            else:
                raise RunError(f"layer {layer!r} did not run during the forward pass")
            parts.append(self._reduce(activation.float()))
        return F.normalize(torch.cat(parts, dim=1), dim=1), logits
