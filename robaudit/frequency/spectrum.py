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
from . import UNITS
from .radius import frequency_radius

__all__ = ["UNITS"]


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


def radial_sums(power: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """The (NaN-summed) power at radius ≤ r for each r of ``grid``, not normalized.

    ``power`` is ``(n, n)`` or ``(N, n, n)`` in the unshifted FFT layout; the result is ``(len(grid),)`` or
    ``(N, len(grid))``. Means of these over images are the sums of the mean spectrum, which is how a report
    stores per-image spectra and still yields f0.5 of the mean spectrum.
    """
    n = power.shape[-1]
    rho = frequency_radius(n).ravel()
    flat = np.nan_to_num(power.reshape(*power.shape[:-2], n * n), nan=0.0)
    inside = (rho[None, :] <= np.asarray(grid)[:, None] + 1e-12).astype(np.float64)  # (G, n*n)
    return flat @ inside.T


def normalized(sums: np.ndarray) -> np.ndarray:
    """Radial sums divided by their total (the last grid radius takes in every bin); NaN without power."""
    total = sums[..., -1:]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, sums / total, np.nan)


def radial_cumulative(power: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Fraction of the (NaN-summed) power at radius ≤ r for each r of ``grid`` (see :func:`radial_sums`);
    a spectrum with no power gives NaN."""
    return normalized(radial_sums(power, grid))


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


def pooled_maps(power: np.ndarray, side: int = 32) -> np.ndarray:
    """``(N, m, m)`` power spectra with DC in the centre, averaged into at most ``side`` × ``side`` cells
    (``m = min(n, side)``): a small picture of where the power lies, cheap enough to keep per image."""
    shifted = np.fft.fftshift(np.nan_to_num(power, nan=0.0), axes=(-2, -1))
    n = shifted.shape[-1]
    m = min(n, side)
    edges = np.linspace(0, n, m + 1).round().astype(int)
    rows = np.add.reduceat(shifted, edges[:-1], axis=-2) / np.diff(edges)[:, None]
    return np.add.reduceat(rows, edges[:-1], axis=-1) / np.diff(edges)[None, :]


def image_spectra(delta: np.ndarray, points: int = 25) -> dict[str, np.ndarray]:
    """Per image of ``(N, C, n, n)`` δ: radial sums on the grid, f0.5 and a pooled map of the power."""
    if delta.ndim != 4 or delta.shape[0] == 0:
        raise InputError(f"perturbations must be a non-empty (N, C, H, W) array, got shape {delta.shape}")
    if delta.shape[-1] != delta.shape[-2] or delta.shape[-1] < 2:
        raise InputError(f"perturbations must be square images of at least 2x2, got {delta.shape[-2:]}")
    grid = radius_grid(delta.shape[-1], points)
    power = power_spectra(delta)
    sums = radial_sums(power, grid)
    return {
        "grid": grid,
        "sums": sums,
        "f_half": np.array([f_half(curve, grid) for curve in normalized(sums)]),
        "maps": pooled_maps(power),
    }
