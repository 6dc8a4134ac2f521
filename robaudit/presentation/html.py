"""A folder of reports as one self-contained HTML page: run metadata, key numbers, flags, figures, examples.

The page has no external resource at all (no scripts, no style sheets, no fonts, no images by URL): plots
are inline SVG, example images a base64 PNG, the style sheet inline, so the file can be mailed, archived as
a CI artifact or opened offline. Every plot is also written as a PNG to a ``figures/`` folder beside the
page. Nothing else is written, and nothing is read but the reports and the data named on the command line.

The content is the digest of :mod:`.digest` (variants, their reports, key-number tables and flags) plus
every report's figures (``Audit.figures``) and example images (:mod:`.examples`).
"""

from __future__ import annotations

import base64
import os
import re
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InputError
from ..reports import plots
from ..reports.content import Flag, Table
from ..reports.folder import Folder, Variant, load_folder
from .digest import (
    clean_accuracy,
    comparison_table,
    flag_checkers,
    flag_reports,
    key_numbers,
    model_caveats,
    report_flags,
    report_tables,
    run_metadata,
    verdict,
)
from .examples import EXAMPLE_SEVERITY, example_images

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from ..data import DataSpec

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; margin: 0;
  color: #1f2328; background: #f6f8fa; line-height: 1.45; }
