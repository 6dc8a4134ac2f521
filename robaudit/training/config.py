"""What a training run is: every option, checked before anything is loaded, and the part that decides the weights.

:class:`TrainConfig` holds what the user said. Its *identity* (:meth:`TrainConfig.identity`) is everything
that determines the trained weights (model and initial weights, defenses, data, augmentation, optimizer,
schedule, regularizers, seed, bf16), and it is what ``--resume`` compares; where the run is written, the
device, the number of decoding workers and how many checkpoints are kept change nothing in the weights and
are left out.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..data import DataSpec
from ..errors import InputError
from ..models import ModelSpec

OPTIMIZERS = ("sgd", "adamw")
#: per optimizer: (learning rate, weight decay) when not given
OPTIMIZER_DEFAULTS = {"sgd": (0.1, 5e-4), "adamw": (1e-3, 0.05)}


@dataclass(frozen=True)
class TrainConfig:
    """Everything a ``robaudit train`` run was told; checked on construction."""

    model: ModelSpec
    data: DataSpec
    #: held-out data evaluated after every epoch; None: none
    heldout: DataSpec | None
    out: Path
    defenses: tuple[str, ...] = ()
    grayscale: bool = False
    epochs: int = 10
    batch_size: int = 128
    optimizer: str = "sgd"
    lr: float | None = None
    momentum: float = 0.9
    weight_decay: float | None = None
    warmup_epochs: float = 1.0
    min_lr: float = 0.0
    label_smoothing: float = 0.0
    augment: str = "standard"
    regularizers: tuple[str, ...] = ()
    seed: int = 0
    workers: int = 0
    device: str = "auto"
    #: bf16 autocast; None: on for CUDA, off on the CPU
    amp: bool | None = None
    #: per-epoch checkpoints kept (the newest ones); 0 keeps all
    keep_checkpoints: int = 0

    def __post_init__(self) -> None:
        def number(option: str, value: float) -> None:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise InputError(f"{option} must be a finite number, got {value!r}")

        counts: tuple[tuple[str, int, int], ...] = (
            ("--epochs", self.epochs, 1),
            ("--batch-size", self.batch_size, 1),
            ("--workers", self.workers, 0),
            ("--keep-checkpoints", self.keep_checkpoints, 0),
        )
        for option, count, least in counts:
            if count < least:
                raise InputError(f"{option} must be >= {least}, got {count}")
        if self.optimizer not in OPTIMIZERS:
            raise InputError(f"--optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        for option, value in (("--lr", self.lr), ("--weight-decay", self.weight_decay)):
            if value is not None:
                number(option, value)
        if self.lr is not None and self.lr <= 0:
            raise InputError(f"--lr must be > 0, got {self.lr}")
        if self.weight_decay is not None and self.weight_decay < 0:
            raise InputError(f"--weight-decay must be >= 0, got {self.weight_decay}")
        number("--momentum", self.momentum)
        if not 0 <= self.momentum < 1:
            raise InputError(f"--momentum must lie in [0, 1), got {self.momentum}")
        number("--warmup-epochs", self.warmup_epochs)
        if not 0 <= self.warmup_epochs <= self.epochs:
            raise InputError(f"--warmup-epochs must lie in [0, --epochs = {self.epochs}], got {self.warmup_epochs}")
        number("--min-lr", self.min_lr)
        if self.min_lr < 0 or self.min_lr > self.learning_rate:
            raise InputError(f"--min-lr must lie in [0, --lr = {self.learning_rate}], got {self.min_lr}")
        number("--label-smoothing", self.label_smoothing)
        if not 0 <= self.label_smoothing < 1:
            raise InputError(f"--label-smoothing must lie in [0, 1), got {self.label_smoothing}")
        if self.grayscale and any(d.partition(":")[0] == "grayscale" for d in self.defenses):
            raise InputError("--grayscale puts the grayscale defense in front already; drop --defense grayscale")

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else OPTIMIZER_DEFAULTS[self.optimizer][0]

    @property
    def decay(self) -> float:
        return self.weight_decay if self.weight_decay is not None else OPTIMIZER_DEFAULTS[self.optimizer][1]

    @property
    def defense_specs(self) -> list[str]:
        """The input defenses in front of the model, in order (``--grayscale`` first)."""
        return (["grayscale"] if self.grayscale else []) + list(self.defenses)

    def options(self) -> dict[str, Any]:
        """The training options as the card records them (defaults resolved)."""
        return {
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "optimizer": self.optimizer,
            "lr": self.learning_rate,
            "momentum": self.momentum if self.optimizer == "sgd" else None,
            "weight_decay": self.decay,
            "warmup_epochs": self.warmup_epochs,
            "min_lr": self.min_lr,
            "label_smoothing": self.label_smoothing,
            "augment": self.augment,
            "grayscale": self.grayscale,
            "regularizers": list(self.regularizers),
            "seed": self.seed,
        }

    def identity(self, amp: bool) -> dict[str, Any]:
        """What decides the weights (before fingerprints of files and data are added by the run)."""
        return {
            "model": asdict(self.model),
            "defenses": self.defense_specs,
            "data": {k: v for k, v in asdict(self.data).items() if k != "on_bad_image"},
            "heldout": None if self.heldout is None else asdict(self.heldout),
            "options": self.options(),
            "amp": amp,
        }
