"""The attack contract.

An :class:`Attack` runs against a pixel model (``nn.Module``: pixels in [0, 1] -> logits) on one batch and
returns the adversarial images and whether each one succeeded *on that model* (untargeted: the prediction
differs from the label; targeted: it equals the target).

* A **fixed-budget** attack (``minimization = False``: PGD, FGSM, BIM, noise...) receives ``eps``, one
  budget per image, absolute, in the attack's norm (``norm`` = ``linf``, ``l2`` or ``l1``) and in [0, 1]
  pixel units, and must stay within it.
* A **minimization** attack (DeepFool, C&W, DDN, Brendel-Bethge, Boundary...) looks for the smallest
  perturbation and is run once with ``eps = None``; the audit reads the size of what it found.

``gradient`` says whether the attack needs gradients of the model (gradient-free attacks serve the
gradient-masking checks). Randomness comes from ``generator`` only, so results are reproducible per
batch. Constructor parameters are keyword-only and appear in ``repr``, which reports record.

Attacks that have more to say than (images, success) override :meth:`Attack.run_detailed`: an ensemble
reports what each member did (:class:`MemberOutcome`: which images it attacked and broke, the queries it
spent), and an attack with its own reliability checks reports their verdicts (:class:`Diagnostic`), both
per call. :meth:`Attack.diagnose` runs an attack's model-level checks (e.g. randomized or probability
outputs) on a few images; the attack audit turns all of these into rows.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from ..params import Parameterized

NORMS = ("linf", "l2", "l1")


@dataclass
class MemberOutcome:
    """What one member of an ensemble did in one call, per image of the call."""

    name: str
    #: (N,) bool: the member ran on this image (it was still standing when the member's turn came)
    attacked: torch.Tensor
    #: (N, C, H, W): the member's result where it attacked, else the clean image
    adversarials: torch.Tensor
    #: (N,) bool: the member broke this image on the model it attacked
    success: torch.Tensor
    #: (N,) int64 model queries the member spent on the image (query-based members), else None
    queries: torch.Tensor | None = None


@dataclass
class Diagnostic:
    """The verdict of one of an attack's own reliability checks, on the images it looked at."""

    name: str
    raised: bool
    #: (N,) bool: the images of the call that the check looked at
    scope: torch.Tensor
    #: what the check said when it raised
    note: str | None = None


@dataclass
class AttackOutcome:
    """:meth:`Attack.run_detailed`'s result: the contract's two tensors, plus what the attack can tell."""

    adversarials: torch.Tensor
    success: torch.Tensor
    #: (N,) int64 queries per image for query-based attacks, else None
    queries: torch.Tensor | None = None
    members: list[MemberOutcome] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)


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

    def run_detailed(
        self,
        model: nn.Module,
        images: torch.Tensor,
        labels: torch.Tensor,
        *,
        targets: torch.Tensor | None,
        eps: torch.Tensor | None,
        generator: torch.Generator,
    ) -> AttackOutcome:
        """:meth:`run`, with members, queries and diagnostics where the attack has them."""
        adversarials, success = self.run(model, images, labels, targets=targets, eps=eps, generator=generator)
        return AttackOutcome(adversarials, success)

    def diagnose(self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> list[Diagnostic]:
        """The attack's own model-level reliability checks on ``images`` (none by default)."""
        return []

    def check_classes(self, num_classes: int) -> None:
        """Raise :class:`~robaudit.errors.InputError` if the attack cannot run on a model with this many classes."""


def is_success(logits: torch.Tensor, labels: torch.Tensor, targets: torch.Tensor | None) -> torch.Tensor:
    predictions = logits.argmax(dim=1)
    return predictions == targets if targets is not None else predictions != labels


def build_attack(text: str) -> Attack:
    """Instantiate one ``--attack NAME[:key=value,...]`` through the attack registry."""
    from .. import plugins
    from ..params import build

    return build(plugins.attacks, text, option="--attack", expected=Attack)
