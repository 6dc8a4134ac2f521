"""Batched image filters shared by the corruptions: Gaussian blur, 2-D kernels, motion blur, clipped zoom.

Every function takes a float tensor whose last two dimensions are (H, W) — typically ``(N, C, H, W)`` —
on any device, and returns a tensor of the same shape. They reproduce the filters the reference
corruption code borrows from SciPy, scikit-image and OpenCV, so that the corruptions built on them keep
the reference's numbers:

* :func:`gaussian_blur` — ``scipy.ndimage.gaussian_filter`` per channel: a separable sampled Gaussian of
  radius ``int(truncate * sigma + 0.5)``, normalised to sum 1. Borders follow SciPy's mode names:
  ``"reflect"`` (half-sample symmetric, ``d c b a | a b c d``; *not* torch's ``"reflect"`` padding),
  ``"mirror"`` (whole-sample symmetric, ``d c b | a b c d``; torch's ``"reflect"``, OpenCV's reflect-101)
  and ``"nearest"`` (edge replication; scikit-image's ``gaussian`` default).
* :func:`filter2d` — ``cv2.filter2D``: correlation with one 2-D kernel on every channel, anchor at the
  kernel centre, border reflect-101.
* :func:`motion_blur` — the numpy motion blur of ``imagecorruptions``: a weighted sum of copies of the
  image shifted by whole pixels along a line, with one-sided Gaussian weights and edge replication.
* :func:`clipped_zoom` — zoom into the centre: crop ``ceil(H/z) x ceil(W/z)``, upscale bilinearly by ``z``
  with SciPy's ``zoom(order=1)`` sampling grid (corners aligned), trim back to ``H x W``.

How they stay fast on a batch: the separable Gaussian is two products with ``(side x side)`` matrices
that include the border (the cost does not depend on sigma); large 2-D kernels and the motion-blur kernels
go through the FFT, two real planes per complex transform; the zoom is one bilinear resampling of the
crop. Borders wider than the image fold back into it as SciPy's do (:func:`border_index`).
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
import torch.nn.functional as F

from ..errors import InputError

BORDER_MODES = ("reflect", "mirror", "nearest")
#: kernels with more taps than this are applied through the FFT, which is cheaper than a direct convolution
FFT_MIN_TAPS = 100
#: up to this image side, separable filters run as products with (side x side) matrices
MATMUL_MAX_SIDE = 512


def _check_image(x: torch.Tensor, name: str, ndim: int = 2) -> None:
    if x.ndim < ndim:
        raise InputError(f"{name} needs a tensor with at least {ndim} dimensions, got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise InputError(f"{name} needs a floating-point tensor, got {x.dtype}")


@lru_cache(maxsize=256)
def border_index(length: int, before: int, after: int, mode: str) -> torch.Tensor:
    """Source index of each position of a line of ``length`` samples padded by ``before`` / ``after``.

    Indices fold periodically, so pads wider than the line are handled as SciPy does.
    """
    if mode not in BORDER_MODES:
        raise InputError(f"unknown border mode {mode!r}; choose from {', '.join(BORDER_MODES)}")
    pos = torch.arange(-before, length + after)
    if mode == "nearest" or length == 1:
        return pos.clamp(0, length - 1)
    if mode == "reflect":
        period = 2 * length
        pos = pos.remainder(period)
        return torch.where(pos >= length, period - 1 - pos, pos)
    period = 2 * length - 2
    pos = pos.remainder(period)
    return torch.where(pos >= length, period - pos, pos)


def pad2d(x: torch.Tensor, top: int, bottom: int, left: int, right: int, mode: str) -> torch.Tensor:
    """``x`` padded on its last two dimensions with the given border mode (SciPy names)."""
    h, w = x.shape[-2:]
    native = {"mirror": "reflect", "nearest": "replicate"}.get(mode)
    if native and x.ndim == 4 and max(top, bottom) < h and max(left, right) < w:
        return F.pad(x, (left, right, top, bottom), mode=native)
    rows = border_index(h, top, bottom, mode).to(x.device)
    cols = border_index(w, left, right, mode).to(x.device)
    return x.index_select(-2, rows).index_select(-1, cols)


def fft_size(n: int) -> int:
    """The smallest integer >= n with no prime factor above 5 (a fast FFT length)."""
    size = n
    while True:
        rest = size
        for p in (2, 3, 5):
            while rest % p == 0:
                rest //= p
        if rest == 1:
            return size
        size += 1


@lru_cache(maxsize=64)
def gaussian_kernel1d(sigma: float, truncate: float = 4.0) -> torch.Tensor:
    """SciPy's sampled Gaussian: ``exp(-t²/2σ²)`` for ``t`` in ``[-r, r]``, ``r = int(truncate·σ + 0.5)``."""
    radius = int(truncate * sigma + 0.5)
    if sigma <= 0 or radius == 0:
        return torch.ones(1, dtype=torch.float64)
    t = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (t / sigma) ** 2)
    return kernel / kernel.sum()


