"""The corruptions audit: accuracy under common corruptions (ImageNet-C / CIFAR-10-C), CE and mCE.

Each image is classified clean and under every chosen corruption × severity, generated on the fly by
:mod:`robaudit.corruptions` with a generator seeded from (seed, corruption, severity, first data index of
the batch) — so chunks, shards and ``--resume`` stay valid, while the batch size changes the draws
(``batch_dependent``). An optional noise sweep adds rows with additive Gaussian noise of chosen σ (the
neural-regularization paper's noise curve). On a pre-rendered set (``imagenet-c:``, ``cifar10-c:``) the
data source says which corruption and severity each image carries, and the audit only classifies.

Rows: one per image × condition, with ``corruption`` (``clean`` for the clean rows, ``gaussian_noise_sigma``
for the sweep), ``severity``, ``noise_sigma``, ``group``, ``band``, ``prediction``, ``confidence`` and
``correct``. The summary computes errors per cell and corruption, CE and mCE against a reference (AlexNet's
published ImageNet-C errors, or a baseline robaudit report), the relative mCE, the unnormalized mean error,
the corruption accuracy and the accuracy per frequency band (see :mod:`robaudit.corruptions.mce`).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pyarrow as pa
import torch

from .. import corruptions as catalog
from ..corruptions import mce
from ..errors import InputError, RunError
from .base import Audit, AuditBatch

if TYPE_CHECKING:
    import pandas as pd

    from ..models import LoadedModel

CLEAN = "clean"
NOISE_SWEEP = "gaussian_noise_sigma"


class CorruptionsAudit(Audit):
    """Accuracy under the ImageNet-C corruptions at severities 1-5, with CE / mCE against a reference."""

    name = "corruptions"
    batch_dependent = True
    columns: ClassVar[dict[str, pa.DataType]] = {
        "corruption": pa.string(),
        "severity": pa.int8(),
        "noise_sigma": pa.float32(),
        "group": pa.string(),
        "band": pa.string(),
        "prediction": pa.int64(),
        "confidence": pa.float32(),
        "correct": pa.bool_(),
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
        generator = torch.Generator(device=device)
        generator.manual_seed(int(np.random.SeedSequence([int(self.params["seed"]), *key]).generate_state(1)[0]))
        return generator

    def run_batch(self, model: LoadedModel, batch: AuditBatch) -> dict[str, np.ndarray]:
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


class _Rows:
    """Accumulates one row per image × condition.

    Predictions, confidences, correctness and a finiteness flag per condition stay on the model's device
    until :meth:`columns` fetches them in one transfer: the host never waits for a condition's forward pass,
    so on a GPU the next corruption is queued while the model still runs (one wait per batch, not one per
    condition).
    """

    COLUMNS = ("sample", "corruption", "severity", "noise_sigma", "group", "band")

    def __init__(self, labels: torch.Tensor) -> None:
        self.labels = labels
        self.parts: dict[str, list[np.ndarray]] = {name: [] for name in self.COLUMNS}
        self.device_parts: dict[str, list[torch.Tensor]] = {"prediction": [], "confidence": [], "correct": []}
        self.finite: list[torch.Tensor] = []

    def add(
        self,
        model: LoadedModel,
        images: torch.Tensor,
        names: np.ndarray,
        severities: np.ndarray | None,
        sigma: float | None,
    ) -> None:
        with torch.inference_mode():
            logits = model(images).float()
            confidence, prediction = logits.softmax(dim=1).max(dim=1)
            self.finite.append(torch.isfinite(logits).all().view(1))
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
        rows = sum(len(p) for p in self.device_parts["prediction"])
        # one transfer; class indices are exact in float32 (up to 2^24 classes)
        fetched = (
            torch.cat(
                [
                    torch.cat(self.device_parts["prediction"]).float(),
                    torch.cat(self.device_parts["confidence"]),
                    torch.cat(self.device_parts["correct"]).float(),
                    torch.cat(self.finite).float(),
                ]
            )
            .cpu()
            .numpy()
        )
        finite = fetched[3 * rows :]
        if not finite.all():
            condition = self.parts["corruption"][int(np.argmin(finite))][0]
            raise RunError(f"the model produced NaN or inf logits on {condition} images")
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


def cell_errors(rows: pd.DataFrame) -> tuple[dict[str, dict[int, float]], dict[str, dict[int, int]], float | None]:
    """Error and sample count per (corruption, severity), and the clean error, from a report's rows."""
    done = rows[~rows["skipped"].astype(bool)]
    cells = done[done["severity"].notna() & done["corruption"].isin(catalog.NAMES)]
    errors: dict[str, dict[int, float]] = {}
    samples: dict[str, dict[int, int]] = {}
    for key, group in cells.groupby(["corruption", "severity"]):
        name, severity = str(key[0]), int(key[1])  # type: ignore[call-overload]
        errors.setdefault(name, {})[severity] = 1.0 - float(group["correct"].astype(bool).mean())
        samples.setdefault(name, {})[severity] = len(group)
    clean = done[done["corruption"] == CLEAN]
    clean_error = 1.0 - float(clean["correct"].astype(bool).mean()) if len(clean) else None
    return errors, samples, clean_error


