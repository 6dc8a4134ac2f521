"""Speed of robaudit's PGD, as ratios measured side by side in one run.

For a ResNet-18-sized model (timm ``resnet18``, 10 classes, random weights) on a batch of 64 at 32×32 and
64×64 pixels:

* ``ours / ideal``: 10-step L∞ PGD divided by 10 × one forward + backward with respect to the input of the
  same model (the floor any PGD pays); target ≤ 1.05;
* ``foolbox / ours``: foolbox 3's LinfPGD (10 steps, random start) through the same model.

Timings are medians of interleaved repeats after a warm-up; on a shared CPU only the ratios mean something.
Run: ``python benchmarks/pgd_speed.py [--repeats 5] [--device cpu|cuda] [--amp]``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from robaudit.attacks.base import Attack, build_attack
from robaudit.models import ModelSpec, load_model


def median_times(fns: dict[str, Callable[[], object]], repeats: int, device: torch.device) -> dict[str, float]:
    def timed(fn: Callable[[], object]) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            times[name].append(timed(fn))
    return {name: statistics.median(t) for name, t in times.items()}


def measure(model: torch.nn.Module, size: int, repeats: int, device: torch.device, amp: bool) -> dict[str, float]:
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(64, 3, size, size, generator=gen).to(device)
    y = torch.randint(0, 10, (64,), generator=gen).to(device)
    eps = torch.full((64,), 8 / 255, device=device)
    ours = build_attack(f"pgd:steps=10,amp={str(amp).lower()}")
    foolbox = build_attack("linf-pgd:steps=10")

    def ideal() -> None:
        for _ in range(10):
            pixels = x.clone().requires_grad_(True)
            torch.autograd.grad(F.cross_entropy(model(pixels), y, reduction="sum"), pixels)

    def run(attack: Attack) -> Callable[[], object]:
        return lambda: attack.run(
            model, x, y, targets=None, eps=eps, generator=torch.Generator(device=device).manual_seed(0)
        )

    return median_times({"ideal": ideal, "ours": run(ours), "foolbox": run(foolbox)}, repeats, device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--amp", action="store_true", help="bf16 autocast for our PGD (GPU)")
    args = parser.parse_args()
    device = torch.device(args.device)
    model = load_model(ModelSpec("resnet18", num_classes=10), args.device).module
    print(f"torch {torch.__version__}, device {device}, {torch.get_num_threads()} CPU threads")
    for size in (32, 64):
        t = measure(model, size, args.repeats, device, args.amp)
        print(
            f"{size}x{size}: 10 x fwd+bwd {t['ideal']:.3f} s | ours {t['ours']:.3f} s | foolbox {t['foolbox']:.3f} s"
            f" -> ours/ideal {t['ours'] / t['ideal']:.3f} (target <= 1.05), "
            f"foolbox/ours {t['foolbox'] / t['ours']:.3f}"
        )


if __name__ == "__main__":
    main()
