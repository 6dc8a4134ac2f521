"""The attack contract.

An :class:`Attack` runs against a pixel model (``nn.Module``: pixels in [0, 1] -> logits) on one batch and
returns the adversarial images and whether each one succeeded *on that model* (untargeted: the prediction
differs from the label; targeted: it equals the target).

* A **fixed-budget** attack (``minimization = False``: PGD, FGSM, BIM, noise...) receives ``eps``, one
  budget per image, absolute, in the attack's norm (``norm`` = ``linf`` or ``l2``) and in [0, 1] pixel
  units, and must stay within it.
* A **minimization** attack (DeepFool, C&W, DDN, Brendel-Bethge, Boundary...) looks for the smallest
  perturbation and is run once with ``eps = None``; the audit reads the size of what it found.

``gradient`` says whether the attack needs gradients of the model (gradient-free attacks serve the
gradient-masking checks). Randomness comes from ``generator`` only, so results are reproducible per
batch. Constructor parameters are keyword-only and appear in ``repr``, which reports record.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import torch
from torch import nn

from ..params import Parameterized

NORMS = ("linf", "l2")


class Attack(Parameterized, ABC):
    name: ClassVar[str]
    norm: ClassVar[str]
    minimization: ClassVar[bool] = False
    gradient: ClassVar[bool] = True

    def __init__(self, **params: Any) -> None:
        self.params = params

    @abstractmethod
    def run(
        self,
        model: nn.Module,
        images: torch.Tensor,
        labels: torch.Tensor,
        *,
        targets: torch.Tensor | None,
        eps: torch.Tensor | None,
        generator: torch.Generator,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(adversarial images (N, C, H, W) in [0, 1], success (N,) bool on ``model``)."""


def is_success(logits: torch.Tensor, labels: torch.Tensor, targets: torch.Tensor | None) -> torch.Tensor:
    predictions = logits.argmax(dim=1)
    return predictions == targets if targets is not None else predictions != labels


def build_attack(text: str) -> Attack:
    """Instantiate one ``--attack NAME[:key=value,...]`` through the attack registry."""
    from .. import plugins
    from ..params import build

    return build(plugins.attacks, text, option="--attack", expected=Attack)
