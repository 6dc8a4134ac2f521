"""The corruptions audit: accuracy under common corruptions (ImageNet-C / CIFAR-10-C), CE and mCE.

Each image is classified clean and under every chosen corruption × severity, generated on the fly by
:mod:`robaudit.corruption` with a generator seeded from (seed, corruption, severity, first data index of
the batch) — so chunks, shards and ``--resume`` stay valid, while the batch size changes the draws
(``batch_dependent``). An optional noise sweep adds rows with additive Gaussian noise of chosen σ (the
neural-regularization paper's noise curve). On a pre-rendered set (``imagenet-c:``, ``cifar10-c:``) the
data source says which corruption and severity each image carries, and the audit only classifies.

Rows: one per image × condition, with ``corruption`` (``clean`` for the clean rows, ``gaussian_noise_sigma``
for the sweep), ``severity``, ``noise_sigma``, ``group``, ``band``, ``prediction``, ``confidence`` and
``correct``. The summary computes errors per cell and corruption, CE and mCE against a reference (AlexNet's
published ImageNet-C errors, or a baseline robaudit report), the relative mCE, the unnormalized mean error,
the corruption accuracy and the accuracy per frequency band (see :mod:`robaudit.corruption.mce`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from ... import corruption as catalog
from ...errors import InputError
from ..base import Audit, AuditBatch
from ..options import Option, float_list
from . import report
from .summary import CLEAN, NOISE_SWEEP, clean_accuracy_of, corruption_summary, resolve_reference

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    import torch

    from ...models import LoadedModel
    from ...reports.content import FigureSpec, Table
    from ...reports.folder import Report
    from ...reports.metrics import Metric
    from ...runner import RunSpec

#: the data sources of released, pre-rendered corruption benchmarks (the images carry their corruption)
PRERENDERED = ("imagenet-c", "cifar10-c")


class CorruptionsAudit(Audit):
    """Accuracy under the ImageNet-C corruptions at severities 1-5, with CE / mCE against a reference."""

    name = "corruptions"
    title = "Common corruptions"
    order = 20
    batch_size = 64
    batch_dependent = True
    options = (
        Option(
            "corruptions",
            "all | common (the 15 of the mCE) | extra | noise,blur,weather,digital | low,mid,high | names.",
            default="common",
            flags=("--corruptions", "-c"),
        ),
        Option("severities", "Severities, e.g. 1-5, 3 or 1,3,5.", default="1-5"),
        Option(
            "params",
            "auto (CIFAR-10-C parameters up to 64 px a side, ImageNet-C above), imagenet or cifar.",
            default="auto",
        ),
        Option(
            "noise_levels",
            "Also add Gaussian noise of these σ (pixels in [0, 1]), e.g. 0.02,0.05,0.1: a noise curve.",
            parse=lambda v: list(float_list(v, "--noise-levels")),
        ),
        Option("clean", "Also classify the clean images.", default=True, type=bool, negatable=True),
        Option(
            "reference",
            "Errors that normalize CE / mCE: auto (AlexNet for ImageNet-sized data, none otherwise), "
            "alexnet, none, or a baseline model's corruptions report (.parquet).",
            default="auto",
        ),
        Option(
            "clean_report", "An eval report of the same model, for the relative mCE on pre-rendered sets.", type=Path
        ),
        Option("frost_dir", "Folder of frost photographs to blend instead of the procedural texture.", type=Path),
    )
    metric_patterns = report.PATTERNS
    columns: ClassVar[dict[str, Any]] = {
        "corruption": "string",
        "severity": "int8",
        "noise_sigma": "float32",
        "group": "string",
        "band": "string",
        "prediction": "int64",
        "confidence": "float32",
        "correct": "bool",
    }

    def __init__(
        self,
        *,
        corruptions: list[str] | None = None,
        severities: list[int] | None = None,
        param_set: str = "auto",
        noise_levels: list[float] | None = None,
        clean: bool = True,
        seed: int = 0,
        frost_dir: str | None = None,
        reference: dict[str, Any] | str | None = "auto",
        clean_accuracy: float | None = None,
    ) -> None:
        names = list(catalog.NAMES if corruptions is None else corruptions)
        for name in names:
            catalog.get(name)
        levels = [float(s) for s in noise_levels or []]
        if any(not math.isfinite(s) or s < 0 for s in levels):
            raise InputError(f"--noise-levels must be finite and >= 0, got {levels}")
        chosen = sorted(severities or catalog.SEVERITIES)
        if any(s not in catalog.SEVERITIES for s in chosen):
            raise InputError(f"severities must lie in 1-5, got {chosen}")
        if param_set != "auto":
            catalog.param_set_for(32, 32, param_set)
        if clean_accuracy is not None and not 0 <= clean_accuracy <= 1:
            raise InputError(f"the clean accuracy must lie in [0, 1], got {clean_accuracy}")
        super().__init__(
            corruptions=names,
            severities=chosen,
            param_set=param_set,
            noise_levels=levels,
            clean=clean,
            seed=seed,
            frost_dir=frost_dir,
            reference=reference,
            clean_accuracy=clean_accuracy,
        )
        if isinstance(reference, str) and reference != "auto":
            raise InputError(f"reference must be 'auto', None or reference errors, got {reference!r}")

    @classmethod
    def from_options(  # type: ignore[override]  # it takes exactly its declared options
        cls,
        spec: RunSpec,
        *,
        corruptions: str = "common",
        severities: str = "1-5",
        params: str = "auto",
        noise_levels: list[float] | None = None,
        clean: bool = True,
        reference: str = "auto",
        clean_report: Path | None = None,
        frost_dir: Path | None = None,
    ) -> CorruptionsAudit:
        from ...data import parse_source

        names = catalog.resolve_names(corruptions)
        chosen = catalog.parse_severities(severities)
        if frost_dir is not None and not Path(frost_dir).is_dir():
            raise InputError(f"--frost-dir {frost_dir} is not a folder")
        return cls(
            corruptions=names,
            severities=chosen,
            param_set=params,
            noise_levels=list(noise_levels or []),
            clean=clean and parse_source(spec.data.source)[0] not in PRERENDERED,
            seed=spec.seed,
            frost_dir=str(frost_dir) if frost_dir else None,
            reference=resolve_reference(str(reference), names, chosen),
            clean_accuracy=clean_accuracy_of(str(clean_report)) if clean_report is not None else None,
        )

    def adjust_spec(self, spec: RunSpec) -> RunSpec:
        """On a released, pre-rendered set the data source itself keeps only the chosen corruptions and
        severities, so unwanted files are never decoded."""
        from dataclasses import replace

        from ...data import parse_source

        source, arg = parse_source(spec.data.source)
        if source not in PRERENDERED or not arg or "::" in arg:
            return spec
        wanted = ",".join(self.params["corruptions"])
        severities = _ranges(self.params["severities"])
        return replace(spec, data=replace(spec.data, source=f"{spec.data.source}::{wanted}@{severities}"))

    def prepare(self, model: LoadedModel) -> None:
        _, height, width = model.preprocessing.input_size
        for name in self.params["corruptions"]:
            need = catalog.get(name).min_size
            if min(height, width) < need:
                raise InputError(f"{name} needs images of at least {need}x{need}; the model takes {height}x{width}")

    def _context(self, height: int, width: int) -> catalog.CorruptionContext:
        from pathlib import Path

        param_set = catalog.param_set_for(height, width, self.params["param_set"])
        frost_dir = self.params["frost_dir"]
        return catalog.CorruptionContext(param_set, Path(frost_dir) if frost_dir else None)

    def _generator(self, device: torch.device, *key: int) -> torch.Generator:
        return corruption_generator(int(self.params["seed"]), device, *key)

    def run_batch(self, model: LoadedModel, batch: AuditBatch) -> dict[str, np.ndarray]:
        import numpy as np
        import torch

        rows = _Rows(batch.labels)
        x = batch.images
        if "corruption" in batch.info:  # a pre-rendered set: the images already carry their corruption
            names, severities = batch.info["corruption"], batch.info["severity"]
            rows.add(model, x, names, severities, None)
            return rows.columns()
        first = int(batch.indices[0])
        n = len(x)
        if self.params["clean"]:
            rows.add(model, x, np.full(n, CLEAN, dtype=object), None, None)
        context = self._context(*x.shape[-2:])
        for k, name in enumerate(self.params["corruptions"]):
            for severity in self.params["severities"]:
                corrupted = catalog.corrupt(
                    x, name, severity, generator=self._generator(x.device, k, severity, first), context=context
                )
                rows.add(model, corrupted, np.full(n, name, dtype=object), np.full(n, severity), None)
        for j, sigma in enumerate(self.params["noise_levels"]):
            generator = self._generator(x.device, len(catalog.NAMES), j, first)
            noisy = (x + sigma * torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)).clamp(0, 1)
            rows.add(model, noisy, np.full(n, NOISE_SWEEP, dtype=object), None, sigma)
        return rows.columns()

    @classmethod
    def summarize(cls, rows: pd.DataFrame, metadata: dict[str, Any]) -> dict[str, Any]:
        return corruption_summary(rows, metadata.get("identity", {}).get("params", {}), metadata)

    # -- what the report means (see .report) ---------------------------------------------------------------------
    @classmethod
    def metrics(cls, summary: dict[str, Any], metadata: dict[str, Any]) -> list[Metric]:
        return report.metrics(summary, metadata)

    @classmethod
    def tables(cls, summary: dict[str, Any], metadata: dict[str, Any]) -> list[Table]:
        return report.tables(summary, metadata)

    @classmethod
    def key_numbers(cls, summary: dict[str, Any], metadata: dict[str, Any]) -> dict[str, str]:
        return report.key_numbers(summary, metadata)

    @classmethod
    def clean_accuracy(cls, summary: dict[str, Any]) -> tuple[float, list[float] | None] | None:
        value = summary.get("clean_accuracy")
        return (float(value), None) if isinstance(value, (int, float)) else None

    @classmethod
    def example_corruptions(cls, report: Report) -> list[str]:
        measured: Any = report.rows["corruption"].dropna().unique() if "corruption" in report.rows else []
        return [str(n) for n in measured if str(n) in catalog.CATALOG]

    @classmethod
    def figures(cls, report_: Report) -> list[FigureSpec]:
        return report.figures(report_)


def _ranges(values: list[int]) -> str:
    """``[1, 2, 3, 5]`` → ``"1-3,5"``: severities as the ``@`` filter of a pre-rendered source writes them."""
    runs: list[list[int]] = []
    for value in sorted(values):
        if runs and value == runs[-1][-1] + 1:
            runs[-1].append(value)
        else:
            runs.append([value])
    return ",".join(f"{r[0]}-{r[-1]}" if len(r) > 1 else str(r[0]) for r in runs)


def corruption_generator(seed: int, device: torch.device, *key: int) -> torch.Generator:
    """The generator of one batch's draws: seeded from (seed, corruption position, severity, first data index)."""
    import numpy as np
    import torch

    generator = torch.Generator(device=device)
    generator.manual_seed(int(np.random.SeedSequence([seed, *key]).generate_state(1)[0]))
    return generator


