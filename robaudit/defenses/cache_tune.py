"""Tuning a cache's θ and λ on held-out data, and the grid report that records it.

The held-out images' query features and backbone logits are computed once; every (θ, λ) of the grid is then
evaluated from them, so a 33 × 33 grid costs one pass over the data. λ = 1 rows are the cache-only model.
The grid is written as a Parquet file (one row per θ × λ) with the cache's and the data's fingerprints in
its metadata; the summary names the best (θ, λ), the best cache-only θ and the backbone's own accuracy.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data import Dataset, DataSpec
from ..errors import InputError
from ..models import LoadedModel
from ..models.finite import MONITOR
from ..provenance import environment
from ..reports.stats import wilson_interval
from .cache import KeyValueCache, mix
from .cache_build import stream_inputs

ProgressHook = Callable[[int, int], None]


def held_out_queries(
    cache: KeyValueCache,
    model: LoadedModel,
    dataset: Dataset,
    indices: np.ndarray,
    *,
    batch_size: int,
    workers: int,
    skip_bad: bool,
    progress: ProgressHook | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Query features, backbone logits and labels of held-out images, computed once."""
    queries, logits, labels = [], [], []
    done = 0
    with torch.no_grad():
        for batch_indices, pixels in stream_inputs(model, dataset, indices, batch_size, workers, skip_bad):
            q, out = cache.query(model.base, pixels)
            queries.append(q)
            logits.append(out.float())
            labels.append(torch.from_numpy(dataset.labels[batch_indices]).to(model.device))
            done += len(batch_indices)
            if progress is not None:
                progress(done, len(indices))
    if not queries:
        raise InputError("no held-out image could be read")
    return torch.cat(queries), torch.cat(logits), torch.cat(labels)


def tune_grid(
    cache: KeyValueCache,
    queries: torch.Tensor,
    logits: torch.Tensor,
    labels: torch.Tensor,
    thetas: list[float],
    lams: list[float],
    query_batch: int = 1024,
) -> list[dict[str, Any]]:
    """Accuracy for every (θ, λ) (λ = 1 included: cache-only), from precomputed queries and logits."""
    if not thetas or not lams:
        raise InputError("the θ and λ grids must not be empty")
    for theta in thetas:
        if not theta > 0:
            raise InputError(f"θ values must be positive, got {theta}")
    for lam in lams:
        if not 0 <= lam <= 1:
            raise InputError(f"λ values must lie in [0, 1], got {lam}")
    grid_lams = sorted(set(lams) | {1.0})
    rows = []
    with torch.no_grad():
        for theta in thetas:
            log_pmem = torch.cat(
                [cache.log_pmem(queries[i : i + query_batch], theta) for i in range(0, len(queries), query_batch)]
            )
            MONITOR.record(log_pmem)  # a cache with non-finite keys or values must not yield accuracies
            MONITOR.check("in the cache's memory distribution")
            for lam in grid_lams:
                correct = int((mix(logits, log_pmem, lam).argmax(dim=1) == labels).sum())
                rows.append(
                    {
                        "theta": float(theta),
                        "lam": float(lam),
                        "cache_only": lam == 1.0,
                        "correct": correct,
                        "samples": len(labels),
                        "accuracy": correct / len(labels),
                    }
                )
    return rows


def summarize_grid(rows: list[dict[str, Any]], logits: torch.Tensor, labels: torch.Tensor) -> dict[str, Any]:
    """Best (θ, λ) with λ < 1, best cache-only θ, and the backbone's accuracy on the same images."""
    mixed = [r for r in rows if not r["cache_only"]] or rows
    only = [r for r in rows if r["cache_only"]]
    # Ties go to the smaller θ and λ: the gentlest setting that reaches the best accuracy.
    best = max(mixed, key=lambda r: (r["accuracy"], -r["theta"], -r["lam"]))
    best_only = max(only, key=lambda r: (r["accuracy"], -r["theta"]))
    n = len(labels)
    backbone_correct = int((logits.argmax(dim=1) == labels).sum())
    return {
        "samples": n,
        "backbone_accuracy": backbone_correct / n,
        "backbone_ci95": list(wilson_interval(backbone_correct, n)),
        "best_theta": best["theta"],
        "best_lam": best["lam"],
        "best_accuracy": best["accuracy"],
        "best_ci95": list(wilson_interval(best["correct"], n)),
        "cache_only_theta": best_only["theta"],
        "cache_only_accuracy": best_only["accuracy"],
        "cache_only_ci95": list(wilson_interval(best_only["correct"], n)),
    }


def write_grid(
    path: Path,
    rows: list[dict[str, Any]],
    summary: dict[str, Any],
    cache_meta: dict[str, Any],
    data_spec: DataSpec,
    data_description: str,
    retrieval: str,
    k: int,
) -> None:
    """The grid as Parquet (atomically), self-described like every report."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ..reports.writer import METADATA_KEY, canonical_json

    meta = {
        "audit": "cache-tune",
        "cache": {
            "fingerprint": cache_meta["fingerprint"],
            "layers": cache_meta["layers"],
            "count": cache_meta["count"],
            "model": cache_meta["model"]["name"],
        },
        "retrieval": retrieval,
        "k": k if retrieval == "knn" else None,
        "data": {"spec": asdict(data_spec), "description": data_description},
        "summary": summary,
        **environment(torch.device("cpu")),
    }
    table = pa.Table.from_pylist(rows).replace_schema_metadata({METADATA_KEY: canonical_json(meta).encode()})
    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)
