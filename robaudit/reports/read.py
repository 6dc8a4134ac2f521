"""Reading a report back: the rows as a DataFrame and the run metadata stored in the file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from ..errors import InputError
from .writer import FORMAT_VERSION, METADATA_KEY

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
    try:
        meta = json.loads(raw)
    except ValueError as exc:
        raise InputError(f"{path}: its robaudit metadata is not valid JSON ({exc}); the file is damaged") from None
    if not isinstance(meta, dict):
        raise InputError(f"{path}: its robaudit metadata is a JSON {type(meta).__name__}, not an object; damaged")
    _check_types(meta, _META_TYPES, path, "")
    version = meta.get("format_version", FORMAT_VERSION if "audit" not in meta else None)
    if version != FORMAT_VERSION:
        raise InputError(
            f"{path} has report format_version {version!r}; this robaudit reads format {FORMAT_VERSION} "
            "(a report written by another version, or damaged)"
        )
    return meta


#: the metadata fields readers rely on and their JSON types; a report whose metadata says otherwise is damaged
_META_TYPES: dict[str, Any] = {
    "audit": str,
    "audit_repr": str,
    "kind": str,
    "summary": dict,
    "identity": dict,
    "versions": dict,
    "run_spec": {"data": {"source": str}, "model": {"name": str}},
    "model": {"model": str, "num_classes": int, "preprocessing": dict},
    "data": {"description": str, "class_names": (list, type(None)), "selected": int, "skipped": int},
}
#: fields that are null in a report of an audit run without a model (``Audit.needs_model`` False)
_WITHOUT_MODEL = {"run_spec.model", "model"}


def _check_types(meta: dict[str, Any], types: dict[str, Any], path: Path, prefix: str) -> None:
    for key, kind in types.items():
        if key not in meta:
            continue
        value, expected = meta[key], dict if isinstance(kind, dict) else kind
        if value is None and f"{prefix}{key}" in _WITHOUT_MODEL:
            continue
        if not isinstance(value, expected) or (isinstance(value, bool) and expected is int):
            names = " or ".join(t.__name__ for t in (expected if isinstance(expected, tuple) else (expected,)))
            raise InputError(
                f"{path}: metadata field {prefix}{key} is a {type(value).__name__}, not a {names}; the file is "
                "damaged or was not written by robaudit"
            )
        if isinstance(kind, dict):
            _check_types(value, kind, path, f"{prefix}{key}.")


def read_report(path: Path | str) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The rows and the metadata of a report; an audit report's columns are checked against its audit's."""
    import pyarrow.parquet as pq

    path = Path(path)
    meta = read_metadata(path)
    try:
        table = pq.read_table(path)
    except Exception as exc:
        raise InputError(f"cannot read rows of {path}: {type(exc).__name__}: {exc}") from None
    if "audit" in meta:
        table = _conform(table, _audit_of(meta, path).schema(), path)
    return table.to_pandas(), meta


def _audit_of(meta: dict[str, Any], source: Path | str) -> Any:
    from .. import plugins

    try:
        return plugins.audits.get(str(meta["audit"]))
    except InputError as exc:
        raise InputError(f"{source}: {exc} (install the plugin that wrote it, or move the file away)") from None


def _conform(table: pa.Table, schema: pa.Schema, path: Path) -> pa.Table:
    """``table`` with every column of ``schema``, of its type; a missing or mistyped column is an input error."""
    missing = [name for name in schema.names if name not in table.column_names]
    if missing:
        raise InputError(
            f"{path} lacks the column(s) {', '.join(missing)} of its audit; the file is damaged or was not "
            "written by robaudit"
        )
    for field in schema:
        column = table.schema.field(field.name)
        if column.type != field.type:
            try:
                cast = table[field.name].cast(field.type)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                raise InputError(
                    f"{path}: column {field.name!r} holds {column.type}, where its audit writes {field.type}; "
                    "the file is damaged or was not written by robaudit"
                ) from None
            table = table.set_column(table.schema.get_field_index(field.name), field.name, cast)
    return table


def summarize(rows: pd.DataFrame, meta: dict[str, Any], source: Path | str) -> tuple[str, dict[str, Any]]:
    """A report's kind (its audit's name, or a derived table's ``kind``) and its summary.

    An audit report is summarized from its rows by the audit that wrote it; a derived table (a spectrum)
    stores its summary in its metadata.
    """
    if "audit" in meta:
        return str(meta["audit"]), _audit_of(meta, source).summarize(rows, meta)
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