def reference_from_report(path: str, corruptions: list[str], severities: list[int]) -> dict[str, Any]:
    """Cell errors of a baseline corruptions report, checked to cover every requested common cell."""
    from ..reports.read import read_report

    rows, meta = read_report(path)
    if meta.get("audit") != CorruptionsAudit.name:
        raise InputError(f"--reference {path} is a {meta.get('audit')!r} report, not a corruptions report")
    errors, _, clean_error = cell_errors(rows)
    missing = [f"{c}@{s}" for c in corruptions if c in catalog.COMMON for s in severities if s not in errors.get(c, {})]
    if missing:
        raise InputError(
            f"--reference {path} lacks {len(missing)} corruption/severity cell(s) this run needs, e.g. "
            f"{', '.join(missing[:5])}; run the baseline with the same --corruptions and --severities"
        )
    return {
        "name": str(path),
        "errors": {c: [errors[c].get(s) for s in catalog.SEVERITIES] for c in errors},
        "clean_error": clean_error,
    }


def alexnet_reference() -> dict[str, Any]:
    return {
        "name": mce.ALEXNET,
        "errors": {c: list(v) for c, v in mce.ALEXNET_ERRORS.items()},
        "clean_error": mce.ALEXNET_CLEAN_ERROR,
    }


def corruption_summary(rows: pd.DataFrame, params: dict[str, Any], metadata: dict[str, Any]) -> dict[str, Any]:
    done = rows[~rows["skipped"].astype(bool)]
    errors, samples, clean_error = cell_errors(rows)
    if clean_error is None and params.get("clean_accuracy") is not None:
        clean_error = 1.0 - float(params["clean_accuracy"])
    param_set = _param_set(params, metadata)
    reference = params.get("reference")
    if reference == "auto":
        # AlexNet's table normalizes ImageNet-C: ImageNet-sized images (or the released files) and 1000 classes
        imagenet = param_set == "imagenet" or str(metadata.get("data", {}).get("description", "")).startswith(
            "imagenet-c:"
        )
        reference = alexnet_reference() if imagenet and metadata.get("model", {}).get("num_classes") == 1000 else None
    ref_errors = {
        c: {s: e for s, e in zip(catalog.SEVERITIES, values, strict=True) if e is not None}
        for c, values in (reference or {}).get("errors", {}).items()
    }
    ref_clean = (reference or {}).get("clean_error")
    common = [c for c in catalog.COMMON if c in errors]
    per_corruption = []
    for name in [c for c in catalog.NAMES if c in errors]:
        cell = errors[name]
        row: dict[str, Any] = {
            "corruption": name,
            "group": catalog.group_of(name),
            "band": catalog.band_of(name),
            "error": errors_mean(cell),
            "accuracy": 1 - errors_mean(cell),
            "CE": None,
            "relative_CE": None,
            "samples": int(sum(samples[name].values())),
        }
        if name in ref_errors:
            row["CE"] = 100 * mce.corruption_error(cell, ref_errors[name])
            if clean_error is not None and ref_clean is not None:
                row["relative_CE"] = 100 * mce.relative_corruption_error(cell, clean_error, ref_errors[name], ref_clean)
        per_corruption.append(row)
    per_cell: list[dict[str, Any]] = [
        {"corruption": c, "severity": s, "accuracy": 1 - e, "error": e, "samples": samples[c][s]}
        for c in [c for c in catalog.NAMES if c in errors]
        for s, e in sorted(errors[c].items())
    ]
    common_cells = [cell for cell in per_cell if cell["corruption"] in catalog.COMMON]
    summary: dict[str, Any] = {
        "samples": int(done["index"].nunique()),
        "skipped": int(rows["skipped"].astype(bool).sum()),
        "param_set": param_set,
        "clean_accuracy": None if clean_error is None else 1 - clean_error,
        "corruption_accuracy": float(np.mean([c["accuracy"] for c in common_cells])) if common_cells else None,
        "mean_error": float(np.mean([errors_mean(errors[c]) for c in common])) if common else None,
        "mCE": None,
        "mCE_stderr": None,
        "relative_mCE": None,
        "reference": (reference or {}).get("name"),
        "common_corruptions": len(common),
        "note": None,
    }
    scored = [c for c in common if c in ref_errors]
    if scored:
        summary["mCE"], summary["mCE_stderr"] = mce.mean_corruption_error(errors, ref_errors, scored, samples)
        relatives = [r["relative_CE"] for r in per_corruption if r["corruption"] in scored]
        if all(r is not None for r in relatives):
            summary["relative_mCE"] = float(np.mean(relatives))
    notes = []
    if reference is None:
        notes.append("no reference errors: mCE needs --reference (AlexNet for ImageNet, or a baseline report)")
    if common and len(common) < len(catalog.COMMON):
        notes.append(f"mCE and corruption accuracy over {len(common)} of the 15 common corruptions")
    severities_seen = sorted({s for c in common for s in errors[c]})
    if common and severities_seen != list(catalog.SEVERITIES):
        notes.append(f"severities {severities_seen} only")
    summary["note"] = "; ".join(notes) or None
    summary["per_corruption"] = per_corruption
    summary["per_cell"] = per_cell
    summary["per_band"] = [
        {
            "band": band,
            "accuracy": float(np.mean([c["accuracy"] for c in per_cell if catalog.band_of(c["corruption"]) == band])),
            "error": float(np.mean([c["error"] for c in per_cell if catalog.band_of(c["corruption"]) == band])),
            "samples": int(sum(c["samples"] for c in per_cell if catalog.band_of(c["corruption"]) == band)),
        }
        for band in catalog.BANDS
        if any(catalog.band_of(c["corruption"]) == band for c in per_cell)
    ]
    sweep = done[done["corruption"] == NOISE_SWEEP]
    summary["noise_curve"] = [
        {
            "sigma": round(float(sigma), 6),  # type: ignore[arg-type]
            "accuracy": float(group["correct"].astype(bool).mean()),
            "samples": len(group),
        }
        for sigma, group in sweep.groupby("noise_sigma")
    ]
    return summary


def errors_mean(cell: dict[int, float]) -> float:
    return float(np.mean(list(cell.values())))


def _param_set(params: dict[str, Any], metadata: dict[str, Any]) -> str:
    description = str(metadata.get("data", {}).get("description", ""))
    if description.startswith(("imagenet-c:", "cifar10-c:")):
        return "pre-rendered"
    chosen = params.get("param_set", "auto")
    if chosen != "auto":
        return str(chosen)
    size = metadata.get("model", {}).get("preprocessing", {}).get("input_size")
    return catalog.param_set_for(size[1], size[2]) if size else "auto"
