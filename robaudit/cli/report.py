"""``robaudit report show|summarize|html|md|merge``: read reports back, present them, join shards."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from . import options as o

app = typer.Typer(help="Inspect reports.", no_args_is_help=True)

ReportPath = Annotated[Path, typer.Argument(help="A report (.parquet) written by an audit.")]


@app.command("show")
def show_command(
    path: ReportPath,
    rows: Annotated[int, typer.Option("--rows", "-n", help="How many rows to print.")] = 10,
    columns: Annotated[
        str | None, typer.Option("--columns", "-c", help="Comma-separated columns to print (default: up to 10).")
    ] = None,
    as_json: o.Json = False,
) -> None:
    """Print a report's metadata (run spec, versions, fingerprints) and its first rows."""
    from rich.table import Table

    from ..errors import InputError
    from ..reports.read import read_report
    from .output import fmt, print_json, stdout

    if rows < 0:
        raise InputError(f"--rows must be >= 0, got {rows}")
    frame, meta = read_report(path)
    head = frame.head(rows)
    if as_json:
        print_json(
            {"metadata": meta, "rows": len(frame), "head": head.to_dict(orient="records")}, audit=meta.get("audit")
        )
        return
    info = Table(title=f"{path}", show_header=False, title_justify="left")
    info.add_column("key", style="bold")
    info.add_column("value")
    model = meta.get("model") or {}
    # Columns with one value for the whole report (e.g. the defense) are shown once, above the rows.
    constant = [c for c in ("defense", "skip_reason") if c in head.columns and frame[c].nunique(dropna=False) <= 1]
    for key, value in [
        ("audit", meta.get("audit_repr")),
        ("rows", len(frame)),
        ("model", model.get("model")),
        ("weights", " ".join(str(v) for v in (model.get("weights_origin"), model.get("weights")) if v) or None),
        ("weights sha256", model.get("weights_sha256")),
        ("parameters sha256", model.get("parameters_sha256")),
        *((f"caveat: {c.get('code')}", c.get("message")) for c in model.get("caveats") or [] if isinstance(c, dict)),
        ("data", meta.get("data", {}).get("description")),
        ("skipped images", meta.get("data", {}).get("skipped")),
        ("seed", meta.get("seed")),
        ("device", meta.get("device")),
        ("finished", meta.get("finished_at")),
        ("robaudit", meta.get("versions", {}).get("robaudit")),
        ("torch", meta.get("versions", {}).get("torch")),
        *((column, frame[column].iloc[0]) for column in constant if len(frame) and frame[column].notna().iloc[0]),
    ]:
        info.add_row(key, "" if value is None else str(value))
    stdout.print(info)
    if columns is not None:
        chosen = [c.strip() for c in columns.split(",") if c.strip()]
        unknown = [c for c in chosen if c not in frame.columns]
        if unknown:
            raise InputError(
                f"no column {', '.join(map(repr, unknown))} in {path}; columns: {', '.join(frame.columns)}"
            )
        head = head[chosen]
    else:
        # Bulky (lists) and constant columns stay out of the default view; at most 10 columns fit a terminal.
        bulky = [
            c for c in head.columns if head[c].map(lambda v: hasattr(v, "__len__") and not isinstance(v, str)).any()
        ]
        head = head.drop(columns=constant + bulky)
        if head.shape[1] > 10:
            stdout.print(
                f"[dim]{head.shape[1] - 10} more columns ({', '.join(head.columns[10:])}); "
                "choose with --columns, or use --json[/dim]"
            )
            head = head.iloc[:, :10]
    table = Table(title=f"first {len(head)} of {len(frame)} rows", title_justify="left")
    for col in head.columns:
        table.add_column(col, no_wrap=True, overflow="ellipsis", min_width=min(len(col), 6), max_width=12)
    for record in head.itertuples(index=False):
        table.add_row(*(fmt(v) for v in record))
    stdout.print(table)


@app.command("summarize")
def summarize_command(path: ReportPath, as_json: o.Json = False) -> None:
    """Summary figures of a report, derived from its per-sample rows (or stored with a derived table)."""
    from ..reports.read import read_report, summarize
    from .output import print_json, print_summary

    frame, meta = read_report(path)
    kind, summary = summarize(frame, meta, path)
    if as_json:
        print_json(summary, files={"report": path}, audit=kind)
    else:
        data = meta.get("data", {})
        description = data.get("description", "") if isinstance(data, dict) else str(data)
        print_summary(f"{meta.get('audit_repr', kind)}: {description}", summary)


FolderArgument = Annotated[
    Path, typer.Argument(help="A folder of reports (a suite's sub-folders become variants compared side by side).")
]


@app.command("html")
def html_command(
    folder: FolderArgument,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="The page to write (default: FOLDER/report.html).")
    ] = None,
    data: Annotated[
        str | None,
        typer.Option(
            "--data",
            "-d",
            help="The data the audits ran on, to show example images (used only if its fingerprint matches).",
        ),
    ] = None,
    split: o.Split = None,
) -> None:
    """One self-contained HTML page of every report in a folder: metadata, figures, key numbers, masking flags,
    example images (with --data); the figures also go as PNG to figures/ beside the page."""
    from ..data import DataSpec
    from ..presentation.html import write_html
    from ..reports.writer import check_output_file
    from .output import stdout

    if out is not None:
        check_output_file(out, "-o")
    spec = DataSpec(data, split=split) if data is not None else None
    stdout.print(f"report: {write_html(folder, out, spec)}", soft_wrap=True, highlight=False)


@app.command("md")
def md_command(
    folder: FolderArgument,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write the Markdown here instead of printing it.")
    ] = None,
) -> None:
    """The key numbers, flags and per-audit tables of a folder of reports as Markdown (e.g. a CI job summary)."""
    import sys

    from ..presentation.markdown import write_markdown
    from ..reports.writer import check_output_file

    if out is not None:
        check_output_file(out, "-o")
    text = write_markdown(folder)
    if out is None:
        # plain stdout, not rich: the Markdown must reach a file or pipe unaltered
        sys.stdout.write(text)
        return
    out.write_text(text, encoding="utf-8")


@app.command("merge")
def merge_command(
    out: Annotated[Path, typer.Argument(help="The folder to write the merged reports into.", show_default=False)],
    shards: Annotated[
        list[Path],
        typer.Argument(
            help="Folders (or files) holding <audit>.shard-i-of-n.parquet reports of one run.", show_default=False
        ),
    ],
    overwrite: o.Overwrite = False,
    as_json: o.Json = False,
) -> None:
    """Join the shards of a run written by separate jobs (--shard i/n) into the report one process would have
    written; refuses shards of different runs, and a shard missing or given twice."""
    from ..reports.merge import merge_shards
    from .output import print_json, stdout

    merged = merge_shards(out, list(shards), overwrite=overwrite)
    if as_json:
        print_json({"shards": len(shards)}, files={"reports": merged})
        return
    for path in merged:
        stdout.print(f"report: {path}", soft_wrap=True, highlight=False)
