"""``train(config)``: the training run, epoch by epoch, resumable exactly after any interruption.

Before anything is written: the regularizers' parameters, the defenses, the model (and its initial
weights), the training and held-out data and the augmentation are built and checked, and every regularizer
is bound to the run (target files read, layers resolved, a teacher's matrix computed). Then the run folder
is opened (:mod:`.folder`) and each epoch:

1. seeds torch's, Python's and NumPy's global generators and every regularizer's from (seed, epoch), and
   draws the epoch's order (:mod:`.data`);
2. per step sets the learning rate of the step (:mod:`.optim`), lets a regularizer replace the task images,
   computes the cross-entropy (with label smoothing) under bf16 autocast on CUDA, adds the weighted
   regularizer terms, and takes an optimizer step;
3. evaluates the held-out data (:mod:`.evaluate`);
4. writes the epoch's checkpoint, ``model.safetensors`` and the card (:mod:`.checkpoint`, :mod:`.card`).

Because an epoch depends only on the checkpoint before it and on (seed, epoch), a run killed at any moment
and resumed from its last checkpoint ends with the same weights, bit for bit on the CPU, as one that was
never interrupted (on CUDA, up to the nondeterminism of its kernels).
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError, RunError
from ..models.weights import file_sha256
from ..provenance import environment
from .augment import build_augmentation
from .card import CARD_NAME, FORMAT, WEIGHTS_NAME, write_json_atomic
from .checkpoint import load_checkpoint, prune_checkpoints, save_checkpoint, save_weights
from .config import TrainConfig
from .data import Split, check_held_out, derived_seed, epoch_loader, load_split, steps_per_epoch
from .evaluate import evaluate
from .folder import check_folder, open_run
from .model import Trainable, trainable_model
from .optim import build_optimizer, learning_rate
from .regularizer import Regularizer, TrainContext, TrainStep, build_regularizers


class Progress(Protocol):
    """Where a run reports as it goes (the CLI draws a bar; tests and benchmarks may ignore it)."""

    def start_epoch(self, epoch: int, epochs: int, steps: int) -> None: ...

    def step(self, done: int, loss: float, accuracy: float) -> None: ...

    def end_epoch(self, record: dict[str, Any]) -> None: ...


class Quiet:
    def start_epoch(self, epoch: int, epochs: int, steps: int) -> None:
        pass

    def step(self, done: int, loss: float, accuracy: float) -> None:
        pass

    def end_epoch(self, record: dict[str, Any]) -> None:
        pass


@dataclass
class TrainResult:
    out: Path
    card: dict[str, Any]
    #: epochs found finished in the folder when the run started (0 for a fresh run)
    resumed_from: int
    weights: Path = field(init=False)

    def __post_init__(self) -> None:
        self.weights = self.out / WEIGHTS_NAME


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _names(regularizers: list[Regularizer]) -> list[str]:
    """Record keys: the name, numbered from the second regularizer of the same name on."""
    names: list[str] = []
    for regularizer in regularizers:
        name = regularizer.name
        names.append(name if name not in names else f"{name}#{names.count(name) + 1}")
    return names


class Run:
    """One training run (built and checked by the constructor; :meth:`run` trains)."""

    def __init__(self, config: TrainConfig) -> None:
        self.config = config
        self.regularizers = build_regularizers(config.regularizers)
        build_augmentation(config.augment, 8, 8)  # the policy name is checked before anything loads
        self.model: Trainable = trainable_model(config)
        loaded = self.model.loaded
        self.device = loaded.device
        self.amp = config.amp if config.amp is not None else self.device.type == "cuda"
        self.initial_fingerprint = loaded.fingerprint
        pre = loaded.preprocessing
        self.train = load_split(config.data, pre, loaded.num_classes, config.seed, "training")
        self.heldout: Split | None = None
        if config.heldout is not None:
            self.heldout = load_split(config.heldout, pre, loaded.num_classes, config.seed, "held-out")
            check_held_out(self.train, self.heldout)
        self.steps = steps_per_epoch(self.train, config.batch_size)
        _, height, width = pre.input_size
        self.transform = build_augmentation(config.augment, height, width)
        context = TrainContext(
            model=self.model.module,
            backbone=self.model.backbone,
            loaded=loaded,
            data=self.train.dataset,
            data_spec=config.data,
            train_indices=self.train.indices,
            batch_size=config.batch_size,
            seed=config.seed,
            device=self.device,
            autocast=self.autocast,
        )
        for regularizer in self.regularizers:
            regularizer.bind(context)
            regularizer.to(self.device)
        extra = [p for r in self.regularizers for p in r.parameters()]
        self.optimizer = build_optimizer(config, self.model.module, extra)
        self.names = _names(self.regularizers)

    def autocast(self) -> AbstractContextManager[Any]:
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp)

    # -- the record ---------------------------------------------------------------------------------------
    def identity(self) -> dict[str, Any]:
        loaded = self.model.loaded
        return {
            **self.config.identity(self.amp),
            "initial_weights_sha256": loaded.provenance.get("weights_sha256"),
            "initial_model_fingerprint": self.initial_fingerprint,
            "defense_artifacts": [d.artifacts() for d in self.model.defenses],
            "data_fingerprint": self.train.fingerprint,
            "heldout_fingerprint": None if self.heldout is None else self.heldout.fingerprint,
            "regularizers": [r.identity() for r in self.regularizers],
        }

    def new_card(self, identity: dict[str, Any]) -> dict[str, Any]:
        loaded, config = self.model.loaded, self.config
        return {
            "format": FORMAT,
            "status": "running",
            "model": config.model.name,
            "model_spec": identity["model"],
            "num_classes": config.model.num_classes,
            "preprocessing": loaded.preprocessing.as_dict(),
            "defenses": config.defense_specs,
            "defense_reprs": [repr(d) for d in self.model.defenses],
            "data": {
                "train": self.train.describe(),
                "heldout": None if self.heldout is None else self.heldout.describe(),
            },
            "options": config.options(),
            "amp": self.amp,
            "steps_per_epoch": self.steps,
            "regularizers": identity["regularizers"],
            "identity": identity,
            "identity_sha256": hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest(),
            "weights": None,
            "weights_sha256": None,
            "checkpoint_epoch": 0,
            "epochs": [],
            "started_at": _now(),
            "updated_at": _now(),
            # versions, device, host, git revisions (the card keeps its own times)
            "environment": {k: v for k, v in environment(self.device).items() if k != "finished_at"},
        }

    # -- training -----------------------------------------------------------------------------------------
    def seed_epoch(self, epoch: int) -> None:
        seed = derived_seed(self.config.seed, epoch, "global")
        torch.manual_seed(seed)
        random.seed(seed)  # timm's RandAugment draws from Python's generator
        np.random.seed(seed % 2**32)
        for i, regularizer in enumerate(self.regularizers):
            regularizer.start_epoch(epoch, derived_seed(self.config.seed, epoch, f"regularizer-{i}"))

    def run_epoch(self, epoch: int, progress: Progress) -> dict[str, Any]:
        config, module = self.config, self.model.module
        self.seed_epoch(epoch)
        loader = epoch_loader(self.train, epoch, config.seed, config.batch_size, self.transform, config.workers)
        self.model.train()
        refresh = 1 if self.device.type == "cpu" else 20
        zero = torch.zeros((), dtype=torch.float64, device=self.device)
        loss_sum, correct, terms = zero.clone(), zero.clone(), [zero.clone() for _ in self.regularizers]
        count, skipped, lr = 0, 0, 0.0
        progress.start_epoch(epoch, config.epochs, self.steps)
        started = time.perf_counter()
        for index, (images, labels, failures) in enumerate(loader):
            if failures and config.data.on_bad_image == "fail":
                bad, reason = failures[0]
                raise InputError(f"cannot decode training image {bad} ({reason}); pass --on-bad-image skip")
            skipped += len(failures)
            if len(labels) < 2:
                continue
            step_number = (epoch - 1) * self.steps + index
            lr = learning_rate(
                step_number,
                base=config.learning_rate,
                minimum=config.min_lr,
                warmup_steps=round(config.warmup_epochs * self.steps),
                total_steps=config.epochs * self.steps,
            )
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            images = images.to(self.device, non_blocking=True)
            labels = labels.to(self.device, non_blocking=True)
            step = TrainStep(module, self.model.backbone, images, labels, epoch, step_number, self.autocast)
            task = images
            for regularizer in self.regularizers:
                replaced = regularizer.task_images(step)
                task = replaced if replaced is not None else task
            with self.autocast():
                logits = module(task)
            loss = F.cross_entropy(logits.float(), labels, label_smoothing=config.label_smoothing)
            total = loss
            for i, regularizer in enumerate(self.regularizers):
                term = regularizer.term(step)
                if term is not None:
                    total = total + regularizer.weight * term
                    terms[i] += term.detach() * len(labels)
            self.optimizer.zero_grad(set_to_none=True)
            total.backward()
            self.optimizer.step()
            loss_sum += loss.detach() * len(labels)
            correct += (logits.detach().argmax(dim=1) == labels).sum()
            count += len(labels)
            if (index + 1) % refresh == 0 or index + 1 == self.steps:
                mean_loss = float(loss_sum) / count
                if not np.isfinite(mean_loss) or not bool(torch.isfinite(total)):
                    raise RunError(
                        f"the loss became non-finite in epoch {epoch}, step {index + 1} (learning rate {lr:.3g}); "
                        "lower --lr or a regularizer's weight (the last finished epoch's checkpoint is intact)"
                    )
                progress.step(index + 1, mean_loss, float(correct) / count)
        seconds = time.perf_counter() - started
        if count == 0:
            raise RunError(f"epoch {epoch} trained on no image (every batch failed to decode)")
        record: dict[str, Any] = {
            "epoch": epoch,
            "lr": lr,
            "loss": float(loss_sum) / count,
            "accuracy": float(correct) / count,
            "images": count,
            "skipped": skipped,
            "seconds": round(seconds, 3),
            "images_per_s": round(count / seconds, 2) if seconds > 0 else None,
        }
        if self.regularizers:
            record["terms"] = {n: float(t) / count for n, t in zip(self.names, terms, strict=True)}
            record["regularizers"] = {
                n: r.epoch_metrics() for n, r in zip(self.names, self.regularizers, strict=True) if r.epoch_metrics()
            }
        if self.heldout is not None:
            record["heldout"] = evaluate(
                module,
                self.heldout,
                batch_size=config.batch_size,
                device=self.device,
                autocast=self.autocast,
                workers=config.workers,
            )
        record["finished_at"] = _now()
        return record

    def run(self, *, resume: bool = False, overwrite: bool = False, progress: Progress | None = None) -> TrainResult:
        progress = progress or Quiet()
        out = self.config.out
        identity = self.identity()
        card = open_run(out, identity, resume=resume, overwrite=overwrite)
        start = 0
        if card is not None:
            card.setdefault("resumed_at", []).append(_now())
            start = int(card.get("checkpoint_epoch", 0))
            card["epochs"] = card.get("epochs", [])[:start]
            if start:
                load_checkpoint(out, start, self.model.backbone, self.optimizer, list(self.regularizers))
            if card.get("status") == "complete" and start == self.config.epochs:
                return TrainResult(out, card, start)
        else:
            card = self.new_card(identity)
        out.mkdir(parents=True, exist_ok=True)
        card["status"] = "running"
        write_json_atomic(out / CARD_NAME, card)
        for epoch in range(start + 1, self.config.epochs + 1):
            record = self.run_epoch(epoch, progress)
            save_checkpoint(out, epoch, self.model.backbone, self.optimizer, list(self.regularizers))
            save_weights(self.model.backbone, out / WEIGHTS_NAME)
            card["epochs"].append(record)
            card.update(
                checkpoint_epoch=epoch,
                weights=WEIGHTS_NAME,
                weights_sha256=file_sha256(out / WEIGHTS_NAME),
                updated_at=_now(),
                status="complete" if epoch == self.config.epochs else "running",
            )
            write_json_atomic(out / CARD_NAME, card)
            prune_checkpoints(out, self.config.keep_checkpoints, epoch)
            progress.end_epoch(record)
        return TrainResult(out, card, start)


def train(
    config: TrainConfig, *, resume: bool = False, overwrite: bool = False, progress: Progress | None = None
) -> TrainResult:
    """Train as ``config`` says into ``config.out`` (see the module docstring)."""
    check_folder(config.out, resume=resume, overwrite=overwrite)
    return Run(config).run(resume=resume, overwrite=overwrite, progress=progress)


def summary(result: TrainResult) -> dict[str, Any]:
    """The figures a finished run prints: last epoch's losses and accuracies, the best held-out epoch."""
    card = result.card
    epochs = card.get("epochs", [])
    last = epochs[-1] if epochs else {}
    out: dict[str, Any] = {
        "epochs": len(epochs),
        "status": card.get("status"),
        "train_loss": last.get("loss"),
        "train_accuracy": last.get("accuracy"),
    }
    heldout = [e for e in epochs if e.get("heldout")]
    if heldout:
        out["heldout_accuracy"] = heldout[-1]["heldout"]["accuracy"]
        best = max(heldout, key=lambda e: e["heldout"]["accuracy"])
        out["best_heldout_accuracy"] = best["heldout"]["accuracy"]
        out["best_heldout_epoch"] = best["epoch"]
    for name, value in (last.get("terms") or {}).items():
        out[f"{name}_term"] = value
    for name, metrics in (last.get("regularizers") or {}).items():
        for key, value in metrics.items():
            out[f"{name}_{key}"] = value
    out["images_per_s"] = last.get("images_per_s")
    out["per_epoch"] = [
        {
            "epoch": e["epoch"],
            "loss": e["loss"],
            "accuracy": e["accuracy"],
            "heldout_accuracy": (e.get("heldout") or {}).get("accuracy"),
            "lr": e["lr"],
            "seconds": e["seconds"],
        }
        for e in epochs
    ]
    return out
