"""``robaudit spectrum``: power spectrum and median radial frequency f0.5 of saved adversarial perturbations."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ..errors import InputError
from . import options as o

if TYPE_CHECKING:
    import numpy as np

    from ..data import DataSpec
    from ..runner import RunSpec

SPECTRUM = "Spectrum"

#: the arrays every perturbation file has; newer files also name their data (``data``, ``data_fingerprint``)
REQUIRED = ("delta", "index", "label", "threat", "eps", "success")


def load_perturbations(path: Path) -> dict[str, np.ndarray]:
    """The arrays of a ``--save-perturbations`` file, checked for keys and matching lengths."""
    import numpy as np

    if not path.is_file():
        raise InputError(f"{path}: no such file (write one with robaudit attack ... --save-perturbations PATH.npz)")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: np.asarray(npz[k]) for k in npz.files}
    except Exception as exc:
        raise InputError(f"{path}: not a readable .npz file ({type(exc).__name__}: {exc})") from None
    missing = [k for k in REQUIRED if k not in arrays]
    if missing:
        raise InputError(f"{path}: missing key(s) {', '.join(missing)} (expected {', '.join(REQUIRED)})")
    delta = arrays["delta"]
    if delta.ndim != 4:
        raise InputError(f"{path}: delta must be (N, C, H, W), got shape {delta.shape}")
    if delta.shape[-1] != delta.shape[-2]:
        raise InputError(f"{path}: images must be square, got H x W = {delta.shape[-2]} x {delta.shape[-1]}")
    bad = [k for k in REQUIRED[1:] if arrays[k].shape != (delta.shape[0],)]
    if bad:
        raise InputError(f"{path}: {', '.join(bad)} must have one entry per perturbation ({delta.shape[0]})")
    return arrays


def select(arrays: dict[str, np.ndarray], threat: str | None, eps: float | None, everything: bool) -> np.ndarray:
    """Boolean mask of the rows kept: one threat, one ε, and (unless ``everything``) successful ones."""
    import numpy as np

    keep = np.ones(len(arrays["delta"]), dtype=bool)
    threats = arrays["threat"].astype(str)
    if threat is not None:
        keep &= threats == threat
        if not keep.any():
            raise InputError(f"--threat {threat!r} not in the file (it holds {sorted(set(threats))})")
    elif len(set(threats)) > 1:
        raise InputError(f"the file holds several threats {sorted(set(threats))}: choose one with --threat")
    budgets = arrays["eps"].astype(np.float64)
    if eps is not None:
        keep &= np.isclose(budgets, eps, rtol=1e-6, atol=1e-12)
        if not keep.any():
            raise InputError(
                f"--eps {eps} not among the kept rows (ε values: {sorted({str(b) for b in budgets})}; nan: minimal)"
            )
    elif len(np.unique(budgets[keep], equal_nan=True)) > 1:
        raise InputError(f"the file holds several ε {sorted(set(budgets[keep].tolist()))}: choose one with --eps")
    if not everything:
        keep &= arrays["success"].astype(bool)
    if not keep.any():
        raise InputError("no perturbation left after filtering (use --all to include failed attacks)")
    return keep


def write_table(arrays: dict[str, np.ndarray], f_half: np.ndarray, meta: dict[str, Any], path: Path) -> Path:
    """One row per image (index, label, threat, eps, f_half) with ``meta`` under the robaudit metadata key."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ..reports.writer import METADATA_KEY, canonical_json

    table = pa.table(
        {
            "index": arrays["index"].astype(np.int64),
            "label": arrays["label"].astype(np.int64),
            "threat": arrays["threat"].astype(str),
            "eps": arrays["eps"].astype(np.float64),
            "f_half": f_half.astype(np.float64),
        }
    )
    table = table.replace_schema_metadata({METADATA_KEY: canonical_json(meta).encode()})
    pq.write_table(table, path)
    return path


def _finite(value: float) -> float | None:
    import numpy as np

    return float(value) if np.isfinite(value) else None


