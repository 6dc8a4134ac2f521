"""A folder of reports as one self-contained HTML page: run metadata, figures, key numbers, masking flags.

The page has no external resource at all (no scripts, no style sheets, no fonts, no images by URL): plots
are inline SVG, example images a base64 PNG, the style sheet inline, so the file can be mailed, archived as
a CI artifact or opened offline. Every plot is also written as a PNG to ``<folder>/figures/``.

The content is the digest of :mod:`.markdown` (variants, their reports, key-number tables and the
gradient-masking flags) plus figures from :mod:`.figures` and example images: clean images reloaded from
the data source that the run's metadata records, their adversarial versions when the attack kept its
perturbations (``--save-perturbations``), and a few corruptions at severity 3 generated on the fly. When the
data cannot be loaded here (a path that does not exist on this machine, no network) or has changed since
the audit (its fingerprint differs), the page says so instead of showing images.
"""

from __future__ import annotations

import base64
import dataclasses
import math
import os
import re
from collections.abc import Mapping
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import InputError, RobauditError
from . import figures as F
from .markdown import (
    SPECTRUM,
    Digest,
    Flag,
    Report,
    Table,
    Variant,
    clean_accuracy,
    collect,
    comparison_table,
    flags,
    headline,
    pct,
    report_tables,
    run_metadata,
)

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

    from ..data import Dataset

EXAMPLES = 4
EXAMPLE_SEVERITY = 3
#: corruptions shown when the folder has no corruptions report: one per group and frequency band
DEFAULT_CORRUPTIONS = ("gaussian_noise", "defocus_blur", "fog", "contrast", "jpeg_compression")
MAX_CORRUPTIONS = 4

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; margin: 0;
  color: #1f2328; background: #f6f8fa; line-height: 1.45; }
