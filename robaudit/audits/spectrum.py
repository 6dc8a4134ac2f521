"""Where in frequency perturbations put their power: f0.5 of adversarial perturbations and of corruptions.

After Li et al. (2023): per image the power spectrum of the perturbation (spatial mean removed, channels
averaged, DC dropped), its radial cumulative power on a grid of radii, and ``f0.5``, the radius (in
cycles/pixel; Nyquist 0.5) below which half the power lies. Rows keep each image's radial power sums, so
the summary also gives f0.5 of the *mean* spectrum (the paper's figure) next to the per-image quartiles.
See :mod:`robaudit.frequency.spectrum` for the definitions.

Two audits:

* ``spectrum``: perturbations of adversarial attacks, either read from a perturbation file written by
  ``robaudit attack --save-perturbations`` (``perturbations=FILE``: no model needed; the rows are the
  file's perturbations, through the ``perturbations:`` data source) or computed here as the smallest
  perturbation per image over an ensemble of minimization attacks (``attack=``, with a model);
* ``corruption-spectrum``: the difference images ``corrupt(x) − x`` of each corruption and severity, drawn
  exactly as the corruptions audit draws them (same seeds), which places corruptions in frequency bands.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from ..errors import InputError
from ..frequency import UNITS
from ..reports.content import FigureSpec, Table, finite, num, pairs, text
from ..reports.metrics import Metric, Pattern, present
from .base import Audit, AuditBatch
from .options import Option, budget_list, names

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    from matplotlib.figure import Figure

    from ..data import DataSpec
    from ..models import LoadedModel
    from ..reports.folder import Report
    from ..runner import RunSpec

F_HALF = Pattern("spectrum.f0.5", "number", None, "f0.5 (cycles/pixel) of the mean perturbation power spectrum")
F_HALF_MEDIAN = Pattern("spectrum.f0.5_median", "number", None, "median over images of the per-image f0.5")
BAND_F_HALF = Pattern(
    "corruption-spectrum.band.<band>.f0.5", "number", None, "mean f0.5 (cycles/pixel) of a frequency band's corruptions"
)
GRID = Option("grid", "Radii of the cumulative-power grid (0 to max radius).", default=25, type=int)
SPECTRAL_COLUMNS: dict[str, Any] = {
    "side": "int32",
    "f_half": "float64",
    # power at radius <= r for each r of the grid (not normalized): means over images give the mean spectrum
    "radial_power": "list<float64>",
    # the power spectrum, DC in the centre, averaged into at most 32 x 32 cells (for the figure)
    "power_map": "list<float32>",
}


def spectral_columns(delta: np.ndarray, points: int) -> dict[str, Any]:
    """The spectral columns of ``(N, C, n, n)`` perturbations, one row each."""
    import numpy as np

    from ..frequency.spectrum import image_spectra

    result = image_spectra(delta, points)
    return {
        "side": np.full(len(delta), delta.shape[-1], dtype=np.int32),
        "f_half": result["f_half"],
        "radial_power": _objects([row for row in result["sums"]]),
        "power_map": _objects([m.astype(np.float32).ravel() for m in result["maps"]]),
    }


def _objects(values: list[Any]) -> np.ndarray:
    import numpy as np

    column = np.empty(len(values), dtype=object)
    column[:] = values  # element by element: equal-length arrays must not become a 2-D array
    return column


def spectrum_figures(group: pd.DataFrame, points: int) -> tuple[list[float], list[float], float | None]:
    """(grid, cumulative power of the mean spectrum, its f0.5) of a group of rows."""
    import numpy as np

    from ..frequency.spectrum import f_half, normalized, radius_grid

    grid = radius_grid(int(group["side"].iloc[0]), points)
    mean = np.mean(np.stack([np.asarray(s, dtype=np.float64) for s in group["radial_power"]]), axis=0)
    cumulative = normalized(mean)
    value = f_half(cumulative, grid)
    return grid.tolist(), cumulative.tolist(), value if math.isfinite(value) else None


def _finite_or_none(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


class SpectrumAudit(Audit):
    """Power spectrum and f0.5 (cycles/pixel) of adversarial perturbations: saved ones, or minimal ones
    computed here for the model."""

    name = "spectrum"
    title = "Perturbation spectrum"
    order = 50
    batch_size = 64
    chunk_size = 128
    columns: ClassVar[dict[str, Any]] = {
        "data_index": "int64",
        "threat": "string",
        "made_by": "string",
        "eps": "float64",
        "success": "bool",
        "size": "float32",
        **SPECTRAL_COLUMNS,
    }
    options = (
        Option(
            "perturbations",
            "An .npz written by robaudit attack --save-perturbations (no --model needed).",
            type=Path,
            flags=("--perturbations", "-p"),
        ),
        Option(
            "of",
            "perturbations (adversarial; from --perturbations, or computed for --model) or corruptions "
            "(the difference images of each corruption; no model needed).",
            default="perturbations",
        ),
        Option("attack", "Minimization attack when computing perturbations.", default="ddn", flags=("--attack", "-a")),
        Option("ensemble", "More minimization attacks; the smallest per image is kept.", multiple=True, parse=list),
        Option("norm", "Norm the minimal perturbations are measured in: l2 or linf.", default="l2"),
        Option("targeted", "Aim each attack at a random other class.", default=False, type=bool),
        Option("threat", "Use only this threat (required if the file holds several)."),
        Option("eps", "Use only this budget, e.g. 0.5 or 8/255 (if the file holds several)."),
        Option("everything", "Include perturbations of failed attacks.", default=False, type=bool, flags=("--all",)),
        Option("corruptions", "With --of corruptions: which ones.", default="common", flags=("--corruptions", "-c")),
        Option("severities", "With --of corruptions: severities.", default="3"),
        Option("params", "With --of corruptions: auto, imagenet or cifar.", default="auto"),
        GRID,
    )
    metric_patterns = (F_HALF, F_HALF_MEDIAN)

    def __init__(
        self,
        *,
        perturbations: str | None = None,
        threat: str | None = None,
        eps: float | None = None,
        successful_only: bool = True,
        attack: str = "ddn",
        ensemble: list[str] | None = None,
        norm: str = "l2",
        targeted: bool = False,
        grid: int = 25,
        seed: int = 0,
    ) -> None:
        if perturbations is not None:
            super().__init__(
                perturbations=perturbations, threat=threat, eps=eps, successful_only=successful_only, grid=grid
            )
        else:
            super().__init__(
                attack=attack,
                ensemble=list(ensemble or []),
                norm=norm,
                targeted=targeted,
                successful_only=successful_only,
                grid=grid,
                seed=seed,
            )
        if grid < 2:
            raise InputError(f"--grid takes at least 2 points, got {grid}")
        if norm not in ("l2", "linf"):
            raise InputError(f"--norm takes l2 or linf, got {norm!r}")
        self.keep: set[int] | None = None
        self.origin: DataSpec | None = None
        if perturbations is None:
            from ..attacks.base import build_attack

            self.attacks = [build_attack(spec) for spec in [attack, *self.params["ensemble"]]]
            fixed = [repr(a) for a in self.attacks if not a.minimization]
            if fixed:
                raise InputError(
                    f"the spectrum of a model's perturbations needs minimization attacks (ddn, l2-cw, ...); "
                    f"{', '.join(fixed)} has a fixed budget"
                )

    @classmethod
    def from_options(
        cls,
        spec: RunSpec,
        *,
        of: str = "perturbations",
        perturbations: Path | None = None,
        eps: str | None = None,
        everything: bool = False,
        corruptions: str = "common",
        severities: str = "3",
        params: str = "auto",
        grid: int = 25,
        **values: Any,
    ) -> Audit:
        """``of=corruptions`` is the corruption-spectrum audit; without a file the perturbations need a model."""
        if of == "corruptions":
            return CorruptionSpectrumAudit.from_options(
                spec, corruptions=corruptions, severities=severities, params=params, grid=grid
            )
        if of != "perturbations":
            raise InputError(f"--of takes perturbations or corruptions, got {of!r}")
        budgets = budget_list(eps) if eps is not None else None
        if budgets is not None and len(budgets) != 1:
            raise InputError(f"--eps takes one value, got {eps!r}")
        if perturbations is not None:
            return cls(
                perturbations=str(perturbations),
                threat=values.get("threat"),
                eps=budgets[0] if budgets else None,
                successful_only=not everything,
                grid=grid,
            )
        if spec.model is None:
            raise InputError(
                "give --perturbations FILE (from robaudit attack --save-perturbations), or --model to compute them"
            )
        values.pop("threat", None)
        return cls(successful_only=not everything, grid=grid, seed=spec.seed, **values)

    @property
    def from_file(self) -> bool:
        return self.params.get("perturbations") is not None

    @property
    def needs_model(self) -> bool:
        return not self.from_file

    @property
    def inputs(self) -> str:
        return "perturbations" if self.from_file else "images"

    def adjust_spec(self, spec: RunSpec) -> RunSpec:
        """A file's perturbations are the samples (the ``perturbations:`` source); which of them, is checked now."""
        if not self.from_file:
            return spec
        from dataclasses import replace

        from ..data import DataSpec
        from ..data.perturbations import PerturbationDataset

        path = Path(self.params["perturbations"])
        dataset = PerturbationDataset(path)
        side = dataset.delta.shape[-2:]
        if side[0] != side[1]:
            raise InputError(f"{path}: images must be square, got H x W = {side[0]} x {side[1]}")
        self.keep = set(select(dataset.info, self.params["threat"], self.params["eps"], self.params["successful_only"]))
        # with a model, the file must come from the data given: its images are what the model would see
        self.origin = spec.data if spec.model is not None else None
        self.file_fingerprint, self.file_shape = dataset.data_fingerprint, tuple(dataset.delta.shape[1:])
        return replace(spec, data=DataSpec(f"perturbations:{path}", on_bad_image=spec.data.on_bad_image))

    def prepare(self, model: LoadedModel) -> None:
        if not self.from_file:
            if self.params["targeted"] and model.num_classes < 2:
                raise InputError("--targeted needs at least 2 classes")
            return
        path = self.params["perturbations"]
        if tuple(self.file_shape) != tuple(model.preprocessing.input_size):
            raise InputError(
                f"{path} holds {tuple(self.file_shape)} perturbations but the model takes "
                f"{tuple(model.preprocessing.input_size)} images"
            )
        if self.origin is not None and self.file_fingerprint:
            from ..data import load_dataset

            if load_dataset(self.origin, model.preprocessing).fingerprint() != self.file_fingerprint:
                raise InputError(
                    f"{path} holds perturbations of other images than --data {self.origin.source} (another data "
                    "fingerprint); give the data they were computed on"
                )

    def run_batch(self, model: LoadedModel, batch: AuditBatch) -> dict[str, np.ndarray]:
        import numpy as np

        if self.from_file:
            assert self.keep is not None, "adjust_spec reads the file first"
            sample = np.array([k for k, i in enumerate(batch.indices) if int(i) in self.keep], dtype=np.int64)
            delta = batch.images[sample].cpu().numpy()
            info = {k: v[sample] for k, v in batch.info.items()}
            rows: dict[str, Any] = {
                "sample": sample,
                "data_index": info["data_index"],
                "threat": _objects(list(info["threat"])),
                "made_by": _objects(list(info["made_by"])),
                "eps": info["eps"],
                "success": info["success"],
                "size": np.full(len(sample), np.nan, dtype=np.float32),
            }
        else:
            rows = self._minimal_rows(model, batch)
            delta = rows.pop("delta")
        if len(delta):
            rows.update(spectral_columns(delta, int(self.params["grid"])))
        else:
            rows.update({name: np.empty(0, dtype=object) for name in SPECTRAL_COLUMNS})
        return rows

    def _minimal_rows(self, model: LoadedModel, batch: AuditBatch) -> dict[str, Any]:
        """The smallest perturbation per image over the attacks, made and judged on the model itself."""
        import numpy as np

        from .attack.audit import batch_generator, draw_targets, smallest_perturbations

        x, y = batch.images, batch.labels
        seed = int(self.params["seed"])
        targets = draw_targets(batch.indices, y, model.num_classes, seed) if self.params["targeted"] else None
        adv, ok = smallest_perturbations(
            self.attacks, model.module, x, y, targets, batch_generator(seed, x, batch.indices), self.params["norm"]
        )
        delta = (adv - x).detach()
        flat = delta.flatten(1)
        size = flat.abs().amax(dim=1) if self.params["norm"] == "linf" else flat.norm(dim=1)
        n = len(x)
        return {
            "sample": np.arange(n),
            "data_index": batch.indices,
            "threat": _objects(["white"] * n),
            "made_by": _objects(["defended" if model.defenses else "backbone"] * n),
            "eps": np.full(n, np.nan),
            "success": ok.cpu().numpy(),
            "size": size.float().cpu().numpy(),
            "delta": delta.float().cpu().numpy(),
        }

    @classmethod
    def summarize(cls, rows: pd.DataFrame, metadata: dict[str, Any]) -> dict[str, Any]:
        import numpy as np

        params = metadata.get("identity", {}).get("params", {})
        done = rows[~rows["skipped"].astype(bool)]
        if params.get("successful_only", True):
            done = done[done["success"].astype(bool)]
        summary: dict[str, Any] = {"images": len(done)}
        if done.empty:
            return {**summary, "f_half_of_mean": None, "note": "no perturbation (use --all to include failed attacks)"}
        per_image = done["f_half"].to_numpy(dtype=float)
        measured = np.isfinite(per_image).any()
        grid, cumulative, of_mean = spectrum_figures(done, int(params.get("grid", 25)))
        eps = done["eps"].iloc[0]
        summary.update(
            f_half_of_mean=of_mean,
            f_half_median=_finite_or_none(float(np.nanmedian(per_image))) if measured else None,
            f_half_q25=_finite_or_none(float(np.nanquantile(per_image, 0.25))) if measured else None,
            f_half_q75=_finite_or_none(float(np.nanquantile(per_image, 0.75))) if measured else None,
            threat=str(done["threat"].iloc[0]),
            eps=float(eps) if finite(float(eps)) else None,
            successful_only=bool(params.get("successful_only", True)),
            grid_points=int(params.get("grid", 25)),
            units=UNITS,
            grid=grid,
            cumulative=cumulative,
        )
        return summary

    # -- what the report means -----------------------------------------------------------------------------------
    @classmethod
    def metrics(cls, summary: dict[str, Any], metadata: dict[str, Any]) -> list[Metric]:
        return present(
            [
                F_HALF.metric("spectrum.f0.5", summary.get("f_half_of_mean")),
                F_HALF_MEDIAN.metric("spectrum.f0.5_median", summary.get("f_half_median")),
            ]
        )

    @classmethod
    def tables(cls, summary: dict[str, Any], metadata: dict[str, Any]) -> list[Table]:
        s = summary
        quartiles = (
            f"{num(s.get('f_half_median'))} [{num(s.get('f_half_q25'))}, {num(s.get('f_half_q75'))}]"
            if finite(s.get("f_half_median"))
            else "–"
        )
        params = metadata.get("identity", {}).get("params", {})
        source = params.get("perturbations") or f"minimal perturbations of {params.get('attack', '?')}"
        return [
            pairs(
                "Median radial frequency f0.5",
                [
                    ("f0.5 of the mean spectrum", num(s.get("f_half_of_mean"))),
                    ("per-image f0.5: median [q25, q75]", quartiles),
                    ("units", text(s.get("units"))),
                    ("perturbations", text(s.get("images"))),
                    ("threat", text(s.get("threat"))),
                    ("ε", "minimal" if s.get("eps") is None else num(s.get("eps"))),
                    ("successful attacks only", text(s.get("successful_only"))),
                    ("source", str(source)),
                ],
            )
        ]

    @classmethod
    def key_numbers(cls, summary: dict[str, Any], metadata: dict[str, Any]) -> dict[str, str]:
        return {f"f0.5 ({summary.get('threat', '?')})": num(summary.get("f_half_of_mean"))}

    @classmethod
    def figures(cls, report: Report) -> list[FigureSpec]:
        rows = report.rows[~report.rows["skipped"].astype(bool)]
        if report.summary.get("successful_only", True) and "success" in rows:
            rows = rows[rows["success"].astype(bool)]
        fig = spectrum_figure(report.summary, _mean_map(rows))
        return [FigureSpec("spectrum", "Radial cumulative power of the perturbations; red: f0.5", fig)]


