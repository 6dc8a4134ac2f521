"""A JPEG round trip (encode, then decode) as batched tensor operations, for images on a GPU.

Baseline JPEG loses information in three places only: chroma subsampling, quantization of the 8×8 block
DCT coefficients, and rounding to 8-bit samples; entropy coding is lossless. This module runs those steps
as libjpeg does with the settings Pillow and torchvision's CPU codec use (the codec of ImageNet-C's
``jpeg_compression``), on whole batches on the images' device:

1. RGB to YCbCr (JFIF), in libjpeg's 16-bit fixed point, rounded to 8-bit samples;
2. the planes padded to whole blocks by repeating the last row and column where libjpeg does;
3. 4:2:0 chroma: each 2 × 2 block averaged, with libjpeg's rounding bias alternating 1, 2 along a row;
4. the 8 × 8 DCT of the level-shifted samples, divided by the quality-scaled quantization table and
   rounded half away from zero (libjpeg's baseline tables of the JPEG standard, Annex K, scaled by
   ``5000 / q`` below quality 50 and ``200 − 2q`` above, clamped to 1..255);
5. back: dequantization, the inverse DCT, +128, rounding and clamping to 0..255;
6. chroma upsampled with libjpeg's "fancy" triangle filter (weights 3/4 and 1/4 in each direction, with
   its rounding), and YCbCr to RGB in libjpeg's fixed point.

Everything is exact integer arithmetic as in libjpeg except the two DCTs: libjpeg computes them with its
integer "islow" approximation, this module with the exact transform in float32. A coefficient within
about 1/8 of a quantization step of a rounding boundary can therefore round the other way, which changes
that block by a fraction of the step; elsewhere the samples agree or differ by one level.
``tests/test_corruptions_noise_digital.py`` compares the two codecs image by image and states the tolerance.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F

# The JPEG standard's example tables (ITU-T T.81, Annex K.1), which libjpeg scales by quality.
LUMINANCE = (
    (16, 11, 10, 16, 24, 40, 51, 61),
    (12, 12, 14, 19, 26, 58, 60, 55),
    (14, 13, 16, 24, 40, 57, 69, 56),
    (14, 17, 22, 29, 51, 87, 80, 62),
    (18, 22, 37, 56, 68, 109, 103, 77),
    (24, 35, 55, 64, 81, 104, 113, 92),
    (49, 64, 78, 87, 103, 121, 120, 101),
    (72, 92, 95, 98, 112, 100, 103, 99),
)
CHROMINANCE = (
    (17, 18, 24, 47, 99, 99, 99, 99),
    (18, 21, 26, 66, 99, 99, 99, 99),
    (24, 26, 56, 99, 99, 99, 99, 99),
    (47, 66, 99, 99, 99, 99, 99, 99),
    (99, 99, 99, 99, 99, 99, 99, 99),
    (99, 99, 99, 99, 99, 99, 99, 99),
    (99, 99, 99, 99, 99, 99, 99, 99),
    (99, 99, 99, 99, 99, 99, 99, 99),
)
#: libjpeg's fixed point: 16 fractional bits, and its rounding half
_BITS = 16
_HALF = 1 << (_BITS - 1)


def _fix(x: float) -> int:
    return int(x * (1 << _BITS) + 0.5)


def quality_table(base: tuple[tuple[int, ...], ...], quality: int) -> torch.Tensor:
    """A base table scaled as libjpeg's ``jpeg_set_quality(quality, force_baseline=TRUE)`` does."""
    quality = min(max(quality, 1), 100)
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    return torch.tensor([[min(max((v * scale + 50) // 100, 1), 255) for v in row] for row in base])


@functools.lru_cache(maxsize=8)
def _dct_matrix(device: torch.device) -> torch.Tensor:
    """The 8 × 8 DCT of JPEG, D · block · Dᵀ with D[u, x] = C(u)/2 · cos((2x + 1)uπ / 16), as one 64 × 64
    matrix K = D ⊗ D acting on row-major flattened blocks (so a whole batch of blocks is one product)."""
    u = torch.arange(8, dtype=torch.float64).view(-1, 1)
    x = torch.arange(8, dtype=torch.float64).view(1, -1)
    d = torch.cos((2 * x + 1) * u * math.pi / 16) / 2
    d[0] /= math.sqrt(2)
    return torch.kron(d, d).float().to(device)


def _to_ycbcr(rgb: torch.Tensor) -> torch.Tensor:
    """uint8 RGB (N, 3, H, W) -> int32 YCbCr planes, as libjpeg's ``rgb_ycc_convert``."""
    r, g, b = rgb.to(torch.int32).unbind(dim=1)
    offset = 128 << _BITS
    y = (_fix(0.299) * r + _fix(0.587) * g + _fix(0.114) * b + _HALF) >> _BITS
    # Cb and Cr round with ONE_HALF − 1 in libjpeg, which keeps them below 256
    cb = (-_fix(0.16874) * r - _fix(0.33126) * g + _fix(0.5) * b + offset + _HALF - 1) >> _BITS
    cr = (_fix(0.5) * r - _fix(0.41869) * g - _fix(0.08131) * b + offset + _HALF - 1) >> _BITS
    return torch.stack([y, cb, cr], dim=1)


def _downsample(plane: torch.Tensor) -> torch.Tensor:
    """(N, H, W) with even H, W -> (N, H/2, W/2): 2 × 2 sums plus a bias alternating 1, 2, divided by 4."""
    sums = plane.unflatten(1, (-1, 2)).unflatten(3, (-1, 2)).sum(dim=(2, 4))
    bias = torch.tensor([1, 2], dtype=plane.dtype, device=plane.device).repeat(sums.shape[-1] // 2 + 1)
    return (sums + bias[: sums.shape[-1]]) >> 2


def _code(plane: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """Samples (N, H, W), H and W multiples of 8 -> the samples the decoder sees after quantization."""
    n, h, w = plane.shape
    k = _dct_matrix(plane.device)
    q = table.to(plane.device, torch.float32).flatten()
    # (N, H, W) -> one row of 64 samples per 8 × 8 block
    blocks = plane.view(n, h // 8, 8, w // 8, 8).transpose(2, 3).reshape(-1, 64)
    coefficients = (blocks.float() - 128) @ k.T
    # libjpeg: |c| + q/2, integer-divided by q, sign restored (half away from zero)
    quantized = torch.sign(coefficients) * torch.floor(coefficients.abs() / q + 0.5)
    samples = torch.floor((quantized * q) @ k + 128.5).clamp_(0, 255).to(torch.int32)
    return samples.view(n, h // 8, w // 8, 8, 8).transpose(2, 3).reshape(n, h, w)


def _upsample(plane: torch.Tensor) -> torch.Tensor:
    """(N, h, w) -> (N, 2h, 2w) with libjpeg's ``h2v2_fancy_upsample`` (triangle filter, its rounding)."""
    # vertically: 3 × the nearer row + the farther one; the image's edge rows are their own neighbours
    above = torch.cat([plane[:, :1], plane[:, :-1]], dim=1)
    below = torch.cat([plane[:, 1:], plane[:, -1:]], dim=1)
    rows = torch.stack([3 * plane + above, 3 * plane + below], dim=2).flatten(1, 2)
    # horizontally the same with rounding biases 8 (left output) and 7 (right output); at the edges a
    # column is its own neighbour (4 × this column)
    left = torch.cat([rows[..., :1], rows[..., :-1]], dim=2)
    right = torch.cat([rows[..., 1:], rows[..., -1:]], dim=2)
    return torch.stack([(3 * rows + left + 8) >> 4, (3 * rows + right + 7) >> 4], dim=3).flatten(2, 3)


def _to_rgb(y: torch.Tensor, cb: torch.Tensor, cr: torch.Tensor) -> torch.Tensor:
    """int32 planes -> uint8 RGB (N, 3, H, W), as libjpeg's ``ycc_rgb_convert``."""
    cb, cr = cb - 128, cr - 128
    r = y + ((_fix(1.40200) * cr + _HALF) >> _BITS)
    g = y + ((-_fix(0.34414) * cb + _HALF - _fix(0.71414) * cr) >> _BITS)
    b = y + ((_fix(1.77200) * cb + _HALF) >> _BITS)
    return torch.stack([r, g, b], dim=1).clamp_(0, 255).to(torch.uint8)


def jpeg_round_trip_tensor(images: torch.Tensor, quality: int) -> torch.Tensor:
    """uint8 RGB images (N, 3, H, W) encoded as baseline 4:2:0 JPEG at ``quality`` and decoded again."""
    height, width = images.shape[-2:]
    ycc = _to_ycbcr(images)
    # Padding to whole blocks repeats the last column and row, as libjpeg does: the luma plane to whole
    # 8 × 8 blocks; the chroma planes to whole 16-pixel macroblock columns and to an even number of rows,
    # then, once downsampled, to whole 8-row blocks by repeating the last downsampled row.
    luma = F.pad(ycc[:, :1], (0, -width % 8, 0, -height % 8), mode="replicate")[:, 0]
    luma = _code(luma, quality_table(LUMINANCE, quality))[:, :height, :width]
    chroma_table = quality_table(CHROMINANCE, quality)
    chroma_height, chroma_width = (height + 1) // 2, (width + 1) // 2
    full = F.pad(ycc[:, 1:], (0, -width % 16, 0, height % 2), mode="replicate")
    chroma = []
    for plane in full.unbind(dim=1):
        small = _downsample(plane)
        small = F.pad(small[:, None], (0, 0, 0, -small.shape[1] % 8), mode="replicate")[:, 0]
        coded = _code(small, chroma_table)[:, :chroma_height, :chroma_width]
        # upsampling reads the image's own chroma samples only (its edges are their own neighbours)
        chroma.append(_upsample(coded)[:, :height, :width])
    return _to_rgb(luma, *chroma)
