"""The audit contract: the one unit of extension, from options to rows to what a report means.

An :class:`Audit` is constructed with keyword parameters (they appear in its ``repr`` and in the report's
metadata), declares the columns it adds, and turns one batch of images into rows. Rows are returned as
columns (a dict of equal-length arrays): one row per image, or several per image (one per condition,
e.g. per ε) when the audit includes a ``sample`` column giving each row's position in the batch. The
runner adds the columns every report shares: ``chunk``, ``index`` (position in the data source),
``label``, ``skipped``, ``skip_reason`` and ``defense`` (the defended model's description, ``none`` for
an undefended one; an audit that judges several models per row returns its own ``defense`` column).

Everything else robaudit does with an audit asks the audit itself, so a plugin's audit is a first-class
one: its options (:attr:`options`, read by the command line, the Python API and suites), its summary
(:meth:`summarize`), its named metrics for the gate (:meth:`metrics`, :attr:`metric_patterns`), its
tables, key numbers, flags and figures for the HTML and Markdown reports (:meth:`tables`,
:meth:`key_numbers`, :meth:`flags`, :meth:`figures`), its title and its place among a folder's reports.
Every hook has a generic default, so a new audit needs only ``name``, ``columns``, ``run_batch`` and
``summarize``.

Audit modules must stay light to import (no torch, numpy, pandas or pyarrow at module level; import them
inside methods): ``robaudit --help`` lists every registered audit's command and reads their options.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

from ..params import Parameterized, parameters_of
from ..reports.content import Flag, Table, generic_tables, num, pct, summary_flags
from ..reports.metrics import GENERIC, Metric, Pattern, flatten_summary
from .options import Option, resolve

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import torch

    from ..models import LoadedModel
    from ..reports.content import ExamplePerturbation, FigureSpec
    from ..reports.folder import Report
    from ..runner import RunSpec

#: the columns every report shares, by Arrow type name
BASE_COLUMNS: dict[str, str] = {
    "chunk": "int32",
    "index": "int64",
    "label": "int64",
    "skipped": "bool",
    "skip_reason": "string",
    "defense": "string",
}


class Export(NamedTuple):
    """A file an audit asks to write from its finished report: ``write(report, target) -> message``; the
    ``option`` that asked for it names it in errors (its target is checked before anything is computed)."""

    target: Path
    write: Callable[[Path, Path], str]
    option: str


def arrow_type(spec: Any) -> pa.DataType:
    """A column type given as an Arrow type or its name: ``"int64"``, ``"float32"``, ``"list<float16>"``."""
    import pyarrow as pa

    if isinstance(spec, pa.DataType):
        return spec
    text = str(spec).strip()
    if text.startswith("list<") and text.endswith(">"):
        return pa.list_(arrow_type(text[5:-1]))
    return pa.type_for_alias(text)


@dataclass
class AuditBatch:
    """A batch on the model's device: dataset ``indices`` (numpy), ``images`` in [0, 1], ``labels``, and the
    data source's per-sample attributes (``Dataset.sample_info``), if it has any."""

    indices: np.ndarray
    images: torch.Tensor
    labels: torch.Tensor
    info: dict[str, np.ndarray] = field(default_factory=dict)