def _mean_map(rows: pd.DataFrame) -> np.ndarray | None:
    import numpy as np

    maps = [np.asarray(m, dtype=np.float64) for m in rows["power_map"].dropna()] if len(rows) else []
    if not maps:
        return None
    mean = np.mean(np.stack(maps), axis=0)
    side = math.isqrt(len(mean))
    return mean.reshape(side, side)


def select(info: dict[str, np.ndarray], threat: str | None, eps: float | None, successful_only: bool) -> list[int]:
    """Positions of a perturbation file's entries kept: one threat, one ε, and (``successful_only``) successes."""
    import numpy as np

    keep = np.ones(len(info["threat"]), dtype=bool)
    threats = info["threat"].astype(str)
    if threat is not None:
        keep &= threats == threat
        if not keep.any():
            raise InputError(f"--threat {threat!r} not in the file (it holds {sorted(set(threats))})")
    elif len(set(threats)) > 1:
        raise InputError(f"the file holds several threats {sorted(set(threats))}: choose one with --threat")
    budgets = info["eps"].astype(np.float64)
    if eps is not None:
        keep &= np.isclose(budgets, eps, rtol=1e-6, atol=1e-12)
        if not keep.any():
            raise InputError(
                f"--eps {eps} not among the kept rows (ε values: {sorted({str(b) for b in budgets})}; nan: minimal)"
            )
    elif len(np.unique(budgets[keep], equal_nan=True)) > 1:
        raise InputError(f"the file holds several ε {sorted(set(budgets[keep].tolist()))}: choose one with --eps")
    if successful_only:
        keep &= info["success"].astype(bool)
    if not keep.any():
        raise InputError("no perturbation left after filtering (use --all to include failed attacks)")
    return np.flatnonzero(keep).tolist()


