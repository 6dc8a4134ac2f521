"""Cost of AutoAttack (standard) against robaudit's PGD-10, per image, as ratios measured side by side.

AutoAttack's cost depends on the model's robustness: every image gets 100 APGD-CE steps, and every image
still standing after them also gets APGD-T (9 × 100 steps), FAB-T (9 × 100) and Square (up to 5,000
queries). So the benchmark uses a real model and real images: the published CIFAR-10 ResNet-20 on the first
``--images`` exact CIFAR-10 test images (``ROBAUDIT_VALIDATION_DATA``), L∞, at each ``--eps``.

Per ε, PGD-10 is timed just before and just after AutoAttack on the same batch, and its time is the mean of
the two, so that a change in the load of a shared machine falls on both sides alike; on a busy CPU only the
ratio ``AutoAttack / PGD-10`` means something. Printed per ε: seconds per image for each, the ratio, both
robust accuracies, and how many images each AutoAttack member attacked (what drives the cost).

    ROBAUDIT_VALIDATION_DATA=/work/shared/data python benchmarks/autoattack_speed.py \\
        [--images 32] [--eps 1/255,2/255,4/255] [--device cpu|cuda] [--amp] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from robaudit.attacks.base import Attack, AttackOutcome, build_attack
from robaudit.cli.options import budget_list
from robaudit.data import DataSpec, load_dataset
from robaudit.models import ModelSpec, load_model


def timed(fn: Callable[[], AttackOutcome], device: torch.device) -> tuple[float, AttackOutcome]:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    outcome = fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start, outcome


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--eps", default="1/255,2/255,4/255")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--amp", action="store_true", help="bf16 autocast for both attacks (GPU)")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads")
    args = parser.parse_args()
    root = Path(os.environ.get("ROBAUDIT_VALIDATION_DATA", ""))
    if not (root / "weights" / "cifar10_resnet20.th").exists():
        sys.exit("set ROBAUDIT_VALIDATION_DATA to the folder with weights/ and cifar10/")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    spec = ModelSpec("cifar_resnet20", weights=str(root / "weights/cifar10_resnet20.th"))
    model = load_model(spec, args.device).module
    data = load_dataset(DataSpec(f"npz:{root / 'cifar10/test_exact_1017.npz'}"))
    indices = np.arange(args.images)
    images = data.load(indices).images.to(device)
    labels = torch.from_numpy(data.labels[indices]).to(device)
    amp = str(args.amp).lower()
    pgd, autoattack = build_attack(f"pgd:steps=10,amp={amp}"), build_attack(f"autoattack:amp={amp}")
    with torch.no_grad():
        clean = float((model(images).argmax(dim=1) == labels).float().mean())
    print(
        f"torch {torch.__version__}, {device}, {torch.get_num_threads()} CPU threads, ResNet-20, "
        f"{args.images} images (clean accuracy {clean:.1%}), amp={amp}"
    )
    print(f"{'eps':>7} {'PGD-10 s/img':>13} {'AA s/img':>10} {'AA/PGD-10':>10} {'PGD acc':>8} {'AA acc':>7}  members")
    for eps in budget_list(args.eps) or []:
        budget = torch.full((len(images),), eps, device=device)

        def run(attack: Attack, budget: torch.Tensor = budget) -> Callable[[], AttackOutcome]:
            generator = torch.Generator(device=device).manual_seed(0)
            return lambda: attack.run_detailed(model, images, labels, targets=None, eps=budget, generator=generator)

        before, pgd_out = timed(run(pgd), device)
        aa_seconds, aa_out = timed(run(autoattack), device)
        after, _ = timed(run(pgd), device)
        pgd_seconds = (before + after) / 2
        n = len(images)
        members = ", ".join(f"{m.name} {int(m.attacked.sum())}" for m in aa_out.members)
        print(
            f"{round(eps * 255):>3}/255 {pgd_seconds / n:>13.4f} {aa_seconds / n:>10.3f} "
            f"{aa_seconds / pgd_seconds:>10.1f} {1 - pgd_out.success.float().mean().item():>8.1%} "
            f"{1 - aa_out.success.float().mean().item():>7.1%}  attacked: {members}"
        )


if __name__ == "__main__":
    main()
