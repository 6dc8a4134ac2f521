"""Report folders: finished reports read back, summarized, grouped into shards and model variants.

A folder holds one report per audit (``<audit>.parquet``); the shards ``<audit>.shard-i-of-n.parquet`` of
one run are read together as one :class:`Report`. Sub-folders holding reports are separate *variants*
(one model or defense setting of a suite each), compared side by side by the presentation layer; hidden
folders, ``figures/`` and unfinished runs (``*.partial``) are not reports.

Two ways in: :func:`load_reports` reads the reports directly in one folder and refuses anything unusable
(the gate judges them, so nothing may be left out silently); :func:`load_folder` reads a whole tree into
variants and lists the files it could not use, with the reason (a page should still show the rest).
Summaries come from the audit that wrote each report, through the audit registry.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InputError, RobauditError

if TYPE_CHECKING:
    import pandas as pd

    from ..audits.base import Audit

_SHARD = re.compile(r"^(?P<stem>.+)\.shard-(?P<i>\d+)-of-(?P<n>\d+)\.parquet$")
#: folders under a report folder that never hold reports
_NOT_VARIANTS = ("figures",)


@dataclass
class Report:
    """One audit's finished report (the shards of a sharded run together): rows, metadata and summary."""

    #: the audit name (``meta["audit"]``) or, for a table with a stored summary, its ``kind``
    kind: str
    paths: list[Path]
    rows: pd.DataFrame
    meta: dict[str, Any]
    summary: dict[str, Any]
    #: the report's name relative to its variant's folder (set by :func:`load_folder`)
    name: str = ""

    @property
    def label(self) -> str:
        """The file name, or ``<audit>.shard-*-of-n.parquet`` for a sharded run."""
        if len(self.paths) == 1:
            return self.paths[0].name
        return f"{self.kind}.shard-*-of-{len(self.paths)}.parquet"

    @property
    def audit(self) -> type[Audit] | None:
        """The audit class that wrote this report (None for a derived table)."""
        from .. import plugins

        return plugins.audits.get(str(self.meta["audit"])) if "audit" in self.meta else None

    @property
    def title(self) -> str:
        audit = self.audit
        heading = (audit.title or audit.name) if audit is not None else self.kind
        return f"{heading}: {self.name or self.label}"

    @property
    def sample_ids(self) -> frozenset[int] | None:
        """The data-source indices of the images measured (None when the rows do not say)."""
        return frozenset(int(i) for i in self.rows["index"].unique()) if "index" in self.rows else None


@dataclass
class Variant:
    """The reports of one folder (one model / defense setting), in report order."""

    name: str
    folder: Path
    reports: list[Report] = field(default_factory=list)

    def of_kind(self, kind: str) -> list[Report]:
        return [r for r in self.reports if r.kind == kind]

    def first(self, kind: str) -> Report | None:
        found = self.of_kind(kind)
        return found[0] if found else None


@dataclass
class Folder:
    """Every variant under a folder, and the files that could not be used (with the reason)."""

    root: Path
    variants: list[Variant]
    problems: list[str] = field(default_factory=list)

    @property
    def report_count(self) -> int:
        return sum(len(v.reports) for v in self.variants)


# -- what a folder holds -----------------------------------------------------------------------------------------


def report_files(folder: Path) -> list[Path]:
    """The finished reports directly in ``folder`` (unfinished ``.partial`` runs are not reports yet)."""
    return sorted(p for p in folder.glob("*.parquet") if p.is_file())


def unfinished_runs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*.parquet.partial") if p.is_dir())


def _not_a_variant(name: str) -> bool:
    return name.endswith(".partial") or name.startswith(".") or name in _NOT_VARIANTS


def _is_variant_folder(path: Path) -> bool:
    return path.is_dir() and not _not_a_variant(path.name)


def variant_folders(folder: Path) -> list[Path]:
    """Sub-folders holding reports: the model variants of a suite."""
    return sorted(p for p in folder.iterdir() if _is_variant_folder(p) and report_files(p))


