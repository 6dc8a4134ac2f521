"""Tuning a cache's θ and λ on held-out data, and the grid report that records it.

The held-out images' query features and backbone logits are computed once; every (θ, λ) of the grid is then
evaluated from them, so a 33 × 33 grid costs one pass over the data. The query–key similarities are
computed once per batch of queries too (:class:`~robaudit.defenses.cache.SimilarityTable`): a θ then costs
one exp over the stored similarities and a sum per class, and all λ of a θ are mixed at once. λ = 1 rows
are the cache-only model. The grid is written as a Parquet file (one row per θ × λ) with the cache's and
the data's fingerprints in its metadata; the summary names the best (θ, λ), the best cache-only θ and the
backbone's own accuracy, and notes when a best value lies on the edge of its grid (the optimum may lie
beyond it).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..data import Dataset, DataSpec
from ..errors import InputError
from ..models import LoadedModel
from ..models.finite import MONITOR
from ..provenance import environment
from ..reports.stats import wilson_interval
from .cache import KeyValueCache
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
    """Accuracy for every (θ, λ) (λ = 1 included: cache-only), from precomputed queries and logits.

    Queries are scored in batches of at most ``query_batch`` (fewer when their similarity table would
    exceed the cache's ``table_rows``); each batch's similarities serve every θ.
    """
    if not thetas or not lams:
        raise InputError("the θ and λ grids must not be empty")
    for theta in thetas:
        if not theta > 0:
            raise InputError(f"θ values must be positive, got {theta}")
    for lam in lams:
        if not 0 <= lam <= 1:
            raise InputError(f"λ values must lie in [0, 1], got {lam}")
    grid_lams = sorted(set(lams) | {1.0})
    correct = np.zeros((len(thetas), len(grid_lams)), dtype=np.int64)
    batch = max(1, min(query_batch, cache.table_rows()))
    with torch.no_grad():
        log_net = F.log_softmax(logits.float(), dim=1)
        for start in range(0, len(queries), batch):
            part = slice(start, start + batch)
            log_pmem = cache.similarity_table(queries[part]).log_pmem(thetas)
            MONITOR.record(log_pmem)  # a cache with non-finite keys or values must not yield accuracies
            MONITOR.check("in the cache's memory distribution")
            for i in range(len(thetas)):
                correct[i] += mixed_correct(log_net[part], log_pmem[i], grid_lams, labels[part])
    n = len(labels)
    return [
        {
            "theta": float(theta),
            "lam": float(lam),
            "cache_only": lam == 1.0,
            "correct": int(correct[i, j]),
            "samples": n,
            "accuracy": int(correct[i, j]) / n,
        }
        for i, theta in enumerate(thetas)
        for j, lam in enumerate(grid_lams)
    ]


def mixed_correct(log_net: torch.Tensor, log_pmem: torch.Tensor, lams: list[float], labels: torch.Tensor) -> np.ndarray:
    """Correct predictions of :func:`~robaudit.defenses.cache.mix` at every λ of ``lams``, all λ at once.

    The arithmetic is ``mix``'s, element for element (the endpoints included), so each count equals what
    the defended model predicts at that λ.
    """
    out = np.zeros(len(lams), dtype=np.int64)
    inner = [j for j, lam in enumerate(lams) if 0 < lam < 1]
    for j, lam in enumerate(lams):
        if j not in inner:
            endpoint = log_pmem if lam >= 1 else log_net
            out[j] = int((endpoint.argmax(dim=1) == labels).sum())
    # at most ~16M floats of mixtures at a time
    step = max(1, (1 << 24) // max(1, log_net.numel()))
    for first in range(0, len(inner), step):
        chosen = inner[first : first + step]
        weights = [lams[j] for j in chosen]
        keep = torch.tensor([math.log1p(-lam) for lam in weights], device=log_net.device).view(-1, 1, 1)
        take = torch.tensor([math.log(lam) for lam in weights], device=log_net.device).view(-1, 1, 1)
        mixed = torch.logaddexp(keep + log_net, take + log_pmem)
        hits = (mixed.argmax(dim=2) == labels).sum(dim=1).cpu().numpy()
        out[chosen] = hits
    return out


def edge_notes(rows: list[dict[str, Any]], summary: dict[str, Any]) -> list[str]:
    """A note for each best value that is the first or last of its grid: the optimum may lie beyond it, so
    the note says which way to extend the grid. A grid of one value is a fixed choice and gets no note; nor
    does λ = 0 (the backbone alone: the cache does not help, there is nothing below)."""
    thetas = sorted({r["theta"] for r in rows})
    lams = sorted({r["lam"] for r in rows if not r["cache_only"]})
    checks = [("θ", summary["best_theta"], thetas), ("cache-only θ", summary["cache_only_theta"], thetas)]
    if summary["best_lam"] < 1:
        checks.append(("λ", summary["best_lam"], lams))
    notes = []
    for name, value, grid in checks:
        if len(grid) < 2 or value not in (grid[0], grid[-1]) or value == 0:
            continue
        option = "--lams" if name == "λ" else "--thetas"
        if value == grid[0]:
            where, way, suggestion = "smallest", "downwards", value / 2
        else:
            # λ approaches 1 (cache-only, always in the grid) from below; θ has no upper bound
            where, way, suggestion = "largest", "upwards", (1 + value) / 2 if name == "λ" else 2 * value
        notes.append(
            f"the best {name} ({value:g}) is the {where} of the grid: extend {option} {way} (e.g. to {suggestion:g})"
        )
    return notes


def summarize_grid(rows: list[dict[str, Any]], logits: torch.Tensor, labels: torch.Tensor) -> dict[str, Any]:
    """Best (θ, λ) with λ < 1, best cache-only θ, and the backbone's accuracy on the same images; ``note``
    says when a best value lies on the edge of its grid."""
    mixed = [r for r in rows if not r["cache_only"]] or rows
    only = [r for r in rows if r["cache_only"]]
    # Ties go to the smaller θ and λ: the gentlest setting that reaches the best accuracy.
    best = max(mixed, key=lambda r: (r["accuracy"], -r["theta"], -r["lam"]))
    best_only = max(only, key=lambda r: (r["accuracy"], -r["theta"]))
    n = len(labels)
    backbone_correct = int((logits.argmax(dim=1) == labels).sum())
    summary: dict[str, Any] = {
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
    summary["note"] = "; ".join(edge_notes(rows, summary)) or None
    return summary


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
    """The grid as a report of kind ``cache-tune`` (through the one writer: atomic, locked, self-described)."""
    import pyarrow as pa

    from ..reports.writer import write_table

    meta = {
        "cache": {
            "fingerprint": cache_meta["fingerprint"],
            "layers": cache_meta["layers"],
            "count": cache_meta["count"],
            "model": cache_meta["model"]["name"],
        },
        "retrieval": retrieval,
        "k": k if retrieval == "knn" else None,
        "data": {"spec": asdict(data_spec), "description": data_description},
        **environment(torch.device("cpu")),
    }
    write_table(path, pa.Table.from_pylist(rows), "cache-tune", summary, meta)