def spectrum_figure(summary: dict[str, Any], mean_power: np.ndarray | None = None) -> Figure:
    """Radial cumulative power of the perturbations with the f0.5 marker; beside it, when ``mean_power``
    (the mean spectrum, DC in the centre, pooled) is given, its log image."""
    import numpy as np

    from ..reports.plots import new_figure, no_data

    fig, axes = new_figure(10.0 if mean_power is not None else 6.0, 4.0, ncols=2 if mean_power is not None else 1)
    left = axes[0]
    if not summary.get("grid"):
        no_data(left, str(summary.get("note") or "no perturbations"))
        return fig
    left.plot(summary["grid"], summary["cumulative"], marker="o", ms=3)
    left.axhline(0.5, color="grey", lw=0.8, ls="--")
    half = summary.get("f_half_of_mean")
    if finite(half):
        left.axvline(float(half), color="red", lw=1, label=f"f0.5 = {float(half):.3f}")
        left.legend()
    left.set_xlabel("radius (cycles/pixel; Nyquist 0.5)")
    left.set_ylabel("cumulative power fraction")
    left.set_title("Radial cumulative power", fontsize=10)
    if mean_power is not None:
        right = axes[1]
        with np.errstate(divide="ignore", invalid="ignore"):
            image = right.imshow(np.log10(mean_power), origin="lower", extent=(-0.5, 0.5, -0.5, 0.5), cmap="magma")
        fig.colorbar(image, ax=right, label="log10 mean power")
        right.set_xlabel("fx (cycles/pixel)")
        right.set_ylabel("fy (cycles/pixel)")
        right.set_title("Mean power spectrum (DC removed)", fontsize=10)
    fig.tight_layout()
    return fig