main { max-width: 1150px; margin: 0 auto; padding: 1.2rem 1.5rem 3rem; background: #fff; }
h1 { margin: 0.2rem 0; font-size: 1.7rem; }
h2 { border-bottom: 2px solid #d0d7de; padding-bottom: 0.2rem; margin-top: 2.2rem; }
h3 { margin-top: 1.6rem; }
.sub { color: #57606a; margin: 0 0 1rem; }
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
        self.saved.append(F.save_png(fig, self.figures_dir / f"{unique}.png"))
        svg = F.to_svg(fig, prefix=unique)
        return f'<figure data-figure="{e(unique)}">{svg}<figcaption>{e(caption)}</figcaption></figure>'

    def picture(self, fig: Figure, name: str, caption: str, alt: str) -> str:
        """The figure as a base64 PNG ``<img>`` (for images, where SVG would only wrap a bitmap), also saved."""
        unique = self._name(name)
        data = F.png_bytes(fig)
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


def masking_block(variant: Variant) -> str:
    """A verdict box, then one box per flag: red when raised, green when checked and clear, grey when not run."""
    found = [f for report in variant.of_kind("attack") for f in flags(report)]
    if not found:
        return flag_box(Flag("gradient masking", "not run", "no attack report: gradient masking was not checked", ""))
    raised = [f for f in found if f.state == "raised"]
    checked = [f for f in found if f.state != "not run"]
    if raised:
        verdict = Flag("gradient masking suspected", "raised", f"{len(raised)} of {len(checked)} checks raised", "")
    elif checked:
        verdict = Flag("no gradient-masking symptom", "clear", f"all {len(checked)} checks run are clear", "")
    else:
        verdict = Flag("gradient masking", "not run", "no check could be run on these reports", "")
    return flag_box(verdict) + "".join(flag_box(f) for f in found)


# -- figures of each report --------------------------------------------------------------------------------------


def _num_classes(meta: Mapping[str, Any]) -> int | None:
    value = meta.get("data", {}).get("num_classes") or meta.get("model", {}).get("num_classes")
    return int(value) if value else None


def _minimal_sizes(rows: pd.DataFrame) -> dict[str, list[float]]:
    """Size of each image's smallest successful perturbation, per (threat, judge), in the attack's norm."""
    main = rows[~rows["skipped"].astype(bool) & rows["check"].isna() & rows["success"].fillna(False).astype(bool)]
    sizes: dict[str, list[float]] = {}
    for (threat, judge, norm), group in main.groupby(["threat", "judged_by", "eps_mode"]):
        column = str(norm) if str(norm) in group else "l2"
        sizes[f"{threat}-box, judged by {judge}"] = group[column].astype(float).tolist()
    return sizes


#: (name, caption, figure) of one report's figures
Figures = list[tuple[str, str, "Figure"]]


def _attack_figures(report: Report, variant: Variant) -> Figures:
    s, out = report.summary, []
    if s.get("curves"):
        clean, _, _ = clean_accuracy(variant)
        fig = F.attack_curves_figure(s, _num_classes(report.meta), clean)
        out.append(("accuracy-vs-eps", "Accuracy under attack vs ε per threat model (dashed: chance)", fig))
    if s.get("minimal"):
        fig = F.minimal_figure(s, _minimal_sizes(report.rows))
        out.append(("minimal", "Minimal perturbations: success rate vs ε and size distribution", fig))
    return out


def _corruption_figures(report: Report, variant: Variant) -> Figures:
    s = report.summary
    out = [
        (
            "corruption-errors",
            "Error (or CE) per corruption, coloured by frequency band",
            F.corruption_errors_figure(s),
        ),
        ("corruption-heatmap", "Accuracy per corruption and severity", F.corruption_heatmap_figure(s)),
    ]
    if s.get("noise_curve"):
        out.append(("noise-curve", "Accuracy vs Gaussian noise σ", F.noise_curve_figure(s)))
    return out


def _hybrid_figures(report: Report, variant: Variant) -> Figures:
    return [("hybrid", "D(f_mix) with bootstrap 95 % band; dotted: f_rev", F.hybrid_figure(report.summary))]


def _spectrum_figures(report: Report, variant: Variant) -> Figures:
    fig = F.spectrum_figure(report.summary, report.meta.get("grid", []), report.meta.get("cumulative", []))
    return [("spectrum", "Radial cumulative power of the perturbations; red: f0.5", fig)]


def _jacobian_figures(report: Report, variant: Variant) -> Figures:
    from ..audits.jacobian import singular_profiles

    return [("jacobian", "Mean singular values of ∂p/∂x", F.jacobian_figure(singular_profiles(report.rows)))]


def _fourier_figures(report: Report, variant: Variant) -> Figures:
    fig = F.fourier_map_figure(report.summary)
    return [("fourier-map", "Error rate per Fourier basis direction (DC in the centre)", fig)]


_FIGURES = {
    "attack": _attack_figures,
    "corruptions": _corruption_figures,
    "hybrid": _hybrid_figures,
    SPECTRUM: _spectrum_figures,
    "jacobian": _jacobian_figures,
    "fourier-map": _fourier_figures,
}


def report_figures(report: Report, variant: Variant) -> Figures:
    """(name, caption, figure) for every figure of one report; none for an audit without figure builders (the
    eval report's bar is drawn by the clean-accuracy section)."""
    builder = _FIGURES.get(report.kind)
    return builder(report, variant) if builder else []


# -- example images ----------------------------------------------------------------------------------------------


def _dataclass_from(cls: Any, values: Mapping[str, Any]) -> Any:
    """``cls(**values)`` keeping only its fields, with JSON lists turned back into tuples."""
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items() if k in names})


def _kept_perturbations(report: Report) -> bool:
    rows = report.rows
    return report.kind == "attack" and "perturbation" in rows and bool(rows["perturbation"].notna().any())


def example_source(variant: Variant) -> Report | None:
    """The report whose data the examples show: an attack that kept perturbations, else any audit report."""
    audits = [r for r in variant.reports if isinstance(r.meta.get("run_spec", {}).get("data"), dict)]
    with_delta = [r for r in audits if _kept_perturbations(r)]
    chosen = with_delta or audits
    return chosen[0] if chosen else None


def load_source_data(report: Report) -> Dataset:
    """The dataset a report was computed on, as its metadata records it; an InputError when it has changed."""
    from ..data import DataSpec, load_dataset
    from ..models import Preprocessing

    spec = _dataclass_from(DataSpec, report.meta["run_spec"]["data"])
    preprocessing = _dataclass_from(Preprocessing, report.meta.get("model", {}).get("preprocessing") or {})
    dataset = load_dataset(spec, preprocessing)
    expected = report.meta.get("identity", {}).get("data_fingerprint")
    if expected and dataset.fingerprint() != expected:
        raise InputError(f"the data {spec.source!r} differs from the audited data (its fingerprint changed)")
    return dataset


def adversarial_rows(report: Report) -> pd.DataFrame:
    """Up to EXAMPLES rows with a kept perturbation: one threat and judge, the largest ε, successes first."""
    rows = report.rows
    kept = rows[~rows["skipped"].astype(bool) & rows["check"].isna() & rows["perturbation"].notna()]
    if kept.empty:
        return kept
    threat = "white" if (kept["threat"] == "white").any() else kept["threat"].iloc[0]
    kept = kept[kept["threat"] == threat]
    judge = "defended" if (kept["judged_by"] == "defended").any() else kept["judged_by"].iloc[0]
    kept = kept[kept["judged_by"] == judge]
    if kept["eps"].notna().any():
        kept = kept[kept["eps"] == kept["eps"].max()]
    kept = kept.sort_values(["success", "index"], ascending=[False, True]).drop_duplicates("index")
    return kept.head(EXAMPLES)


def _corruption_names(variant: Variant) -> list[str]:
    """The corruptions with the highest error in the variant's corruptions report, else DEFAULT_CORRUPTIONS."""
    report = variant.first("corruptions")
    if report is not None and report.summary.get("per_corruption"):
        ranked = sorted(report.summary["per_corruption"], key=lambda c: -float(c.get("error") or 0))
        return [str(c["corruption"]) for c in ranked[:MAX_CORRUPTIONS]]
    return list(DEFAULT_CORRUPTIONS[:MAX_CORRUPTIONS])


def corrupted_images(images: Any, names: list[str], seed: int) -> tuple[dict[str, np.ndarray], list[str]]:
    """``{name: (N, 3, H, W) array}`` at EXAMPLE_SEVERITY, and why any corruption could not be applied."""
    from .. import corruptions

    out: dict[str, np.ndarray] = {}
    problems: dict[str, list[str]] = {}
    for name in names:
        try:
            out[name] = corruptions.corrupt(images, name, EXAMPLE_SEVERITY, seed=seed).cpu().numpy()
        except RobauditError as exc:
            problems.setdefault(str(exc), []).append(name)
    return out, [f"{', '.join(failed)}: {reason}" for reason, failed in problems.items()]


def example_images(variant: Variant) -> tuple[Figure | None, list[str]]:
    """A grid of clean / adversarial / perturbation / corrupted images, and notes on what could not be shown."""
    report = example_source(variant)
    if report is None:
        return None, ["no report records its data source; example images cannot be shown"]
    source = report.meta["run_spec"]["data"].get("source", "?")
    try:
        dataset = load_source_data(report)
    except Exception as exc:  # a best-effort extra: any failure to reach the data becomes a note on the page
        return None, [f"example images not shown: the data {source!r} cannot be loaded here ({exc})"]
    notes: list[str] = []
    adversarial = adversarial_rows(report) if _kept_perturbations(report) else report.rows.iloc[:0]
    if len(adversarial):
        indices = adversarial["index"].astype(int).tolist()
    else:
        done = report.rows[~report.rows["skipped"].astype(bool)]
        indices = done["index"].drop_duplicates().head(EXAMPLES).astype(int).tolist()
        if variant.of_kind("attack"):
            notes.append("no adversarial examples: run the attack with --save-perturbations PATH to keep them")
    batch = dataset.load(np.asarray(indices, dtype=np.int64))
    if not len(batch.indices):
        return None, [*notes, f"example images not shown: images {indices} of {source!r} could not be decoded"]
    images = batch.images.float()
    corrupted, problems = corrupted_images(images, _corruption_names(variant), int(report.meta.get("seed") or 0))
    if problems:
        notes.append(f"corrupted examples not shown: {'; '.join(problems)}")
    grid = ExampleGrid(dataset.class_names or [str(k) for k in range(dataset.num_classes)])
    records: dict[int, dict[str, Any]] = {
        int(r["index"]): {str(k): v for k, v in r.items()} for r in adversarial.to_dict("records")
    }
    for k, index in enumerate(batch.indices.tolist()):
        clean = images[k].cpu().numpy()
        grid.add("clean", clean, f"#{index}: {grid.name(int(dataset.labels[index]))}", row=k)
        if records:
            grid.add_adversarial(clean, records.get(int(index)), k, _budget(next(iter(records.values()))))
        for name, batch_images in corrupted.items():
            grid.add(f"{name} (s={EXAMPLE_SEVERITY})", batch_images[k], "", row=k)
    return grid.figure(), notes


def _budget(record: Mapping[str, Any]) -> str:
    eps = record.get("eps")
    budget = f"ε={eps:g}" if isinstance(eps, (int, float)) and math.isfinite(eps) else "minimal"
    return f"{record.get('threat')}, {budget}"


class ExampleGrid:
    """Images by row and column heading, for :func:`~robaudit.reports.figures.image_grid_figure`."""

    def __init__(self, class_names: list[str]) -> None:
        self.class_names = class_names
        self.columns: list[str] = []
        self.cells: dict[tuple[int, str], tuple[np.ndarray, str]] = {}

    def name(self, label: int) -> str:
        return self.class_names[label] if 0 <= label < len(self.class_names) else str(label)

    def add(self, column: str, chw: np.ndarray, title: str, row: int) -> None:
        if column not in self.columns:
            self.columns.append(column)
        self.cells[(row, column)] = (np.transpose(np.asarray(chw, dtype=np.float32), (1, 2, 0)), title)

    def add_adversarial(self, clean: np.ndarray, record: Mapping[str, Any] | None, row: int, budget: str) -> None:
        """The adversarial image (clean + kept δ, clipped) and δ itself, scaled so that its largest entry is
        at the edge of the grey range (δ is often invisible at its true size)."""
        adversarial, perturbation = f"adversarial ({budget})", "perturbation (scaled)"
        for column in (adversarial, perturbation):
            if column not in self.columns:
                self.columns.append(column)
        delta = _delta(record, clean.shape) if record is not None else None
        if record is None or delta is None:
            return
        scale = float(np.abs(delta).max()) or 1.0
        prediction = f"→ {self.name(int(record['adv_prediction']))}"
        self.add(adversarial, np.clip(clean + delta, 0, 1), prediction, row)
        self.add(perturbation, delta / (2 * scale) + 0.5, f"max |δ| {scale:.3f}", row)

    def figure(self) -> Figure:
        rows = 1 + max(row for row, _ in self.cells)
        images: list[list[np.ndarray | None]] = []
        titles: list[list[str]] = []
        for row in range(rows):
            cells = [self.cells.get((row, column)) for column in self.columns]
            images.append([cell[0] if cell else None for cell in cells])
            titles.append([cell[1] if cell else "" for cell in cells])
        return F.image_grid_figure(images, self.columns, titles)


def _delta(record: Mapping[str, Any], shape: tuple[int, ...]) -> np.ndarray | None:
    """The kept perturbation of a report row as an array of ``shape``; None when it does not fit the image."""
    stored = tuple(int(v) for v in record["perturbation_shape"])
    values = np.asarray(record["perturbation"], dtype=np.float32)
    if stored != tuple(shape) or values.size != int(np.prod(shape)):
        return None
    return values.reshape(shape)


# -- the page ----------------------------------------------------------------------------------------------------


def variant_body(variant: Variant, page: Page, prefix: str, level: int) -> tuple[str, list[tuple[str, str]]]:
    """The sections of one variant, and their (anchor, title) for the table of contents."""
    parts: list[str] = []
    toc: list[tuple[str, str]] = []

    def add(kind: str, title: str, body: str) -> None:
        anchor = f"{prefix}{slug(title)}"
        parts.append(section(kind, anchor, title, body, level))
        toc.append((anchor, title))

    add("run", "Run", html_table(run_metadata(variant), mono_columns=(1,), caption=False))
    key = Table("Key numbers", ["figure", "value"], [[k, v] for k, v in headline(variant).items()])
    add("key-numbers", "Key numbers", html_table(key, caption=False))
    add("clean-accuracy", "Clean accuracy", _clean_section(variant, page, prefix))
    add("masking", "Gradient-masking checks", masking_block(variant))
    for report in variant.reports:
        if report.kind == "eval":
            continue
        plots = "".join(
            page.plot(fig, f"{prefix}{report.name.removesuffix('.parquet')}-{name}", caption)
            for name, caption, fig in report_figures(report, variant)
        )
        tables = "".join(html_table(t) for t in report_tables(report))
        add(report.kind, report.title, f'<div class="figures">{plots}</div>{tables}')
    fig, notes = example_images(variant)
    body = "".join(note(n) for n in notes)
    if fig is not None:
        body = page.picture(fig, f"{prefix}examples", _examples_caption(fig), "example images") + body
    add("examples", "Example images", body)
    return "".join(parts), toc


def _examples_caption(fig: Figure) -> str:
    headings = " ".join(ax.get_title() for ax in fig.axes)
    shown = ["clean images (data index: label)"]
    if "adversarial" in headings:
        shown.append("their adversarial versions (→ prediction) and perturbations (scaled to the grey range)")
    if f"(s={EXAMPLE_SEVERITY})" in headings:
        shown.append(f"corrupted versions at severity {EXAMPLE_SEVERITY}")
    return "Examples: " + ", ".join(shown)


def _clean_section(variant: Variant, page: Page, prefix: str) -> str:
    report = variant.first("eval")
    if report is None:
        accuracy, _, origin = clean_accuracy(variant)
        if accuracy is None:
            return note("clean accuracy not measured (no eval report; run robaudit eval)")
        return note(f"clean accuracy {pct(accuracy)} from {origin} (no eval report)")
    fig = F.clean_accuracy_figure({variant.name: report.summary})
    plot = page.plot(fig, f"{prefix}clean-accuracy", f"Clean top-1 accuracy ({report.name}), 95 % Wilson interval")
    return f'<div class="figures">{plot}</div>' + "".join(html_table(t, caption=False) for t in report_tables(report))


def comparison_body(digest: Digest, page: Page) -> str:
    evals = {v.name: r.summary for v in digest.variants if (r := v.first("eval")) is not None}
    plot = ""
    if evals:
        fig = F.clean_accuracy_figure(evals)
        plot = page.plot(fig, "comparison-clean-accuracy", "Clean top-1 accuracy per variant (95 % Wilson interval)")
    return f'<div class="figures">{plot}</div>' + html_table(comparison_table(digest.variants))


def render(digest: Digest, page: Page, title: str) -> str:
    sections: list[str] = []
    toc: list[tuple[str, str]] = []
    several = len(digest.variants) > 1
    if several:
        sections.append(section("comparison", "comparison", "Comparison", comparison_body(digest, page), 2))
        toc.append(("comparison", "Comparison"))
    for k, variant in enumerate(digest.variants):
        prefix = f"v{k}-{slug(variant.name)}-" if several else ""
        body, entries = variant_body(variant, page, prefix, 3 if several else 2)
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
    if digest.problems:
        items = "".join(f"<li>{e(p)}</li>" for p in digest.problems)
        sections.append(section("problems", "problems", "Files not used", f"<ul>{items}</ul>", 2))
        toc.append(("problems", "Files not used"))
    nav = "".join(f'<li><a href="#{e(anchor)}">{e(text)}</a></li>' for anchor, text in toc)
    from .. import __version__

    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{e(title)}</title><style>{CSS}</style></head><body><main>"
        f'<header><h1>{e(title)}</h1><p class="sub">{digest.report_count} report(s) in '
        f"{len(digest.variants)} variant(s) from {e(digest.root)}</p></header>"
        f"<nav><ul>{nav}</ul></nav>{''.join(sections)}"
        f"<footer>Written by robaudit {e(__version__)}; figures also saved as PNG in {e(page.figures_dir)}.</footer>"
        "</main></body></html>\n"
    )


def write_html(folder: Path, out: Path | None = None) -> Path:
    """Write the HTML report of every report under ``folder`` to ``out`` (default ``folder/report.html``)
    and every figure as PNG to ``folder/figures/``; returns the path of the page."""
    folder = Path(folder)
    target = Path(out) if out is not None else folder / "report.html"
    if target.is_dir():
        raise InputError(f"--out {target} is a folder; name the .html file to write")
    digest = collect(folder)
    page = Page(folder / "figures")
    text = render(digest, page, f"robaudit report: {folder.resolve().name}")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, target)
    return target
