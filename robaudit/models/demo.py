"""The demo's model: a small CNN for the embedded ``digits`` data, trained here in seconds and cached.

``digits_cnn`` with ``pretrained=True`` loads the cached weights, training them first when there are none
(about ten seconds on two CPU cores), so the whole demo runs offline with a real, well-trained model.
"""

from __future__ import annotations

import itertools
import json
import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..data.sources import cache_dir
from . import ModelBuild, Preprocessing

log = logging.getLogger(__name__)

DIGITS_MEAN = (0.5, 0.5, 0.5)
DIGITS_STD = (0.5, 0.5, 0.5)
TRAIN_SEED = 0
TRAIN_EPOCHS = 12


class DigitsCNN(nn.Module):
    """Three conv-BN-ReLU blocks (16, 32, 64 channels, each halving resolution), global pooling, linear."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = [3, 16, 32, 64]
        for cin, cout in itertools.pairwise(channels):
            layers += [
                nn.Conv2d(cin, cout, 3, padding=1, bias=False),
                nn.BatchNorm2d(cout),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            ]
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.features(x)).flatten(1))


def weights_path() -> Path:
    return cache_dir() / "models" / "digits_cnn.pt"


def train_digits_cnn(path: Path | None = None, epochs: int = TRAIN_EPOCHS, seed: int = TRAIN_SEED) -> dict[str, Any]:
    """Train on the digits training split, save state dict + a JSON sidecar, return the sidecar's content."""
    from ..data.sources import digits

    path = path or weights_path()
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    train = digits(split="train")
    images = train.load(torch.arange(len(train)).numpy()).images
    labels = torch.from_numpy(train.labels)
    mean = torch.tensor(DIGITS_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(DIGITS_STD).view(1, 3, 1, 1)
    inputs = (images - mean) / std
    model = DigitsCNN()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    steps = epochs * ((len(inputs) + 63) // 64)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=3e-3, total_steps=steps)
    model.train()
    for epoch in range(epochs):
        order = torch.randperm(len(inputs), generator=generator)
        total = 0.0
        for start in range(0, len(order), 64):
            idx = order[start : start + 64]
            # Small random shifts make the model less brittle than the tiny dataset would leave it.
            dx, dy = torch.randint(-2, 3, (2,), generator=generator).tolist()
            batch = torch.roll(inputs[idx], shifts=(dy, dx), dims=(2, 3))
            loss = nn.functional.cross_entropy(model(batch), labels[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            total += float(loss.detach()) * len(idx)
        log.info("digits_cnn epoch %d/%d: loss %.4f", epoch + 1, epochs, total / len(order))
    model.eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(model.state_dict(), tmp)
    tmp.replace(path)
    info = {"epochs": epochs, "seed": seed, "train_images": len(inputs), "final_loss": total / len(order)}
    path.with_suffix(".json").write_text(json.dumps(info, indent=2))
    return info


def digits_cnn(
    name: str = "digits_cnn", *, pretrained: bool = False, num_classes: int | None = None, **kwargs: Any
) -> ModelBuild:
    """Small CNN for the embedded digits data (pretrained: trained locally on first use, then cached)."""
    model = DigitsCNN(num_classes or 10)
    source = None
    if pretrained:
        path = weights_path()
        if not path.is_file():
            log.warning("training digits_cnn on the embedded digits data (cached at %s)", path)
            train_digits_cnn(path)
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        source = str(path)
    pre = Preprocessing(mean=DIGITS_MEAN, std=DIGITS_STD, input_size=(3, 32, 32), crop_pct=1.0)
    return ModelBuild(model, pre, num_classes or 10, source, random_weights=not pretrained)
