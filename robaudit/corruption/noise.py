"""Noise corruptions: additive Gaussian, Poisson (shot), salt-and-pepper (impulse) and multiplicative (speckle).

Every pixel of every channel gets its own independent draw, so the noise is white: its power spreads evenly
over all spatial frequencies, which is why these corruptions form the "high" frequency band. The four
models are

* ``gaussian_noise``: ``x + N(0, σ²)``, the sensor read-out noise of a camera;
* ``shot_noise``: ``Poisson(λ·x) / λ``, photon counting noise; its variance ``x / λ`` grows with the
  brightness and shrinks as the photon count ``λ`` grows, so *small* ``λ`` is the *strong* severity;
* ``impulse_noise``: each element is replaced, with probability ``amount``, by 0 (pepper) or 1 (salt) in
  equal proportion, as dead or stuck sensor cells and bit errors do;
* ``speckle_noise``: ``x + x·N(0, σ²)``, multiplicative noise whose strength follows the brightness.

Parameters per severity are those of ImageNet-C (``make_imagenet_c.py``) and CIFAR-10-C
(``make_cifar_c.py``); the results are clamped and truncated to 8-bit levels by
:func:`robaudit.corruption.corrupt`, as the reference's ``np.clip(...)`` and ``np.uint8`` do.

Differences from the reference
------------------------------
* The random numbers come from the torch generator handed to the corruption (numpy's global state in the
  reference): the distributions are the same, the individual samples are not.
* ``impulse_noise`` draws one uniform number per element and reads both "is it flipped" (``u < amount``)
  and "salt or pepper" (which half of that interval ``u`` falls in) from it; scikit-image's
  ``random_noise(mode='s&p')`` makes two independent draws. Both give pepper and salt with probability
  ``amount / 2`` each, independently per element.
* Arithmetic is in float32 (float64 in the reference); the difference is far below one 8-bit level.
"""

from __future__ import annotations

import torch

from .base import CorruptionContext, corruption


@corruption(
    "gaussian_noise",
    imagenet=(0.08, 0.12, 0.18, 0.26, 0.38),
    cifar=(0.04, 0.06, 0.08, 0.09, 0.10),
    min_size=1,
)
def gaussian_noise(x: torch.Tensor, sigma: float, g: torch.Generator, ctx: CorruptionContext) -> torch.Tensor:
    """``x + N(0, σ²)`` per element."""
    return torch.normal(x, float(sigma), generator=g)


@corruption(
    "shot_noise",
    imagenet=(60, 25, 12, 5, 3),
    cifar=(500, 250, 100, 75, 50),
    min_size=1,
)
def shot_noise(x: torch.Tensor, photons: float, g: torch.Generator, ctx: CorruptionContext) -> torch.Tensor:
    """``Poisson(λ·x) / λ`` per element: mean ``x``, variance ``x / λ``."""
    return torch.poisson(torch.mul(x, photons), generator=g).div_(photons)


@corruption(
    "impulse_noise",
    imagenet=(0.03, 0.06, 0.09, 0.17, 0.27),
    cifar=(0.01, 0.02, 0.03, 0.05, 0.07),
    min_size=1,
)
def impulse_noise(x: torch.Tensor, amount: float, g: torch.Generator, ctx: CorruptionContext) -> torch.Tensor:
    """Salt and pepper: each element becomes 0 or 1 (equally likely) with probability ``amount``."""
    u = torch.rand(x.shape, generator=g, device=x.device, dtype=x.dtype)
    flipped = u < amount
    # u ≤ amount/2 becomes pepper (0), amount/2 < u < amount salt (1); the rest is kept. Working in place
    # on u spares allocating full-size temporaries, which dominate the cost on the CPU.
    u.gt_(amount / 2)
    return torch.where(flipped, u, x, out=u)


@corruption(
    "speckle_noise",
    imagenet=(0.15, 0.20, 0.35, 0.45, 0.60),
    cifar=(0.06, 0.10, 0.12, 0.16, 0.20),
    min_size=1,
)
def speckle_noise(x: torch.Tensor, sigma: float, g: torch.Generator, ctx: CorruptionContext) -> torch.Tensor:
    """``x + x·N(0, σ²)`` per element."""
    noise = torch.randn(x.shape, generator=g, device=x.device, dtype=x.dtype).mul_(x)
    return torch.add(x, noise, alpha=float(sigma), out=noise)
