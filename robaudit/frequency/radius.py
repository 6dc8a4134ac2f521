"""Shared FFT helpers: the frequency of every bin of an unshifted 2-D FFT, and radial (disc) masks.

Frequencies are in cycles/pixel as :func:`numpy.fft.fftfreq` gives them (axis Nyquist 0.5). A *normalized*
frequency ``f`` is the radius ``f * 0.5`` cycles/pixel, so ``f = 1`` is the axis Nyquist frequency and the
corners of the spectrum (radius 0.5·√2) are only reached at ``f = √2``.
"""

from __future__ import annotations

import numpy as np

from . import NYQUIST


def frequency_radius(n: int) -> np.ndarray:
    """``(n, n)`` radius ``sqrt(fx² + fy²)`` in cycles/pixel of each bin, in the unshifted FFT layout."""
    f = np.fft.fftfreq(n)
    return np.sqrt(f[:, None] ** 2 + f[None, :] ** 2)


def low_pass_mask(n: int, fmix: float) -> np.ndarray:
    """``(n, n)`` boolean disc: True where the bin's radius is at most ``fmix * 0.5`` (``fmix`` normalized).

    ``fmix = 0`` keeps only the DC bin; ``fmix = 1`` reaches the axis Nyquist bins but not the corners.
    """
    # the tolerance keeps bins exactly on the circle (e.g. the corners at fmix = √2) inside despite rounding
    return frequency_radius(n) <= fmix * NYQUIST + 1e-12
