"""The audit contract.

An :class:`Audit` is constructed with keyword parameters (they appear in its ``repr`` and in the report's
metadata), declares the columns it adds, and turns one batch of images into rows. Rows are returned as
columns (a dict of equal-length arrays): one row per image, or several per image (one per condition,
e.g. per ε) when the audit includes a ``sample`` column giving each row's position in the batch. The
runner adds the columns every report shares: ``chunk``, ``index`` (position in the data source),
``label``, ``skipped``, ``skip_reason`` and ``defense`` (the defended model's description, ``none`` for
an undefended one; an audit that judges several models per row returns its own ``defense`` column).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pyarrow as pa

if TYPE_CHECKING:
    import pandas as pd
    import torch

    from ..models import LoadedModel

BASE_COLUMNS: dict[str, pa.DataType] = {
    "chunk": pa.int32(),
    "index": pa.int64(),
    "label": pa.int64(),
    "skipped": pa.bool_(),
    "skip_reason": pa.string(),
    "defense": pa.string(),
}


@dataclass
class AuditBatch:
    """A batch on the model's device: dataset ``indices`` (numpy), ``images`` in [0, 1], ``labels``, and the
    data source's per-sample attributes (``Dataset.sample_info``), if it has any."""

    indices: np.ndarray
    images: torch.Tensor
    labels: torch.Tensor
    info: dict[str, np.ndarray] = field(default_factory=dict)


class Audit(ABC):
    """Base class: subclasses set ``name``, ``columns`` and implement ``run_batch`` and ``summarize``."""

    name: ClassVar[str]
    #: columns this audit adds to every row (nullable; skipped images get nulls)
    columns: ClassVar[dict[str, pa.DataType]]
    #: whether rows depend on how images are batched (e.g. random draws per batch): the batch size then
    #: becomes part of the run's identity
    batch_dependent: ClassVar[bool] = False

    def __init__(self, **params: Any) -> None:
        self.params = params

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in sorted(self.params.items()))
        return f"{self.name}({args})"

    @classmethod
    def schema(cls) -> pa.Schema:
        return pa.schema([pa.field(k, t) for k, t in {**BASE_COLUMNS, **cls.columns}.items()])

    def prepare(self, model: LoadedModel) -> None:  # noqa: B027 (an optional hook: most audits need no check)
        """Check that the audit can run on ``model`` (raise InputError if not); called before anything is written."""

    @abstractmethod
    def run_batch(self, model: LoadedModel, batch: AuditBatch) -> dict[str, np.ndarray]:
        """Rows for one batch, as columns."""

    @classmethod
    @abstractmethod
    def summarize(cls, rows: pd.DataFrame, metadata: dict[str, Any]) -> dict[str, Any]:
        """Summary figures derived from the raw rows of a finished report (skipped rows included)."""