class _Rows:
    """Accumulates one row per image × condition.

    Predictions, confidences and correctness stay on the model's device until :meth:`columns` fetches them
    in one transfer: the host never waits for a condition's forward pass, so on a GPU the next corruption is
    queued while the model still runs (one wait per batch, not one per condition).
    """

    COLUMNS = ("sample", "corruption", "severity", "noise_sigma", "group", "band")

    def __init__(self, labels: torch.Tensor) -> None:
        self.labels = labels
        self.parts: dict[str, list[np.ndarray]] = {name: [] for name in self.COLUMNS}
        self.device_parts: dict[str, list[torch.Tensor]] = {"prediction": [], "confidence": [], "correct": []}

    def add(
        self,
        model: LoadedModel,
        images: torch.Tensor,
        names: np.ndarray,
        severities: np.ndarray | None,
        sigma: float | None,
    ) -> None:
        import numpy as np
        import torch

        with torch.inference_mode():
            logits = model(images).float()
            confidence, prediction = logits.softmax(dim=1).max(dim=1)
        self.device_parts["prediction"].append(prediction)
        self.device_parts["confidence"].append(confidence)
        self.device_parts["correct"].append(prediction == self.labels)
        n = len(images)
        values = {
            "sample": np.arange(n),
            "corruption": names,
            "severity": severities if severities is not None else np.full(n, None, dtype=object),
            "noise_sigma": np.full(n, sigma if sigma is not None else None, dtype=object),
            "group": np.array([_group(c) for c in names], dtype=object),
            "band": np.array([_band(c) for c in names], dtype=object),
        }
        for name, value in values.items():
            self.parts[name].append(np.asarray(value))

    def columns(self) -> dict[str, np.ndarray]:
        import numpy as np
        import torch

        rows = sum(len(p) for p in self.device_parts["prediction"])
        # one transfer; class indices are exact in float32 (up to 2^24 classes)
        fetched = (
            torch.cat(
                [
                    torch.cat(self.device_parts["prediction"]).float(),
                    torch.cat(self.device_parts["confidence"]),
                    torch.cat(self.device_parts["correct"]).float(),
                ]
            )
            .cpu()
            .numpy()
        )
        out = {name: np.concatenate(parts) for name, parts in self.parts.items()}
        out["prediction"] = fetched[:rows].astype(np.int64)
        out["confidence"] = fetched[rows : 2 * rows].astype(np.float32)
        out["correct"] = fetched[2 * rows : 3 * rows].astype(bool)
        return out


def _group(name: str) -> str | None:
    return catalog.CATALOG[name][0] if name in catalog.CATALOG else ("noise" if name == NOISE_SWEEP else None)


def _band(name: str) -> str | None:
    return catalog.CATALOG[name][1] if name in catalog.CATALOG else ("high" if name == NOISE_SWEEP else None)


# ---------------------------------------------------------------------------------------------------------
# summary
