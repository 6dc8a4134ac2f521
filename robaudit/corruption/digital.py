"""Digital corruptions: colour changes in HSV, contrast loss, JPEG artefacts, pixelation and elastic warps.

These are the distortions an image picks up in processing rather than in front of the lens:

* ``brightness`` and ``saturate`` work in HSV (hue, saturation, value): brightness adds a constant to V,
  saturate maps S to ``k·S + b``; both clip to [0, 1] and convert back. (ImageNet-C files brightness
  under "weather" and saturate under the extra corruptions; the code lives here because it shares the
  HSV conversion.) :func:`rgb_to_hsv` and :func:`hsv_to_rgb` are batched over ``(..., 3, H, W)``, follow
  :mod:`colorsys` (hue in [0, 1), red first when channels tie) and invert each other exactly up to
  float rounding.
* ``contrast`` pulls every channel towards its own spatial mean: ``(x − μ)·c + μ``, ``μ`` the mean of the
  channel over the image.
* ``jpeg_compression`` runs the real codec on CPU images (libjpeg through torchvision, byte-identical to
  Pillow's encoder at the same quality): blocking and ringing at 8×8 block edges, chroma subsampled 4:2:0.
  Images on a GPU go through the same steps as batched tensor operations on the GPU
  (:mod:`robaudit.corruption.jpeg`), which agree with libjpeg up to its integer DCT's rounding.
* ``pixelate`` shrinks the image with Pillow's BOX filter to ``⌊c·W⌋ × ⌊c·H⌋`` and enlarges it back with
  the same filter, which for enlarging is a nearest-neighbour copy. Pillow's BOX filter is *not* an
  area-weighted average: output pixel ``j`` averages, with equal weights, the input pixels whose centres
  fall in ``(j·s, (j+1)·s]`` (``s`` = input / output size), so a box holds ⌊s⌋ or ⌈s⌉ whole pixels. The
  torch implementation reproduces Pillow's resampler exactly: the same boxes, horizontal pass first with
  the result rounded to 8-bit levels before the vertical pass, and the same rounding of its 22-bit
  fixed-point weights; on 8-bit images its output equals ``Image.resize(..., Image.BOX)`` bit for bit.
* ``elastic_transform`` (ImageNet-C's original version) first applies a random affine map, fixed by three
  anchor points at the centre ± a third of the image side each moved by ``U(−a, a)`` pixels, and then a
  smooth random displacement field ``α·G_σ ∗ U(−1, 1)`` (one field for x, one for y), resampling
  bilinearly both times. The two parts trade places across the severities, so damage is not monotone:
  ImageNet-C's severity 1 is almost only the affine part (anchors moved up to 24 pixels; its σ of 171
  pixels leaves a near-uniform shift of about a pixel), severity 2 moves anchors up to 49 pixels and adds
  a large-scale warp of a few pixels, severities 3–5 move anchors up to 5 pixels and add a local warp
  (σ = 2.4 pixels, typical displacement 1–2 pixels). CIFAR-10-C's severity 1 is the affine part alone.

The parameter tables are ImageNet-C's (``make_imagenet_c.py``) and CIFAR-10-C's (``make_cifar_c.py``).
Elastic parameters are fractions of a size: the reference multiplies them by 244 for 224² ImageNet images
(its code says "244 should have been 224", and the released data were made with 244) and by 32 for CIFAR.
For other image sizes they are scaled with the image: by ``244 · side / 224`` (ImageNet set) or ``side``
(CIFAR set), ``side`` being the shorter image side, so the warp keeps its size relative to the image.

Differences from the reference
------------------------------
* Random numbers come from the torch generator handed to the corruption, not numpy's global state.
* ``jpeg_compression`` and ``pixelate`` read the image as 8-bit levels (``⌊255·x + ½⌋``) as the reference
  reads its uint8 PIL image. On the CPU, JPEG is encoded and decoded by libjpeg, with torchvision's
  batched calls where available; on another device by :mod:`robaudit.corruption.jpeg`, whose exact DCT
  rounds a coefficient lying within about 1/8 of a quantization step of a rounding boundary the other way
  than libjpeg's integer DCT does (a few percent of pixels differ by more than two levels). ``pixelate``
  rounds each box mean to a level rather than each input pixel: identical on 8-bit images, a
  nearest-level rounding otherwise. Some older Pillow releases closed the box interval on the other side
  (``[j·s, (j+1)·s)``); the two differ only when a pixel centre falls exactly on a box edge, which never
  happens at the image sizes of either reference (224 and 32).
* ``elastic_transform`` resamples with ``grid_sample`` instead of OpenCV's ``warpAffine`` (fixed-point
  bilinear weights in 1/32-pixel steps) and SciPy's ``map_coordinates``: borders are reflected the same
  way (about the edge pixels' centres for the affine step, about the image edges for the displacement
  step), and the Gaussian smoothing of the displacement field is SciPy's (reflected borders, truncated at
  3σ) written as a matrix product. Anchor points use x for columns and y for rows; the reference builds
  them from (rows, columns), which only matters for non-square images. The displacement fields are not
  drawn when ``α = 0`` (CIFAR-10-C severity 1), where the reference draws and multiplies them by 0.
* Arithmetic is in float32 (float64 in parts of the reference); well below one 8-bit level except where
  the resampling positions differ as described.
"""

