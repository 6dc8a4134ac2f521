"""Clean accuracy: top-1 (and top-5 with at least five classes), with each image's prediction and confidence."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from ..reports.content import FigureSpec, Table, interval, pairs, pct, text
from ..reports.metrics import Metric, Pattern, present
from ..reports.stats import wilson_interval
from .base import Audit, AuditBatch

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    from matplotlib.figure import Figure

    from ..models import LoadedModel
    from ..reports.folder import Report

TOP1 = Pattern("eval.top1", "proportion", True, "clean top-1 accuracy")
TOP5 = Pattern("eval.top5", "proportion", True, "clean top-5 accuracy (models with at least five classes)")
CONFIDENCE = Pattern("eval.mean_confidence", "number", None, "mean softmax probability of the predicted class")


class EvalAudit(Audit):
    """Clean top-1 / top-5 accuracy with per-image prediction and confidence."""

    name = "eval"
    title = "Clean accuracy (eval)"
    order = 0
    columns: ClassVar[dict[str, Any]] = {
        "prediction": "int64",
        "confidence": "float32",
        "correct": "bool",
        "correct_top5": "bool",
    }
    metric_patterns = (TOP1, TOP5, CONFIDENCE)

    def run_batch(self, model: LoadedModel, batch: AuditBatch) -> dict[str, np.ndarray]:
        import numpy as np
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

    # -- what the report means -----------------------------------------------------------------------------------
    @classmethod
    def metrics(cls, summary: dict[str, Any], metadata: dict[str, Any]) -> list[Metric]:
        n = summary.get("samples")
        return present(
            [
                TOP1.metric("eval.top1", summary.get("top1"), samples=n),
                TOP5.metric("eval.top5", summary.get("top5"), samples=n),
                CONFIDENCE.metric("eval.mean_confidence", summary.get("mean_confidence")),
            ]
        )

    @classmethod
    def tables(cls, summary: dict[str, Any], metadata: dict[str, Any]) -> list[Table]:
        s = summary
        return [
            pairs(
                "Clean accuracy",
                [
                    ("top-1 accuracy", pct(s.get("top1"))),
                    ("95 % interval (Wilson)", interval(s.get("top1_ci95"))),
                    ("top-5 accuracy", pct(s.get("top5"))),
                    ("mean confidence", pct(s.get("mean_confidence"))),
                    ("images", text(s.get("samples"))),
                    ("skipped images", text(s.get("skipped"))),
                ],
            )
        ]

    @classmethod
    def key_numbers(cls, summary: dict[str, Any], metadata: dict[str, Any]) -> dict[str, str]:
        return {"clean top-1": pct(summary.get("top1"))}

    @classmethod
    def clean_accuracy(cls, summary: dict[str, Any]) -> tuple[float, list[float] | None] | None:
        top1 = summary.get("top1")
        return (float(top1), summary.get("top1_ci95")) if isinstance(top1, (int, float)) else None

    @classmethod
    def figures(cls, report: Report) -> list[FigureSpec]:
        label = report.name or report.label
        caption = f"Clean top-1 accuracy ({label}), 95 % Wilson interval"
        return [FigureSpec("clean-accuracy", caption, clean_accuracy_figure({label: report.summary}))]


def clean_accuracy_figure(summaries: dict[str, dict[str, Any]]) -> Figure:
    """Top-1 accuracy with its 95 % interval, one horizontal bar per eval summary (keyed by label)."""
    from ..reports.plots import interval_bars_figure

    values = {k: (s.get("top1"), s.get("top1_ci95")) for k, s in summaries.items()}
    return interval_bars_figure(values, "clean top-1 accuracy (95 % Wilson interval)", "Clean accuracy")
