"""Frost textures for the ``frost`` corruption: procedural ice crystals, or crops of the user's photographs.

The reference blends a crop of one of five frost photographs (ice on a window pane) into the image. Those
photographs are not shipped with robaudit, so by default a frost texture is *synthesized* per image, from
the corruption's generator, with the look and the rough statistics of such photographs:

* **density** — fractal value noise (cells of 96 down to 12 texture pixels) makes the ice thicker in
  some patches than in others, as frost grows;
* **feathers** — sparse nucleation seeds (more where the density is high) grow fern-like ice feathers: a
  tapered spine with barbs leaning 60° forward on both sides (the hexagonal lattice of ice), large and
  small ones. A pane freezes in domains of similarly oriented feathers, so a fan of a few growth
  directions is drawn per image and each region (soft masks from smooth noise) takes mostly one of them.
  Stamping a feather at every seed is a convolution, done through the FFT (the texture is periodic,
  which a random texture does not show);
* **rime** — fine grain on every pixel, stronger where the ice is dense;
* **tone** — the sum saturates (``1 − exp(−k·s)``: overlapping ice scatters no more than opaque ice), is
  rescaled to a mean brightness drawn in 0.45–0.80 and a standard deviation in 0.06–0.13 (the ranges of
  the reference's five photographs, measured on 224² crops), and gets a grey-white to icy-blue tint.
  The result also has about the photographs' spatial frequency content (their share of power below
  0.02 cycles/pixel: 0.24–0.57, here ≈ 0.26; above 0.2 cycles/pixel: 0.20–0.33, here ≈ 0.31).

Texture pixels are photograph pixels: ImageNet-C crops its 224² window from the photographs at full
resolution, CIFAR-10-C first shrinks the photograph by 0.2 (``cv2.resize``, bilinear, no antialiasing) and
crops 32². :func:`frost_layer` does the same with either texture source, so crystals are about five times
finer on CIFAR images.

A folder of real frost photographs can be given instead (``--frost-dir``, ``CorruptionContext.frost_dir``):
every image in it is loaded once and cached; each corrupted image gets a random texture and a random crop,
as the reference does. A texture smaller than the crop is enlarged (bicubic) just enough to cover it.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F

from ..errors import InputError

#: file types read from a frost texture folder
TEXTURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
#: CIFAR-10-C shrinks the frost photographs by this factor before cropping
CIFAR_TEXTURE_SCALE = 0.2
#: ranges of the per-texture mean brightness and contrast (standard deviation of the brightness in a
#: 224² window): those of the reference's five photographs, 0.45–0.80 and 0.06–0.13
TEXTURE_MEAN = (0.45, 0.80)
TEXTURE_STD = (0.06, 0.13)
#: largest blue cast: red scaled by 1 − c, blue by 1 + c (the photographs: from grey-white to icy blue)
BLUE_CAST = 0.12
#: growth directions (domains of similarly oriented feathers) per synthetic texture
ORIENTATIONS = 3
#: barbs leave a feather's spine at 60°
BARB_SIN, BARB_COT = math.sin(math.pi / 3), 1.0 / math.tan(math.pi / 3)


# ------------------------------------------------------------------------------------------------------
# the synthetic texture


def frost_texture(
    n: int, height: int, width: int, generator: torch.Generator, device: torch.device | str
) -> torch.Tensor:
    """``n`` synthetic frost textures ``(n, 3, height, width)`` in [0, 1], one independent texture per image."""
    device = torch.device(device)
    density = _fractal_noise(n, height, width, (96, 48, 24, 12), generator, device)
    # in place from here on: full-size temporaries cost more (fresh memory) than the arithmetic
    ice = _feathers(density, generator)
    _add_rime(ice, density, generator)
    ice.add_(density, alpha=0.1)
    brightness = _tone(ice.mul_(-1.2).exp_().neg_().add_(1.0), generator)
    cast = _uniform((n, 1, 1, 1), 0.2 * BLUE_CAST, BLUE_CAST, generator, device)
    tint = torch.cat([1.0 - cast, torch.ones_like(cast), 1.0 + cast], dim=1)
    return torch.mul(brightness, tint).clamp_(0.0, 1.0)


def _uniform(shape: tuple[int, ...], low: float, high: float, g: torch.Generator, device: torch.device) -> torch.Tensor:
    return low + (high - low) * torch.rand(shape, generator=g, device=device)


def _fractal_noise(
    n: int, height: int, width: int, cells: tuple[int, ...], g: torch.Generator, device: torch.device
) -> torch.Tensor:
    """Smooth random field ``(n, 1, h, w)`` in [0, 1]: value noise summed over octaves of halving cell size.

    Each octave is a coarse random grid interpolated with cubic B-splines, applied as two small matrix
    products (rows, then columns) instead of upsampling a padded grid.
    """
    total = torch.zeros(n, height, width, device=device)
    for octave, cell in enumerate(cells):
        # a random sub-cell offset per octave, so that the lattices of the octaves do not line up
        dy, dx = (int(v) for v in torch.randint(0, cell, (2,), generator=g, device=device))
        rows = _spline_matrix(height, cell, dy, device)
        cols = _spline_matrix(width, cell, dx, device)
        grid = torch.rand(n, rows.shape[1], cols.shape[1], generator=g, device=device)
        # accumulate in place: (rows @ grid) is small, the product with the columns lands in ``total``
        total.baddbmm_(rows @ grid, cols.t().expand(n, -1, -1), alpha=0.5**octave)
    low = total.amin(dim=(1, 2), keepdim=True)
    high = total.amax(dim=(1, 2), keepdim=True)
    return total.sub_(low).div_((high - low).clamp_min(1e-6)).unsqueeze(1)


def _spline_matrix(length: int, cell: int, offset: int, device: torch.device) -> torch.Tensor:
    """Weights ``(length, knots)`` of cubic B-spline interpolation of knots ``cell`` samples apart."""
    pos = (torch.arange(length, device=device, dtype=torch.float32) + offset) / cell
    knot = pos.floor()
    t = (pos - knot).unsqueeze(1)
    weights = torch.cat([(1 - t) ** 3, 3 * t**3 - 6 * t**2 + 4, -3 * t**3 + 3 * t**2 + 3 * t + 1, t**3], dim=1) / 6
    index = knot.long().unsqueeze(1) + torch.arange(4, device=device)
    knots = (length - 1 + offset) // cell + 4
    matrix = torch.zeros(length, knots, device=device)
    return matrix.scatter_(1, index, weights)


def _feather_kernels(
    angle: torch.Tensor,
    length: torch.Tensor,
    spacing: torch.Tensor,
    reach: torch.Tensor,
    radius: int,
    size: tuple[int, int],
) -> torch.Tensor:
    """Spectra ``(n, h, w//2+1)`` of one ice feather per image, growing from the origin at ``angle`` (radians).

    A feather is a tapered spine of ``length`` pixels with barbs every ``spacing`` pixels on both sides,
    leaning 60° forward (the hexagonal lattice of ice) and shorter towards the tip (at most ``reach`` ×
    the length). It is drawn on a small ``(2r+1)²`` window (cheap), zero-padded to the texture by the FFT,
    and a phase ramp moves its centre back to the origin. All arguments but ``radius`` and ``size`` are
    ``(n,)`` tensors.
    """
    span = torch.arange(-radius, radius + 1, device=angle.device, dtype=torch.float32)
    u, v = span.view(1, -1, 1), span.view(1, 1, -1)
    cos, sin = torch.cos(angle).view(-1, 1, 1), torch.sin(angle).view(-1, 1, 1)
    length, spacing, reach = (t.view(-1, 1, 1) for t in (length, spacing, reach))
    along = v * cos + u * sin
    across = (u * cos - v * sin).abs_()
    spine = _taper(along / length).mul_(_line(across))
    # the barb through a pixel leaves the spine at ``start``; the pixel lies ``out`` along that barb
    start = along.sub_(across * BARB_COT)
    phase = torch.remainder(start, spacing)
    gap = torch.minimum(phase, spacing - phase).mul_(BARB_SIN)
    barb_length = (length - start).mul_(reach).clamp_min_(1e-3)
    barbs = _taper(across.div_(barb_length).mul_(1.0 / BARB_SIN)).mul_(_line(gap))
    barbs.mul_((start >= 0) & (start <= length))
    kernel = spine.add_(barbs, alpha=0.8)
    return torch.fft.rfft2(kernel, s=size).mul_(_shift_phase(radius, *size, angle.device))


def _taper(t: torch.Tensor) -> torch.Tensor:
    """Brightness along a growing crystal at relative position ``t``: full at the root, fading to the tip."""
    return (1.0 - t).clamp_(0.0, 1.0).sqrt_().mul_(t >= 0)


def _line(distance: torch.Tensor) -> torch.Tensor:
    """Anti-aliased cross-section of a thin crystal at ``distance`` pixels from its axis."""
    return (distance * (1.0 / 0.55)).square_().mul_(-0.5).exp_()


def _shift_phase(shift: int, height: int, width: int, device: torch.device) -> torch.Tensor:
    """Spectrum factor ``(h, w//2+1)`` that moves a periodic image by ``-shift`` pixels along both axes."""
    rows = torch.fft.fftfreq(height, device=device).view(-1, 1)
    cols = torch.fft.rfftfreq(width, device=device).view(1, -1)
    return torch.exp(2j * math.pi * shift * (rows + cols))


def _seeds(density: torch.Tensor, rate: float, g: torch.Generator) -> torch.Tensor:
    """Sparse nucleation points ``(n, h, w)``, about ``rate`` per pixel, more where dense, of random strength.

    Drawn sparsely: ``rate·h·w`` candidate positions per image, each kept with probability ``0.4 + 0.6·d``
    (``d`` the density there); a kept seed's strength reuses its acceptance draw. Dense Bernoulli draws
    over every pixel would cost a full pass per random number for a few hundred seeds.
    """
    n, _, height, width = density.shape
    count = max(1, round(rate * height * width))
    where = torch.randint(0, height * width, (n, count), generator=g, device=density.device)
    chance = 0.4 + 0.6 * density.view(n, -1).gather(1, where)
    draw = torch.rand(n, count, generator=g, device=density.device)
    strength = torch.where(draw < chance, 0.4 + 0.6 * draw / chance, 0.0)
    seeds = torch.zeros(n, height * width, device=density.device)
    return seeds.scatter_add_(1, where, strength).view(n, height, width)


def _domains(n: int, height: int, width: int, g: torch.Generator, device: torch.device) -> _Domains:
    """Soft masks summing to 1 over the ``K`` growth directions: which direction dominates where.

    One smooth field is cut into ``K`` bands around evenly spaced levels (a softmax), so neighbouring
    domains blend. The masks are smooth, so they are computed on a grid 8 times coarser and interpolated
    (one mask at a time, when needed); interpolation weights sum to 1, so the masks still do.
    """
    rows = _spline_matrix(height, 8, 0, device)
    cols = _spline_matrix(width, 8, 0, device)
    field = _fractal_noise(n, rows.shape[1], cols.shape[1], (8, 4), g, device)
    centres = (torch.arange(ORIENTATIONS, device=device, dtype=torch.float32) + 0.5) / ORIENTATIONS
    logits = -(((field - centres.view(1, -1, 1, 1)) * ORIENTATIONS * 2.0) ** 2)
    return _Domains(rows @ torch.softmax(logits, dim=1), cols.t())


class _Domains:
    """Coarse domain masks, already interpolated along rows ``(n, K, h, c)``, and the column interpolator."""

    def __init__(self, half: torch.Tensor, cols_t: torch.Tensor) -> None:
        self.half, self.cols_t = half, cols_t

    def mask(self, k: int, out: torch.Tensor) -> torch.Tensor:
        """Mask ``k`` at full size ``(n, h, w)``, written into ``out``."""
        return torch.matmul(self.half[:, k], self.cols_t, out=out)


def _feathers(density: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Ice feathers ``(n, 1, h, w)``, large and small, one feather orientation per domain of the pane."""
    n, _, height, width = density.shape
    device = density.device
    # feathers longer than half the texture would meet their own wrapped copies
    longest = max(2.0, min(60.0, min(height, width) / 2 - 2))
    domains = _domains(n, height, width, g, device)
    base = _uniform((n, 1), 0.0, 2 * math.pi, g, device)
    spread = _uniform((n, 1), math.radians(35), math.radians(75), g, device)
    steps = torch.arange(ORIENTATIONS, device=device).view(1, -1) - (ORIENTATIONS - 1) / 2
    # the orientations of one pane are related: a fan around a main growth direction
    angles = base + steps * spread
    spacing = _uniform((n,), 4.0, 7.0, g, device)
    reach = _uniform((n,), 0.3, 0.5, g, device)
    size = (height, width)
    large = _uniform((n, ORIENTATIONS), 25.0, 60.0, g, device).clamp(max=longest)
    small = _uniform((n,), 6.0, 14.0, g, device).clamp(max=longest)
    large_f = torch.fft.rfft2(_seeds(density, 0.0025, g))
    small_f = torch.fft.rfft2(_seeds(density, 0.006, g))
    # small feathers grow along the fan's middle direction everywhere: their spectrum joins every domain's
    # (the domain masks sum to 1), which saves their own inverse transforms
    middle = angles[:, ORIENTATIONS // 2]
    small_f.mul_(_feather_kernels(middle, small, spacing, reach, math.ceil(float(small.max())), size))
    radius = math.ceil(float(large.max()))
    ice = torch.zeros(n, height, width, device=device)
    layer, mask = torch.empty_like(ice), torch.empty_like(ice)
    for k in range(ORIENTATIONS):
        spectrum = _feather_kernels(angles[:, k], large[:, k], spacing, reach, radius, size)
        torch.fft.irfft2(spectrum.mul_(large_f).add_(small_f), s=size, out=layer)
        ice.addcmul_(domains.mask(k, mask), layer)
    return ice.clamp_min_(0.0).unsqueeze(1)


def _add_rime(ice: torch.Tensor, density: torch.Tensor, g: torch.Generator) -> None:
    """Add fine frozen grain to ``ice`` in place: uniform per pixel, stronger where the ice is dense."""
    grain = torch.rand(density.shape, generator=g, device=density.device)
    # 0.2·grain·(0.5 + 0.5·density), without full-size temporaries
    ice.add_(grain.addcmul_(grain, density).mul_(0.1))


def _tone(brightness: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Rescale each texture to a mean and a standard deviation drawn in the ranges of frost photographs."""
    n, device = brightness.shape[0], brightness.device
    std, mean = torch.std_mean(brightness, dim=(1, 2, 3), keepdim=True)
    target_mean = _uniform((n, 1, 1, 1), *TEXTURE_MEAN, g, device)
    target_std = _uniform((n, 1, 1, 1), *TEXTURE_STD, g, device)
    scale = target_std / std.clamp_min(1e-6)
    return brightness.sub_(mean).mul_(scale).add_(target_mean).clamp_(0.0, 1.0)


# ------------------------------------------------------------------------------------------------------
# choosing the texture for a batch


def frost_layer(
    n: int,
    height: int,
    width: int,
    generator: torch.Generator,
    device: torch.device | str,
    *,
    param_set: str = "imagenet",
    frost_dir: Path | None = None,
) -> torch.Tensor:
    """The frost texture ``(n, 3, height, width)`` blended into a batch, as the parameter set's reference does.

    With ``frost_dir``, random crops of the user's textures; otherwise synthetic textures. Under the CIFAR
    parameters the texture is shrunk by :data:`CIFAR_TEXTURE_SCALE` before cropping.
    """
    device = torch.device(device)
    scale = CIFAR_TEXTURE_SCALE if param_set == "cifar" else 1.0
    if frost_dir is not None:
        return random_crops(load_textures(frost_dir, device, scale), n, height, width, generator)
    if scale == 1.0:
        return frost_texture(n, height, width, generator, device)
    big_h, big_w = math.ceil(height / scale), math.ceil(width / scale)
    big = frost_texture(n, big_h, big_w, generator, device)
    return _shrink(big, scale)[..., :height, :width]


def _shrink(texture: torch.Tensor, scale: float) -> torch.Tensor:
    """Resize by ``scale`` as ``cv2.resize(fx=fy=scale)`` does by default: bilinear, without antialiasing."""
    size = (max(1, round(texture.shape[-2] * scale)), max(1, round(texture.shape[-1] * scale)))
    return F.interpolate(texture, size=size, mode="bilinear", align_corners=False, antialias=False)


def random_crops(
    textures: list[torch.Tensor], n: int, height: int, width: int, generator: torch.Generator
) -> torch.Tensor:
    """``n`` crops ``(n, 3, height, width)``: for each image a random texture and a random window in it."""
    device = textures[0].device
    choice = torch.randint(0, len(textures), (n,), generator=generator, device=device)
    unit = torch.rand(n, 2, generator=generator, device=device)
    out = torch.empty(n, 3, height, width, device=device)
    rows = torch.arange(height, device=device)
    cols = torch.arange(width, device=device)
    # one gather per texture: the textures differ in size, so they cannot share one tensor
    for index, texture in enumerate(textures):
        picked = (choice == index).nonzero().flatten()
        if picked.numel() == 0:
            continue
        texture = _cover(texture, height, width)
        top = (unit[picked, 0] * (texture.shape[-2] - height + 1)).long()
        left = (unit[picked, 1] * (texture.shape[-1] - width + 1)).long()
        r = (top[:, None] + rows[None, :])[:, None, :, None]
        c = (left[:, None] + cols[None, :])[:, None, None, :]
        out[picked] = texture[torch.arange(3, device=device)[None, :, None, None], r, c]
    return out


def _cover(texture: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """The texture, enlarged (bicubic) just enough to hold a ``height × width`` crop when it is smaller."""
    th, tw = texture.shape[-2:]
    if th >= height and tw >= width:
        return texture
    factor = max(height / th, width / tw)
    size = (max(height, math.ceil(th * factor)), max(width, math.ceil(tw * factor)))
    return F.interpolate(texture[None], size=size, mode="bicubic", align_corners=False)[0].clamp(0.0, 1.0)


# ------------------------------------------------------------------------------------------------------
# user textures

#: loaded folders: (folder, device, scale) → (file signature, textures); a changed folder is reloaded
_CACHE: dict[tuple[str, str, float], tuple[tuple[tuple[str, int, int], ...], list[torch.Tensor]]] = {}


def texture_files(folder: Path) -> list[Path]:
    """The image files of a texture folder, sorted; an InputError when there is no such folder or no image."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"frost texture folder {folder} does not exist or is not a folder")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in TEXTURE_SUFFIXES)
    if not files:
        raise InputError(
            f"frost texture folder {folder} holds no images ({', '.join(TEXTURE_SUFFIXES)}); add frost photographs"
        )
    return files


def load_textures(folder: Path, device: torch.device | str, scale: float = 1.0) -> list[torch.Tensor]:
    """Every image of ``folder`` as a float ``(3, h, w)`` RGB tensor in [0, 1] on ``device``, shrunk by ``scale``.

    Loaded once per folder content (names, sizes and modification times), device and scale.
    """
    files = texture_files(folder)
    signature = tuple((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files)
    key = (str(Path(folder).resolve()), str(device), scale)
    cached = _CACHE.get(key)
    if cached is None or cached[0] != signature:
        textures = [_read_texture(p).to(device) for p in files]
        if scale != 1.0:
            textures = [_shrink(t[None], scale)[0] for t in textures]
        _CACHE[key] = cached = (signature, textures)
    return cached[1]


def _read_texture(path: Path) -> torch.Tensor:
    from PIL import Image, UnidentifiedImageError

    from ..data.pixels import as_array, decoded

    try:
        with Image.open(path) as image:
            rgb = as_array(decoded(image))
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as error:
        raise InputError(f"cannot read frost texture {path}: {error}") from None
    return torch.from_numpy(rgb).permute(2, 0, 1).contiguous()
