"""Which layers a similarity is read from, and capturing their activations during a forward pass.

Layers are module names of the backbone (``conv1``, ``layer1.2.conv2``, ``layer2``), joined with ``+`` in
option strings. ``auto`` takes ``AUTO_LAYERS`` evenly spaced convolutions, in the order the model declares
its modules, first and last included: Li et al. (2019) regularized 5 evenly spaced convolutional layers of a
ResNet-18 (its layers 1, 5, 9, 13 and 17). A layer's activation is used whole, flattened to one vector per
image ("the concatenated convolutional feature vector").

Activations are captured with forward hooks that live only inside a ``with LayerCapture(...)`` block, so
they stay in the autograd graph (training differentiates through them) and no hook outlives its use.
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType

import numpy as np
import torch
from torch import nn

from ..errors import InputError, RunError, suggest

AUTO = "auto"
AUTO_LAYERS = 5


def backbone_of(model: nn.Module) -> nn.Module:
    """The network whose modules layers name: the backbone inside robaudit's pixel-model wrappers."""
    from ..defenses.base import DefendedModel
    from ..models import Normalized

    if isinstance(model, DefendedModel):
        model = model.base
    return model.backbone if isinstance(model, Normalized) else model


def parse_layer_names(text: str | list[str] | tuple[str, ...]) -> list[str]:
    """``"a+b"`` (or a list) -> ["a", "b"]; empty is an error."""
    names = [p.strip() for p in (text.split("+") if isinstance(text, str) else text) if p.strip()]
    if not names:
        raise InputError("no layer given (e.g. auto, layer1.2.conv2, or conv1+layer2.1.conv2)")
    if len(set(names)) != len(names):
        raise InputError(f"layer given twice in {'+'.join(names)}")
    return names


def convolutions(backbone: nn.Module) -> list[str]:
    return [name for name, module in backbone.named_modules() if isinstance(module, nn.Conv2d)]


def auto_layers(backbone: nn.Module, count: int = AUTO_LAYERS) -> list[str]:
    """``count`` evenly spaced Conv2d modules (all of them when there are fewer)."""
    convs = convolutions(backbone)
    if not convs:
        raise InputError("layers=auto needs convolutional layers and the model has none; name its layers instead")
    if len(convs) <= count:
        return convs
    positions = np.unique(np.round(np.linspace(0, len(convs) - 1, count)).astype(int))
    return [convs[i] for i in positions]


def resolve_layers(backbone: nn.Module, text: str | list[str] | tuple[str, ...]) -> list[str]:
    """Layer names checked against the backbone's modules (``auto`` expanded), with suggestions for typos."""
    names = parse_layer_names(text)
    if names == [AUTO]:
        return auto_layers(backbone)
    modules = dict(backbone.named_modules())
    for name in names:
        if name == AUTO:
            raise InputError("auto cannot be combined with named layers")
        if name not in modules or not name:
            known = [n for n in modules if n]
            shown = ", ".join(known[:30]) + (f" ... ({len(known)} in all)" if len(known) > 30 else "")
            raise InputError(f"the model has no layer {name!r}{suggest(name, known)}; its layers: {shown}")
    return names


class LayerCapture:
    """``with LayerCapture(backbone, layers) as captured: model(x)`` -> ``captured[layer]``, (N, D) activations."""

    def __init__(self, backbone: nn.Module, layers: list[str]) -> None:
        modules = dict(backbone.named_modules())
        self.layers = list(layers)
        self._modules = {layer: modules[layer] for layer in layers}
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        self.activations: dict[str, torch.Tensor] = {}

    def _keep(self, name: str) -> Callable[[nn.Module, tuple[torch.Tensor, ...], object], None]:
        def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: object) -> None:
            tensor = output[0] if isinstance(output, (tuple, list)) else output
            if not isinstance(tensor, torch.Tensor):
                raise RunError(f"layer {name!r} returned {type(tensor).__name__}, not a tensor")
            self.activations[name] = tensor

        return hook

    def __enter__(self) -> LayerCapture:
        self.activations = {}
        self._handles = [module.register_forward_hook(self._keep(name)) for name, module in self._modules.items()]
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def raw(self, layer: str) -> torch.Tensor:
        """The layer's output as it came, e.g. (N, C, H, W)."""
        try:
            return self.activations[layer]
        except KeyError:
            raise RunError(f"layer {layer!r} did not run during the forward pass") from None

    def __getitem__(self, layer: str) -> torch.Tensor:
        """The layer's output flattened to one vector per image, (N, D)."""
        return self.raw(layer).flatten(1)