@o.audit_command(batch_size=64, chunk_size=128, model_required=False)
def spectrum_command(
    spec: RunSpec | None,
    report: o.ReportOptions,
    data_spec: DataSpec,
    perturbations: Annotated[
        Path | None,
        typer.Option(
            "--perturbations",
            "-p",
            help="An .npz written by robaudit attack --save-perturbations (no --model needed).",
            rich_help_panel=SPECTRUM,
        ),
    ] = None,
    of: Annotated[
        str,
        typer.Option(
            "--of",
            help="perturbations (adversarial; from --perturbations, or computed for --model) or corruptions "
            "(the difference images of each corruption; no model needed).",
            rich_help_panel=SPECTRUM,
        ),
    ] = "perturbations",
    attack: Annotated[
        str,
        typer.Option(
            "--attack", "-a", help="Minimization attack when computing perturbations.", rich_help_panel=SPECTRUM
        ),
    ] = "ddn",
    ensemble: Annotated[
        list[str] | None,
        typer.Option(
            "--ensemble", help="More minimization attacks; the smallest per image is kept.", rich_help_panel=SPECTRUM
        ),
    ] = None,
    norm: Annotated[
        str,
        typer.Option(
            "--norm", help="Norm the minimal perturbations are measured in: l2 or linf.", rich_help_panel=SPECTRUM
        ),
    ] = "l2",
    targeted: Annotated[
        bool, typer.Option("--targeted", help="Aim each attack at a random other class.", rich_help_panel=SPECTRUM)
    ] = False,
    threat: Annotated[
        str | None,
        typer.Option(
            "--threat", help="Use only this threat (required if the file holds several).", rich_help_panel=SPECTRUM
        ),
    ] = None,
    eps: Annotated[
        str | None,
        typer.Option(
            "--eps",
            help="Use only this budget, e.g. 0.5 or 8/255 (if the file holds several).",
            rich_help_panel=SPECTRUM,
        ),
    ] = None,
    everything: Annotated[
        bool, typer.Option("--all", help="Include perturbations of failed attacks.", rich_help_panel=SPECTRUM)
    ] = False,
    corruptions: Annotated[
        str, typer.Option("--corruptions", "-c", help="With --of corruptions: which ones.", rich_help_panel=SPECTRUM)
    ] = "common",
    severities: Annotated[
        str, typer.Option("--severities", help="With --of corruptions: severities.", rich_help_panel=SPECTRUM)
    ] = "3",
    params: Annotated[
        str, typer.Option("--params", help="With --of corruptions: auto, imagenet or cifar.", rich_help_panel=SPECTRUM)
    ] = "auto",
    grid: Annotated[
        int,
        typer.Option("--grid", help="Radii of the cumulative-power grid (0 to max radius).", rich_help_panel=SPECTRUM),
    ] = 25,
) -> None:
    """Power spectrum and median radial frequency f0.5 (cycles/pixel) of minimal adversarial perturbations
    (saved by robaudit attack, or computed here for --model) or of each corruption's difference image."""
    from ..reports.writer import check_folder

    check_folder(report.out)  # before anything is computed
    if of == "corruptions":
        corruption_spectra(spec, data_spec, report, corruptions, severities, params, grid)
        return
    if of != "perturbations":
        raise InputError(f"--of takes perturbations or corruptions, got {of!r}")
    given = perturbations is not None
    if perturbations is None:
        if spec is None:
            raise InputError(
                "give --perturbations FILE (from robaudit attack --save-perturbations), or --model to compute them"
            )
        perturbations = minimal_perturbations(spec, report, attack, list(ensemble or []), norm, targeted)
        threat = threat or "white"
    arrays = load_perturbations(perturbations)  # read once: such files can hold gigabytes
    if given and spec is not None:  # perturbations computed here fit by construction
        _check_origin(arrays, perturbations, spec)
    perturbation_spectrum(arrays, perturbations, threat, eps, everything, grid, report)


def minimal_perturbations(
    spec: RunSpec, report: o.ReportOptions, attack: str, ensemble: list[str], norm: str, targeted: bool
) -> Path:
    """Run the attack audit in minimal mode (resumable, into the report folder) and export its perturbations."""
    from .. import plugins
    from ..audits.attack.audit import export_perturbations
    from ..data import parse_shard
    from ..runner import report_path
    from .audit_commands import run_and_report

    if norm not in ("l2", "linf"):
        raise InputError(f"--norm takes l2 or linf, got {norm!r}")
    audit = plugins.audits.get("attack")(
        attack=attack,
        threats=["white"],
        eps=None,
        eps_mode=norm,
        targeted=targeted,
        minimal=True,
        ensemble=ensemble,
        checks=False,
        seed=spec.seed,
        keep_perturbations=True,
    )
    run_and_report(audit, spec, report, quiet=True)
    path = report.out / "perturbations.npz"
    export_perturbations(report_path(report.out, "attack", parse_shard(spec.shard)), path)
    return path


def _check_origin(arrays: dict[str, np.ndarray], path: Path, spec: RunSpec) -> None:
    """With ``--model``, a perturbation file must fit the model's input size and come from the ``--data`` given."""
    from ..data import load_dataset
    from ..models import load_model

    preprocessing = load_model(spec.model, "cpu").preprocessing
    shape = arrays["delta"].shape[1:]
    if tuple(shape) != tuple(preprocessing.input_size):
        raise InputError(
            f"{path} holds {tuple(shape)} perturbations but {spec.model.name} takes "
            f"{tuple(preprocessing.input_size)} images"
        )
    recorded = str(arrays.get("data_fingerprint", ""))
    if recorded and recorded != load_dataset(spec.data, preprocessing).fingerprint():
        raise InputError(
            f"{path} holds perturbations of {arrays.get('data')} (another data fingerprint than --data "
            f"{spec.data.source}); give the data they were computed on"
        )


