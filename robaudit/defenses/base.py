"""The defense contract and how ``--defense NAME[:k=v,...]`` options become one model.

There are two kinds of defense:

* an **input** defense maps pixels to pixels (a fixed blur, a PCA projection); input defenses run first,
  in the order they are given, before the model's own normalization;
* a **readout** defense replaces how the prediction is read out of the network (the key-value cache): it
  receives the undefended pixel model and the (input-defended) pixels, may read any layer's activations
  during the forward pass, and returns logits. At most one readout defense is allowed.

Whatever the composition, the result is one ``nn.Module`` from pixels in [0, 1] to logits (a readout that
produces probabilities returns their logarithm, so argmax and softmax behave). Each defense says whether
gradients through it are meaningful (``differentiable``), shows its parameters in its ``repr`` (which is
what reports record), and fingerprints the artifacts it loaded.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import replace
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

from ..errors import InputError
from ..models.finite import MONITOR
from ..params import Parameterized, build

if TYPE_CHECKING:
    from ..models import LoadedModel


class Defense(Parameterized, nn.Module, ABC):
    """Base class; subclasses set ``name``, ``kind`` and ``differentiable`` and store ``self.params``."""

    name: ClassVar[str]
    kind: ClassVar[str]  # "input" or "readout"
    differentiable: ClassVar[bool] = True

    def __init__(self, **params: Any) -> None:
        super().__init__()
        self.params = params

    def artifacts(self) -> dict[str, str]:
        """Fingerprints (sha256) of files this defense loaded, by role; recorded in reports."""
        return {}

    def bind(self, model: LoadedModel, upstream: list[Defense]) -> None:
        """Check that this defense fits ``model`` behind the ``upstream`` input defenses; raise InputError if not."""


class InputDefense(Defense):
    kind = "input"

    @abstractmethod
    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """Pixels in [0, 1] -> pixels."""


class ReadoutDefense(Defense):
    kind = "readout"

    @abstractmethod
    def forward(self, base: nn.Module, pixels: torch.Tensor) -> torch.Tensor:
        """Logits for ``pixels``, computed with the undefended pixel model ``base``."""


class DefendedModel(nn.Module):
    """pixels -> input defenses (in order) -> [readout defense around] the base model -> logits."""

    def __init__(self, base: nn.Module, inputs: list[InputDefense], readout: ReadoutDefense | None) -> None:
        super().__init__()
        self.base = base
        self.inputs = nn.ModuleList(inputs)
        self.readout = readout

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        for defense in self.inputs:
            pixels = defense(pixels)
        if self.readout is None:
            return self.base(pixels)
        return self.readout(self.base, pixels)

    def __repr__(self) -> str:
        return describe([*self.inputs, *([self.readout] if self.readout is not None else [])])


def describe(defenses: list[Defense]) -> str:
    """``blur(sigma=1.5) -> cache(...)``, or ``none``: the value of the ``defense`` report column."""
    return " -> ".join(repr(d) for d in defenses) or "none"


def build_defense(text: str) -> Defense:
    """Instantiate one ``--defense`` option through the defense registry, checking parameter names."""
    from .. import plugins

    return build(plugins.defenses, text, option="--defense", expected=Defense)


def compose(model: LoadedModel, specs: list[str]) -> LoadedModel:
    """``model`` with the defenses of ``specs`` applied; the undefended pixel model stays ``model.base``."""
    if not specs:
        return model
    defenses = [build_defense(s) for s in specs]
    readouts = [d for d in defenses if isinstance(d, ReadoutDefense)]
    if len(readouts) > 1:
        raise InputError(f"at most one readout defense per model, got {describe(readouts)}")  # type: ignore[arg-type]
    inputs = [d for d in defenses if isinstance(d, InputDefense)]
    for i, defense in enumerate(inputs):
        defense.bind(model, inputs[:i])  # type: ignore[arg-type]
    for readout in readouts:
        readout.bind(model, inputs)  # type: ignore[arg-type]
    module = DefendedModel(model.base, inputs, readouts[0] if readouts else None).to(model.device).eval()
    module.requires_grad_(False)
    MONITOR.watch(module)
    ordered: list[Defense] = [*inputs, *readouts]
    return replace(model, module=module, defenses=ordered)
