"""Clean accuracy: top-1 (and top-5 with at least five classes), with each image's prediction and confidence."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pyarrow as pa

from ..reports.stats import wilson_interval
from .base import Audit, AuditBatch

if TYPE_CHECKING:
    import pandas as pd

    from ..models import LoadedModel


class EvalAudit(Audit):
    """Clean top-1 / top-5 accuracy with per-image prediction and confidence."""

    name = "eval"
    columns: ClassVar[dict[str, pa.DataType]] = {
        "prediction": pa.int64(),
        "confidence": pa.float32(),
        "correct": pa.bool_(),
        "correct_top5": pa.bool_(),
    }

    def run_batch(self, model: LoadedModel, batch: AuditBatch) -> dict[str, np.ndarray]:
        import torch

        with torch.inference_mode():
            logits = model(batch.images).float()
        probs = logits.softmax(dim=1)
        confidence, prediction = probs.max(dim=1)
        labels = batch.labels
        out: dict[str, np.ndarray] = {
            "prediction": prediction.cpu().numpy().astype(np.int64),
            "confidence": confidence.cpu().numpy().astype(np.float32),
            "correct": (prediction == labels).cpu().numpy(),
        }
        if logits.shape[1] >= 5:
            top5 = logits.topk(5, dim=1).indices
            out["correct_top5"] = (top5 == labels[:, None]).any(dim=1).cpu().numpy()
        return out

    @classmethod
    def summarize(cls, rows: pd.DataFrame, metadata: dict[str, Any]) -> dict[str, Any]:
        done = rows[~rows["skipped"]]
        n = len(done)
        correct = int(done["correct"].sum())
        lo, hi = wilson_interval(correct, n)
        summary: dict[str, Any] = {
            "samples": n,
            "skipped": int(rows["skipped"].sum()),
            "top1": correct / n if n else float("nan"),
            "top1_ci95": [lo, hi],
        }
        top5 = done["correct_top5"].dropna()
        if len(top5):
            summary["top5"] = float(top5.astype(bool).mean())
        summary["mean_confidence"] = float(done["confidence"].mean()) if n else float("nan")
        return summary