def perturbation_spectrum(
    arrays: dict[str, np.ndarray],
    perturbations: Path,
    threat: str | None,
    eps: str | None,
    everything: bool,
    grid: int,
    report: o.ReportOptions,
) -> None:
    """f0.5 and the spectrum plot of the perturbation file ``perturbations`` (its ``arrays``, as loaded)."""
    import numpy as np

    from ..frequency.spectrum import UNITS, spectrum_of
    from ..reports.figures import save_png, spectrum_figure
    from .output import print_json, print_summary, stderr

    budgets = o.budget_list(eps)
    if budgets is not None and len(budgets) != 1:
        raise InputError(f"--eps takes one value, got {eps!r}")
    keep = select(arrays, threat, budgets[0] if budgets else None, everything)
    kept = {k: v[keep] for k, v in arrays.items() if k in REQUIRED}
    result = spectrum_of(kept["delta"].astype(np.float32), grid)
    per_image = result["f_half"]
    summary = {
        "f_half_of_mean": _finite(result["f_half_of_mean"]),
        "f_half_median": _finite(np.nanmedian(per_image)) if np.isfinite(per_image).any() else None,
        "f_half_q25": _finite(np.nanquantile(per_image, 0.25)) if np.isfinite(per_image).any() else None,
        "f_half_q75": _finite(np.nanquantile(per_image, 0.75)) if np.isfinite(per_image).any() else None,
        "images": int(keep.sum()),
        "threat": str(kept["threat"][0]),
        "eps": _finite(float(kept["eps"][0])),
        "successful_only": not everything,
        "grid_points": grid,
        "units": UNITS,
    }
    folder = report.out
    folder.mkdir(parents=True, exist_ok=True)
    meta = {
        "kind": "spectrum",
        "source": str(perturbations),
        "summary": summary,
        "grid": result["grid"].tolist(),
        "cumulative": result["cumulative"].tolist(),
    }
    table = write_table(kept, per_image, meta, folder / "spectrum.parquet")
    figure = save_png(
        spectrum_figure(summary, result["grid"], result["cumulative"], result["mean_power"]), folder / "spectrum.png"
    )
    if report.as_json:
        print_json(summary)
    else:
        print_summary("Perturbation spectrum (f0.5 in cycles/pixel)", summary)
    stderr.print(f"table: {table}\nplot: {figure}")


def corruption_spectra(
    spec: RunSpec | None,
    data: DataSpec,
    report: o.ReportOptions,
    corruptions: str,
    severities: str,
    params: str,
    grid: int,
) -> None:
    """f0.5 of the difference image (corrupted − clean) of every corruption and severity, over the data."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from .. import corruptions as catalog
    from ..data import load_dataset, select_samples
    from ..frequency.spectrum import UNITS, difference_spectra
    from ..models import Preprocessing, load_model
    from ..reports.figures import corruption_spectra_figure, save_png
    from ..reports.writer import METADATA_KEY, canonical_json
    from .output import print_json, print_summary, progress_bar, stderr

    names = catalog.resolve_names(corruptions)
    chosen = catalog.parse_severities(severities)
    seed = spec.seed if spec else 0
    preprocessing = load_model(spec.model, "cpu").preprocessing if spec else Preprocessing()
    dataset = load_dataset(data, preprocessing)
    indices = select_samples(dataset.labels, data, seed)
    batch = dataset.load(indices)
    if batch.failures:
        raise InputError(f"cannot decode image {batch.failures[0][0]}: {batch.failures[0][1]}")
    with progress_bar("corruption spectra") as hook:
        rows = difference_spectra(batch.images, names, chosen, params, seed, grid, progress=hook)
    summary = {
        "images": len(batch.indices),
        "units": UNITS,
        "by_band": {
            band: float(sum(r["f_half_of_mean"] for r in rows if r["band"] == band) / n)
            for band in catalog.BANDS
            if (n := sum(1 for r in rows if r["band"] == band))
        },
        "corruptions": [{k: v for k, v in r.items() if k != "cumulative"} for r in rows],
    }
    folder = report.out
    folder.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pylist([{k: v for k, v in r.items() if k != "cumulative"} for r in rows])
    meta = {"kind": "corruption-spectrum", "data": dataset.description, "summary": summary, "grid_points": grid}
    path = folder / "corruption_spectrum.parquet"
    pq.write_table(table.replace_schema_metadata({METADATA_KEY: canonical_json(meta).encode()}), path)
    figure = save_png(corruption_spectra_figure(rows), folder / "corruption_spectrum.png")
    if report.as_json:
        print_json(summary)
    else:
        print_summary(f"Spectra of corruption difference images on {dataset.description}", summary)
    stderr.print(f"table: {path}\nplot: {figure}")
