"""Joining the shards of one run, written by separate jobs, into the report a single run would have written.

``--shard i/n`` lets independent jobs (a Slurm array, several machines without a shared launcher) each
compute the chunks with ``id % n == i`` into ``<audit>.shard-i-of-n.parquet``. :func:`merge_shards` takes
the folders (or files) those jobs wrote and, per audit, checks before writing anything that the shards
belong together and cover the run exactly once:

- every shard has the same identity apart from its ``shard`` (same audit, options, model and weights,
  data and its fingerprint, seed, chunk size), and the same ``n``;
- every ``i`` in ``0..n-1`` is there, and none twice (the same shard from two jobs is refused, not
  guessed between);
- each shard's chunks are the ones ``--shard i/n`` gives it, as many as the run's plan has, and no image
  is in two shards.

The merged report has the rows of every chunk in chunk order (one row group per chunk), the identity of the
unsharded run (``shard`` [0, 1]) and the metadata of shard 0 with the whole run's chunk and skip counts,
plus ``merged_from``: so it equals, row for row, the report of one process running the whole run, and a
``--resume`` of that run finds it finished.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import InputError
from .lock import ReportLock
from .read import read_metadata
from .writer import METADATA_KEY, _differences, canonical_json, check_folder, prepare_folder

_SHARD = re.compile(r"^(?P<stem>.+)\.shard-(?P<i>\d+)-of-(?P<n>\d+)\.parquet$")


@dataclass(frozen=True)
class Shard:
    path: Path
    stem: str
    index: int
    count: int
    meta: dict[str, Any]


def find_shards(sources: list[Path]) -> list[Shard]:
    """The shard reports in ``sources`` (folders, searched without descending, or shard files)."""
    if not sources:
        raise InputError("name the folders (or files) holding the shards to merge")
    found: list[Shard] = []
    for source in sources:
        if source.is_dir():
            files = sorted(p for p in source.iterdir() if p.is_file() and _SHARD.match(p.name))
            if not files:
                raise InputError(f"{source} holds no shard report (<audit>.shard-i-of-n.parquet)")
        elif source.is_file():
            if not _SHARD.match(source.name):
                raise InputError(f"{source} is not a shard report (its name is not <audit>.shard-i-of-n.parquet)")
            files = [source]
        else:
            raise InputError(f"{source} does not exist")
        for path in files:
            if any(path.resolve() == s.path.resolve() for s in found):  # the same file named twice
                continue
            match = _SHARD.match(path.name)
            assert match is not None
            found.append(Shard(path, match["stem"], int(match["i"]), int(match["n"]), read_metadata(path)))
    return found


def merge_shards(out: Path, sources: list[Path], *, overwrite: bool = False) -> list[Path]:
    """Merge every run whose shards are in ``sources`` into ``out/<audit>.parquet``; returns the reports.

    Every group is checked before any report is written, so a refused merge writes nothing.
    """
    check_folder(out)
    groups: dict[str, list[Shard]] = {}
    for shard in find_shards(sources):
        groups.setdefault(shard.stem, []).append(shard)
    plans = [(stem, _check_group(stem, shards)) for stem, shards in sorted(groups.items())]
    targets = [out / f"{stem}.parquet" for stem, _ in plans]
    for target in targets:
        if (target.exists() or target.is_symlink()) and not overwrite:
            raise InputError(f"{target} already exists; pass --overwrite to replace it, or choose another folder")
    prepare_folder(out)
    return [_write(target, shards) for target, (_, shards) in zip(targets, plans, strict=True)]


def _check_group(stem: str, shards: list[Shard]) -> list[Shard]:
    """The shards of one run in shard order, or an InputError saying why they do not make one run."""
    counts = sorted({s.count for s in shards})
    if len(counts) > 1:
        raise InputError(f"the shards of {stem} come from runs split {' and '.join(map(str, counts))} ways")
    n = counts[0]
    by_index: dict[int, list[Shard]] = {}
    for shard in shards:
        by_index.setdefault(shard.index, []).append(shard)
    twice = {i: found for i, found in by_index.items() if len(found) > 1}
    if twice:
        i, found = min(twice.items())
        raise InputError(
            f"shard {i} of {n} of {stem} is given {len(found)} times ({', '.join(str(s.path) for s in found)}); "
            "keep one of them"
        )
    missing = sorted(set(range(n)) - set(by_index))
    if missing:
        names = ", ".join(map(str, missing))
        raise InputError(
            f"{stem}: shard {names} of {n} missing (every --shard i/{n} must be run and its folder given); "
            "nothing was merged"
        )
    ordered = [by_index[i][0] for i in range(n)]
    first = ordered[0]
    base = _unsharded(first)
    for shard in ordered:
        identity = shard.meta.get("identity")
        if not isinstance(identity, dict) or identity.get("shard") != [shard.index, n]:
            raise InputError(f"{shard.path}: its recorded shard does not match its name; was the file renamed?")
        if _unsharded(shard) != base:
            diff = "; ".join(_differences(base, _unsharded(shard))[:4])
            raise InputError(
                f"{shard.path} is not a shard of the same run as {first.path} ({diff}); merge only shards of one run"
            )
    selected = first.meta.get("data", {}).get("selected")
    chunk_size = base.get("chunk_size")
    if not isinstance(selected, int) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise InputError(f"{first.path}: its metadata does not say how many images and chunks the run has")
    total = math.ceil(selected / chunk_size)
    images: list[np.ndarray] = []
    for shard in ordered:
        planned = set(range(shard.index, total, n))
        if shard.meta.get("data", {}).get("chunks") != len(planned):
            raise InputError(
                f"{shard.path} holds {shard.meta.get('data', {}).get('chunks')} chunks, but shard {shard.index} "
                f"of a run of {total} chunks has {len(planned)}"
            )
        columns = pq.read_table(shard.path, columns=["chunk", "index"])
        if not set(np.unique(columns["chunk"].to_numpy()).tolist()) <= planned:
            raise InputError(f"{shard.path} holds chunks that --shard {shard.index}/{n} does not give it")
        images.append(np.unique(columns["index"].to_numpy()))
    distinct, times = np.unique(np.concatenate(images), return_counts=True)
    if (times > 1).any():
        index = int(distinct[times > 1][0])
        holders = [str(s.path) for s, held in zip(ordered, images, strict=True) if index in held]
        raise InputError(f"image {index} is in {' and '.join(holders)}; merge only shards of one run")
    return ordered


def _unsharded(shard: Shard) -> dict[str, Any]:
    """The shard's identity without its shard: what every shard of one run shares."""
    identity = shard.meta.get("identity")
    return {k: v for k, v in identity.items() if k != "shard"} if isinstance(identity, dict) else {}


