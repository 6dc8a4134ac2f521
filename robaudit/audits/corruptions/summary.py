"""The corruptions audit's summary: errors per cell and corruption, CE and mCE against a reference, the
relative mCE, the unnormalized mean error, the corruption accuracy, accuracy per frequency band and the
noise curve; and the reference errors (AlexNet's published ImageNet-C errors, or a baseline report)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ... import corruption as catalog
from ...corruption import mce
from ...errors import InputError

if TYPE_CHECKING:
    import pandas as pd

#: the ``corruption`` of the rows of clean images and of the Gaussian-noise sweep
CLEAN = "clean"
NOISE_SWEEP = "gaussian_noise_sigma"


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
    from ...reports.read import read_report

    rows, meta = read_report(path)
    if meta.get("audit") != "corruptions":
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
    import numpy as np

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
    import numpy as np

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


def resolve_reference(choice: str, names: list[str], severities: list[int]) -> dict[str, Any] | str | None:
    """The reference errors ``--reference`` names (``auto`` is resolved by the summary, which knows the data)."""
    if choice in ("none", "auto"):
        return None if choice == "none" else "auto"
    if choice == "alexnet":
        return alexnet_reference()
    return reference_from_report(choice, names, severities)


def clean_accuracy_of(path: str) -> float:
    """The clean accuracy of an eval (or corruptions) report, for the relative mCE of pre-rendered sets."""
    from ...reports.read import read_report, summarize

    rows, meta = read_report(path)
    if meta.get("audit") not in ("eval", "corruptions"):
        raise InputError(f"--clean-report {path} is a {meta.get('audit')!r} report; give an eval report")
    kind, summary = summarize(rows, meta, path)
    value = summary["top1"] if kind == "eval" else summary["clean_accuracy"]
    if value is None:
        raise InputError(f"--clean-report {path} has no clean accuracy (a corruptions run without clean rows)")
    return float(value)
