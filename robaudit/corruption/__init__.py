"""Common corruptions (ImageNet-C / CIFAR-10-C) generated on the fly as batched, seeded torch operations.

Hendrycks & Dietterich's benchmark applies 15 "common" corruptions (plus 4 extra ones) at five severities.
The reference code corrupts one uint8 image at a time in numpy/OpenCV/Wand; here every corruption is a
torch function on a batch ``(N, 3, H, W)`` in [0, 1], on CPU or GPU, with every random draw taken from a
``torch.Generator``: the same seed gives the same images on the same device. Two parameter tables exist
per corruption, the ImageNet-C one (for 224² images) and the CIFAR-10-C one (32²); ``param_set_for``
picks by image size. Where an algorithm differs from the reference (it has to, to run batched, or without
external assets such as the frost photographs), the module of that corruption says how and why, and
docs/corruptions.md lists every difference.

Besides the group of the benchmark (noise, blur, weather, digital; "extra" for the four validation
corruptions), each corruption has a *frequency band* (low, mid, high) as Li et al. (2023, the neural
regularization paper) grouped CIFAR-10-C's 15 by their Fourier spectra; the four extra corruptions are
placed by analogy (speckle noise with the noises, Gaussian blur and spatter with the blurs, saturate with
brightness and contrast), which is robaudit's assignment, not the paper's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import InputError, suggest
from .base import PARAM_SETS, REGISTRY, Corruption, CorruptionContext

if TYPE_CHECKING:
    import torch

#: canonical order (the reference's ``corruption_tuple``), group and frequency band of every corruption
CATALOG: dict[str, tuple[str, str]] = {
    "gaussian_noise": ("noise", "high"),
    "shot_noise": ("noise", "high"),
    "impulse_noise": ("noise", "high"),
    "defocus_blur": ("blur", "mid"),
    "glass_blur": ("blur", "mid"),
    "motion_blur": ("blur", "mid"),
    "zoom_blur": ("blur", "mid"),
    "snow": ("weather", "low"),
    "frost": ("weather", "low"),
    "fog": ("weather", "low"),
    "brightness": ("weather", "low"),
    "contrast": ("digital", "low"),
    "elastic_transform": ("digital", "mid"),
    "pixelate": ("digital", "mid"),
    "jpeg_compression": ("digital", "mid"),
    "speckle_noise": ("extra", "high"),
    "gaussian_blur": ("extra", "mid"),
    "spatter": ("extra", "mid"),
    "saturate": ("extra", "low"),
}
NAMES = tuple(CATALOG)
#: the 15 corruptions the mCE averages over
COMMON = NAMES[:15]
EXTRA = NAMES[15:]
GROUPS = ("noise", "blur", "weather", "digital", "extra")
BANDS = ("low", "mid", "high")
SEVERITIES = (1, 2, 3, 4, 5)
#: images at most this many pixels on a side get the CIFAR-10-C parameters under ``param_set="auto"``
CIFAR_MAX_SIDE = 64


def group_of(name: str) -> str:
    return CATALOG[name][0]


def band_of(name: str) -> str:
    return CATALOG[name][1]


def get(name: str) -> Corruption:
    """The registered corruption ``name``; an unknown name is an InputError with the closest names."""
    _load()
    if name not in REGISTRY:
        raise InputError(f"unknown corruption {name!r}{suggest(name, REGISTRY)}; known: {', '.join(NAMES)}")
    return REGISTRY[name]


def resolve_names(spec: str) -> list[str]:
    """Corruptions named by ``all`` | ``common`` | ``extra`` | groups | bands | names, comma-separated.

    Groups (``noise``, ``blur``, ...) and bands (``low``, ``mid``, ``high``) expand to their members; the
    result keeps the canonical order and has no duplicates.
    """
    chosen: set[str] = set()
    items = [item.strip() for item in spec.split(",") if item.strip()]
    if not items:
        raise InputError("--corruptions names nothing; use all, common, a group, a band or corruption names")
    for item in items:
        if item == "all":
            chosen.update(NAMES)
        elif item == "common":
            chosen.update(COMMON)
        elif item in GROUPS:
            chosen.update(n for n in NAMES if group_of(n) == item)
        elif item in BANDS:
            chosen.update(n for n in NAMES if band_of(n) == item)
        elif item in CATALOG:
            chosen.add(item)
        else:
            words = [*NAMES, "all", "common", *GROUPS, *BANDS]
            raise InputError(
                f"unknown corruption {item!r}{suggest(item, words)}; choose from all, common, "
                f"{', '.join(GROUPS)}, {', '.join(BANDS)} or {', '.join(NAMES)}"
            )
    return [n for n in NAMES if n in chosen]


def parse_severities(spec: str) -> list[int]:
    """``1-5``, ``3``, ``1,3,5`` or ``2-4`` to a sorted list of severities in 1..5."""
    values: set[int] = set()
    for item in (part.strip() for part in spec.split(",")):
        if not item:
            continue
        try:
            if "-" in item:
                lo, hi = (int(v) for v in item.split("-", 1))
                values.update(range(lo, hi + 1))
                if lo > hi:
                    raise InputError(f"--severities range {item!r} is empty")
            else:
                values.add(int(item))
        except ValueError:
            raise InputError(f"--severities takes integers or ranges such as 1-5, got {item!r}") from None
    bad = sorted(v for v in values if v not in SEVERITIES)
    if bad or not values:
        raise InputError(f"severities must lie in 1-5, got {spec!r}")
    return sorted(values)


def param_set_for(height: int, width: int, param_set: str = "auto") -> str:
    """``imagenet`` or ``cifar``: as asked, or by image size under ``auto`` (CIFAR up to 64 pixels a side)."""
    if param_set == "auto":
        return "cifar" if max(height, width) <= CIFAR_MAX_SIDE else "imagenet"
    if param_set not in PARAM_SETS:
        raise InputError(f"--params must be auto, {' or '.join(PARAM_SETS)}; got {param_set!r}")
    return param_set


def corrupt(
    images: torch.Tensor,
    name: str,
    severity: int,
    *,
    generator: torch.Generator | None = None,
    seed: int = 0,
    param_set: str = "auto",
    context: CorruptionContext | None = None,
    quantize: bool = True,
) -> torch.Tensor:
    """Corruption ``name`` at ``severity`` applied to a batch ``(N, 3, H, W)`` in [0, 1].

    Random draws come from ``generator`` (a fresh one seeded with ``seed`` on the images' device when none
    is given). The result is clamped to [0, 1] and, with ``quantize``, truncated to 8-bit levels as the
    reference's ``np.uint8`` cast does.
    """
    import torch

    entry = get(name)
    if severity not in SEVERITIES:
        raise InputError(f"severity must lie in 1-5, got {severity}")
    if images.ndim != 4 or images.shape[1] != 3:
        raise InputError(f"corruptions take (N, 3, H, W) images, got shape {tuple(images.shape)}")
    height, width = images.shape[-2:]
    if min(height, width) < entry.min_size:
        raise InputError(
            f"{name} needs images of at least {entry.min_size}x{entry.min_size} pixels, got {height}x{width}"
        )
    chosen = param_set_for(height, width, context.param_set if context else param_set)
    ctx = CorruptionContext(chosen, context.frost_dir if context else None)
    if generator is None:
        generator = torch.Generator(device=images.device)
        generator.manual_seed(seed)
    with torch.no_grad():
        out = entry.fn(images.float(), entry.parameters(severity, chosen), generator, ctx)
        if entry.levels:
            return out
        if out.untyped_storage().data_ptr() == images.untyped_storage().data_ptr():
            out = out.clone()  # never modify the caller's images
        # in place: on CPU, fresh full-size tensors cost more than the arithmetic
        out.clamp_(0, 1)
        if quantize:
            out.mul_(255).floor_().div_(255)
    return out


def _load() -> None:
    """Import the group modules, whose decorators fill the registry (kept lazy: they import torch)."""
    if len(REGISTRY) < len(CATALOG):
        from . import blur, digital, noise, weather  # noqa: F401


__all__ = [
    "BANDS",
    "CATALOG",
    "COMMON",
    "EXTRA",
    "GROUPS",
    "NAMES",
    "SEVERITIES",
    "Corruption",
    "CorruptionContext",
    "band_of",
    "corrupt",
    "get",
    "group_of",
    "param_set_for",
    "parse_severities",
    "resolve_names",
]