def gaussian_blur(x: torch.Tensor, sigma: float, *, truncate: float = 4.0, mode: str = "reflect") -> torch.Tensor:
    """Gaussian blur of standard deviation ``sigma`` pixels on each channel, as ``scipy.ndimage.gaussian_filter``.

    ``mode`` names the border as SciPy does (``"reflect"`` is half-sample symmetric, SciPy's default;
    scikit-image's ``gaussian`` defaults to ``"nearest"``). ``sigma = 0`` returns ``x`` unchanged.
    """
    _check_image(x, "gaussian_blur")
    if not math.isfinite(sigma) or sigma < 0:
        raise InputError(f"gaussian_blur needs a finite sigma >= 0, got {sigma}")
    if truncate <= 0:
        raise InputError(f"gaussian_blur needs truncate > 0, got {truncate}")
    taps = gaussian_kernel1d(float(sigma), float(truncate))
    if taps.numel() == 1:
        return x.clone()
    h, w = x.shape[-2:]
    if max(h, w) <= MATMUL_MAX_SIDE:
        rows = gaussian_matrix(h, float(sigma), float(truncate), mode).to(device=x.device, dtype=x.dtype)
        cols = gaussian_matrix(w, float(sigma), float(truncate), mode).to(device=x.device, dtype=x.dtype)
        return torch.matmul(torch.matmul(rows, x), cols.T)
    radius = taps.numel() // 2
    weight = taps.to(device=x.device, dtype=x.dtype)
    planes = x.reshape(-1, 1, h, w)
    planes = F.conv2d(pad2d(planes, radius, radius, 0, 0, mode), weight.view(1, 1, -1, 1))
    planes = F.conv2d(pad2d(planes, 0, 0, radius, radius, mode), weight.view(1, 1, 1, -1))
    return planes.reshape(x.shape)


@lru_cache(maxsize=64)
def gaussian_matrix(length: int, sigma: float, truncate: float, mode: str) -> torch.Tensor:
    """The ``(length, length)`` matrix of the 1-D Gaussian filter along one axis, border included.

    Folding the border into the matrix turns padding plus filtering into one matrix product, which is
    faster than a strided convolution on CPU and costs the same for every kernel width.
    """
    taps = gaussian_kernel1d(sigma, truncate)
    radius = taps.numel() // 2
    source = border_index(length, radius, radius, mode)
    out = torch.arange(length).repeat_interleave(taps.numel())
    tap = torch.arange(taps.numel()).repeat(length)
    matrix = torch.zeros(length, length, dtype=torch.float64)
    matrix.index_put_((out, source[out + tap]), taps.to(torch.float64)[tap], accumulate=True)
    return matrix


