"""``blur``: a fixed Gaussian low-pass filter in front of the classifier.

Following Li et al. (2023, "robust models rely on low spatial frequencies"; code lizhe07/blur-net), every
channel is convolved with the same 2-D Gaussian kernel

    w(x, y) ∝ exp(-(x² + y²) / (2σ²)),   x, y ∈ {-h, ..., h},   h = ceil(2.5 σ),

normalized to sum 1 (a depthwise convolution, channel i -> channel i, size 2h + 1). Images are padded by h
on every side, circularly by default as in the reference, so the output has the input's size. The filter
runs on pixels, before the model's normalization: with circular or reflect padding that is equivalent to
blurring normalized inputs, because an affine per-channel map commutes with a kernel that sums to 1
(zero padding is not equivalent: pixel 0 is not normalized 0). σ = 0 is the identity.

The layer is linear and fixed, so gradients through it are exact: attacks see the blurred model as is.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from ..errors import InputError
from .base import Defense, InputDefense

if TYPE_CHECKING:
    from ..models import LoadedModel

PADDINGS = ("circular", "reflect", "zeros")
#: the kernel is cut at this many standard deviations (the reference's choice)
TRUNCATE = 2.5


def gaussian_kernel(sigma: float) -> torch.Tensor:
    """The (2h+1) x (2h+1) float32 kernel, h = ceil(2.5 σ), summing to 1; ``[[1.]]`` for σ = 0."""
    half = math.ceil(TRUNCATE * sigma)
    if half == 0:
        return torch.ones(1, 1)
    # float64 so that tiny σ (where off-centre weights underflow to 0) still yields an exact identity kernel
    offsets = torch.arange(-half, half + 1, dtype=torch.float64)
    squared = offsets[:, None] ** 2 + offsets[None, :] ** 2
    weights = torch.exp(-squared / (2 * sigma**2))
    return (weights / weights.sum()).float()


class GaussianBlur(InputDefense):
    """Gaussian blur of the input (Li et al. 2023): keeps low spatial frequencies; sigma in pixels."""

    name = "blur"
    differentiable = True

    def __init__(self, *, sigma: float = 1.5, padding: str = "circular") -> None:
        if isinstance(sigma, bool) or not isinstance(sigma, (int, float)):
            raise InputError(f"blur: sigma must be a number of pixels, got {sigma!r}")
        if not math.isfinite(sigma) or sigma < 0:
            raise InputError(f"blur: sigma must be finite and >= 0, got {sigma}")
        if padding not in PADDINGS:
            raise InputError(f"blur: padding must be one of {', '.join(PADDINGS)}, got {padding!r}")
        super().__init__(sigma=float(sigma), padding=padding)
        self.sigma = float(sigma)
        self.padding = padding
        self.kernel: torch.Tensor
        # A buffer (not a parameter): it moves with .to(device) but is never trained.
        self.register_buffer("kernel", gaussian_kernel(self.sigma))

    @property
    def half_width(self) -> int:
        return (self.kernel.shape[-1] - 1) // 2

    def _check_size(self, height: int, width: int, where: str) -> None:
        # Circular and reflect padding read h pixels from the opposite side / the interior, which must exist.
        if self.padding != "zeros" and (self.half_width >= height or self.half_width >= width):
            raise InputError(
                f"blur(sigma={self.sigma}) needs a kernel half-width of {self.half_width} pixels, which {self.padding} "
                f"padding cannot apply to {where} of {height}x{width}; use a smaller sigma or padding=zeros"
            )

    def bind(self, model: LoadedModel, upstream: list[Defense]) -> None:
        _, height, width = model.preprocessing.input_size
        self._check_size(height, width, "the model's input")

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        if pixels.dim() != 4:
            raise InputError(f"blur expects images as (N, C, H, W), got shape {tuple(pixels.shape)}")
        half = self.half_width
        if half == 0:
            return pixels
        self._check_size(pixels.shape[2], pixels.shape[3], "images")
        channels = pixels.shape[1]
        weight = self.kernel.to(pixels.dtype).expand(channels, 1, -1, -1)
        mode = "constant" if self.padding == "zeros" else self.padding
        padded = F.pad(pixels, (half, half, half, half), mode=mode)
        return F.conv2d(padded, weight, groups=channels)
