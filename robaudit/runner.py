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

Under torchrun (:mod:`robaudit.distributed`) the ranks of one job share one run: every rank prepares and
computes its share of the chunks into the report's ``.partial/`` folder, rank 0 holds the report's lock and
is the one that opens and finishes the report. The report is the single process's, row for row.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from . import distributed
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
    #: seconds this process spent preparing (model, data, plan), computing its chunks, joining the report
    #: (rank 0), and, under torchrun, at the meeting points with the other ranks (waiting for them included)
    timings: dict[str, float] = field(default_factory=dict)


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


@dataclass
class _Run:
    """Everything a run needs once its inputs are checked and loaded: what :func:`_prepare` returns."""

    spec: RunSpec
    model: LoadedModel | None
    device: Any
    dataset: Dataset
    selection: np.ndarray
    chunks: list[Chunk]
    identity: dict[str, Any]
    path: Path


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
    identify them for ``resume``. Under torchrun each rank computes its share of the chunks and rank 0
    writes the report (see :func:`_run_ranks`); a single process does it all.
    """
    from .reports.writer import ReportWriter

    started = time.perf_counter()
    world = distributed.init()
    # every rank prepares; if any of them cannot, every rank stops, with that rank's message
    run = distributed.phase(
        "preparing the run", lambda: _prepare(audit, spec, out_dir, resume, overwrite, model=model, dataset=dataset)
    )
    spec, model, chunks = run.spec, run.model, run.chunks
    timings = {"prepare": time.perf_counter() - started}
    if world.active:
        return _run_ranks(audit, run, resume=resume, overwrite=overwrite, progress=progress, timings=timings)
    writer = ReportWriter(run.path, audit.schema(), run.identity, resume=resume, overwrite=overwrite)
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
        with _timed(timings, "compute"):
            _compute(audit, run, writer.write_chunk, todo, progress)
        with _timed(timings, "join"):
            skipped = _skipped(sorted(writer.partial.glob("chunk-*.parquet")))
            path = writer.finish(_metadata(audit, run, skipped))
    exported = [export.write(path, export.target) for export in audit.exports()]
    return RunResult(
        path,
        len(chunks),
        len(done & {c.id for c in chunks}),
        skipped,
        time.perf_counter() - started,
        model,
        exported,
        timings,
    )


@contextmanager
def _timed(timings: dict[str, float], name: str) -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    finally:
        timings[name] = timings.get(name, 0.0) + time.perf_counter() - start


def _prepare(
    audit: Audit,
    spec: RunSpec,
    out_dir: Path,
    resume: bool,
    overwrite: bool,
    *,
    model: LoadedModel | None = None,
    dataset: Dataset | None = None,
) -> _Run:
    """Check the outputs, load the model and the data, plan the chunks and state the run's identity."""
    from .reports.writer import check_folder, check_modes, check_output_file

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
    path = report_path(out_dir, audit.name, shard)
    return _Run(spec, model, device, dataset, selection, chunks, identity, path)


def _metadata(audit: Audit, run: _Run, skipped: int) -> dict[str, Any]:
    """The run metadata a finished report carries beside its identity."""
    spec, model, dataset = run.spec, run.model, run.dataset
    return {
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
            "selected": len(run.selection),
            "chunks": len(run.chunks),
            "skipped": skipped,
        },
        **environment(run.device),
    }


