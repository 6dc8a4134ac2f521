"""Cost of the non-finite check on every forward and backward pass, as ratios measured side by side.

Every model robaudit loads reports its logits and input gradients to one monitor
(:mod:`robaudit.models.finite`) that keeps a flag on the device and is read once per batch. On a ResNet-18
(timm ``resnet18``, 10 classes, random weights) under a 10-step L∞ PGD on a batch of 64 at 32×32, three
variants of the same model are timed, interleaved:

* ``bare``: no check at all (the hooks removed);
* ``monitor``: robaudit's monitor, flag read once at the end of the attack (as the runner does per batch);
* ``eager``: the same checks, each read back at once (``bool(isfinite(...).all())`` per forward and per
  gradient): what a check per forward pass would cost, one host-device synchronization each.

Targets: ``monitor / bare`` ≤ 1.03 on any device; on CUDA ``eager / monitor`` shows what reading the flag
per pass would add. Timings are medians of interleaved repeats after a warm-up; on a shared CPU only the
ratios mean something. Run: ``python benchmarks/finite_check.py [--repeats 7] [--device cpu|cuda] [--batch 64]
[--threads N]``.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

from robaudit.attacks.base import build_attack
from robaudit.models import ModelSpec, load_model
from robaudit.models.finite import MONITOR


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


def bare_copy(module: torch.nn.Module) -> torch.nn.Module:
    bare = copy.deepcopy(module)
    bare._forward_hooks.clear()
    return bare


def eager_copy(module: torch.nn.Module) -> torch.nn.Module:
    """The monitor's checks, each read back on the host at once."""
    eager = bare_copy(module)

    def check(tensor: torch.Tensor) -> None:
        if not bool(torch.isfinite(tensor.detach()).all()):
            raise RuntimeError("non-finite")

    def hook(_: torch.nn.Module, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
        check(output)
        if inputs[0].requires_grad:
            inputs[0].register_hook(check)

    eager.register_forward_hook(hook)
    return eager


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0: its default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    watched = load_model(ModelSpec("resnet18", num_classes=10), args.device).module
    models = {"bare": bare_copy(watched), "monitor": watched, "eager": eager_copy(watched)}
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(args.batch, 3, 32, 32, generator=gen).to(device)
    y = torch.randint(0, 10, (args.batch,), generator=gen).to(device)
    eps = torch.full((args.batch,), 8 / 255, device=device)
    attack = build_attack("pgd:steps=10")

    def run(name: str) -> Callable[[], object]:
        def go() -> object:
            MONITOR.reset()
            result = attack.run(
                models[name], x, y, targets=None, eps=eps, generator=torch.Generator(device=device).manual_seed(0)
            )
            MONITOR.check()  # once per batch, as the runner does
            return result

        return go

    print(f"torch {torch.__version__}, device {device}, {torch.get_num_threads()} CPU threads")
    t = median_times({name: run(name) for name in models}, args.repeats, device)
    print(
        f"PGD-10, ResNet-18, {args.batch} x 32x32: bare {t['bare']:.3f} s | monitor {t['monitor']:.3f} s | "
        f"eager {t['eager']:.3f} s -> monitor/bare {t['monitor'] / t['bare']:.3f} (target <= 1.03), "
        f"eager/monitor {t['eager'] / t['monitor']:.3f}"
    )


if __name__ == "__main__":
    main()
