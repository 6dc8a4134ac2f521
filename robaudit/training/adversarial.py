"""``adversarial``: adversarial training (Madry et al. 2018) with robaudit's own attacks.

Every step attacks the task batch with a fixed-budget attack (default robaudit's PGD: L∞, random start,
``steps`` iterations of 2.5 ε / steps) against the model as it is at that step, behind its input defenses.
The attack runs with the model in eval mode (BatchNorm statistics are neither used from nor written by the
attack's iterations), then training continues in train mode. Two forms:

* ``mode=replace`` (the default, Madry et al.): the task loss is computed on the adversarial images only;
* ``mode=add``: the task loss stays on the clean images and ``weight`` x the cross-entropy on the adversarial
  images is added (Goodfellow et al. 2015's mixture; ``weight`` only applies here).

Parameters: ``eps`` (the budget in the attack's norm, pixel units in [0, 1]; a number or a fraction such as
``8/255``), ``attack`` (a robaudit attack name, default ``pgd``), ``steps`` and ``norm`` (passed to the attack
when given), ``mode``, ``weight``. The attack's random start draws from a generator seeded per epoch.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from ..attacks.base import Attack, build_attack
from ..errors import InputError
from .regularizer import Regularizer, TrainContext, TrainStep, check_weight

MODES = ("replace", "add")


def budget(value: Any) -> float:
    """``0.03``, ``"8/255"`` -> a positive float."""
    text = str(value)
    numerator, sep, denominator = text.partition("/")
    try:
        eps = float(numerator) / float(denominator) if sep else float(text)
    except (ValueError, ZeroDivisionError):
        raise InputError(
            f"regularizer adversarial: eps must be a number or a fraction like 8/255, got {text!r}"
        ) from None
    if not math.isfinite(eps) or eps <= 0:
        raise InputError(f"regularizer adversarial: eps must be > 0, got {text}")
    return eps


class AdversarialTraining(Regularizer):
    """Adversarial training (Madry et al. 2018): train on adversarial examples of robaudit's attacks (pgd)."""

    name = "adversarial"

    def __init__(
        self,
        *,
        eps: Any,
        attack: str = "pgd",
        steps: int | None = None,
        norm: str | None = None,
        mode: str = "replace",
        weight: float | None = None,
    ) -> None:
        if mode not in MODES:
            raise InputError(f"regularizer adversarial: mode must be one of {', '.join(MODES)}, got {mode!r}")
        if mode == "replace" and weight is not None:
            raise InputError(
                "regularizer adversarial: weight applies to mode=add (mode=replace trains on attacks only)"
            )
        params = {"eps": str(eps), "attack": attack, "steps": steps, "norm": norm, "mode": mode, "weight": weight}
        super().__init__(**{k: v for k, v in params.items() if v is not None})
        self.eps = budget(eps)
        self.mode = mode
        self.weight = check_weight(self.name, 1.0 if weight is None else weight)
        self.replaces_task_images = mode == "replace"
        options = {k: v for k, v in (("steps", steps), ("norm", norm)) if v is not None}
        spec = f"{attack}:" + ",".join(f"{k}={v}" for k, v in options.items()) if options else attack
        self.attack: Attack = build_attack(spec)
        if self.attack.minimization:
            raise InputError(
                f"regularizer adversarial: {attack} is a minimization attack; training needs a fixed-budget one (pgd)"
            )
        self.generator: torch.Generator | None = None
        self.device = torch.device("cpu")

    def bind(self, context: TrainContext) -> None:
        self.device = context.device

    def start_epoch(self, epoch: int, seed: int) -> None:
        self.generator = torch.Generator(device=self.device).manual_seed(seed)

    def _adversarial(self, step: TrainStep) -> torch.Tensor:
        assert self.generator is not None, "start_epoch was not called"
        model = step.model
        was_training = model.training
        model.eval()
        try:
            eps = torch.full((len(step.images),), self.eps, device=step.images.device)
            adversarial, _ = self.attack.run(
                model, step.images, step.labels, targets=None, eps=eps, generator=self.generator
            )
        finally:
            model.train(was_training)
        return adversarial.detach()

    def task_images(self, step: TrainStep) -> torch.Tensor | None:
        return self._adversarial(step) if self.mode == "replace" else None

    def term(self, step: TrainStep) -> torch.Tensor | None:
        if self.mode == "replace":
            return None
        adversarial = self._adversarial(step)
        with step.autocast():
            logits = step.model(adversarial)
        return F.cross_entropy(logits.float(), step.labels)
