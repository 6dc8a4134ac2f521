"""Training-time augmentation, built from torchvision's transforms v2 and timm's RandAugment.

``--augment`` names a policy; each image of a batch gets its own random draw (transforms v2 applied to a
whole batch tensor would give every image the same crop):

* ``standard`` (the default): the usual recipe for the image size. Up to 64 px (CIFAR-like), a random crop
  after zero-padding by 1/8 of the shorter side (4 px at 32 px) and a horizontal flip (He et al. 2016);
  above, a random resized crop (scale 0.08-1, aspect 3/4-4/3) back to the size and a horizontal flip.
* ``crop``: ``standard`` without the flip (for images a mirror changes, such as digits and text).
* ``flip``: the horizontal flip alone.
* ``none``: the images as the data source gives them.
* ``timm:CONFIG``: ``standard`` followed by timm's RandAugment with a timm config string, e.g.
  ``timm:rand-m9-mstd0.5`` (timm's ``rand_augment_transform``).

Transforms act on float images in [0, 1] (C, H, W) and return the same; the random numbers come from torch's
global generator, which the training loop seeds at the start of every epoch, so an epoch is reproducible.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..errors import InputError

POLICIES = ("standard", "crop", "flip", "none", "timm:CONFIG")
#: images up to this side get the CIFAR recipe (pad-and-crop), larger ones a random resized crop
SMALL_SIDE = 64

Transform = Callable[[torch.Tensor], torch.Tensor]


def _standard(height: int, width: int) -> list[Transform]:
    from torchvision.transforms import v2

    if max(height, width) <= SMALL_SIDE:
        pad = max(1, min(height, width) // 8)
        return [v2.RandomCrop((height, width), padding=pad), v2.RandomHorizontalFlip()]
    return [v2.RandomResizedCrop((height, width), antialias=True), v2.RandomHorizontalFlip()]


def _timm_randaugment(config: str) -> Transform:
    """timm's RandAugment (PIL-based) wrapped to take and return float tensors in [0, 1]."""
    from timm.data.auto_augment import rand_augment_transform
    from torchvision.transforms import v2

    try:
        augment = rand_augment_transform(config, {"translate_const": 10, "img_mean": (128, 128, 128)})
    except Exception as exc:
        raise InputError(f"--augment timm:{config}: timm rejects the config ({type(exc).__name__}: {exc})") from None
    to_pil, to_tensor = v2.ToPILImage(), v2.Compose([v2.PILToTensor(), v2.ToDtype(torch.float32, scale=True)])

    def apply(image: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = to_tensor(augment(to_pil(image)))
        return out

    return apply


def build_augmentation(policy: str, height: int, width: int) -> Transform | None:
    """The per-image transform of ``policy`` for images of ``height`` x ``width`` pixels; None for ``none``."""
    from torchvision.transforms import v2

    if policy == "none":
        return None
    if policy == "standard":
        return v2.Compose(_standard(height, width))
    if policy == "crop":
        return _standard(height, width)[0]
    if policy == "flip":
        return v2.RandomHorizontalFlip()
    if policy.startswith("timm:"):
        config = policy.removeprefix("timm:")
        if not config.startswith("rand"):
            raise InputError(f"--augment timm:{config}: give a timm RandAugment config such as rand-m9-mstd0.5")
        return v2.Compose([*_standard(height, width), _timm_randaugment(config)])
    raise InputError(f"--augment must be one of {', '.join(POLICIES)}, got {policy!r}")


def augment_batch(transform: Transform | None, images: torch.Tensor) -> torch.Tensor:
    """Each image of a (N, C, H, W) batch through its own draw of ``transform``."""
    if transform is None or len(images) == 0:
        return images
    return torch.stack([transform(image) for image in images])