main { max-width: 1150px; margin: 0 auto; padding: 1.2rem 1.5rem 3rem; background: #fff; }
h1 { margin: 0.2rem 0; font-size: 1.7rem; }
h2 { border-bottom: 2px solid #d0d7de; padding-bottom: 0.2rem; margin-top: 2.2rem; }
h3 { margin-top: 1.6rem; }
.sub { color: #57606a; margin: 0 0 1rem; }
.verdict { font-size: 1.05rem; line-height: 1.5; margin: 0 0 1rem; }
nav ul { columns: 2; font-size: 0.9rem; }
table { border-collapse: collapse; margin: 0.6rem 0 1rem; font-size: 0.86rem; }
caption { text-align: left; font-weight: 600; padding: 0.2rem 0; }
th, td { border: 1px solid #d0d7de; padding: 0.25rem 0.55rem; text-align: left; vertical-align: top; }
th { background: #f0f3f6; }
td.mono { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 0.8rem; word-break: break-all; }
.figures { display: flex; flex-wrap: wrap; gap: 1rem; }
figure { margin: 0.5rem 0; max-width: 100%; }
figure svg, figure img { max-width: 100%; height: auto; display: block; }
figure img.examples { image-rendering: pixelated; }
figcaption { font-size: 0.82rem; color: #57606a; }
.flag { border: 2px solid; border-radius: 6px; padding: 0.45rem 0.7rem; margin: 0.45rem 0; }
.flag p { margin: 0.2rem 0 0; font-size: 0.88rem; }
.flag .badge { font-weight: 700; text-transform: uppercase; font-size: 0.75rem; margin-right: 0.5rem; }
.flag .source { color: #57606a; font-size: 0.8rem; margin-left: 0.4rem; }
.raised { border-color: #cf222e; background: #ffebe9; }
.raised .badge { color: #cf222e; }
.clear { border-color: #1a7f37; background: #dafbe1; }
.clear .badge { color: #1a7f37; }
.notrun { border-color: #8c959f; background: #f6f8fa; }
.notrun .badge { color: #57606a; }
.note { border-left: 4px solid #bf8700; background: #fff8c5; padding: 0.4rem 0.7rem; font-size: 0.88rem; }
footer { color: #57606a; font-size: 0.8rem; margin-top: 2.5rem; }
"""


def e(value: Any) -> str:
    """Escaped text for HTML content and attribute values."""
    return escape(str(value), quote=True)


def slug(text: str) -> str:
    """A file- and id-safe name."""
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower() or "x"


class Page:
    """Collects the figures of one page: inline SVG (ids made unique) and a PNG of each under ``figures/``."""

    def __init__(self, figures_dir: Path) -> None:
        self.figures_dir = figures_dir
        self.saved: list[Path] = []
        self.used: set[str] = set()

    def _name(self, name: str) -> str:
        base, k = slug(name), 1
        unique = base
        while unique in self.used:
            k += 1
            unique = f"{base}-{k}"
        self.used.add(unique)
        return unique

    def plot(self, fig: Figure, name: str, caption: str) -> str:
        """The figure as inline SVG in a ``<figure>``, and saved as ``figures/<name>.png``."""
        unique = self._name(name)
        self.saved.append(plots.save_png(fig, self.figures_dir / f"{unique}.png"))
        svg = plots.to_svg(fig, prefix=unique)
        return f'<figure data-figure="{e(unique)}">{svg}<figcaption>{e(caption)}</figcaption></figure>'

    def picture(self, fig: Figure, name: str, caption: str, alt: str) -> str:
        """The figure as a base64 PNG ``<img>`` (for images, where SVG would only wrap a bitmap), also saved."""
        unique = self._name(name)
        data = plots.png_bytes(fig)
        path = self.figures_dir / f"{unique}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        self.saved.append(path)
        source = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
        return (
            f'<figure data-figure="{e(unique)}"><img class="examples" src="{source}" alt="{e(alt)}">'
            f"<figcaption>{e(caption)}</figcaption></figure>"
        )


# -- building blocks -----------------------------------------------------------------------------------------


def html_table(table: Table, mono_columns: tuple[int, ...] = (), caption: bool = True) -> str:
    head = "".join(f"<th>{e(h)}</th>" for h in table.header)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="mono">{e(c)}</td>' if k in mono_columns else f"<td>{e(c)}</td>" for k, c in enumerate(row)
        )
        + "</tr>"
        for row in table.rows
    )
    title = f"<caption>{e(table.caption)}</caption>" if caption else ""
    return f"<table>{title}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def note(text: str) -> str:
    return f'<p class="note">{e(text)}</p>'


def section(kind: str, anchor: str, title: str, body: str, level: int = 3) -> str:
    return (
        f'<section class="{e(kind)}" data-section="{e(kind)}" id="{e(anchor)}">'
        f"<h{level}>{e(title)}</h{level}>{body}</section>"
    )


def flag_box(flag: Flag) -> str:
    css = {"raised": "raised", "clear": "clear"}.get(flag.state, "notrun")
    return (
        f'<div class="flag {css}" data-flag="{e(flag.name)}" data-state="{e(flag.state)}">'
        f'<span class="badge">{e(flag.state)}</span><b>{e(flag.name)}</b>'
        f'<span class="source">{e(flag.report)}</span><p>{e(flag.evidence)}</p></div>'
    )


def flags_block(variant: Variant) -> str:
    """A verdict box, then one box per flag: red when raised, green when checked and clear, grey when not run."""
    found = [f for report in flag_reports(variant) for f in report_flags(report)]
    if not found:
        checkers = ", ".join(f"robaudit {name}" for name in flag_checkers()) or "an audit that checks flags"
        return flag_box(Flag("gradient masking", "not run", f"no report here checks it (run {checkers})", ""))
    raised = [f for f in found if f.state == "raised"]
    checked = [f for f in found if f.state != "not run"]
    if raised:
        overall = Flag("gradient masking suspected", "raised", f"{len(raised)} of {len(checked)} checks raised", "")
    elif checked:
        overall = Flag("no gradient-masking symptom", "clear", f"all {len(checked)} checks run are clear", "")
    else:
        overall = Flag("gradient masking", "not run", "no check could be run on these reports", "")
    return flag_box(overall) + "".join(flag_box(f) for f in found)


# -- the page ----------------------------------------------------------------------------------------------------


def variant_body(
    variant: Variant, page: Page, prefix: str, level: int, data: DataSpec | None
) -> tuple[str, list[tuple[str, str]]]:
    """The sections of one variant, and their (anchor, title) for the table of contents."""
    parts: list[str] = []
    toc: list[tuple[str, str]] = []

    def add(kind: str, title: str, body: str) -> None:
        anchor = f"{prefix}{slug(title)}"
        parts.append(section(kind, anchor, title, body, level))
        toc.append((anchor, title))

    caveats = model_caveats(variant)
    if caveats:
        add("caveats", "Model caveats", "".join(flag_box(c) for c in caveats))
    add("run", "Run", html_table(run_metadata(variant), mono_columns=(1,), caption=False))
    key = Table("Key numbers", ["figure", "value"], [[k, v] for k, v in key_numbers(variant).items()])
    add("key-numbers", "Key numbers", html_table(key, caption=False))
    add("masking", "Gradient-masking checks", flags_block(variant))
    for report in variant.reports:
        audit = report.audit
        specs = audit.figures(report) if audit is not None else []
        stem = report.name.removesuffix(".parquet")
        figures = "".join(page.plot(s.figure, f"{prefix}{stem}-{s.name}", s.caption) for s in specs)
        tables = "".join(html_table(t) for t in report_tables(report))
        add(report.kind, report.title, f'<div class="figures">{figures}</div>{tables}')
    fig, notes = example_images(variant, data)
    body = "".join(note(n) for n in notes)
    if fig is not None:
        body = page.picture(fig, f"{prefix}examples", _examples_caption(fig), "example images") + body
    add("examples", "Example images", body)
    return "".join(parts), toc


def _examples_caption(fig: Figure) -> str:
    headings = " ".join(ax.get_title() for ax in fig.axes)
    shown = ["clean images (data index: label)"]
    if "perturbation (scaled)" in headings:
        shown.append("their adversarial versions (→ prediction) and perturbations (scaled to the grey range)")
    if f"(s={EXAMPLE_SEVERITY})" in headings:
        shown.append(f"corrupted versions at severity {EXAMPLE_SEVERITY}")
    return "Examples: " + ", ".join(shown)


def comparison_body(folder: Folder, page: Page) -> str:
    accuracies = {v.name: clean_accuracy(v) for v in folder.variants}
    values = {name: (value, interval) for name, (value, interval, _) in accuracies.items() if value is not None}
    plot = ""
    if values:
        fig = plots.interval_bars_figure(values, "clean top-1 accuracy (95 % Wilson interval)", "Clean accuracy")
        plot = page.plot(fig, "comparison-clean-accuracy", "Clean top-1 accuracy per variant (95 % Wilson interval)")
    return f'<div class="figures">{plot}</div>' + html_table(comparison_table(folder.variants))


def render(folder: Folder, page: Page, title: str, data: DataSpec | None) -> str:
    sections: list[str] = []
    toc: list[tuple[str, str]] = []
    several = len(folder.variants) > 1
    if several:
        sections.append(section("comparison", "comparison", "Comparison", comparison_body(folder, page), 2))
        toc.append(("comparison", "Comparison"))
    for k, variant in enumerate(folder.variants):
        prefix = f"v{k}-{slug(variant.name)}-" if several else ""
        body, entries = variant_body(variant, page, prefix, 3 if several else 2, data)
        if several:
            anchor = f"v{k}-{slug(variant.name)}"
            sections.append(
                f'<section class="variant" data-section="variant" data-variant="{e(variant.name)}" id="{e(anchor)}">'
                f"<h2>Variant: {e(variant.name)}</h2>{body}</section>"
            )
            toc.append((anchor, f"Variant: {variant.name}"))
        else:
            sections.append(body)
            toc += entries
    if folder.problems:
        items = "".join(f"<li>{e(p)}</li>" for p in folder.problems)
        sections.append(section("problems", "problems", "Files not used", f"<ul>{items}</ul>", 2))
        toc.append(("problems", "Files not used"))
    nav = "".join(f'<li><a href="#{e(anchor)}">{e(text)}</a></li>' for anchor, text in toc)
    from .. import __version__

    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{e(title)}</title><style>{CSS}</style></head><body><main>"
        f'<header><h1>{e(title)}</h1><p class="sub">{folder.report_count} report(s) in '
        f"{len(folder.variants)} variant(s) from {e(folder.root)}</p>"
        f'<p class="verdict" data-section="verdict">{e(" ".join(verdict(folder.variants)))}</p></header>'
        f"<nav><ul>{nav}</ul></nav>{''.join(sections)}"
        f"<footer>Written by robaudit {e(__version__)}; figures also saved as PNG in {e(page.figures_dir)}.</footer>"
        "</main></body></html>\n"
    )


def write_html(folder: Path, out: Path | None = None, data: DataSpec | None = None) -> Path:
    """Write the HTML report of every report under ``folder`` to ``out`` (default ``folder/report.html``) and
    every figure as PNG to ``figures/`` beside it; example images from ``data`` when given. Returns the path."""
    folder = Path(folder)
    target = Path(out) if out is not None else folder / "report.html"
    if target.is_dir():
        raise InputError(f"--out {target} is a folder; name the .html file to write")
    loaded = load_folder(folder)
    page = Page(target.parent / "figures")
    text = render(loaded, page, f"robaudit report: {folder.resolve().name}", data)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, target)
    return target
