"""Does the key-value cache beat the backbone on clean CIFAR-10? (Orhan 2018's claim, checked on real models.)

Protocol: the published CIFAR-10 ResNet-20; cache keys from the 5,085 exact training images; θ and λ tuned
on test images 0-508 of the 1,017 exact test images; accuracy reported on images 509-1016, for several key
layers. With ``--jpeg`` the same with a cache of all 50,000 JPEG training images, tuned on a stratified half
of the 10,000 JPEG test images and reported on the other half.

    ROBAUDIT_VALIDATION_DATA=../shared/data python validation/cache_resnet20.py [--jpeg DIR]

DIR is the extracted ``CIFAR-10-images`` folder of ``cifar10-jpeg-q75.tar.gz``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from robaudit.data import DataSpec, load_dataset, select_samples, stratified_subset
from robaudit.defenses.base import compose
from robaudit.defenses.cache_build import build_cache
from robaudit.defenses.cache_tune import held_out_queries, summarize_grid, tune_grid
from robaudit.models import ModelSpec, load_model
from robaudit.reports.stats import wilson_interval

THETAS = [1, 2, 3, 5, 7, 10, 15, 20, 30, 40, 50, 60, 70, 80, 90]
LAMS = [round(x, 3) for x in np.linspace(0.1, 0.9, 17)]
LAYERS = [
    (["penultimate"], "avg"),
    (["layer3.2"], "avg"),
    (["layer3.1"], "avg"),
    (["layer3.1", "layer3.2"], "avg"),
    (["layer3.0", "layer3.1", "layer3.2"], "avg"),
    (["layer3.0", "layer3.1", "layer3.2"], "flatten"),
]


def evaluate(model, cache_dir: Path, dataset, tune_idx, test_idx, pool_label: str) -> dict:  # type: ignore[no-untyped-def]
    cached = compose(model, [f"cache:path={cache_dir}"])
    cache = cached.defenses[-1]
    q, logits, labels = held_out_queries(cache, cached, dataset, tune_idx, batch_size=500, workers=0, skip_bad=False)
    best = summarize_grid(tune_grid(cache, q, logits, labels, THETAS, LAMS), logits, labels)
    q, logits, labels = held_out_queries(cache, cached, dataset, test_idx, batch_size=500, workers=0, skip_bad=False)
    rows = tune_grid(cache, q, logits, labels, [best["best_theta"], best["cache_only_theta"]], [best["best_lam"]])
    mixed = next(r for r in rows if r["theta"] == best["best_theta"] and r["lam"] == best["best_lam"])
    only = next(r for r in rows if r["theta"] == best["cache_only_theta"] and r["cache_only"])
    n = len(labels)
    backbone = int((logits.argmax(1) == labels).sum())
    return {
        "layers": "+".join(cache.layers) + pool_label,
        "keys": cache.size,
        "dim": int(cache.keys.shape[1]),
        "backbone": backbone / n,
        "cache": mixed["accuracy"],
        "theta": best["best_theta"],
        "lam": best["best_lam"],
        "cache_only": only["accuracy"],
        "theta_only": best["cache_only_theta"],
        "ci_half_width": (wilson_interval(backbone, n)[1] - wilson_interval(backbone, n)[0]) / 2,
        "n": n,
    }


def print_rows(title: str, rows: list[dict]) -> None:  # type: ignore[type-arg]
    print(f"\n{title}")
    print(
        f"{'layers':38} {'keys':>6} {'dim':>6} {'backbone':>9} {'cache':>7} {'(θ, λ)':>12} {'cache-only':>11} "
        f"{'θ':>4}  ±95%"
    )
    for r in rows:
        print(
            f"{r['layers']:38} {r['keys']:>6} {r['dim']:>6} {r['backbone']:>9.4f} {r['cache']:>7.4f} "
            f"{'(' + format(r['theta'], 'g') + ', ' + format(r['lam'], 'g') + ')':>12} {r['cache_only']:>11.4f} "
            f"{r['theta_only']:>4g}  {r['ci_half_width']:.3f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jpeg", type=Path, help="extracted CIFAR-10-images folder for the 50k-key run")
    args = parser.parse_args()
    root = Path(os.environ.get("ROBAUDIT_VALIDATION_DATA", ""))
    if not (root / "weights" / "cifar10_resnet20.th").exists():
        sys.exit("set ROBAUDIT_VALIDATION_DATA to the folder with weights/ and cifar10/")
    torch.set_grad_enabled(False)
    model = load_model(ModelSpec("cifar_resnet20", weights=str(root / "weights/cifar10_resnet20.th")), "cpu")
    train_spec = DataSpec(f"npz:{root / 'cifar10/train_exact_5085.npz'}")
    train = load_dataset(train_spec)
    test = load_dataset(DataSpec(f"npz:{root / 'cifar10/test_exact_1017.npz'}"))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, (layers, pool) in enumerate(LAYERS):
            started = time.perf_counter()
            out = Path(tmp) / f"c{i}"
            build_cache(
                model,
                train,
                train_spec,
                select_samples(train.labels, train_spec, 0),
                layers=layers,
                out=out,
                pool=pool,
                dtype="float32",
                batch_size=500,
            )
            rows.append(
                evaluate(
                    model, out, test, np.arange(509), np.arange(509, 1017), " (flatten)" if pool == "flatten" else ""
                )
            )
            print(f"  {rows[-1]['layers']}: {time.perf_counter() - started:.1f} s", file=sys.stderr)
        print_rows("exact CIFAR-10: cache of 5,085 training images; tuned on test 0-508, reported on 509-1016", rows)
        if args.jpeg:
            jpeg_rows = []
            spec = DataSpec(f"imagefolder:{args.jpeg}", split="train")
            jtrain = load_dataset(spec, model.preprocessing)
            jtest = load_dataset(DataSpec(f"imagefolder:{args.jpeg}", split="test"), model.preprocessing)
            tune_idx = stratified_subset(jtest.labels, len(jtest) // 2, 0)
            test_idx = np.setdiff1d(np.arange(len(jtest)), tune_idx)
            for i, (layers, pool) in enumerate(LAYERS[:5]):
                out = Path(tmp) / f"j{i}"
                build_cache(
                    model,
                    jtrain,
                    spec,
                    np.arange(len(jtrain)),
                    layers=layers,
                    out=out,
                    pool=pool,
                    dtype="float16",
                    batch_size=500,
                )
                jpeg_rows.append(evaluate(model, out, jtest, tune_idx, test_idx, ""))
                print(f"  jpeg {jpeg_rows[-1]['layers']} done", file=sys.stderr)
            print_rows(
                "JPEG CIFAR-10: cache of 50,000 JPEG training images; tuned on a stratified half of the "
                "10,000 JPEG test images, reported on the other half",
                jpeg_rows,
            )


if __name__ == "__main__":
    main()
