"""The corruption contract: one batched torch function per corruption, parameters per severity, a registry.

A corruption is a function ``fn(x, p, g, ctx) -> y``:

* ``x`` — float32 ``(N, 3, H, W)`` images in [0, 1] on any device;
* ``p`` — the parameter entry of one severity (a number or a tuple, straight from the published tables);
* ``g`` — a ``torch.Generator`` on ``x``'s device: *every* random draw goes through it, so the same seed
  gives the same images on the same device; draws are made per image (e.g. one motion-blur angle per image);
* ``ctx`` — a :class:`CorruptionContext` (which parameter set is in use, user-supplied frost textures);
* ``y`` — float ``(N, 3, H, W)`` in [0, 1], same device. :func:`robaudit.corruption.corrupt` clamps and
  quantizes the result to 8-bit levels afterwards, as the reference pipelines save ``uint8`` images.

Each corruption registers itself with :func:`corruption`, giving both parameter tables (ImageNet-C and
CIFAR-10-C, five entries each, severities 1..5) and the smallest image side it works on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

PARAM_SETS = ("imagenet", "cifar")


@dataclass(frozen=True)
class CorruptionContext:
    """What a corruption may need beyond its severity parameters."""

    #: "imagenet" or "cifar": a few algorithms differ between the two sets (e.g. frost texture scale)
    param_set: str = "imagenet"
    #: a folder of user-supplied frost textures (images), used instead of the procedural texture
    frost_dir: Path | None = None


CorruptionFn = Callable[["torch.Tensor", Any, "torch.Generator", CorruptionContext], "torch.Tensor"]


@dataclass(frozen=True)
class Corruption:
    name: str
    fn: CorruptionFn
    #: per-severity parameters (five entries, severity 1..5) for each parameter set
    params: dict[str, tuple[Any, ...]]
    #: the smallest height / width the corruption accepts
    min_size: int = 8
    #: whether the corruption draws random numbers (deterministic ones ignore the generator)
    random: bool = True
    #: whether its output already lies on 8-bit levels in [0, 1] (a codec's): no clamping or quantizing needed
    levels: bool = False

    def parameters(self, severity: int, param_set: str) -> Any:
        return self.params[param_set][severity - 1]


#: every registered corruption by name (filled as the group modules are imported)
REGISTRY: dict[str, Corruption] = {}


def corruption(
    name: str,
    *,
    imagenet: tuple[Any, ...],
    cifar: tuple[Any, ...],
    min_size: int = 8,
    random: bool = True,
    levels: bool = False,
) -> Callable[[CorruptionFn], CorruptionFn]:
    """Register ``fn`` as corruption ``name`` with its two five-severity parameter tables."""

    def register(fn: CorruptionFn) -> CorruptionFn:
        for param_set, table in (("imagenet", imagenet), ("cifar", cifar)):
            if len(table) != 5:
                raise ValueError(f"{name}: the {param_set} table needs 5 severities, has {len(table)}")
        if name in REGISTRY:
            raise ValueError(f"corruption {name!r} registered twice")
        REGISTRY[name] = Corruption(name, fn, {"imagenet": imagenet, "cifar": cifar}, min_size, random, levels)
        return fn

    return register