from __future__ import annotations

import functools
import io
import warnings
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .base import CorruptionContext, corruption
from .jpeg import jpeg_round_trip_tensor

# ---------------------------------------------------------------------------------------------------- HSV


def rgb_to_hsv(rgb: torch.Tensor) -> torch.Tensor:
    """RGB ``(..., 3, H, W)`` in [0, 1] to HSV with hue, saturation and value in [0, 1] (hue 0 on grays)."""
    return torch.stack(hsv_planes(rgb), dim=-3)


def hsv_to_rgb(hsv: torch.Tensor) -> torch.Tensor:
    """HSV ``(..., 3, H, W)`` (all in [0, 1]) back to RGB; the inverse of :func:`rgb_to_hsv`."""
    hue, saturation, value = hsv.unbind(dim=-3)
    return rgb_from_planes(hue, saturation, value)


def hsv_planes(rgb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Hue, saturation and value planes ``(..., H, W)`` of RGB ``(..., 3, H, W)``; fresh tensors."""
    red, green, blue = rgb.unbind(dim=-3)
    value, largest = rgb.max(dim=-3)
    delta = value - rgb.amin(dim=-3)
    # a black pixel has delta = 0, so dividing by 1 there gives its saturation 0
    saturation = delta / torch.where(value > 0, value, 1.0)
    # with channel c the largest, hue/60° = 2c + (next channel − the one after) / delta, taken mod 6
    following = torch.where(largest == 0, green - blue, torch.where(largest == 1, blue - red, red - green))
    hue = following.div_(torch.where(delta > 0, delta, 1.0)).add_(2 * largest).div_(6).remainder_(1.0)
    return hue.masked_fill_(delta <= 0, 0.0), saturation, value


def rgb_from_planes(hue: torch.Tensor, saturation: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """RGB ``(..., 3, H, W)`` from hue, saturation and value planes ``(..., H, W)``."""
    # channel n ∈ (5, 3, 1) for (R, G, B): k = (n + 6h) mod 6, the channel is v·(1 − s·clip(min(k, 4 − k))),
    # and min(k, 4 − k) = 2 − |k − 2|; in-place steps keep it to one full-size allocation
    offsets = torch.tensor([5.0, 3.0, 1.0], device=hue.device, dtype=hue.dtype).view(3, 1, 1)
    ramp = torch.add(offsets, hue.unsqueeze(-3), alpha=6).remainder_(6)
    ramp.sub_(2).abs_().neg_().add_(2).clamp_(0, 1)
    return ramp.mul_(saturation.unsqueeze(-3)).neg_().add_(1).mul_(value.unsqueeze(-3))


@corruption(
    "brightness",
    imagenet=(0.1, 0.2, 0.3, 0.4, 0.5),
    cifar=(0.05, 0.1, 0.15, 0.2, 0.3),
    min_size=1,
    random=False,
)
def brightness(x: torch.Tensor, shift: float, g: torch.Generator, ctx: CorruptionContext) -> torch.Tensor:
    """HSV value ``V ← clip(V + c)``."""
    hue, saturation, value = hsv_planes(x)
    return rgb_from_planes(hue, saturation, value.add_(shift).clamp_(0, 1))


@corruption(
    "saturate",
    imagenet=((0.3, 0.0), (0.1, 0.0), (2.0, 0.0), (5.0, 0.1), (20.0, 0.2)),
    cifar=((0.3, 0.0), (0.1, 0.0), (1.5, 0.0), (2.0, 0.1), (2.5, 0.2)),
    min_size=1,
    random=False,
)
def saturate(
    x: torch.Tensor, gain_offset: tuple[float, float], g: torch.Generator, ctx: CorruptionContext
) -> torch.Tensor:
    """HSV saturation ``S ← clip(k·S + b)``."""
    gain, offset = gain_offset
    hue, saturation, value = hsv_planes(x)
    return rgb_from_planes(hue, saturation.mul_(gain).add_(offset).clamp_(0, 1), value)


# ------------------------------------------------------------------------------------------------ contrast


@corruption(
    "contrast",
    imagenet=(0.4, 0.3, 0.2, 0.1, 0.05),
    cifar=(0.75, 0.5, 0.4, 0.3, 0.15),
    min_size=1,
    random=False,
)
def contrast(x: torch.Tensor, factor: float, g: torch.Generator, ctx: CorruptionContext) -> torch.Tensor:
    """``(x − μ)·c + μ`` with ``μ`` the spatial mean of each channel of each image."""
    mean = x.mean(dim=(-2, -1), keepdim=True)
    return (x - mean).mul_(factor).add_(mean)


# ---------------------------------------------------------------------------------------------------- JPEG


def to_levels(x: torch.Tensor) -> torch.Tensor:
    """Float images in [0, 1] to uint8 levels ``⌊255·x + ½⌋`` (the reference corrupts uint8 images)."""
    # truncating the value shifted by a half rounds it (half up)
    return x.mul(255).add_(0.5).clamp_(0, 255).to(torch.uint8)


def jpeg_round_trip(images: list[torch.Tensor], quality: int) -> list[torch.Tensor]:
    """Encode uint8 ``(3, H, W)`` CPU images as JPEG at ``quality`` and decode them again.

    torchvision's libjpeg binding codes the whole list in one call where it still has one (its image codec
    is deprecated since 0.29); Pillow's, the reference's own codec, does it image by image otherwise. Both
    write the same bytes and decode them to the same pixels.
    """
    if _torchvision_codec() is not None:
        return _torchvision_jpeg(images, quality)
    return _pillow_jpeg(images, quality)


def jpeg_codec(device: torch.device) -> str:
    """Which JPEG round trip ``jpeg_compression`` runs for images on ``device``: ``tensor`` (batched, on the
    device itself) off the CPU, so that the images never wait for a copy to the host and a CPU thread;
    ``libjpeg`` (torchvision's) or ``pillow`` on the CPU."""
    if device.type != "cpu":
        return "tensor"
    return "libjpeg" if _torchvision_codec() is not None else "pillow"


@functools.lru_cache(maxsize=1)
def _torchvision_codec() -> tuple[Any, Any, Any] | None:
    """torchvision's ``encode_jpeg``, ``decode_jpeg`` and RGB read mode, or None where they are gone."""
    try:
        from torchvision.io import ImageReadMode, decode_jpeg, encode_jpeg
    except ImportError:
        return None
    return encode_jpeg, decode_jpeg, ImageReadMode.RGB


def _torchvision_jpeg(images: list[torch.Tensor], quality: int) -> list[torch.Tensor]:
    codec = _torchvision_codec()
    assert codec is not None
    encode, decode, rgb = codec
    with warnings.catch_warnings():
        # the deprecation notice is about the future; the Pillow path takes over when the codec is removed
        warnings.filterwarnings("ignore", message=".*TorchVision are deprecated", category=DeprecationWarning)
        try:
            return list(decode(encode(images, quality=quality), mode=rgb))
        except (TypeError, RuntimeError):
            # torchvision before 0.19 codes one image per call
            return [decode(encode(image, quality=quality), mode=rgb) for image in images]


def _pillow_jpeg(images: list[torch.Tensor], quality: int) -> list[torch.Tensor]:
    from PIL import Image

    decoded = []
    for image in images:
        buffer = io.BytesIO()
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(buffer, "JPEG", quality=quality)
        decoded.append(torch.from_numpy(np.array(Image.open(buffer).convert("RGB"))).permute(2, 0, 1))
    return decoded


@corruption(
    "jpeg_compression",
    levels=True,
    imagenet=(25, 18, 15, 10, 7),
    cifar=(80, 65, 58, 50, 40),
    min_size=1,
    random=False,
)
def jpeg_compression(x: torch.Tensor, quality: int, g: torch.Generator, ctx: CorruptionContext) -> torch.Tensor:
    """Round trip through JPEG (baseline, 4:2:0 chroma) at ``quality``: libjpeg for images on the CPU, the
    batched tensor round trip of :mod:`robaudit.corruption.jpeg` on the images' device otherwise."""
    if jpeg_codec(x.device) == "tensor":
        return jpeg_round_trip_tensor(to_levels(x), int(quality)).float().div_(255)
    # libjpeg codes image by image; converting one image at a time keeps each conversion in the CPU cache
    decoded = jpeg_round_trip([to_levels(image).cpu() for image in x], int(quality))
    out = torch.empty_like(x)
    for image, target in zip(decoded, out, strict=True):
        target.copy_(image).div_(255)
    return out


# ------------------------------------------------------------------------------------------------ pixelate

#: Pillow's resampler computes in fixed point with this many fractional bits
_PILLOW_PRECISION_BITS = 22


@functools.lru_cache(maxsize=128)
def box_taps(in_size: int, out_size: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """First input index and number of inputs of each output of Pillow's BOX filter along one axis.

    Follows Pillow's ``precompute_coeffs`` step by step in double precision: output ``j`` is centred at
    ``(j + 0.5)·s`` (``s = in / out``) and takes, with weight 1, the inputs ``x`` whose
    ``(x − centre + 0.5) / max(s, 1)`` lies in ``(−0.5, 0.5]``. The taps of one output are contiguous.
    """
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = 0.5 * filterscale
    inverse = 1.0 / filterscale
    starts, counts = [], []
    for j in range(out_size):
        center = (j + 0.5) * scale
        lo = max(int(center - support + 0.5), 0)
        hi = min(int(center + support + 0.5), in_size)
        taps = [i for i in range(lo, hi) if -0.5 < (i - center + 0.5) * inverse <= 0.5]
        starts.append(taps[0])
        counts.append(len(taps))
    return tuple(starts), tuple(counts)


@functools.lru_cache(maxsize=128)
def _box_reduction(in_size: int, out_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For shrinking ``in_size → out_size``: the output index of every input, ``1/k`` and the rounding bias.

    Pillow rounds the box mean ``S/k`` of ``k`` integer levels as ``(S·w + 2²¹) >> 22`` with the 22-bit weight
    ``w = round(2²²/k)``. That is round-half-up, except that exact halves round *down* when ``w`` was
    rounded down (``w·k < 2²²``). ``floor(S/k + (2k − 2t + 1)/(4k))``, ``t`` = 1 for those ``k``, gives the
    same integer, and keeps giving it while the float error of ``S/k`` stays below ``1/(4k)`` (box sizes
    up to about 100 in float32, far beyond pixelate's 4).
    """
    starts, counts = box_taps(in_size, out_size)
    owner = torch.empty(in_size, dtype=torch.long)
    for j, (start, count) in enumerate(zip(starts, counts, strict=True)):
        owner[start : start + count] = j
    unit = 1 << _PILLOW_PRECISION_BITS
    inverse, bias = [], []
    for k in counts:
        weight = int(0.5 + (1.0 / k) * unit)
        down = 1 if weight * k < unit else 0
        inverse.append(1.0 / k)
        bias.append((2 * k - 2 * down + 1) / (4 * k))
    return owner, torch.tensor(inverse, dtype=torch.float64), torch.tensor(bias, dtype=torch.float64)


def _box_shrink(v: torch.Tensor, out_size: int, dim: int, gain: float) -> torch.Tensor:
    """Pillow BOX shrink of ``gain·v`` along ``dim`` (``-1`` or ``-2``), rounded to integer levels."""
    owner, inverse, bias = _box_reduction(v.shape[dim], out_size)
    shape = list(v.shape)
    shape[dim] = out_size
    sums = v.new_zeros(shape).index_add_(dim, owner.to(v.device), v)
    view = [-1, 1] if dim == -2 else [-1]
    # tables are float64 on the CPU: convert before moving, as some devices have no float64
    scale = (inverse * gain).to(v.dtype).to(v.device).view(view)
    # float rounding of the sums (any order, e.g. atomic adds) stays far inside the 1/(4k) margin
    return sums.mul_(scale).add_(bias.to(v.dtype).to(v.device).view(view)).floor_()


@functools.lru_cache(maxsize=128)
def _interpolate_is_box(h: int, w: int, out_h: int, out_w: int, device: str) -> bool:
    """Whether ``F.interpolate(mode='nearest-exact')`` picks exactly Pillow's BOX-enlarging pixels here.

    Both pick pixel ``⌊(j + 0.5)·in/out⌋``, but torch computes it in single precision; an index-valued
    probe shows the kernel's actual choice on this device for these sizes.
    """
    if h * w >= 1 << 24:  # indices no longer exact in float32
        return False
    probe = torch.arange(h * w, dtype=torch.float32, device=device).view(1, 1, h, w)
    got = F.interpolate(probe, size=(out_h, out_w), mode="nearest-exact")[0, 0].cpu()
    rows = torch.tensor(box_taps(h, out_h)[0])
    cols = torch.tensor(box_taps(w, out_w)[0])
    return torch.equal(got, (rows[:, None] * w + cols[None, :]).float())


def _box_enlarge(v: torch.Tensor, out_h: int, out_w: int) -> torch.Tensor:
    """Pillow BOX enlargement (one input pixel per output pixel) of ``(N, C, h, w)`` to ``out_h × out_w``."""
    h, w = v.shape[-2:]
    if _interpolate_is_box(h, w, out_h, out_w, str(v.device)):
        return F.interpolate(v, size=(out_h, out_w), mode="nearest-exact")
    rows = torch.tensor(box_taps(h, out_h)[0], device=v.device)
    cols = torch.tensor(box_taps(w, out_w)[0], device=v.device)
    return v.index_select(-2, rows).index_select(-1, cols)


def pillow_box_shrink(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``Image.resize((width, height), Image.BOX)`` of ``(N, C, H, W)`` images read as 8-bit levels, shrinking.

    ``height ≤ H`` and ``width ≤ W``; the result is on the 8-bit grid (``levels / 255``), bit-identical to
    Pillow's for 8-bit images.
    """
    in_h, in_w = x.shape[-2:]
    if height > in_h or width > in_w:
        raise ValueError(f"pillow_box_shrink cannot enlarge {in_h}x{in_w} to {height}x{width}")
    if (height, width) == (in_h, in_w):
        return to_levels(x).to(x.dtype).div_(255)
    levels, gain = x, 255.0
    if width < in_w:  # Pillow resamples horizontally first and rounds to levels before the vertical pass
        levels, gain = _box_shrink(levels, width, -1, gain), 1.0
    if height < in_h:
        levels = _box_shrink(levels, height, -2, gain)
    return levels.div_(255)


@corruption(
    "pixelate",
    levels=True,
    imagenet=(0.6, 0.5, 0.4, 0.3, 0.25),
    cifar=(0.95, 0.9, 0.85, 0.75, 0.65),
    min_size=4,
    random=False,
)
def pixelate(x: torch.Tensor, factor: float, g: torch.Generator, ctx: CorruptionContext) -> torch.Tensor:
    """Pillow BOX shrink to ``⌊c·W⌋ × ⌊c·H⌋``, then BOX enlargement back to ``W × H``."""
    height, width = x.shape[-2:]
    small = pillow_box_shrink(x, int(height * factor), int(width * factor))
    return _box_enlarge(small, height, width)


# ----------------------------------------------------------------------------------------------- elastic

#: the multiplier of the elastic fractions in each reference and the image side it was written for
ELASTIC_SCALE = {"imagenet": (244.0, 224), "cifar": (32.0, 32)}


def elastic_scale(param_set: str, side: int) -> float:
    """Pixels per unit of the elastic parameters: 244 at 224 (ImageNet), 32 at 32 (CIFAR), proportional."""
    multiplier, reference_side = ELASTIC_SCALE[param_set]
    return multiplier * side / reference_side


@functools.lru_cache(maxsize=32)
def gaussian_reflect_matrix(length: int, sigma: float) -> torch.Tensor:
    """``(length, length)`` float64 matrix of SciPy's ``gaussian_filter1d(mode='reflect', truncate=3)``.

    Row ``i`` holds the weights the filtered sample ``i`` gives each input sample: the normalized Gaussian
    ``exp(−t²/2σ²)``, ``|t| ≤ round(3σ)``, folded back at the borders by half-sample reflection
    (``d c b a | a b c d | d c b a``, repeated when the kernel is longer than the signal).
    """
    radius = int(3.0 * sigma + 0.5)
    offsets = torch.arange(-radius, radius + 1)
    weights = torch.exp(-0.5 * (offsets.double() / sigma) ** 2)
    weights /= weights.sum()
    position = torch.remainder(torch.arange(length)[:, None] + offsets[None, :], 2 * length)
    position = torch.where(position >= length, 2 * length - 1 - position, position)
    matrix = torch.zeros(length, length, dtype=torch.float64)
    return matrix.scatter_add_(1, position, weights.expand(length, -1).contiguous())


def _smooth(field: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian smoothing of ``(..., H, W)`` planes with reflected borders, as SciPy's ``gaussian_filter``."""
    if sigma <= 0:
        return field
    h, w = field.shape[-2:]
    rows = gaussian_reflect_matrix(h, float(sigma)).to(field.dtype).to(field.device)
    cols = gaussian_reflect_matrix(w, float(sigma)).to(field.dtype).to(field.device)
    return rows @ field @ cols.T


def random_affine(x: torch.Tensor, shift: float, g: torch.Generator) -> torch.Tensor:
    """Warp each image by the affine map that moves three anchor points by ``U(−shift, shift)`` pixels each.

    The anchors sit at the centre ± a third of the shorter side. Bilinear resampling, borders reflected
    about the edge pixels (OpenCV's ``BORDER_REFLECT_101``).
    """
    n, _, h, w = x.shape
    cx, cy, half = w // 2, h // 2, min(h, w) // 3
    anchors = torch.tensor(
        [[cx + half, cy + half], [cx + half, cy - half], [cx - half, cy - half]], device=x.device, dtype=x.dtype
    )
    jitter = torch.rand((n, 3, 2), generator=g, device=x.device, dtype=x.dtype).mul_(2 * shift).sub_(shift)
    moved = torch.cat([anchors + jitter, torch.ones(n, 3, 1, device=x.device, dtype=x.dtype)], dim=-1)
    # output pixel p shows input point A·p, A the affine map taking the moved anchors back to the anchors
    inverse = torch.linalg.solve(moved, anchors.expand(n, 3, 2))  # (n, 3, 2): [x y 1] @ inverse = source
    ys, xs = torch.meshgrid(
        torch.arange(h, device=x.device, dtype=x.dtype), torch.arange(w, device=x.device, dtype=x.dtype), indexing="ij"
    )
    pixels = torch.stack([xs, ys, torch.ones_like(xs)], dim=-1).view(1, h * w, 3)
    source = (pixels @ inverse).view(n, h, w, 2)
    # align_corners=True: ±1 are the centres of the edge pixels, and reflection happens about them
    to_grid = torch.tensor([2 / max(w - 1, 1), 2 / max(h - 1, 1)], device=x.device, dtype=x.dtype)
    return F.grid_sample(x, source * to_grid - 1, mode="bilinear", padding_mode="reflection", align_corners=True)


def elastic_displace(x: torch.Tensor, alpha: float, sigma: float, g: torch.Generator) -> torch.Tensor:
    """Resample each image at ``p + α·G_σ(U(−1, 1))``, one smoothed uniform field per axis and image.

    Bilinear, borders reflected about the image edges (SciPy's ``map_coordinates(mode='reflect')``).
    """
    n, _, h, w = x.shape
    noise = torch.rand((n, 2, h, w), generator=g, device=x.device, dtype=x.dtype).mul_(2).sub_(1)
    field = _smooth(noise, sigma).mul_(alpha)
    xs = torch.arange(w, device=x.device, dtype=x.dtype).view(1, 1, w)
    ys = torch.arange(h, device=x.device, dtype=x.dtype).view(1, h, 1)
    # align_corners=False: ±1 are the outer edges of the edge pixels, and reflection happens about them
    grid = torch.stack([(2 * (xs + field[:, 0]) + 1) / w - 1, (2 * (ys + field[:, 1]) + 1) / h - 1], dim=-1)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


@corruption(
    "elastic_transform",
    imagenet=((2.0, 0.7, 0.1), (2.0, 0.08, 0.2), (0.05, 0.01, 0.02), (0.07, 0.01, 0.02), (0.12, 0.01, 0.02)),
    cifar=((0.0, 0.0, 0.08), (0.05, 0.2, 0.07), (0.08, 0.06, 0.06), (0.1, 0.04, 0.05), (0.1, 0.03, 0.03)),
    min_size=8,
)
def elastic_transform(
    x: torch.Tensor, fractions: tuple[float, float, float], g: torch.Generator, ctx: CorruptionContext
) -> torch.Tensor:
    """Random affine warp, then a smooth random displacement field (ImageNet-C's original algorithm)."""
    scale = elastic_scale(ctx.param_set, min(x.shape[-2:]))
    alpha, sigma, shift = (fraction * scale for fraction in fractions)
    warped = random_affine(x, shift, g)
    if alpha == 0:
        return warped
    return elastic_displace(warped, alpha, sigma, g)
