"""Held-out evaluation after every epoch: accuracy and cross-entropy of the model as it will be audited.

The model runs in eval mode (BatchNorm uses its running statistics), behind the same input defenses it is
trained behind, without augmentation or label smoothing, so the figure is the clean accuracy an ``eval``
audit of the epoch's weights on the same images reports.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..data import iter_batches, plan_chunks
from ..errors import InputError, RunError
from .data import Split


def evaluate(
    model: nn.Module,
    split: Split,
    *,
    batch_size: int,
    device: torch.device,
    autocast: Callable[[], AbstractContextManager[Any]],
    workers: int = 0,
) -> dict[str, Any]:
    """``{"images", "accuracy", "loss"}`` of ``model`` on the held-out split."""
    was_training = model.training
    model.eval()
    correct, loss, count = 0, 0.0, 0
    try:
        chunks = plan_chunks(split.indices, len(split.indices))
        with torch.inference_mode():
            for _, _, batch in iter_batches(split.dataset, chunks, batch_size, workers):
                if batch.failures and split.spec.on_bad_image == "fail":
                    index, reason = batch.failures[0]
                    raise InputError(f"cannot decode held-out image {index} ({reason}); pass --on-bad-image skip")
                if not len(batch.indices):
                    continue
                labels = torch.from_numpy(split.dataset.labels[batch.indices]).to(device)
                with autocast():
                    logits = model(batch.images.to(device)).float()
                if not bool(torch.isfinite(logits).all()):
                    raise RunError("the model produced NaN or inf logits on held-out images; training diverged")
                loss += float(F.cross_entropy(logits, labels, reduction="sum"))
                correct += int((logits.argmax(dim=1) == labels).sum())
                count += len(labels)
    finally:
        model.train(was_training)
    return {
        "images": count,
        "accuracy": correct / count if count else float("nan"),
        "loss": loss / count if count else float("nan"),
    }
