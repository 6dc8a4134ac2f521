"""Power spectrum of adversarial perturbations and its median radial frequency f0.5 (Li et al. 2023).

Per image and channel the spatial mean of δ is removed, the power ``|FFT2(δ)|²`` is taken, and the DC bin
is dropped (NaN). The radial cumulative power ``R(r) = Σ_{ρ≤r} P / Σ P`` is evaluated on a grid of radii
from 0 to the largest bin radius, and ``f0.5`` is the radius where ``R`` reaches one half (linear
interpolation on that grid). Radii are in cycles/pixel as :func:`numpy.fft.fftfreq` gives them: the axis
Nyquist frequency is 0.5 and the corners are at about 0.707 (this is *not* the normalization where 1 =
Nyquist).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InputError
from .radius import frequency_radius

UNITS = "cycles/pixel (axis Nyquist 0.5, corner 0.707)"


def radius_grid(n: int, points: int = 25) -> np.ndarray:
    """``points`` radii evenly spaced from 0 to the largest bin radius of an ``n × n`` FFT."""
    if points < 2:
        raise InputError(f"--grid takes at least 2 points, got {points}")
    return np.linspace(0.0, float(frequency_radius(n).max()), points)


def power_spectra(delta: np.ndarray) -> np.ndarray:
    """``(N, n, n)`` per-image power (mean over channels) of ``(N, C, n, n)`` perturbations; DC bin NaN."""
    x = np.asarray(delta, dtype=np.float64)
    x = x - x.mean(axis=(-2, -1), keepdims=True)
    power = (np.abs(np.fft.fft2(x)) ** 2).mean(axis=1)
    power[:, 0, 0] = np.nan
    return power


def radial_cumulative(power: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Fraction of the (NaN-summed) power at radius ≤ r for each r of ``grid``.

    ``power`` is ``(n, n)`` or ``(N, n, n)`` in the unshifted FFT layout; the result is ``(len(grid),)`` or
    ``(N, len(grid))``. A spectrum with no power gives NaN.
    """
    n = power.shape[-1]
    rho = frequency_radius(n).ravel()
    flat = np.nan_to_num(power.reshape(*power.shape[:-2], n * n), nan=0.0)
    inside = (rho[None, :] <= np.asarray(grid)[:, None] + 1e-12).astype(np.float64)  # (G, n*n)
    total = flat.sum(axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, (flat @ inside.T) / total, np.nan)


def f_half(cumulative: np.ndarray, grid: np.ndarray) -> float:
    """Radius where the cumulative curve reaches 0.5, by linear interpolation on ``grid`` (NaN if undefined)."""
    curve = np.asarray(cumulative, dtype=np.float64)
    if not np.all(np.isfinite(curve)):
        return float("nan")
    return float(np.interp(0.5, curve, np.asarray(grid)))


def spectrum_of(delta: np.ndarray, points: int = 25) -> dict[str, Any]:
    """Mean 2-D spectrum, its cumulative curve and f0.5, and the per-image f0.5 of ``(N, C, n, n)`` δ."""
    if delta.ndim != 4 or delta.shape[0] == 0:
        raise InputError(f"perturbations must be a non-empty (N, C, H, W) array, got shape {delta.shape}")
    if delta.shape[-1] != delta.shape[-2] or delta.shape[-1] < 2:
        raise InputError(f"perturbations must be square images of at least 2x2, got {delta.shape[-2:]}")
    grid = radius_grid(delta.shape[-1], points)
    per_image = power_spectra(delta)
    mean = per_image.mean(axis=0)
    cumulative = radial_cumulative(mean, grid)
    per_image_curves = radial_cumulative(per_image, grid)
    return {
        "grid": grid,
        "mean_power": mean,
        "cumulative": cumulative,
        "f_half_of_mean": f_half(cumulative, grid),
        "f_half": np.array([f_half(c, grid) for c in per_image_curves]),
    }


def difference_spectra(
    images: Any,
    names: list[str],
    severities: list[int],
    param_set: str = "auto",
    seed: int = 0,
    points: int = 25,
    batch_size: int = 64,
    progress: Any = None,
) -> list[dict[str, Any]]:
    """f0.5 of ``corrupt(x) − x`` for each corruption and severity over ``images`` ``(N, 3, n, n)`` in [0, 1].

    This is how Li et al. place corruptions in low / mid / high frequency bands. Each row also carries the
    cumulative curve (grid, values) of the mean spectrum for plotting.
    """
    import torch

    from .. import corruptions as catalog

    rows: list[dict[str, Any]] = []
    total, done = len(names) * len(severities), 0
    for k, name in enumerate(names):
        for severity in severities:
            deltas = []
            for start in range(0, len(images), batch_size):
                x = images[start : start + batch_size]
                generator = torch.Generator(device=x.device).manual_seed(
                    int(np.random.SeedSequence([seed, k, severity, start]).generate_state(1)[0])
                )
                corrupted = catalog.corrupt(x, name, severity, generator=generator, param_set=param_set)
                deltas.append((corrupted - x).cpu().numpy())
            result = spectrum_of(np.concatenate(deltas), points)
            finite = result["f_half"][np.isfinite(result["f_half"])]
            rows.append(
                {
                    "corruption": name,
                    "severity": severity,
                    "group": catalog.group_of(name),
                    "band": catalog.band_of(name),
                    "f_half_of_mean": float(result["f_half_of_mean"]),
                    "f_half_median": float(np.median(finite)) if len(finite) else None,
                    "images": len(images),
                    "cumulative": (result["grid"].tolist(), result["cumulative"].tolist()),
                }
            )
            done += 1
            if progress is not None:
                progress(done, total)
    return rows
