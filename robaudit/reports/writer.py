"""Streaming, resumable, atomic Parquet writing.

While a run is in progress each finished chunk is written to its own file in ``REPORT.parquet.partial/``
(written to a temporary name, then renamed, so a chunk file is either complete or absent). The run's
identity is stored beside them; ``--resume`` checks it and skips the chunks already there, so a killed run
loses at most the chunk in flight. ``finish`` joins the chunk files into one Parquet file, one row group
per chunk in chunk order, with the run metadata in the file's key-value metadata under ``robaudit``, writes
it under a temporary name and renames it into place.

A writer holds the report's lock (:mod:`.lock`) from construction to :meth:`ReportWriter.close`, so no
other process can write, resume or overwrite the same report meanwhile. On resume every finished chunk
file is checked before it is trusted (:meth:`ReportWriter.verified_chunks`): a file that a crash or a file
system left truncated, or that does not hold exactly the images the plan gives its chunk, is deleted and
computed again.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import InputError, RunError
from .lock import ReportLock

log = logging.getLogger(__name__)

METADATA_KEY = b"robaudit"
FORMAT_VERSION = 1
_CHUNK_RE = re.compile(r"^chunk-(\d+)\.parquet$")


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def _differences(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    keys = sorted(set(old) | set(new))
    out = []
    for k in keys:
        a, b = old.get(k), new.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, f"{prefix}{k}.")
        elif canonical_json(a) != canonical_json(b):
            out.append(f"{prefix}{k} ({a!r} -> {b!r})")
    return out


class ReportWriter:
    """Writes one report; ``identity`` is everything that determines its rows (checked on resume)."""

    def __init__(
        self, path: Path, schema: pa.Schema, identity: dict[str, Any], *, resume: bool = False, overwrite: bool = False
    ) -> None:
        check_modes(resume, overwrite)
        self.path = path
        self.schema = schema
        self.identity = json.loads(canonical_json(identity))
        self.partial = path.with_name(path.name + ".partial")
        self._identity_file = self.partial / "identity.json"
        #: True when ``path`` already holds this very run, finished (``--resume`` then has nothing to do)
        self.complete = False
        prepare_folder(path.parent)
        self._lock = ReportLock(path)
        # Taken before anything is looked at: another run may be about to rename or delete these files.
        self._lock.acquire()
        try:
            self._open(resume=resume, overwrite=overwrite)
        except BaseException:
            self._lock.release()
            raise

    def _open(self, *, resume: bool, overwrite: bool) -> None:
        path = self.path
        if path.exists() and not path.is_file():
            raise InputError(f"{path} exists and is not a file; move it away or choose another --out")
        if path.exists() and not overwrite:
            if resume and self._finished_identity() == self.identity:
                self.complete = True
                return
            raise InputError(
                f"report {path} already exists"
                + (" from a run with a different spec" if resume else "")
                + "; pass --overwrite to replace it, or choose another --out"
            )
        if self.partial.exists() or self.partial.is_symlink():
            if not self.partial.is_dir():
                raise InputError(f"{self.partial} exists and is not a folder; move it away or choose another --out")
            if overwrite:
                shutil.rmtree(self.partial)
            elif resume:
                self._check_identity()
            else:
                raise InputError(
                    f"an interrupted run left {self.partial}; pass --resume to continue it or --overwrite to start over"
                )
        self.partial.mkdir(parents=True, exist_ok=True)
        if not self._identity_file.exists():
            self._atomic_write_text(self._identity_file, json.dumps(self.identity, indent=2, sort_keys=True))

    def close(self) -> None:
        """Release the report's lock (idempotent); the partial chunks stay for ``--resume``."""
        self._lock.release()

    def __enter__(self) -> ReportWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _finished_identity(self) -> dict[str, Any] | None:
        try:  # anything unreadable counts as another run's report: it is replaced only with --overwrite
            meta = json.loads((pq.read_schema(self.path).metadata or {})[METADATA_KEY])
        except Exception:
            return None
        identity = meta.get("identity") if isinstance(meta, dict) else None
        return identity if isinstance(identity, dict) else None

    def _check_identity(self) -> None:
        try:
            old = json.loads(self._identity_file.read_text())
        except (OSError, ValueError) as exc:
            raise InputError(f"cannot resume: {self._identity_file} is unreadable ({exc}); use --overwrite") from exc
        if not isinstance(old, dict):
            raise InputError(f"cannot resume: {self._identity_file} is damaged (not a JSON object); use --overwrite")
        if old != self.identity:
            diff = "; ".join(_differences(old, self.identity)[:5])
            raise InputError(
                f"cannot resume {self.partial}: it was started with a different run spec ({diff}); "
                "use the same options, or --overwrite to start over"
            )

    @staticmethod
    def _atomic_write_text(path: Path, text: str) -> None:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, path)

    def done_chunks(self) -> set[int]:
        """Ids of the chunk files present (unchecked; see :meth:`verified_chunks`)."""
        return {int(m.group(1)) for p in self.partial.iterdir() if (m := _CHUNK_RE.match(p.name))}

    def verified_chunks(self, plan: Mapping[int, np.ndarray]) -> set[int]:
        """Ids of the finished chunks that can be trusted; every other chunk file is deleted (it is recomputed).

        ``plan`` maps each chunk id of this run to the sample indices it covers. A chunk file is kept when it
        reads completely (its footer and every page), has this report's columns, and its rows cover exactly
        the chunk's planned images (skipped ones included).
        """
        done = set()
        for chunk_id in sorted(self.done_chunks()):
            file = self.partial / f"chunk-{chunk_id:06d}.parquet"
            problem = self._chunk_problem(file, plan.get(chunk_id))
            if problem is None:
                done.add(chunk_id)
                continue
            log.warning("%s: %s; computing chunk %d again", file, problem, chunk_id)
            file.unlink()
        return done

    def _chunk_problem(self, file: Path, planned: np.ndarray | None) -> str | None:
        if planned is None:
            return "this run's plan has no such chunk"
        try:
            table = pq.read_table(file)
        except Exception as exc:  # pyarrow raises ArrowInvalid, OSError... for a truncated or damaged file
            return f"it is truncated or damaged ({type(exc).__name__})"
        if table.schema.remove_metadata() != self.schema.remove_metadata():
            return "its columns differ from this audit's"
        indices = np.unique(table["index"].to_numpy(zero_copy_only=False)) if table.num_rows else np.array([])
        if not np.array_equal(indices, np.unique(np.asarray(planned))):
            return "it holds other images than the ones planned for this chunk"
        return None

    def write_chunk(self, chunk_id: int, table: pa.Table) -> None:
        write_chunk_file(self.partial, self.schema, chunk_id, table)

    def finish(self, metadata: dict[str, Any]) -> Path:
        """Join the chunks into the final report (atomically) and remove the partial folder."""
        chunk_files = sorted(self.partial.glob("chunk-*.parquet"), key=lambda p: int(_CHUNK_RE.match(p.name).group(1)))  # type: ignore[union-attr]
        meta = {"format_version": FORMAT_VERSION, "identity": self.identity, **metadata}
        schema = self.schema.with_metadata({METADATA_KEY: canonical_json(meta).encode()})
        tmp = self.path.with_name(self.path.name + ".tmp")
        with pq.ParquetWriter(tmp, schema) as writer:
            for f in chunk_files:
                try:
                    table = pq.read_table(f).cast(self.schema).replace_schema_metadata(schema.metadata)
                except Exception as exc:  # damaged after it was written or verified: --resume recomputes it
                    raise RunError(
                        f"chunk file {f} cannot be read ({type(exc).__name__}); run again with --resume to "
                        "compute that chunk again"
                    ) from exc
                writer.write_table(table, row_group_size=max(1, table.num_rows))
        os.replace(tmp, self.path)
        shutil.rmtree(self.partial)
        self.close()
        return self.path


