"""``grayscale``: the luminance of the input, repeated over the colour channels.

Li et al. (2019, "Learning from brains how to regularize machines") train and test on grayscale CIFAR-10.
Putting the conversion in front of the model, as a fixed input layer, keeps the model's interface (three
channels of pixels in [0, 1]) and makes every audit see what training saw: attacks perturb colour pixels,
and only their luminance reaches the network.

The luminance is ITU-R BT.601's ``0.299 R + 0.587 G + 0.114 B`` (what PIL's ``convert("L")`` and
torchvision's ``rgb_to_grayscale`` compute), copied into every channel. The layer is linear and fixed, so
gradients through it are exact. A one-channel input passes through unchanged.
"""

from __future__ import annotations

import torch

from ..errors import InputError
from .base import InputDefense

#: ITU-R BT.601 luma weights of R, G and B
LUMA = (0.299, 0.587, 0.114)


class Grayscale(InputDefense):
    """Grayscale input: the BT.601 luminance in every channel (Li et al. 2019 train on grayscale CIFAR-10)."""

    name = "grayscale"
    differentiable = True

    def __init__(self) -> None:
        super().__init__()
        self.weights: torch.Tensor
        self.register_buffer("weights", torch.tensor(LUMA, dtype=torch.float32).view(1, 3, 1, 1))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        if pixels.dim() != 4 or pixels.shape[1] not in (1, 3):
            raise InputError(f"grayscale expects (N, 3, H, W) or (N, 1, H, W) images, got shape {tuple(pixels.shape)}")
        if pixels.shape[1] == 1:
            return pixels
        luma = (pixels * self.weights.to(pixels.dtype)).sum(dim=1, keepdim=True)
        return luma.expand_as(pixels)
