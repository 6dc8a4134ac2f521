"""Running one audit over a data source into a report: the library call behind every audit command.

The run is described by a frozen :class:`RunSpec`. Its *identity* (everything that determines the rows:
model and the sha256 of its weights, defenses and their artifacts, data and its fingerprint, subset, seed,
chunking, shard, audit parameters) is
stored with the partial results and in the final report, so that ``--resume`` can only continue the very
same run. Batch size, workers and device are not part of it: they change speed, not results.

The runner is the only writer: audits return rows, and what an audit asks to export from its finished
report (``Audit.exports``) is written here too, with the target checked before anything is computed. An
audit of the data alone (``Audit.needs_model`` False) runs without a model; the samples of the data must be
what the audit takes (``Audit.inputs``: images in [0, 1], or perturbations).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from .audits.base import Audit, AuditBatch
from .data import (
    Chunk,
    Dataset,
    DataSpec,
    LoadedBatch,
    check_seed,
    check_workers,
    iter_batches,
    load_dataset,
    parse_shard,
    plan_chunks,
    select_samples,
    shard_chunks,
)
from .defenses.base import compose, describe
from .errors import InputError
from .models import LoadedModel, ModelSpec, Preprocessing, load_model, resolve_device
from .models.finite import MONITOR, on_batch
from .models.precision import apply_precision, check_precision
from .provenance import environment

if TYPE_CHECKING:
    from .reports.writer import ReportWriter

#: called with (images done so far, images in this run) as the run progresses
ProgressHook = Callable[[int, int], None]


@dataclass(frozen=True)
class RunSpec:
    #: None for an audit of the data alone
    model: ModelSpec | None
    data: DataSpec
    seed: int = 0
    chunk_size: int = 256
    batch_size: int = 64
    workers: int = 0
    device: str = "auto"
    shard: str | None = None
    defenses: tuple[str, ...] = ()
    #: the forward's numeric precision: fp32, bf16 or fp16 (autocast; see robaudit.models.precision)
    precision: str = "fp32"

    def __post_init__(self) -> None:
        # Checked before anything is loaded or written, so a typo never leaves a partial run behind.
        for option, value, least in (("--batch-size", self.batch_size, 1), ("--chunk-size", self.chunk_size, 1)):
            if value < least:
                raise InputError(f"{option} must be >= {least}, got {value}")
        parse_shard(self.shard)
        check_seed(self.seed)
        check_workers(self.workers)
        check_precision(self.precision)


@dataclass
class RunResult:
    path: Path
    chunks_total: int
    chunks_resumed: int
    skipped: int
    seconds: float
    model: LoadedModel | None = field(repr=False)
    #: what the audit's exports wrote, one message each
    exported: list[str] = field(default_factory=list)


def report_path(out_dir: Path, audit_name: str, shard: tuple[int, int]) -> Path:
    i, n = shard
    return out_dir / (f"{audit_name}.parquet" if n == 1 else f"{audit_name}.shard-{i}-of-{n}.parquet")


def _chunk_table(
    audit: Audit,
    chunk: Chunk,
    dataset_labels: np.ndarray,
    parts: list[dict[str, np.ndarray]],
    failures: list[tuple[int, str]],
    defense: str,
) -> pa.Table:
    columns: dict[str, list[Any]] = {name: [] for name in audit.schema().names}
    for part in parts:
        n = len(part["index"])
        for name in columns:
            columns[name].extend(part[name].tolist() if name in part else [None] * n)
    for index, reason in failures:
        row = {
            "chunk": chunk.id,
            "index": index,
            "label": int(dataset_labels[index]),
            "skipped": True,
            "skip_reason": reason,
            "defense": defense,
        }
        for name in columns:
            columns[name].append(row.get(name))
    table = pa.table(columns, schema=audit.schema())
    return table.sort_by("index") if failures else table


def _audit_rows(
    audit: Audit, model: LoadedModel | None, device: Any, chunk: Chunk, batch: LoadedBatch, dataset: Dataset
) -> dict[str, np.ndarray]:
    import torch

    if dataset.kind == "images":
        batch.check_pixels()
    elif not bool(torch.isfinite(batch.images).all()):
        raise InputError(f"input samples contain NaN or inf (data indices {batch.indices[:5].tolist()}...)")
    labels = dataset.labels[batch.indices]
    audit_batch = AuditBatch(
        batch.indices,
        batch.images.to(device),
        torch.from_numpy(labels).to(device, non_blocking=True),
        dataset.sample_info(batch.indices),
    )
    # One check per batch, whatever the audit: non-finite logits or input gradients anywhere in the batch's
    # forward and backward passes stop the run (recorded on the device; read once here).
    MONITOR.reset()
    where = on_batch(batch.indices)
    try:
        rows = audit.run_batch(model, audit_batch)  # type: ignore[arg-type]  # None only for audits without a model
    except Exception:
        MONITOR.check(where)  # a NaN that made the audit itself fail is the error to report
        raise
    MONITOR.check(where)
    defense = rows.pop("defense", None)
    sample = rows.pop("sample", np.arange(len(batch.indices)))
    n = len(sample)
    rows.update(
        chunk=np.full(n, chunk.id, dtype=np.int32),
        index=batch.indices[sample],
        label=labels[sample],
        skipped=np.zeros(n, dtype=bool),
        defense=defense if defense is not None else np.full(n, _defense(model), dtype=object),
    )
    return rows


def _defense(model: LoadedModel | None) -> str:
    return describe(model.defenses) if model is not None else "none"


def _skipped(files: list[Path]) -> int:
    import pyarrow.parquet as pq

    return int(sum(pq.read_table(f, columns=["skipped"])["skipped"].to_numpy().sum() for f in files))


def run_audit(
    audit: Audit,
    spec: RunSpec,
    out_dir: Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: ProgressHook | None = None,
    model: LoadedModel | None = None,
    dataset: Dataset | None = None,
) -> RunResult:
    """Run ``audit`` as ``spec`` says and write ``out_dir/<audit>.parquet``.

    ``model`` and ``dataset``, when given (the Python API's objects in memory), are used instead of loading
    ``spec.model`` and ``spec.data``; ``spec`` still names them in the report, and their fingerprints
    identify them for ``resume``."""
    from .reports.writer import ReportWriter, check_folder, check_modes, check_output_file

    started = time.perf_counter()
    # Output problems are found before the model and the data are loaded.
    check_modes(resume, overwrite)
    check_folder(out_dir)
    spec = audit.adjust_spec(spec)
    for export in audit.exports():
        check_output_file(export.target, export.option)
    if model is not None:
        if spec.defenses:
            raise InputError("defend a model given as an object before the run (robaudit.defend), not through the spec")
        if model.precision != spec.precision:
            model = apply_precision(model, spec.precision)
        audit.prepare(model)
    elif spec.model is not None:
        model = compose(load_model(spec.model, spec.device, precision=spec.precision), list(spec.defenses))
        audit.prepare(model)
    elif audit.needs_model:
        raise InputError(f"the {audit.name} audit needs a model: pass --model")
    elif spec.defenses:
        raise InputError("--defense needs a --model to defend")
    device = model.device if model is not None else resolve_device(spec.device)
    if dataset is None:
        dataset = load_dataset(spec.data, model.preprocessing if model is not None else Preprocessing())
    if dataset.kind != audit.inputs:
        raise InputError(f"{spec.data.source} holds {dataset.kind}, but the {audit.name} audit takes {audit.inputs}")
    if model is not None and dataset.kind == "images" and dataset.labels.max() >= model.num_classes:
        raise InputError(
            f"the data has labels up to {int(dataset.labels.max())} but the model has "
            f"{model.num_classes} outputs; pass --num-classes or use matching weights"
        )
    shard = parse_shard(spec.shard)
    selection = select_samples(dataset.labels, spec.data, spec.seed)
    chunks = shard_chunks(plan_chunks(selection, spec.chunk_size), shard)
    identity = {
        "audit": audit.name,
        "params": audit.params,
        "model": asdict(spec.model) if spec.model is not None else None,
        "weights_sha256": model.provenance.get("weights_sha256") if model is not None else None,
        # the weights themselves: pretrained weights from a hub may change without any path changing
        "model_fingerprint": model.fingerprint if model is not None else None,
        "defenses": [{"repr": repr(d), "artifacts": d.artifacts()} for d in model.defenses] if model else [],
        # --on-bad-image is left out: chunks finished under "fail" held no bad image, so a run stopped by
        # one can be resumed with "skip", as the error message suggests.
        "data": {k: v for k, v in asdict(spec.data).items() if k != "on_bad_image"},
        "data_fingerprint": dataset.fingerprint(),
        "seed": spec.seed,
        "chunk_size": spec.chunk_size,
        **({"batch_size": spec.batch_size} if audit.batch_dependent else {}),
        # fp32 runs keep the identity they always had
        **({"precision": spec.precision} if spec.precision != "fp32" else {}),
        "shard": list(shard),
    }
    writer = ReportWriter(
        report_path(out_dir, audit.name, shard), audit.schema(), identity, resume=resume, overwrite=overwrite
    )
    with writer:
        if writer.complete:
            return RunResult(
                writer.path,
                len(chunks),
                len(chunks),
                _skipped([writer.path]),
                time.perf_counter() - started,
                model,
                [export.write(writer.path, export.target) for export in audit.exports()],
            )
        done = writer.verified_chunks({c.id: c.indices for c in chunks})
        todo = [c for c in chunks if c.id not in done]
        skipped = _compute(audit, spec, model, device, dataset, writer, todo, progress)
        metadata = {
            "audit": audit.name,
            "audit_repr": repr(audit),
            "run_spec": asdict(spec),
            "seed": spec.seed,
            "model": {
                **model.provenance,
                "num_classes": model.num_classes,
                "preprocessing": model.preprocessing.as_dict(),
            }
            if model is not None
            else None,
            "data": {
                "description": dataset.description,
                "num_classes": dataset.num_classes,
                "class_names": dataset.class_names,
                "selected": len(selection),
                "chunks": len(chunks),
                "skipped": skipped,
            },
            **environment(device),
        }
        path = writer.finish(metadata)
    exported = [export.write(path, export.target) for export in audit.exports()]
    return RunResult(
        path, len(chunks), len(done & {c.id for c in chunks}), skipped, time.perf_counter() - started, model, exported
    )


def _compute(
    audit: Audit,
    spec: RunSpec,
    model: LoadedModel | None,
    device: Any,
    dataset: Dataset,
    writer: ReportWriter,
    todo: list[Chunk],
    progress: ProgressHook | None,
) -> int:
    """Compute the chunks ``todo`` into ``writer``'s partial folder; returns the skipped images of the run."""
    total = sum(len(c.indices) for c in todo)
    processed = 0
    parts: list[dict[str, np.ndarray]] = []
    failures: list[tuple[int, str]] = []
    for chunk, last, batch in iter_batches(dataset, todo, spec.batch_size, spec.workers, device=device):
        if batch.failures and spec.data.on_bad_image == "fail":
            index, reason = batch.failures[0]
            raise InputError(
                f"cannot decode image {index} ({reason}); pass --on-bad-image skip to skip "
                "unreadable files (they are counted in the report)"
            )
        failures += batch.failures
        if len(batch.indices):
            parts.append(_audit_rows(audit, model, device, chunk, batch, dataset))
        processed += len(batch.indices) + len(batch.failures)
        if progress is not None:
            progress(processed, total)
        if last:
            writer.write_chunk(chunk.id, _chunk_table(audit, chunk, dataset.labels, parts, failures, _defense(model)))
            parts, failures = [], []
    return _skipped(sorted(writer.partial.glob("chunk-*.parquet")))
