"""The optimizer and its learning-rate schedule: linear warm-up, then a cosine decay, per step.

The learning rate is a pure function of the global step (:func:`learning_rate`), set on the optimizer before
every step, so a resumed run needs no scheduler state to continue on exactly the same curve:

    warm-up (step < W):  lr = base * (step + 1) / W
    then:                lr = min + (base - min) * (1 + cos(pi * (step - W) / (T - W))) / 2

with T the run's total number of steps and W the warm-up steps. Weight decay applies to weight matrices and
convolution kernels only: BatchNorm/LayerNorm parameters, biases and regularizer parameters (e.g. a layer
mix) are not decayed, as is usual (decaying a normalization's scale only fights the normalization).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn

from .config import TrainConfig


def learning_rate(step: int, *, base: float, minimum: float, warmup_steps: int, total_steps: int) -> float:
    """The learning rate of global step ``step`` (0-based) of ``total_steps``."""
    if step < warmup_steps:
        return base * (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return minimum + (base - minimum) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_optimizer(config: TrainConfig, model: nn.Module, extra: Iterable[nn.Parameter]) -> torch.optim.Optimizer:
    """SGD (momentum) or AdamW over the model's trainable parameters plus ``extra`` (never decayed)."""
    decayed: list[nn.Parameter] = []
    plain: list[nn.Parameter] = []
    for parameter in model.parameters():
        if parameter.requires_grad:
            (decayed if parameter.ndim > 1 else plain).append(parameter)
    plain += list(extra)
    groups = [
        {"params": decayed, "weight_decay": config.decay},
        {"params": plain, "weight_decay": 0.0},
    ]
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.learning_rate, momentum=config.momentum)
    return torch.optim.AdamW(groups, lr=config.learning_rate)