class Audit(Parameterized, ABC):
    """Base class: subclasses set ``name`` and ``columns`` and implement ``run_batch`` and ``summarize``."""

    name: ClassVar[str]
    #: the heading of its section in reports (default: the name)
    title: ClassVar[str] = ""
    #: its place among a folder's reports (eval first); audits of equal order are sorted by name
    order: ClassVar[int] = 100
    #: columns this audit adds to every row (nullable; skipped images get nulls), by Arrow type or type name
    columns: ClassVar[dict[str, Any]]
    #: the audit's own options (the shared model, data and run options come on top)
    options: ClassVar[tuple[Option, ...]] = ()
    #: command-line defaults of the shared --batch-size and --chunk-size
    batch_size: ClassVar[int] = 128
    chunk_size: ClassVar[int] = 256
    #: whether rows depend on how images are batched (e.g. random draws per batch): the batch size then
    #: becomes part of the run's identity
    batch_dependent: ClassVar[bool] = False
    #: whether its summaries carry flags (:meth:`flags`); reports say "not checked" when no audit of a folder does
    raises_flags: ClassVar[bool] = False
    #: the naming scheme of :meth:`metrics` (docs/ci.md's table is generated from the built-in audits')
    metric_patterns: ClassVar[tuple[Pattern, ...]] = (GENERIC,)

    def __init__(self, **params: Any) -> None:
        self.params = params

    # -- construction --------------------------------------------------------------------------------------------
    @classmethod
    def build(cls, spec: RunSpec, values: dict[str, Any]) -> Audit:
        """The audit for option ``values`` (by option name; missing ones take their defaults) under ``spec``."""
        return cls.from_options(spec, **resolve(cls.options, values, audit=cls.name))

    @classmethod
    def from_options(cls, spec: RunSpec, **values: Any) -> Audit:
        """The audit for resolved option values. The default passes them to the constructor, with the run's
        seed when the constructor takes one; audits whose options are not their parameters override this."""
        if "seed" in parameters_of(cls) and "seed" not in values:
            values["seed"] = spec.seed
        return cls(**values)

    @property
    def needs_model(self) -> bool:
        """Whether the audit runs a model (an audit of the data alone may be run without ``--model``)."""
        return True

    @property
    def inputs(self) -> str:
        """What the samples must be: ``images`` (pixels in [0, 1]) or ``perturbations`` (a data source's ``kind``)."""
        return "images"

    def adjust_spec(self, spec: RunSpec) -> RunSpec:
        """The run spec this audit runs under (e.g. narrowed to the files it reads); by default ``spec``."""
        return spec

    def exports(self) -> list[Export]:
        """Files to write from the finished report (asked for by an option, e.g. ``--save-perturbations``)."""
        return []

    # -- rows ----------------------------------------------------------------------------------------------------
    @classmethod
    def schema(cls) -> pa.Schema:
        import pyarrow as pa

        return pa.schema([pa.field(k, arrow_type(t)) for k, t in {**BASE_COLUMNS, **cls.columns}.items()])

    def prepare(self, model: LoadedModel) -> None:
        """Check that the audit can run on ``model`` (raise InputError if not); called before anything is
        written, and only when the run has a model."""

    @abstractmethod
    def run_batch(self, model: LoadedModel, batch: AuditBatch) -> dict[str, np.ndarray]:
        """Rows for one batch, as columns."""

    @classmethod
    @abstractmethod
    def summarize(cls, rows: pd.DataFrame, metadata: dict[str, Any]) -> dict[str, Any]:
        """Summary figures derived from the raw rows of a finished report (skipped rows included)."""

    # -- what a report means -------------------------------------------------------------------------------------
    @classmethod
    def metrics(cls, summary: dict[str, Any], metadata: dict[str, Any]) -> list[Metric]:
        """Named metrics of a summary, for the gate; by default every numeric top-level entry."""
        return flatten_summary(cls.name, summary)

    @classmethod
    def tables(cls, summary: dict[str, Any], metadata: dict[str, Any]) -> list[Table]:
        """The summary as tables; by default its scalars and its lists of records."""
        return generic_tables(summary)

    @classmethod
    def key_numbers(cls, summary: dict[str, Any], metadata: dict[str, Any]) -> dict[str, str]:
        """The few figures that characterize a model on this audit, by label (compared across variants)."""
        return {metric.name: _shown(metric) for metric in cls.metrics(summary, metadata)}

    @classmethod
    def flags(cls, summary: dict[str, Any]) -> list[Flag]:
        """Symptoms checked (e.g. of gradient masking); by default the summary's ``flags`` entry."""
        return summary_flags(summary)

    @classmethod
    def clean_accuracy(cls, summary: dict[str, Any]) -> tuple[float, list[float] | None] | None:
        """The clean accuracy this audit measured (and its interval), if it measures one."""
        return None

    @classmethod
    def figures(cls, report: Report) -> list[FigureSpec]:
        """The figures of a finished report (each a matplotlib Figure with a name and caption)."""
        return []

    @classmethod
    def example_perturbations(cls, report: Report, limit: int) -> list[ExamplePerturbation]:
        """Up to ``limit`` perturbations the report kept, to show on example images (none by default)."""
        return []

    @classmethod
    def example_corruptions(cls, report: Report) -> list[str]:
        """The corruptions this report measured, to show applied to the example images (none by default)."""
        return []


def _shown(metric: Metric) -> str:
    if metric.kind == "proportion":
        return pct(metric.value)
    return num(metric.value)
