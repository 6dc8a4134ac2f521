"""Streaming, resumable, atomic Parquet writing.

While a run is in progress each finished chunk is written to its own file in ``REPORT.parquet.partial/``
(written to a temporary name, then renamed, so a chunk file is either complete or absent). The run's
identity is stored beside them; ``--resume`` checks it and skips the chunks already there, so a killed run
loses at most the chunk in flight. ``finish`` joins the chunk files into one Parquet file, one row group
per chunk in chunk order, with the run metadata in the file's key-value metadata under ``robaudit``, writes
it under a temporary name and renames it into place.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import InputError

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
        self.path = path
        self.schema = schema
        self.identity = json.loads(canonical_json(identity))
        self.partial = path.with_name(path.name + ".partial")
        self._identity_file = self.partial / "identity.json"
        #: True when ``path`` already holds this very run, finished (``--resume`` then has nothing to do)
        self.complete = False
        if path.exists() and not overwrite:
            if resume and self._finished_identity() == self.identity:
                self.complete = True
                return
            raise InputError(
                f"report {path} already exists"
                + (" from a run with a different spec" if resume else "")
                + "; pass --overwrite to replace it, or choose another --out"
            )
        if self.partial.exists():
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

    def _finished_identity(self) -> dict[str, Any] | None:
        try:
            raw = (pq.read_schema(self.path).metadata or {}).get(METADATA_KEY)
        except Exception:
            return None
        identity: dict[str, Any] | None = json.loads(raw).get("identity") if raw else None
        return identity

    def _check_identity(self) -> None:
        try:
            old = json.loads(self._identity_file.read_text())
        except (OSError, ValueError) as exc:
            raise InputError(f"cannot resume: {self._identity_file} is unreadable ({exc}); use --overwrite") from exc
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
        return {int(m.group(1)) for p in self.partial.iterdir() if (m := _CHUNK_RE.match(p.name))}

    def write_chunk(self, chunk_id: int, table: pa.Table) -> None:
        table = table.cast(self.schema)
        final = self.partial / f"chunk-{chunk_id:06d}.parquet"
        tmp = final.with_name(final.name + ".tmp")
        pq.write_table(table, tmp)
        os.replace(tmp, final)

    def finish(self, metadata: dict[str, Any]) -> Path:
        """Join the chunks into the final report (atomically) and remove the partial folder."""
        chunk_files = sorted(self.partial.glob("chunk-*.parquet"), key=lambda p: int(_CHUNK_RE.match(p.name).group(1)))  # type: ignore[union-attr]
        meta = {"format_version": FORMAT_VERSION, "identity": self.identity, **metadata}
        schema = self.schema.with_metadata({METADATA_KEY: canonical_json(meta).encode()})
        tmp = self.path.with_name(self.path.name + ".tmp")
        with pq.ParquetWriter(tmp, schema) as writer:
            for f in chunk_files:
                table = pq.read_table(f).cast(self.schema).replace_schema_metadata(schema.metadata)
                writer.write_table(table, row_group_size=max(1, table.num_rows))
        os.replace(tmp, self.path)
        shutil.rmtree(self.partial)
        return self.path
