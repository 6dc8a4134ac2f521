"""Example images for a page: clean images, their kept adversarial perturbations, a few corruptions.

A report is data, never a pointer to follow: the clean images come only from the data source given on the
command line (``robaudit report html DIR --data SOURCE``), and only when its fingerprint equals the one the
reports recorded, so a crafted report cannot make robaudit read (let alone embed) files the user did not
name. The perturbations come from the reports themselves (``Audit.example_perturbations``), the corruptions
are generated on the fly at severity 3.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import RobauditError
from ..reports.content import ExamplePerturbation
from ..reports.folder import Report, Variant

if TYPE_CHECKING:
    import numpy as np
    from matplotlib.figure import Figure

    from ..data import Dataset, DataSpec

EXAMPLES = 4
EXAMPLE_SEVERITY = 3
#: at most this many corruptions are shown, preferring one per group and frequency band in this order
CORRUPTIONS = ("gaussian_noise", "defocus_blur", "fog", "contrast")
SHOWN_CORRUPTIONS = 4


def example_corruptions(variant: Variant) -> list[str]:
    """The corruptions the variant's reports measured (asked of their audits), at most SHOWN_CORRUPTIONS,
    the preferred ones first: an eval-only variant shows none."""
    measured: list[str] = []
    for report in variant.reports:
        if report.audit is not None:
            measured += [n for n in report.audit.example_corruptions(report) if n not in measured]
    preferred = [n for n in CORRUPTIONS if n in measured]
    return [*preferred, *(n for n in measured if n not in preferred)][:SHOWN_CORRUPTIONS]


def perturbations(variant: Variant) -> list[ExamplePerturbation]:
    """The kept perturbations of the first report that has any."""
    for report in variant.reports:
        audit = report.audit
        found = audit.example_perturbations(report, EXAMPLES) if audit is not None else []
        if found:
            return found
    return []


def _data_reports(variant: Variant) -> list[Report]:
    return [r for r in variant.reports if (r.meta.get("identity") or {}).get("data_fingerprint")]


def _matching(data: DataSpec, variant: Variant) -> tuple[Dataset | None, str]:
    """The command line's data, loaded with a report's preprocessing, if its fingerprint is one a report
    recorded; else None and why not."""
    from ..data import load_dataset
    from ..models import Preprocessing

    reports = _data_reports(variant)
    if not reports:
        return None, "no report records the fingerprint of its data"
    for report in reports:
        recorded = report.meta["identity"]["data_fingerprint"]
        try:
            preprocessing = Preprocessing.from_dict((report.meta.get("model") or {}).get("preprocessing") or {})
            dataset = load_dataset(data, preprocessing)
        except RobauditError as exc:
            return None, f"the data {data.source!r} cannot be loaded ({exc})"
        if dataset.fingerprint() == recorded:
            return dataset, ""
    return None, f"the data {data.source!r} is not the data these reports were computed on (fingerprints differ)"


def example_images(variant: Variant, data: DataSpec | None) -> tuple[Figure | None, list[str]]:
    """A grid of clean / adversarial / perturbation / corrupted images, and notes on what could not be shown."""
    import numpy as np

    if data is None:
        return None, ["example images not shown: pass --data SOURCE (the data of the audits) to show them"]
    dataset, problem = _matching(data, variant)
    if dataset is None:
        return None, [f"example images not shown: {problem}"]
    notes: list[str] = []
    kept = perturbations(variant)
    if kept:
        indices = [p.index for p in kept]
    else:
        measured = sorted({int(i) for r in _data_reports(variant) if "index" in r.rows for i in r.rows["index"]})
        indices = measured[:EXAMPLES]
        if any(r.audit is not None and r.audit.raises_flags for r in variant.reports):
            notes.append("no adversarial examples: run the attack with --save-perturbations PATH to keep them")
    indices = [i for i in indices if 0 <= i < len(dataset)]
    batch = dataset.load(np.asarray(indices, dtype=np.int64))
    if not len(batch.indices):
        return None, [*notes, f"example images not shown: images {indices} of {data.source!r} could not be decoded"]
    images = batch.images.float()
    corrupted, problems = corrupted_images(images, example_corruptions(variant), _seed(variant))
    if problems:
        notes.append(f"corrupted examples not shown: {'; '.join(problems)}")
    grid = ExampleGrid(dataset.class_names or [str(k) for k in range(dataset.num_classes)])
    by_index = {p.index: p for p in kept}
    for k, index in enumerate(batch.indices.tolist()):
        clean = images[k].cpu().numpy()
        grid.add("clean", clean, f"#{index}: {grid.name(int(dataset.labels[index]))}", row=k)
        if kept:
            grid.add_perturbation(clean, by_index.get(int(index)), row=k, column=kept[0].column)
        for name, batch_images in corrupted.items():
            grid.add(f"{name} (s={EXAMPLE_SEVERITY})", batch_images[k], "", row=k)
    return grid.figure(), notes


def _seed(variant: Variant) -> int:
    seeds = [seed for r in variant.reports if isinstance(seed := r.meta.get("seed"), int)]
    return seeds[0] if seeds else 0


def corrupted_images(images: Any, names: list[str], seed: int) -> tuple[dict[str, np.ndarray], list[str]]:
    """``{name: (N, 3, H, W) array}`` at EXAMPLE_SEVERITY, and why any corruption could not be applied."""
    from .. import corruption

    out: dict[str, np.ndarray] = {}
    problems: dict[str, list[str]] = {}
    for name in names:
        try:
            out[name] = corruption.corrupt(images, name, EXAMPLE_SEVERITY, seed=seed).cpu().numpy()
        except RobauditError as exc:
            problems.setdefault(str(exc), []).append(name)
    return out, [f"{', '.join(failed)}: {reason}" for reason, failed in problems.items()]


class ExampleGrid:
    """Images by row and column heading, for :func:`~robaudit.reports.plots.image_grid_figure`."""

    def __init__(self, class_names: list[str]) -> None:
        self.class_names = class_names
        self.columns: list[str] = []
        self.cells: dict[tuple[int, str], tuple[np.ndarray, str]] = {}

    def name(self, label: int) -> str:
        return self.class_names[label] if 0 <= label < len(self.class_names) else str(label)

    def add(self, column: str, chw: np.ndarray, title: str, row: int) -> None:
        import numpy as np

        if column not in self.columns:
            self.columns.append(column)
        self.cells[(row, column)] = (np.transpose(np.asarray(chw, dtype=np.float32), (1, 2, 0)), title)

    def add_perturbation(self, clean: np.ndarray, kept: ExamplePerturbation | None, row: int, column: str) -> None:
        """The perturbed image (clean + δ, clipped) and δ itself, scaled so that its largest entry is at the
        edge of the grey range (δ is often invisible at its true size)."""
        import numpy as np

        perturbation = "perturbation (scaled)"
        for heading in (column, perturbation):
            if heading not in self.columns:
                self.columns.append(heading)
        if kept is None or tuple(kept.delta.shape) != tuple(clean.shape):
            return
        delta = np.asarray(kept.delta, dtype=np.float32)
        scale = float(np.abs(delta).max()) or 1.0
        title = "" if kept.prediction is None else f"→ {self.name(kept.prediction)}"
        self.add(column, np.clip(clean + delta, 0, 1), title, row)
        self.add(perturbation, delta / (2 * scale) + 0.5, f"max |δ| {scale:.3f}", row)

    def figure(self) -> Figure:
        from ..reports.plots import image_grid_figure

        rows = 1 + max(row for row, _ in self.cells)
        images: list[list[np.ndarray | None]] = []
        titles: list[list[str]] = []
        for row in range(rows):
            cells = [self.cells.get((row, column)) for column in self.columns]
            images.append([cell[0] if cell else None for cell in cells])
            titles.append([cell[1] if cell else "" for cell in cells])
        return image_grid_figure(images, self.columns, titles)
