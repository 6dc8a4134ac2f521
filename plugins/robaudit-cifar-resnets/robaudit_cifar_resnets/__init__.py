"""The classic CIFAR-10 ResNets of He et al. (2016, section 4.2) as robaudit models.

Layout ("option A"), matching the checkpoints published in akamaster/pytorch_resnet_cifar10 key for key:

* stem: ``conv1`` 3x3, 3->16 channels, stride 1, no bias; ``bn1``; ReLU;
* ``layer1``, ``layer2``, ``layer3``: n = (depth - 2) / 6 basic blocks each, with 16, 32 and 64 channels;
  the first block of ``layer2`` and ``layer3`` halves the resolution (stride 2);
* basic block: ``conv1`` 3x3 (stride s) - ``bn1`` - ReLU - ``conv2`` 3x3 - ``bn2``, plus the shortcut, ReLU;
* global average pooling and ``linear`` (64 -> classes).

Where a block changes shape, its shortcut is option A of the paper: no parameters at all; the input is
subsampled (``x[:, :, ::2, ::2]``) and the channel dimension is zero-padded, ``planes // 4`` zero channels on
each side. Everywhere else the shortcut is the identity. So the whole network has only convolutions,
BatchNorms and one linear layer: ResNet-20 has 0.27 M parameters, ResNet-110 1.7 M.

The published models were trained on [0, 1] RGB normalized with the ImageNet mean and std, which is what
the returned preprocessing says; their 32x32 input is used as is (no resize, no crop).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from robaudit.errors import InputError
from robaudit.models import IMAGENET_MEAN, IMAGENET_STD, ModelBuild, Preprocessing
from robaudit.models.downloads import download_state_dict
from torch import nn

__all__ = [
    "BasicBlock",
    "CifarResNet",
    "ShortcutA",
    "cifar_resnet20",
    "cifar_resnet32",
    "cifar_resnet44",
    "cifar_resnet56",
    "cifar_resnet110",
]

_WEIGHTS_BASE = "https://github.com/akamaster/pytorch_resnet_cifar10/raw/master/pretrained_models"
# CIFAR-10 weights; the hex part of each file name is a prefix of its sha256, which torch hub checks.
WEIGHTS = {
    20: f"{_WEIGHTS_BASE}/resnet20-12fca82f.th",
    32: f"{_WEIGHTS_BASE}/resnet32-d509ac18.th",
    44: f"{_WEIGHTS_BASE}/resnet44-014dd654.th",
    56: f"{_WEIGHTS_BASE}/resnet56-4bfd9763.th",
    110: f"{_WEIGHTS_BASE}/resnet110-1d1ed7c2.th",
}
PREPROCESSING = Preprocessing(
    mean=IMAGENET_MEAN, std=IMAGENET_STD, input_size=(3, 32, 32), interpolation="bilinear", crop_pct=1.0
)


class ShortcutA(nn.Module):
    """Option-A shortcut: halve the resolution and zero-pad ``pad`` channels on each side; no parameters."""

    def __init__(self, pad: int) -> None:
        super().__init__()
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad))

    def extra_repr(self) -> str:
        return f"pad={self.pad}"


class BasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN, plus the shortcut, then ReLU."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        reshapes = stride != 1 or in_planes != planes
        # In these networks a reshaping block always doubles the channels and has stride 2, so padding
        # planes // 4 on each side of in_planes = planes // 2 channels gives exactly planes.
        self.shortcut: nn.Module = ShortcutA(planes // 4) if reshapes else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet-``depth`` for 32x32 inputs, depth = 6n + 2 (20, 32, 44, 56, 110, ...)."""

    def __init__(self, depth: int, num_classes: int = 10) -> None:
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise InputError(f"a CIFAR ResNet has depth 6n + 2 (20, 32, 44, 56, 110, ...), not {depth}")
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(3, 16, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.layer1 = self._stage(16, 16, n, stride=1)
        self.layer2 = self._stage(16, 32, n, stride=2)
        self.layer3 = self._stage(32, 64, n, stride=2)
        self.linear = nn.Linear(64, num_classes)
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(module.weight)  # He init, as in the paper and the published training

    @staticmethod
    def _stage(in_planes: int, planes: int, blocks: int, stride: int) -> nn.Sequential:
        return nn.Sequential(
            *(BasicBlock(in_planes if i == 0 else planes, planes, stride if i == 0 else 1) for i in range(blocks))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        return self.linear(out.mean(dim=(2, 3)))


def _unwrap(checkpoint: Any) -> dict[str, torch.Tensor]:
    """The published files hold ``{"state_dict": {"module.conv1.weight": ...}, "best_prec1": ...}``.

    They were saved before BatchNorm had a ``num_batches_tracked`` buffer; ``load_state_dict`` adds it.
    """
    state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else checkpoint
    return {k.removeprefix("module."): v for k, v in state.items()}


def _build(depth: int, name: str, pretrained: bool, num_classes: int | None, kwargs: dict[str, Any]) -> ModelBuild:
    if kwargs:
        raise InputError(f"model {name} takes no options besides pretrained and num_classes, got {', '.join(kwargs)}")
    if pretrained and num_classes not in (None, 10):
        raise InputError(
            f"the pretrained {name} is a CIFAR-10 model with 10 classes, not {num_classes}; "
            "for other classes leave out --pretrained, or pass --weights with a checkpoint that has them"
        )
    net = CifarResNet(depth, num_classes or 10)
    url = WEIGHTS[depth] if pretrained else None
    if url is not None:
        net.load_state_dict(_unwrap(download_state_dict(url, f"pretrained CIFAR-10 weights for {name}")))
    return ModelBuild(backbone=net, preprocessing=PREPROCESSING, num_classes=num_classes or 10, pretrained_from=url)


def cifar_resnet20(
    name: str = "cifar_resnet20", *, pretrained: bool = False, num_classes: int | None = None, **kwargs: Any
) -> ModelBuild:
    """CIFAR ResNet-20 (He et al. 2016, option-A shortcuts), 0.27 M parameters."""
    return _build(20, name, pretrained, num_classes, kwargs)


def cifar_resnet32(
    name: str = "cifar_resnet32", *, pretrained: bool = False, num_classes: int | None = None, **kwargs: Any
) -> ModelBuild:
    """CIFAR ResNet-32 (He et al. 2016, option-A shortcuts), 0.46 M parameters."""
    return _build(32, name, pretrained, num_classes, kwargs)


def cifar_resnet44(
    name: str = "cifar_resnet44", *, pretrained: bool = False, num_classes: int | None = None, **kwargs: Any
) -> ModelBuild:
    """CIFAR ResNet-44 (He et al. 2016, option-A shortcuts), 0.66 M parameters."""
    return _build(44, name, pretrained, num_classes, kwargs)


def cifar_resnet56(
    name: str = "cifar_resnet56", *, pretrained: bool = False, num_classes: int | None = None, **kwargs: Any
) -> ModelBuild:
    """CIFAR ResNet-56 (He et al. 2016, option-A shortcuts), 0.85 M parameters."""
    return _build(56, name, pretrained, num_classes, kwargs)


def cifar_resnet110(
    name: str = "cifar_resnet110", *, pretrained: bool = False, num_classes: int | None = None, **kwargs: Any
) -> ModelBuild:
    """CIFAR ResNet-110 (He et al. 2016, option-A shortcuts), 1.73 M parameters."""
    return _build(110, name, pretrained, num_classes, kwargs)