# -- corruptions ---------------------------------------------------------------------------------------------------


class CorruptionSpectrumAudit(Audit):
    """f0.5 (cycles/pixel) of each corruption's difference image corrupt(x) − x: which frequency band a
    corruption perturbs (no model needed)."""

    name = "corruption-spectrum"
    title = "Spectra of corruptions"
    order = 55
    batch_size = 64
    batch_dependent = True  # corruption draws are seeded per batch, as in the corruptions audit
    columns: ClassVar[dict[str, Any]] = {
        "corruption": "string",
        "severity": "int8",
        "group": "string",
        "band": "string",
        **SPECTRAL_COLUMNS,
    }
    options = (
        Option(
            "corruptions",
            "Which corruptions (as robaudit corruptions).",
            default="common",
            flags=("--corruptions", "-c"),
        ),
        Option("severities", "Severities, e.g. 3 or 1,3,5.", default="3"),
        Option("params", "auto, imagenet or cifar parameters.", default="auto"),
        GRID,
    )
    metric_patterns = (BAND_F_HALF,)

    def __init__(
        self,
        *,
        corruptions: list[str] | None = None,
        severities: list[int] | None = None,
        param_set: str = "auto",
        grid: int = 25,
        seed: int = 0,
    ) -> None:
        from .. import corruption as catalog

        chosen = list(catalog.NAMES if corruptions is None else corruptions)
        for name in chosen:
            catalog.get(name)
        if grid < 2:
            raise InputError(f"--grid takes at least 2 points, got {grid}")
        super().__init__(
            corruptions=chosen, severities=sorted(severities or [3]), param_set=param_set, grid=grid, seed=seed
        )

    @classmethod
    def from_options(
        cls,
        spec: RunSpec,
        *,
        corruptions: Any = "common",
        severities: Any = "3",
        params: str = "auto",
        grid: int = 25,
        **values: Any,
    ) -> Audit:
        from .. import corruption as catalog

        chosen = catalog.resolve_names(",".join(names(corruptions)))
        levels = catalog.parse_severities(severities) if isinstance(severities, str) else list(severities)
        return cls(corruptions=chosen, severities=levels, param_set=params, grid=grid, seed=spec.seed)

    @property
    def needs_model(self) -> bool:
        return False

    def run_batch(self, model: LoadedModel | None, batch: AuditBatch) -> dict[str, np.ndarray]:
        import numpy as np

        from .. import corruption as catalog
        from .corruptions.audit import corruption_generator

        x = batch.images
        first, n = int(batch.indices[0]), len(x)
        height, width = x.shape[-2:]
        context = catalog.CorruptionContext(catalog.param_set_for(height, width, self.params["param_set"]), None)
        parts: list[dict[str, Any]] = []
        for k, name in enumerate(self.params["corruptions"]):
            for severity in self.params["severities"]:
                generator = corruption_generator(int(self.params["seed"]), x.device, k, severity, first)
                corrupted = catalog.corrupt(x, name, severity, generator=generator, context=context)
                parts.append(
                    {
                        "sample": np.arange(n),
                        "corruption": _objects([name] * n),
                        "severity": np.full(n, severity, dtype=np.int8),
                        "group": _objects([catalog.group_of(name)] * n),
                        "band": _objects([catalog.band_of(name)] * n),
                        **spectral_columns((corrupted - x).cpu().numpy(), int(self.params["grid"])),
                    }
                )
        return {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}

    @classmethod
    def summarize(cls, rows: pd.DataFrame, metadata: dict[str, Any]) -> dict[str, Any]:
        import numpy as np

        from .. import corruption as catalog

        params = metadata.get("identity", {}).get("params", {})
        points = int(params.get("grid", 25))
        done = rows[~rows["skipped"].astype(bool)]
        cells: list[dict[str, Any]] = []
        for _, group in done.groupby(["corruption", "severity"], sort=False):
            name, severity = str(group["corruption"].iloc[0]), int(group["severity"].iloc[0])
            _, _, of_mean = spectrum_figures(group, points)
            finite_values = group["f_half"].to_numpy(dtype=float)
            finite_values = finite_values[np.isfinite(finite_values)]
            cells.append(
                {
                    "corruption": str(name),
                    "severity": int(severity),
                    "group": catalog.group_of(str(name)),
                    "band": catalog.band_of(str(name)),
                    "f_half_of_mean": of_mean,
                    "f_half_median": float(np.median(finite_values)) if len(finite_values) else None,
                    "images": len(group),
                }
            )
        by_band = {
            band: float(np.mean(values))
            for band in catalog.BANDS
            if (values := [c["f_half_of_mean"] for c in cells if c["band"] == band and c["f_half_of_mean"] is not None])
        }
        return {"images": int(done["index"].nunique()), "units": UNITS, "by_band": by_band, "corruptions": cells}

    # -- what the report means -----------------------------------------------------------------------------------
    @classmethod
    def metrics(cls, summary: dict[str, Any], metadata: dict[str, Any]) -> list[Metric]:
        return present(
            BAND_F_HALF.metric(f"corruption-spectrum.band.{band}.f0.5", value)
            for band, value in (summary.get("by_band") or {}).items()
        )

    @classmethod
    def tables(cls, summary: dict[str, Any], metadata: dict[str, Any]) -> list[Table]:
        by_band = summary.get("by_band") or {}
        return [
            pairs(
                "Mean f0.5 per frequency band",
                [
                    *((f"{band} band", num(value)) for band, value in by_band.items()),
                    ("units", text(summary.get("units"))),
                ],
            ),
            Table(
                "f0.5 of each corruption's difference image",
                ["corruption", "severity", "group", "band", "f0.5 of the mean spectrum", "median f0.5", "images"],
                [
                    [
                        str(c["corruption"]),
                        text(c.get("severity")),
                        text(c.get("group")),
                        text(c.get("band")),
                        num(c.get("f_half_of_mean")),
                        num(c.get("f_half_median")),
                        text(c.get("images")),
                    ]
                    for c in summary.get("corruptions", [])
                ],
            ),
        ]

    @classmethod
    def key_numbers(cls, summary: dict[str, Any], metadata: dict[str, Any]) -> dict[str, str]:
        return {f"corruption f0.5 ({band})": num(v) for band, v in (summary.get("by_band") or {}).items()}

    @classmethod
    def figures(cls, report: Report) -> list[FigureSpec]:
        params = report.meta.get("identity", {}).get("params", {})
        rows = report.rows[~report.rows["skipped"].astype(bool)]
        curves = []
        for _, group in rows.groupby(["corruption", "severity"], sort=False):
            grid, cumulative, of_mean = spectrum_figures(group, int(params.get("grid", 25)))
            first = group.iloc[0]
            curves.append(
                (str(first["corruption"]), int(first["severity"]), str(first["band"]), grid, cumulative, of_mean)
            )
        caption = "Radial cumulative power of each corruption's difference image, coloured by frequency band"
        return [FigureSpec("corruption-spectrum", caption, corruption_spectra_figure(curves))]


def corruption_spectra_figure(curves: list[tuple[str, int, str, list[float], list[float], float | None]]) -> Figure:
    """Radial cumulative power per (corruption, severity), coloured by frequency band, f0.5 in the legend."""
    from ..reports.plots import BAND_COLOURS, new_figure, no_data

    fig, (ax,) = new_figure(7.0, 4.5)
    if not curves:
        no_data(ax, "no corruption spectra")
        return fig
    for name, severity, band, grid, cumulative, of_mean in curves:
        label = f"{name} s{severity} (f0.5 {num(of_mean)})"
        ax.plot(grid, cumulative, color=BAND_COLOURS.get(band, "#888888"), lw=1, label=label)
    ax.axhline(0.5, color="grey", lw=0.8, ls="--")
    ax.set_xlabel("radius (cycles/pixel; Nyquist 0.5)")
    ax.set_ylabel("cumulative power fraction")
    ax.set_title("Difference-image spectra, coloured by frequency band", fontsize=10)
    ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    return fig