def group_shards(files: list[Path]) -> list[list[Path]]:
    """The report files of one folder grouped by run: one file, or every shard of a sharded run."""
    groups: dict[str, list[Path]] = {}
    for path in files:
        match = _SHARD.match(path.name)
        groups.setdefault(match["stem"] if match else path.stem, []).append(path)
    for stem, paths in groups.items():
        shards = [m for p in paths if (m := _SHARD.match(p.name))]
        if not shards:
            if len(paths) > 1:
                raise InputError(f"{paths[0].parent}: several reports named {stem}")
            continue
        total = {int(m["n"]) for m in shards}
        present = {int(m["i"]) for m in shards}
        if len(shards) != len(paths) or len(total) != 1 or present != set(range(total.pop())):
            names = ", ".join(p.name for p in paths)
            raise InputError(
                f"{paths[0].parent}: the shards of {stem} are incomplete or mixed ({names}); "
                "finish every shard --shard i/n of the run"
            )
    return list(groups.values())


def read_group(paths: list[Path]) -> Report:
    """Read one run's report file(s) and summarize them with the audit that wrote them."""
    import pandas as pd

    from .read import read_report, summarize

    parts = [read_report(p) for p in paths]
    meta = parts[0][1]
    rows = pd.concat([frame for frame, _ in parts], ignore_index=True) if len(parts) > 1 else parts[0][0]
    kind, summary = summarize(rows, meta, paths[0])
    return Report(kind, list(paths), rows, meta, summary)


def _check_folder(folder: Path) -> None:
    if not folder.exists():
        raise InputError(f"report folder {folder} does not exist")
    if not folder.is_dir():
        raise InputError(f"{folder} is not a folder; name the folder that holds the reports (e.g. {folder.parent})")


def _order(report: Report) -> tuple[int, str]:
    audit = report.audit if "audit" in report.meta else None
    return (audit.order if audit is not None else 1000, str(report.paths[0]))


# -- the two ways in ---------------------------------------------------------------------------------------------


def load_reports(folder: Path) -> list[Report]:
    """Every finished report directly in ``folder``, summarized; an InputError for any unusable one or none."""
    folder = Path(folder)
    _check_folder(folder)
    files = report_files(folder)
    if not files:
        raise InputError(f"{folder} holds no reports (*.parquet){_empty_hint(folder)}")
    reports = [read_group(paths) for paths in group_shards(files)]
    for report in reports:
        report.name = report.label
    return sorted(reports, key=_order)


def _empty_hint(folder: Path) -> str:
    variants = variant_folders(folder)
    unfinished = unfinished_runs(folder)
    if variants:
        return f"; its sub-folders {', '.join(v.name for v in variants)} do: name one of them"
    if unfinished:
        return f"; unfinished runs are in {', '.join(p.name for p in unfinished)} (finish them with --resume)"
    return ""


def load_folder(folder: Path | str) -> Folder:
    """Every report under ``folder``, one variant per folder that holds reports; unusable files are listed in
    ``problems`` instead of failing the whole folder."""
    root = Path(folder)
    _check_folder(root)
    problems: list[str] = []
    variants: list[Variant] = []
    for directory in [root, *sorted(d for d in root.rglob("*") if _inside_variants(d, root))]:
        reports: list[Report] = []
        try:
            groups = group_shards(report_files(directory))
        except RobauditError as exc:
            problems.append(str(exc))
            continue
        for paths in groups:
            try:
                report = read_group(paths)
            except RobauditError as exc:
                problems.append(f"{paths[0].relative_to(root)}: {exc}")
                continue
            report.name = report.label
            reports.append(report)
        if reports:
            name = root.resolve().name if directory == root else directory.relative_to(root).as_posix()
            variants.append(Variant(name or str(root), directory, sorted(reports, key=_order)))
    if not variants:
        detail = f" ({len(problems)} file(s) could not be used: {'; '.join(problems)})" if problems else ""
        raise InputError(f"{root} holds no robaudit reports (*.parquet written by an audit command){detail}")
    return Folder(root, variants, problems)


def _inside_variants(path: Path, root: Path) -> bool:
    """A folder below ``root`` none of whose parts is hidden, an unfinished run or a figures folder."""
    return path.is_dir() and not any(_not_a_variant(part) for part in path.relative_to(root).parts)
