"""Cost of the hybrid-image probe beyond the model's own forwards, as a ratio measured side by side.

The probe on N CIFAR-sized images × F mixing frequencies × R pairing repeats runs N·F·R forward passes; all
else (pairing, FFTs, masks, softmax, row building) is overhead. This script times ``HybridAudit.run_batch``
over the images against exactly the same forwards on precomputed inputs, interleaved, and prints
``probe / forwards`` (target ≤ 1.3). The model is the CIFAR ResNet-20 of the cifar-resnets plugin (the
published weights when ``ROBAUDIT_VALIDATION_DATA`` points at them, random ones otherwise: the cost is the
same); the images are the exact CIFAR-10 test images when available, random ones otherwise.

Run: ``python benchmarks/hybrid_speed.py [--images 1000] [--fmix 20] [--repeats 4] [--batch-size 250]
[--device cpu|cuda] [--timing-repeats 2]``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import torch
from pgd_speed import median_times

from robaudit.audits.base import AuditBatch
from robaudit.audits.hybrid import HybridAudit, hybrid_images
from robaudit.models import ModelSpec, load_model


def data(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    root = os.environ.get("ROBAUDIT_VALIDATION_DATA")
    path = Path(root) / "cifar10" / "test_exact_1017.npz" if root else None
    if path is not None and path.is_file():
        with np.load(path) as arrays:
            x = torch.from_numpy(arrays["x"][:n]).permute(0, 3, 1, 2).float() / 255
            y = torch.from_numpy(arrays["y"][:n]).long()
        return x, y
    generator = torch.Generator().manual_seed(0)
    return torch.rand(n, 3, 32, 32, generator=generator), torch.randint(0, 10, (n,), generator=generator)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--fmix", type=int, default=20, help="number of mixing frequencies (evenly spaced in (0, 1])")
    parser.add_argument("--repeats", type=int, default=4, help="pairing repeats of the probe")
    parser.add_argument("--batch-size", type=int, default=250)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--timing-repeats", type=int, default=2)
    args = parser.parse_args()

    device = torch.device(args.device)
    root = os.environ.get("ROBAUDIT_VALIDATION_DATA")
    weights = Path(root) / "weights" / "cifar10_resnet20.th" if root else None
    spec = ModelSpec("cifar_resnet20", weights=str(weights) if weights and weights.is_file() else None)
    model = load_model(spec, str(device))
    x, y = data(args.images)
    grid = [round(float(f), 4) for f in np.linspace(1 / args.fmix, 1.0, args.fmix)]
    audit = HybridAudit(fmix=grid, repeats=args.repeats, seed=0)
    batches = [
        AuditBatch(
            np.arange(s, min(s + args.batch_size, len(x))),
            x[s : s + args.batch_size].to(device),
            y[s : s + args.batch_size].to(device),
        )
        for s in range(0, len(x), args.batch_size)
    ]
    # the forwards alone, on inputs of the same shapes made beforehand (one hybrid per batch and f_mix)
    inputs = [hybrid_images(b.images, b.images.flip(0), f) for b in batches for f in grid]

    def probe() -> None:
        for batch in batches:
            audit.run_batch(model, batch)

    def forwards() -> None:
        with torch.inference_mode():
            for _ in range(args.repeats):
                for pixels in inputs:
                    model(pixels)

    times = median_times({"probe": probe, "forwards": forwards}, args.timing_repeats, device)
    count = len(x) * len(grid) * args.repeats
    print(
        f"hybrid probe: {len(x)} images x {len(grid)} f_mix x {args.repeats} repeats = {count} forwards, "
        f"{spec.name} ({'published' if spec.weights else 'random'} weights), batch {args.batch_size}, {device}"
    )
    print(f"  probe     {times['probe']:8.2f} s")
    print(f"  forwards  {times['forwards']:8.2f} s")
    ratio = times["probe"] / times["forwards"]
    print(f"  probe / forwards = {ratio:.3f}  (target <= 1.3: {'met' if ratio <= 1.3 else 'MISSED'})")


if __name__ == "__main__":
    main()
