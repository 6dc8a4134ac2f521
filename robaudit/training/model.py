"""The model being trained: any model robaudit loads, behind fixed input defenses, with trainable weights.

``load_model`` gives a frozen pixel model in eval mode (what audits want); here its backbone's parameters
are made trainable again while the input defenses in front stay fixed (their buffers are never trained, and
they are kept in eval mode). Only input defenses may sit in front of training, and only differentiable
ones: a readout defense (the cache) is not part of the network that learns, and a model trained behind a
layer that gradients cannot pass would be reported robust by every gradient-based audit through masked
gradients alone (Athalye et al. 2018) — and adversarial training could not attack it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from torch import nn

from ..defenses.base import DefendedModel, InputDefense, build_defense
from ..errors import InputError
from ..models import LoadedModel, load_model

if TYPE_CHECKING:
    from .config import TrainConfig


@dataclass
class Trainable:
    """``module``: pixels -> input defenses -> normalization -> backbone (trainable) -> logits."""

    loaded: LoadedModel
    module: DefendedModel
    defenses: list[InputDefense]

    @property
    def backbone(self) -> nn.Module:
        return self.loaded.base.backbone

    def train(self) -> None:
        self.module.train()
        for defense in self.defenses:
            defense.eval()


def check_defenses(specs: list[str]) -> list[InputDefense]:
    """Build the defenses of ``specs``; each must be an input defense whose gradients are meaningful."""
    defenses = [build_defense(s) for s in specs]
    for spec, defense in zip(specs, defenses, strict=True):
        if not isinstance(defense, InputDefense):
            raise InputError(
                f"--defense {spec}: {defense.name} is a {defense.kind} defense; only input defenses (e.g. blur, pca, "
                "grayscale) can sit in front of a model being trained"
            )
        if not defense.differentiable:
            raise InputError(
                f"--defense {spec}: {defense.name} is not differentiable, so a model trained behind it would look "
                "robust to gradient attacks through masked gradients alone; train behind differentiable defenses"
            )
    return defenses  # type: ignore[return-value]


def trainable_model(config: TrainConfig) -> Trainable:
    """Load the model (with ``--weights``/``--pretrained`` for fine-tuning), put the defenses in front, unfreeze."""
    defenses = check_defenses(config.defense_specs)
    loaded = load_model(config.model, config.device)
    for i, defense in enumerate(defenses):
        defense.bind(loaded, defenses[:i])  # type: ignore[arg-type]
    module = DefendedModel(loaded.base, list(defenses), None).to(loaded.device)
    module.requires_grad_(False)
    loaded.base.backbone.requires_grad_(True)
    trainable = Trainable(replace(loaded, module=module, defenses=list(defenses)), module, defenses)
    trainable.train()
    return trainable
