"""The regularizer contract: extra terms of the training loss, registered like every other plugin.

``robaudit train --regularizer NAME[:key=value,...]`` (repeatable) builds a :class:`Regularizer` through the
``robaudit.regularizers`` entry-point group (or a ``--plugins-dir`` file using
``@robaudit.plugins.regularizers.register("name")``), checking parameter names against its constructor.
Built in: ``similarity`` (:mod:`.similarity`) and ``adversarial`` (:mod:`.adversarial`).

Per training step the loss is

    task loss (cross-entropy on the task batch)  +  sum over regularizers of  weight * term(step)

A regularizer is an ``nn.Module``: its parameters (e.g. the similarity's layer mix) are trained with the
model's (without weight decay), and its state dict is saved in every checkpoint. Its lifecycle:

* constructed from the option string (check parameter *values* here: a negative ``weight`` is an error);
* :meth:`Regularizer.bind` once, before anything is written: check it fits the model and data (unknown
  layers, a target file whose images do not match...) and load what it needs;
* :meth:`Regularizer.start_epoch` at each epoch's start, with a seed derived from (run seed, epoch): every
  random draw of the epoch must come from it, which is what makes ``--resume`` exact;
* per step, :meth:`Regularizer.task_images` may replace the images the task loss sees (adversarial training
  in Madry et al.'s form; at most one regularizer may do so), then :meth:`Regularizer.term` returns the
  unweighted term (or None);
* :meth:`Regularizer.epoch_metrics` adds numbers to the epoch's record on the card.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
from torch import nn

from ..errors import InputError
from ..params import check_params, parse_spec

if TYPE_CHECKING:
    from ..data import Dataset, DataSpec
    from ..models import LoadedModel


@dataclass
class TrainContext:
    """What a regularizer may check and use when it is bound to a run."""

    #: the trained pixel model: input defenses -> normalization -> backbone (in train mode while training)
    model: nn.Module
    #: the network whose modules layer names refer to
    backbone: nn.Module
    #: the loaded model (preprocessing, number of classes, device, defenses)
    loaded: LoadedModel
    #: the training data, its spec and the indices of the samples trained on
    data: Dataset
    data_spec: DataSpec
    train_indices: np.ndarray
    batch_size: int
    seed: int
    device: torch.device
    #: a context manager for the forward passes (bf16 autocast on CUDA, or nothing)
    autocast: Callable[[], AbstractContextManager[Any]]


@dataclass
class TrainStep:
    """One training step as regularizers see it."""

    model: nn.Module
    backbone: nn.Module
    #: the task batch (augmented), on the device, and its labels
    images: torch.Tensor
    labels: torch.Tensor
    epoch: int
    #: global step, 0-based
    step: int
    autocast: Callable[[], AbstractContextManager[Any]]


def check_weight(name: str, weight: Any) -> float:
    """A regularization strength: a finite number >= 0."""
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight):
        raise InputError(f"regularizer {name}: weight must be a finite number, got {weight!r}")
    if weight < 0:
        raise InputError(f"regularizer {name}: weight must be >= 0 (it scales a penalty), got {weight}")
    return float(weight)


class Regularizer(nn.Module):
    """Base class; subclasses set ``name``, store ``self.params`` (via ``super().__init__(**params)``) and
    ``self.weight``, and implement :meth:`term` (and :meth:`bind` when they depend on the model or data)."""

    name: ClassVar[str]
    #: whether this regularizer replaces the task batch (:meth:`task_images`); may be set per instance
    replaces_task_images: bool = False

    def __init__(self, **params: Any) -> None:
        super().__init__()
        self.params = params
        self.weight = 1.0

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in sorted(self.params.items()))
        return f"{self.name}({args})"

    def bind(self, context: TrainContext) -> None:
        """Check that the regularizer fits the run and load what it needs; raise InputError if it does not."""

    def identity(self) -> dict[str, Any]:
        """What decides this regularizer's effect (recorded on the card, compared by --resume): its
        parameters, plus fingerprints of the files and models it read."""
        return {"name": self.name, "params": {k: str(v) for k, v in sorted(self.params.items())}}

    def start_epoch(self, epoch: int, seed: int) -> None:
        """Seed this epoch's random draws from ``seed``."""

    def task_images(self, step: TrainStep) -> torch.Tensor | None:
        """Images for the task loss instead of ``step.images``; None keeps them."""
        return None

    def term(self, step: TrainStep) -> torch.Tensor | None:
        """The unweighted loss term of this step (a scalar with gradients), or None."""
        return None

    def epoch_metrics(self) -> dict[str, Any]:
        """Numbers for this epoch's record on the card (e.g. the layer mix)."""
        return {}


def build_regularizer(text: str) -> Regularizer:
    """Instantiate one ``--regularizer`` option through the registry, checking parameter names."""
    from .. import plugins

    name, params = parse_spec(text, "--regularizer")
    factory = plugins.regularizers.get(name)
    check_params("regularizer", name, factory, params)
    regularizer = factory(**params)
    if not isinstance(regularizer, Regularizer):
        raise InputError(f"regularizer factory {name!r} returned {type(regularizer).__name__}, not a Regularizer")
    return regularizer


def build_regularizers(texts: list[str] | tuple[str, ...]) -> list[Regularizer]:
    regularizers = [build_regularizer(t) for t in texts]
    replacing = [r for r in regularizers if r.replaces_task_images]
    if len(replacing) > 1:
        raise InputError(
            f"at most one regularizer may replace the task batch, got {', '.join(repr(r) for r in replacing)}"
        )
    return regularizers
