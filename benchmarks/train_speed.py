"""Cost of ``robaudit train`` against a bare PyTorch training loop, as a ratio measured side by side.

Both train the same model (the CIFAR ResNet-20 of the cifar-resnets plugin, pixel normalization in front)
on the same images (the exact CIFAR-10 training images when ``ROBAUDIT_VALIDATION_DATA`` points at them,
random ones otherwise: the cost is the same) with the same batch size, SGD with momentum and weight decay, a
per-step cosine learning rate and the same per-image augmentation (torchvision transforms v2: pad-and-crop
and flip, or none). The bare loop is the textbook one: a ``DataLoader`` over a ``TensorDataset``-like dataset
that augments in ``__getitem__``, forward, cross-entropy, backward, step. ``robaudit train`` does all of its
own work per epoch: seeding, the epoch's order, decoding through the data source, metrics, progress,
writing the checkpoint, ``model.safetensors`` and the card (held-out evaluation is off: the bare loop has
none). Runs alternate between the two, so the load of a shared machine falls on both alike; the result is
the ratio of median times per epoch, ``robaudit / bare`` (target <= 1.1), and each side's images/s.

Run: ``python benchmarks/train_speed.py [--images 2048] [--batch-size 128] [--augment standard|none]
[--repeats 3] [--device cpu|cuda] [--threads N]``.
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from pgd_speed import median_times

from robaudit.data import DataSpec
from robaudit.models import ModelSpec, load_model
from robaudit.training.augment import build_augmentation
from robaudit.training.config import TrainConfig
from robaudit.training.loop import Run

LR, MOMENTUM, DECAY = 0.05, 0.9, 5e-4


def images(count: int, folder: Path) -> Path:
    """An npz of ``count`` training images (exact CIFAR-10 when available) for both sides."""
    root = os.environ.get("ROBAUDIT_VALIDATION_DATA")
    source = Path(root) / "cifar10" / "train_exact_5085.npz" if root else None
    if source is not None and source.is_file():
        with np.load(source) as arrays:
            x, y = arrays["x"][:count], arrays["y"][:count]
    else:
        rng = np.random.default_rng(0)
        x = rng.integers(0, 256, (count, 32, 32, 3), dtype=np.uint8)
        y = rng.integers(0, 10, count)
    path = folder / "train.npz"
    np.savez(path, x=x, y=y)
    return path


class Augmented(torch.utils.data.Dataset):  # type: ignore[type-arg]
    """The bare loop's dataset: uint8 images in memory, converted and augmented per sample."""

    def __init__(self, x: np.ndarray, y: np.ndarray, augment: str) -> None:
        self.x = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()
        self.y = torch.from_numpy(y.astype(np.int64))
        self.transform = build_augmentation(augment, 32, 32)

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = self.x[i].float() / 255
        return (self.transform(image) if self.transform else image), self.y[i]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=2048)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--augment", default="standard", choices=("standard", "none"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    folder = Path(tempfile.mkdtemp(prefix="train-speed-"))
    data = images(args.images, folder)
    steps = args.images // args.batch_size

    config = TrainConfig(
        model=ModelSpec("cifar_resnet20"),
        data=DataSpec(f"npz:{data}"),
        heldout=None,
        out=folder / "run",
        epochs=1,
        batch_size=args.batch_size,
        lr=LR,
        momentum=MOMENTUM,
        weight_decay=DECAY,
        warmup_epochs=0,
        augment=args.augment,
        device=str(device),
    )
    run = Run(config)

    def robaudit_epoch() -> None:
        run.run(overwrite=True)

    with np.load(data) as arrays:
        dataset = Augmented(arrays["x"], arrays["y"], args.augment)
    bare = load_model(ModelSpec("cifar_resnet20"), str(device)).module
    bare.requires_grad_(True).train()
    decayed = [p for p in bare.parameters() if p.ndim > 1]
    plain = [p for p in bare.parameters() if p.ndim <= 1]
    optimizer = torch.optim.SGD(
        [{"params": decayed, "weight_decay": DECAY}, {"params": plain, "weight_decay": 0.0}], lr=LR, momentum=MOMENTUM
    )

    def bare_epoch() -> None:
        loader = torch.utils.data.DataLoader(dataset, batch_size=args.batch_size, shuffle=True, drop_last=True)
        for step, (x, y) in enumerate(loader):
            for group in optimizer.param_groups:
                group["lr"] = LR * 0.5 * (1 + math.cos(math.pi * step / steps))
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            loss = F.cross_entropy(bare(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

    times = median_times({"robaudit": robaudit_epoch, "bare": bare_epoch}, args.repeats, device)
    trained = steps * args.batch_size
    print(
        f"training: cifar_resnet20, {trained} images per epoch, batch {args.batch_size}, augment {args.augment}, "
        f"{device}, {torch.get_num_threads()} threads, median of {args.repeats}"
    )
    for name in ("robaudit", "bare"):
        print(f"  {name:9s} {times[name]:8.2f} s  ({trained / times[name]:7.1f} images/s)")
    ratio = times["robaudit"] / times["bare"]
    print(f"  robaudit / bare = {ratio:.3f}  (target <= 1.1: {'met' if ratio <= 1.1 else 'MISSED'})")


if __name__ == "__main__":
    main()
