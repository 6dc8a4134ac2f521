"""Prediction consistency under flips: the share of images whose predicted class survives mirroring.

Each image is classified as it is and mirrored left-right (``horizontal``) and top-bottom (``vertical``).
A row per image and flip records both predictions; the summary gives per flip the *consistency* (the
prediction did not change) with a 95 % Wilson interval, and the accuracy on the flipped images.

The module imports only the standard library and robaudit's light modules at import time (torch and numpy
inside methods), as every audit must: ``robaudit --help`` lists the commands of all installed audits.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from robaudit.audits.base import Audit, AuditBatch
from robaudit.audits.options import Option, names
from robaudit.errors import InputError
from robaudit.reports.content import FigureSpec, Table, interval, pct
from robaudit.reports.metrics import Metric, Pattern, present
from robaudit.reports.stats import wilson_interval

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    from matplotlib.figure import Figure
    from robaudit.models import LoadedModel
    from robaudit.reports.folder import Report

FLIPS = {"horizontal": (-1,), "vertical": (-2,)}
CONSISTENCY = Pattern(
    "flip-consistency.<flip>.consistency", "proportion", True, "share of images whose prediction survives the flip"
)
ACCURACY = Pattern("flip-consistency.<flip>.accuracy", "proportion", True, "accuracy on the flipped images")


class FlipConsistencyAudit(Audit):
    """Prediction consistency under horizontal and vertical flips (an example audit plugin)."""

    name = "flip-consistency"
    title = "Prediction consistency under flips"
    order = 60
    columns: ClassVar[dict[str, Any]] = {
        "flip": "string",
        "prediction": "int64",
        "original_prediction": "int64",
        "consistent": "bool",
        "correct": "bool",
    }
    options = (Option("flips", "Flips to apply: horizontal, vertical (comma-separated or repeated).", parse=names),)
    metric_patterns = (CONSISTENCY, ACCURACY)

    def __init__(self, *, flips: list[str] | None = None) -> None:
        chosen = list(flips or FLIPS)
        unknown = [f for f in chosen if f not in FLIPS]
        if unknown:
            raise InputError(f"unknown flip {unknown[0]!r}; choose from {', '.join(FLIPS)}")
        super().__init__(flips=chosen)

    def run_batch(self, model: LoadedModel, batch: AuditBatch) -> dict[str, np.ndarray]:
        import numpy as np
        import torch

        with torch.inference_mode():
            original = model(batch.images).argmax(dim=1)
            parts = []
            for flip in self.params["flips"]:
                prediction = model(torch.flip(batch.images, FLIPS[flip])).argmax(dim=1)
                n = len(prediction)
                parts.append(
                    {
                        "sample": np.arange(n),
                        "flip": np.array([flip] * n, dtype=object),
                        "prediction": prediction.cpu().numpy(),
                        "original_prediction": original.cpu().numpy(),
                        "consistent": (prediction == original).cpu().numpy(),
                        "correct": (prediction == batch.labels).cpu().numpy(),
                    }
                )
        return {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}

    @classmethod
    def summarize(cls, rows: pd.DataFrame, metadata: dict[str, Any]) -> dict[str, Any]:
        done = rows[~rows["skipped"].astype(bool)]
        flips = []
        for flip, group in done.groupby("flip", sort=False):
            n, same = len(group), int(group["consistent"].astype(bool).sum())
            flips.append(
                {
                    "flip": str(flip),
                    "images": n,
                    "consistency": same / n,
                    "consistency_ci95": list(wilson_interval(same, n)),
                    "accuracy": float(group["correct"].astype(bool).mean()),
                }
            )
        return {"images": int(done["index"].nunique()), "flips": flips}

    @classmethod
    def metrics(cls, summary: dict[str, Any], metadata: dict[str, Any]) -> list[Metric]:
        out: list[Metric | None] = []
        for entry in summary.get("flips", []):
            stem, n = f"flip-consistency.{entry['flip']}", entry["images"]
            out.append(CONSISTENCY.metric(f"{stem}.consistency", entry["consistency"], samples=n))
            out.append(ACCURACY.metric(f"{stem}.accuracy", entry["accuracy"], samples=n))
        return present(out)

    @classmethod
    def tables(cls, summary: dict[str, Any], metadata: dict[str, Any]) -> list[Table]:
        rows = [
            [
                str(e["flip"]),
                pct(e["consistency"]),
                interval(e["consistency_ci95"]),
                pct(e["accuracy"]),
                str(e["images"]),
            ]
            for e in summary.get("flips", [])
        ]
        return [Table("Consistency under flips", ["flip", "consistency", "95 % interval", "accuracy", "images"], rows)]

    @classmethod
    def key_numbers(cls, summary: dict[str, Any], metadata: dict[str, Any]) -> dict[str, str]:
        return {f"{e['flip']} flip consistency": pct(e["consistency"]) for e in summary.get("flips", [])}

    @classmethod
    def figures(cls, report: Report) -> list[FigureSpec]:
        caption = "Share of images whose prediction survives each flip (95 % Wilson interval)"
        return [FigureSpec("flip-consistency", caption, consistency_figure(report.summary))]


def consistency_figure(summary: dict[str, Any]) -> Figure:
    from robaudit.reports.plots import interval_bars_figure

    values = {e["flip"]: (e["consistency"], e["consistency_ci95"]) for e in summary.get("flips", [])}
    return interval_bars_figure(values, "prediction unchanged by the flip", "Prediction consistency under flips")
