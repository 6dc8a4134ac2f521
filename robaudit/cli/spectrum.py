"""``robaudit spectrum``: power spectrum and median radial frequency f0.5 of saved adversarial perturbations."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ..errors import InputError
from . import options as o

if TYPE_CHECKING:
    import numpy as np

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


def plot_spectrum(result: dict[str, Any], path: Path) -> Path:
    """Radial cumulative power with the f0.5 marker, and the log mean 2-D spectrum (fftshifted)."""
    import matplotlib
    import numpy as np

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    grid, half = result["grid"], result["f_half_of_mean"]
    left.plot(grid, result["cumulative"], marker="o", ms=3)
    left.axhline(0.5, color="grey", lw=0.8, ls="--")
    if np.isfinite(half):
        left.axvline(half, color="red", lw=1, label=f"f0.5 = {half:.3f}")
        left.legend()
    left.set_xlabel("radius (cycles/pixel; Nyquist 0.5)")
    left.set_ylabel("cumulative power fraction")
    left.set_title("Radial cumulative power")
    power = np.fft.fftshift(result["mean_power"])
    n = power.shape[-1]
    f = np.fft.fftshift(np.fft.fftfreq(n))
    with np.errstate(divide="ignore"):
        image = right.imshow(np.log10(power), origin="lower", extent=(f[0], f[-1], f[0], f[-1]), cmap="magma")
    fig.colorbar(image, ax=right, label="log10 mean power")
    right.set_xlabel("fx (cycles/pixel)")
    right.set_ylabel("fy (cycles/pixel)")
    right.set_title("Mean power spectrum (DC removed)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


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


def spectrum_command(
    perturbations: Annotated[
        Path, typer.Option("--perturbations", "-p", help="An .npz written by robaudit attack --save-perturbations.")
    ],
    threat: Annotated[
        str | None, typer.Option("--threat", help="Use only this threat (required if the file holds several).")
    ] = None,
    eps: Annotated[
        str | None, typer.Option("--eps", help="Use only this budget, e.g. 0.5 or 8/255 (if the file holds several).")
    ] = None,
    everything: Annotated[bool, typer.Option("--all", help="Include perturbations of failed attacks.")] = False,
    grid: Annotated[int, typer.Option("--grid", help="Radii of the cumulative-power grid (0 to max radius).")] = 25,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Output folder (default: <file stem>-spectrum next to it).")
    ] = None,
    json: o.Json = False,
) -> None:
    """Power spectrum of saved perturbations and their median radial frequency f0.5 (cycles/pixel)."""
    import numpy as np

    from ..spectrum import UNITS, spectrum_of
    from .output import print_json, print_summary, stderr

    budgets = o.budget_list(eps)
    if budgets is not None and len(budgets) != 1:
        raise InputError(f"--eps takes one value, got {eps!r}")
    arrays = load_perturbations(perturbations)
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
    folder = out or perturbations.with_name(perturbations.stem + "-spectrum")
    folder.mkdir(parents=True, exist_ok=True)
    meta = {
        "kind": "spectrum",
        "source": str(perturbations),
        "summary": summary,
        "grid": result["grid"].tolist(),
        "cumulative": result["cumulative"].tolist(),
    }
    table = write_table(kept, per_image, meta, folder / "spectrum.parquet")
    figure = plot_spectrum(result, folder / "spectrum.png")
    if json:
        print_json(summary)
    else:
        print_summary("Perturbation spectrum (f0.5 in cycles/pixel)", summary)
    stderr.print(f"table: {table}\nplot: {figure}")