def _run_ranks(
    audit: Audit,
    run: _Run,
    *,
    resume: bool,
    overwrite: bool,
    progress: ProgressHook | None,
    timings: dict[str, float],
) -> RunResult:
    """One run shared by the ranks of a torchrun job.

    Rank 0 holds the report's lock for the whole job, checks and opens the partial folder (new, resumed or
    overwritten) and tells the others which chunks are done; the chunks still to do are dealt out round-robin
    (the ``--shard`` rule, over the chunks left, so a resumed run is balanced whatever the number of ranks).
    Every rank writes its chunk files into the shared ``.partial/`` folder; the others write chunk files
    only. When every rank is through, rank 0 joins the chunks into the report and writes its exports.
    """
    from .reports.writer import ReportWriter, canonical_json, write_chunk_file

    started = time.perf_counter() - timings["prepare"]
    world = distributed.world()
    chunks = run.chunks
    meetings = distributed.meeting_seconds()
    distributed.same_everywhere(canonical_json(run.identity), "the run (model, data and options)")
    writer: ReportWriter | None = None

    def open_report() -> tuple[bool, list[int]]:
        nonlocal writer
        writer = ReportWriter(run.path, audit.schema(), run.identity, resume=resume, overwrite=overwrite)
        try:
            if writer.complete:
                return True, [c.id for c in chunks]
            distributed.clear_markers(writer.partial)
            return False, sorted(writer.verified_chunks({c.id: c.indices for c in chunks}))
        except BaseException:
            writer.close()
            raise

    complete, done_ids = distributed.phase("opening the report", open_report, on="main")
    done = set(done_ids)
    try:
        if not complete:
            todo = [c for c in chunks if c.id not in done]
            mine = todo[world.rank :: world.size]
            partial = run.path.with_name(run.path.name + ".partial")
            schema = audit.schema()
            hook = _all_ranks_progress(progress, writer, todo, mine) if writer is not None else progress
            error: BaseException | None = None
            try:
                with _timed(timings, "compute"):
                    _compute(
                        audit,
                        run,
                        lambda chunk_id, table: write_chunk_file(partial, schema, chunk_id, table),
                        mine,
                        hook,
                        after_chunk=lambda: distributed.check_peers(partial),
                    )
            except BaseException as exc:  # the others stop at their next chunk, then every rank meets below
                error = exc
                distributed.mark_failed(partial, exc)
            distributed.phase("computing the chunks", lambda: None, own_error=error)
            if progress is not None and world.main:  # the last line: every rank's chunks are in
                total = sum(len(c.indices) for c in todo)
                progress(total, total)

        def finish() -> tuple[int, list[str]]:
            assert writer is not None
            if complete:
                return _skipped([writer.path]), [export.write(writer.path, export.target) for export in audit.exports()]
            with _timed(timings, "join"):
                skipped = _skipped(sorted(writer.partial.glob("chunk-*.parquet")))
                path = writer.finish({**_metadata(audit, run, skipped), "processes": world.size})
            return skipped, [export.write(path, export.target) for export in audit.exports()]

        skipped, exported = distributed.phase("writing the report", finish, on="main")
    finally:
        if writer is not None:
            writer.close()
    # the meetings' own time; rank 0's join is inside its last meeting, and counted as the join only
    timings["meet"] = distributed.meeting_seconds() - meetings - timings.get("join", 0.0)
    return RunResult(
        run.path,
        len(chunks),
        len(done & {c.id for c in chunks}),
        skipped,
        time.perf_counter() - started,
        run.model,
        exported if world.main else [],
        timings,
    )


def _all_ranks_progress(
    progress: ProgressHook | None, writer: ReportWriter, todo: list[Chunk], mine: list[Chunk]
) -> ProgressHook | None:
    """Rank 0's progress: its own images plus the other ranks' finished chunks, as files in ``.partial/``."""
    if progress is None:
        return None
    own = {c.id for c in mine}
    others = {c.id: len(c.indices) for c in todo if c.id not in own}
    total = sum(len(c.indices) for c in todo)
    looked, seen = -1.0, 0

    def hook(processed: int, _: int) -> None:
        nonlocal looked, seen
        now = time.monotonic()
        if now - looked >= 1.0:  # one folder listing a second at most
            looked = now
            seen = sum(others.get(chunk_id, 0) for chunk_id in writer.done_chunks())
        progress(processed + seen, total)

    return hook


def _compute(
    audit: Audit,
    run: _Run,
    write_chunk: Callable[[int, pa.Table], None],
    todo: list[Chunk],
    progress: ProgressHook | None,
    after_chunk: Callable[[], None] | None = None,
) -> None:
    """Compute the chunks ``todo``, handing each finished chunk's table to ``write_chunk``."""
    spec, model, device, dataset = run.spec, run.model, run.device, run.dataset
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
            write_chunk(chunk.id, _chunk_table(audit, chunk, dataset.labels, parts, failures, _defense(model)))
            parts, failures = [], []
            if after_chunk is not None:
                after_chunk()