def _write(target: Path, shards: list[Shard]) -> Path:
    """Join the shards' chunks in chunk order into ``target`` (temporary name, then renamed)."""
    first = shards[0].meta
    tables = [pq.read_table(s.path) for s in shards]
    schema = tables[0].schema.remove_metadata()
    meta = json.loads(canonical_json(first))
    meta["identity"]["shard"] = [0, 1]
    if isinstance(meta.get("run_spec"), dict):
        meta["run_spec"]["shard"] = None
    meta["data"]["chunks"] = sum(s.meta["data"]["chunks"] for s in shards)
    meta["data"]["skipped"] = sum(s.meta["data"]["skipped"] for s in shards)
    meta["merged_from"] = [
        {"shard": f"{s.index}/{s.count}", "path": str(s.path), **{k: s.meta.get(k) for k in ("host", "finished_at")}}
        for s in shards
    ]
    schema = schema.with_metadata({METADATA_KEY: canonical_json(meta).encode()})
    pieces: list[tuple[int, pa.Table]] = []
    for table in tables:
        table = table.cast(schema.remove_metadata())
        chunk = table["chunk"].to_numpy()
        for chunk_id in np.unique(chunk).tolist():
            pieces.append((chunk_id, table.filter(pa.array(chunk == chunk_id))))
    with ReportLock(target):
        tmp = target.with_name(target.name + ".tmp")
        with pq.ParquetWriter(tmp, schema) as writer:
            for _, piece in sorted(pieces, key=lambda p: p[0]):
                piece = piece.replace_schema_metadata(schema.metadata)
                writer.write_table(piece, row_group_size=max(1, piece.num_rows))
        os.replace(tmp, target)
    return target
