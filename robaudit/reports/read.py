"""Reading a report back: the rows as a DataFrame and the run metadata stored in the file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InputError
from .writer import METADATA_KEY

if TYPE_CHECKING:
    import pandas as pd


def read_metadata(path: Path | str) -> dict[str, Any]:
    import pyarrow.parquet as pq

    path = Path(path)
    _check(path)
    try:
        schema = pq.read_schema(path)
    except Exception as exc:
        raise InputError(f"{path} is not a readable Parquet file: {exc}") from exc
    raw = (schema.metadata or {}).get(METADATA_KEY)
    if raw is None:
        raise InputError(f"{path} is a Parquet file but not a robaudit report (no robaudit metadata)")
    meta: dict[str, Any] = json.loads(raw)
    return meta


def read_report(path: Path | str) -> tuple[pd.DataFrame, dict[str, Any]]:
    import pyarrow.parquet as pq

    path = Path(path)
    meta = read_metadata(path)
    try:
        frame = pq.read_table(path).to_pandas()
    except Exception as exc:
        raise InputError(f"cannot read rows of {path}: {exc}") from exc
    return frame, meta


def summarize(rows: pd.DataFrame, meta: dict[str, Any], source: Path | str) -> tuple[str, dict[str, Any]]:
    """A report's kind (its audit's name, or a derived table's ``kind``) and its summary.

    An audit report is summarized from its rows by the audit that wrote it; a derived table (a spectrum)
    stores its summary in its metadata.
    """
    from .. import plugins

    if "audit" in meta:
        try:
            audit = plugins.audits.get(str(meta["audit"]))
        except InputError as exc:
            raise InputError(f"{source}: {exc} (install the plugin that wrote it, or move the file away)") from None
        return str(meta["audit"]), audit.summarize(rows, meta)
    if "kind" in meta and isinstance(meta.get("summary"), dict):
        return str(meta["kind"]), dict(meta["summary"])
    raise InputError(f"{source} is a robaudit table but neither an audit report nor one with a stored summary")


def _check(path: Path) -> None:
    if path.is_dir():
        reports = sorted(path.glob("*.parquet"))
        hint = f"; it holds {', '.join(p.name for p in reports)}" if reports else ""
        raise InputError(f"{path} is a folder; name a report file inside it{hint}")
    if not path.exists():
        partial = path.with_name(path.name + ".partial")
        extra = f" (an unfinished run is in {partial}; finish it with --resume)" if partial.exists() else ""
        raise InputError(f"report {path} does not exist{extra}")