def filter2d(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Correlation of every channel with a 2-D ``kernel`` as ``cv2.filter2D``: centred anchor, reflect-101 border.

    ``kernel`` is ``(kh, kw)`` — the same for all images — or ``(N, kh, kw)``, one per image of an
    ``(N, C, H, W)`` batch. Even sizes anchor at ``k // 2`` as OpenCV does.
    """
    _check_image(x, "filter2d")
    if kernel.ndim not in (2, 3):
        raise InputError(f"filter2d needs a (kh, kw) or (N, kh, kw) kernel, got shape {tuple(kernel.shape)}")
    per_image = kernel.ndim == 3
    if per_image and (x.ndim != 4 or kernel.shape[0] != x.shape[0]):
        raise InputError(
            f"filter2d with per-image kernels needs (N, C, H, W) images and (N, kh, kw) kernels, "
            f"got {tuple(x.shape)} and {tuple(kernel.shape)}"
        )
    kh, kw = kernel.shape[-2:]
    shape = x.shape
    height, width = shape[-2:]
    weight = kernel.to(device=x.device, dtype=x.dtype)
    channels = shape[1] if per_image else 1
    planes = x.reshape(-1 if not per_image else shape[0], channels, height, width)
    top, left = kh // 2, kw // 2
    if kh * kw > FFT_MIN_TAPS:
        frame = (fft_size(height + kh - 1), fft_size(width + kw - 1))
        padded = pad2d(planes, top, frame[0] - height - top, left, frame[1] - width - left, "mirror")
        # correlation = circular convolution with the flipped kernel; the window kept never wraps around
        spectra = torch.fft.fft2(weight.reshape(-1, kh, kw).flip(-2, -1).to(_complex_of(x.dtype)), s=frame)
        out = convolve_fft(padded, spectra, (kh - 1, kw - 1, height, width))
    else:
        padded = pad2d(planes, top, kh - 1 - top, left, kw - 1 - left, "mirror")
        if per_image:
            groups = planes.shape[0] * channels
            stacked = weight.repeat_interleave(channels, dim=0).unsqueeze(1)
            out = F.conv2d(padded.reshape(1, groups, *padded.shape[-2:]), stacked, groups=groups)
        else:
            # as a depthwise convolution over all planes: a single-channel conv2d over a large batch is far
            # slower on CPU than one grouped call
            planes_total = padded.shape[0]
            out = F.conv2d(
                padded.reshape(1, planes_total, *padded.shape[-2:]),
                weight.view(1, 1, kh, kw).expand(planes_total, 1, kh, kw),
                groups=planes_total,
            )
    return out.reshape(shape)


def _complex_of(dtype: torch.dtype) -> torch.dtype:
    return torch.complex128 if dtype == torch.float64 else torch.complex64


def convolve_fft(planes: torch.Tensor, spectra: torch.Tensor, window: tuple[int, int, int, int]) -> torch.Tensor:
    """Circular convolution of real planes ``(B, C, F0, F1)`` with real kernels given by their 2-D spectra.

    ``spectra`` is ``(B or 1, F0, F1)`` complex (one kernel per image, or one for all); the result is the
    ``(top, left, height, width)`` ``window``, ``(B, C, height, width)``.

    Two real planes travel as the real and imaginary parts of one complex plane, halving the transforms.
    With a shared real kernel the two results simply come back in the real and imaginary parts. Planes of
    different images (the odd channel of per-image kernels) are split in the frequency domain first, using
    the conjugate symmetry of real signals' spectra.
    """
    b, c, f0, f1 = planes.shape
    if spectra.shape[0] == 1:
        flat = _convolve_pairs(planes.reshape(1, b * c, f0, f1), spectra, window)
        return flat.reshape(b, c, *flat.shape[-2:])
    even = c - c % 2
    if not even:
        return _convolve_mixed(planes[:, 0], spectra, window).unsqueeze(1)
    out = planes.new_empty(b, c, window[2], window[3])
    out[:, :even] = _convolve_pairs(planes[:, :even], spectra, window)
    if c % 2:
        out[:, even] = _convolve_mixed(planes[:, even], spectra, window)
    return out


def _fft_window(spectrum: torch.Tensor, window: tuple[int, int, int, int]) -> torch.Tensor:
    top, left, height, width = window
    return torch.fft.ifft2(spectrum)[..., top : top + height, left : left + width]


def _convolve_pairs(planes: torch.Tensor, spectra: torch.Tensor, window: tuple[int, int, int, int]) -> torch.Tensor:
    """Planes ``(G, K, F0, F1)`` convolved with the kernel of their group ``spectra[g]``, paired along ``K``."""
    g, count, f0, f1 = planes.shape
    pairs = torch.empty(g, (count + 1) // 2, f0, f1, dtype=_complex_of(planes.dtype), device=planes.device)
    parts = torch.view_as_real(pairs)
    parts[..., 0].copy_(planes[:, 0::2])
    parts[:, : count // 2, ..., 1].copy_(planes[:, 1::2])
    if count % 2:
        parts[:, -1, ..., 1].zero_()
    spectrum = torch.fft.fft2(pairs)
    spectrum *= spectra.unsqueeze(1)
    result = _fft_window(spectrum, window)
    out = planes.new_empty(g, 2 * pairs.shape[1], window[2], window[3])
    out[:, 0::2] = result.real
    out[:, 1::2] = result.imag
    return out[:, :count]


def _convolve_mixed(planes: torch.Tensor, spectra: torch.Tensor, window: tuple[int, int, int, int]) -> torch.Tensor:
    """One plane per image ``(B, F0, F1)``, each with its own kernel ``spectra[b]``; images paired two by two.

    For ``z = a + ib`` with ``Z`` its spectrum and ``R(f) = conj(Z(-f)) = A - iB``, the wanted spectrum
    ``A·K1 + iB·K2`` equals ``Z·(K1+K2)/2 + R·(K1-K2)/2``; its inverse is ``a*k1 + i·(b*k2)``.
    """
    count = planes.shape[0]
    if count % 2:
        planes = torch.cat([planes, torch.zeros_like(planes[:1])])
        spectra = torch.cat([spectra, spectra[:1]])
    z = torch.fft.fft2(torch.complex(planes[0::2], planes[1::2]).to(_complex_of(planes.dtype)))
    mirrored = torch.roll(torch.flip(z, dims=(-2, -1)), shifts=(1, 1), dims=(-2, -1)).conj()
    first, second = spectra[0::2], spectra[1::2]
    result = _fft_window(z * ((first + second) / 2) + mirrored * ((first - second) / 2), window)
    return torch.stack((result.real, result.imag), dim=1).reshape(-1, window[2], window[3])[:count]


def motion_kernel_weights(radius: int, sigma: float) -> torch.Tensor:
    """One-sided Gaussian weights ``w_i ∝ exp(-i²/2σ²)``, ``i = 0..2·radius``, summing to 1 (float64)."""
    if radius < 0:
        raise InputError(f"motion_blur needs radius >= 0, got {radius}")
    if not math.isfinite(sigma) or sigma <= 0:
        raise InputError(f"motion_blur needs sigma > 0, got {sigma}")
    i = torch.arange(2 * radius + 1, dtype=torch.float64)
    weights = torch.exp(-(i**2) / (2 * sigma**2))
    return weights / weights.sum()


def motion_offsets(taps: int, angles_deg: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Whole-pixel shifts ``(dy, dx)``, each ``(N, taps)``, of tap ``i`` along each image's angle.

    The reference rounds ``i·sin θ`` and ``i·cos θ`` as ``-ceil(v - 0.5)`` and measures the direction
    from ``(taps·sin θ, taps·cos θ)`` normalised by its length; the same expression is evaluated here
    (in double precision where the device has it) so ties break the same way.
    """
    dtype = torch.float32 if angles_deg.device.type == "mps" else torch.float64
    theta = torch.deg2rad(angles_deg.to(dtype)).unsqueeze(1)
    along_y, along_x = taps * torch.sin(theta), taps * torch.cos(theta)
    length = torch.hypot(along_y, along_x)
    i = torch.arange(taps, dtype=dtype, device=angles_deg.device).unsqueeze(0)
    dy = -torch.ceil(i * along_y / length - 0.5)
    dx = -torch.ceil(i * along_x / length - 0.5)
    return dy.long(), dx.long()


def motion_blur(x: torch.Tensor, radius: int, sigma: float, angles_deg: torch.Tensor) -> torch.Tensor:
    """Motion blur of ``(N, C, H, W)`` images along one angle per image (degrees, counter-clockwise).

    ``out = Σ_i w_i · shift(x, i pixels along the angle)`` for ``i = 0..2·radius`` with
    :func:`motion_kernel_weights`; shifted copies replicate the edge pixels. As in the reference, the
    sum stops at the first tap whose shift reaches the image size (its weight and later ones are lost).

    The taps become one sparse kernel per image, applied by FFT to the image padded by edge replication
    (by the longest shift, so every shifted read stays inside the padded frame): the cost no longer
    grows with the number of taps.
    """
    _check_image(x, "motion_blur", ndim=4)
    n, _, h, w = x.shape
    if angles_deg.shape != (n,):
        raise InputError(f"motion_blur needs one angle per image, shape ({n},), got {tuple(angles_deg.shape)}")
    weights = motion_kernel_weights(int(radius), float(sigma)).to(device=x.device, dtype=x.dtype)
    if weights.numel() == 1:
        return x.clone()
    dy, dx = motion_offsets(weights.numel(), angles_deg.to(x.device))
    inside = ((dy.abs() < h) & (dx.abs() < w)).long().cumprod(dim=1).to(x.dtype)
    # pad each side by the longest kept shift reading across it (an image's shifts all point one way)
    reach_y, reach_x = dy * inside.long(), dx * inside.long()
    ends = torch.stack([reach_y.max(), -reach_y.min(), reach_x.max(), -reach_x.min()]).clamp(min=0)
    top, bottom, left, right = (int(v) for v in ends.tolist())
    frame = (fft_size(h + top + bottom), fft_size(w + left + right))
    padded = pad2d(x, top, frame[0] - h - top, left, frame[1] - w - left, "nearest")
    spectra = shift_kernel_spectra(weights.unsqueeze(0) * inside, dy, dx, frame)
    return convolve_fft(padded, spectra, (top, left, h, w))


def shift_kernel_spectra(
    weights: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, frame: tuple[int, int]
) -> torch.Tensor:
    """2-D DFTs ``(N, F0, F1)`` of kernels made of taps ``weights[n, i]`` at whole-pixel shifts ``(dy, dx)``.

    A tap at ``(a, b)`` has the spectrum ``exp(-2πi (u·a/F0 + v·b/F1))``, separable in ``u`` and ``v``, so
    the spectra of all taps sum as one batched matrix product — cheaper than transforming sparse kernels.
    Phases are reduced modulo the frame in integers first, which keeps them exact.
    """
    f0, f1 = frame
    real = weights.dtype
    u = torch.arange(f0, device=dy.device).view(1, -1, 1)
    v = torch.arange(f1, device=dy.device).view(1, 1, -1)
    phase_y = (u * dy.unsqueeze(1)).remainder(f0).to(real) * (-2 * math.pi / f0)
    phase_x = (dx.unsqueeze(2) * v).remainder(f1).to(real) * (-2 * math.pi / f1)
    along_y = torch.polar(weights.unsqueeze(1).expand_as(phase_y).contiguous(), phase_y)
    along_x = torch.polar(torch.ones_like(phase_x), phase_x)
    return torch.bmm(along_y, along_x)


def zoom_window(length: int, zoom: float, centred: bool) -> tuple[int, int, int, int]:
    """One axis of :func:`clipped_zoom`: (crop start, crop length, zoomed length, trim start).

    The crop of ``ceil(L/z)`` samples starts at ``(L - crop) // 2``; SciPy's ``zoom`` makes
    ``round(crop·z)`` samples; the trim keeps ``L`` of them from ``(zoomed - L) // 2`` (centred) or from 0.
    """
    crop = math.ceil(length / zoom)
    zoomed = round(crop * zoom)
    trim = (zoomed - length) // 2 if centred else 0
    return (length - crop) // 2, crop, zoomed, trim


def clipped_zoom(x: torch.Tensor, zoom: float, *, centred: bool = True) -> torch.Tensor:
    """Zoom into the centre of each image by ``zoom >= 1`` and keep the original size.

    Crop the centre ``ceil(H/z) x ceil(W/z)``, upscale it bilinearly to ``round(crop·z)`` samples per axis
    with the corners aligned (SciPy's ``zoom(order=1)`` grid: output ``o`` reads input
    ``o·(crop-1)/(zoomed-1)``) and trim back to ``H x W`` — centred (the ImageNet-C code) or from the
    top-left corner (``centred=False``, the ``imagecorruptions`` package).
    """
    _check_image(x, "clipped_zoom")
    if not math.isfinite(zoom) or zoom < 1:
        raise InputError(f"clipped_zoom needs a zoom factor >= 1, got {zoom}")
    h, w = x.shape[-2:]
    top, crop_h, zoomed_h, trim_top = zoom_window(h, float(zoom), centred)
    left, crop_w, zoomed_w, trim_left = zoom_window(w, float(zoom), centred)
    crop = x[..., top : top + crop_h, left : left + crop_w].reshape(-1, 1, crop_h, crop_w)
    zoomed = F.interpolate(crop, size=(zoomed_h, zoomed_w), mode="bilinear", align_corners=True)
    kept = zoomed[..., trim_top : trim_top + h, trim_left : trim_left + w]
    return kept.reshape(x.shape)