def write_chunk_file(partial: Path, schema: pa.Schema, chunk_id: int, table: pa.Table) -> None:
    """Write one finished chunk into a run's partial folder (temporary name, then renamed).

    The lock holder writes through :meth:`ReportWriter.write_chunk`; the other ranks of a torchrun job,
    whose rank 0 holds the lock on the job's behalf, call this directly: each chunk has its own file names,
    so ranks never write the same file.
    """
    table = table.cast(schema)
    final = partial / f"chunk-{chunk_id:06d}.parquet"
    tmp = final.with_name(final.name + ".tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, final)


def check_modes(resume: bool, overwrite: bool) -> None:
    if resume and overwrite:
        raise InputError("--resume continues a run and --overwrite discards it: pass one of them, not both")


def check_output_file(path: Path, option: str) -> None:
    """Before anything is computed: ``path`` can be written (its folder exists or can be made; it is no folder)."""
    if path.is_dir():
        raise InputError(f"{option} {path} is a folder; name the file to write")
    prepare_folder(path.parent, option)


def check_folder(folder: Path, option: str = "--out") -> None:
    """Whether ``folder`` is, or can be created as, a writable folder; creates nothing."""
    existing = folder
    while not (existing.exists() or existing.is_symlink()) and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise InputError(
            f"{option} {folder} is not a folder (it names an existing file or a broken link)"
            if existing == folder
            else f"{option} {folder} is not a folder ({existing} is an existing file or a broken link)"
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        raise InputError(f"{option} {folder}: {existing} is not writable")


def prepare_folder(folder: Path, option: str = "--out") -> None:
    """Create ``folder`` (and its parents) for writing, or say in one line why it cannot be."""
    check_folder(folder, option)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"{option} {folder}: cannot create the folder ({exc.strerror or exc})") from None


def write_table(path: Path, table: pa.Table, kind: str, summary: dict[str, Any], metadata: dict[str, Any]) -> Path:
    """Write a table that is not an audit's rows (e.g. ``cache tune``'s grid) as a report of ``kind``:
    atomically, with the same metadata envelope as an audit report and its ``summary`` stored with it (there
    are no per-image rows to derive it from), under the report's lock. Report readers show it by its kind."""
    from .lock import ReportLock

    meta = {"format_version": FORMAT_VERSION, "kind": kind, "summary": summary, **metadata}
    with ReportLock(path):
        tmp = path.with_name(path.name + ".tmp")
        pq.write_table(table.replace_schema_metadata({METADATA_KEY: canonical_json(meta).encode()}), tmp)
        os.replace(tmp, path)
    return path
