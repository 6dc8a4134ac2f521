"""Cost of tuning a cache's θ and λ, and of building a cache, as ratios measured side by side in one run.

1. ``cache tune``'s grid (default 33 θ × 33 λ + cache-only) over 509 held-out queries and 50,000 keys,
   from precomputed query features, against one θ scored the way the defended model scores it
   (``KeyValueCache.log_pmem``: similarities recomputed with the keys, chunk by chunk). Target: the whole
   grid costs at most 1.5 × that one θ. Also printed: the grid against one θ through the grid's own path
   (the similarities once, then one θ), which shows what each further θ adds. Two key sizes: 64 (the
   CIFAR ResNet-20's penultimate features) and 2,048 (a ResNet-50's); keys and queries are clustered by
   class so that similarities spread as real ones do.
2. ``cache build`` over 4,096 in-memory images against the model's forward over the same batches: what
   building adds to the forward (feature reading, writing the key matrix, fingerprints).

Timings are medians of interleaved repeats; on a shared CPU only the ratios mean something, and
``--threads 1 --clock cpu`` (the process's CPU time, which waiting for a core does not inflate) gives the
steadiest ones. Run: ``python benchmarks/cache_tune.py [--keys 50000] [--queries 509] [--repeats 3]
[--threads N] [--clock wall|cpu] [--skip-build]``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from cache_forward import write_cache

from robaudit.data import ArrayDataset, DataSpec
from robaudit.defenses.cache import KeyValueCache
from robaudit.defenses.cache_build import build_cache
from robaudit.defenses.cache_tune import tune_grid
from robaudit.models import ModelSpec, load_model

THETAS = list(np.linspace(10, 90, 33))
LAMS = list(np.linspace(0.1, 0.9, 33))
GRID_TARGET = 1.5
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def median_times(fns: dict[str, Callable[[], object]], repeats: int, clock: str) -> dict[str, float]:
    """Median seconds of each function, interleaved repeat by repeat after one warm-up each."""
    now = CLOCKS[clock]
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = now()
            fn()
            times[name].append(now() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def clustered(n: int, dim: int, classes: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors around one random centre per class (cosine to the centre about 0.7), and their labels."""
    centres = rng.standard_normal((classes, dim), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    labels = rng.integers(0, classes, n)
    noise = rng.standard_normal((n, dim), dtype=np.float32) / np.sqrt(dim)
    x = centres[labels] + noise
    return x / np.linalg.norm(x, axis=1, keepdims=True), labels


def synthetic_cache(out: Path, keys: int, dim: int, classes: int, seed: int = 0) -> Path:
    """Clustered unit keys of a model that does not exist (tuning needs only the keys and the logits)."""
    data, labels = clustered(keys, dim, classes, np.random.default_rng(seed))
    model = {"name": "synthetic", "spec": {"name": "synthetic"}, "fingerprint": "synthetic", "num_classes": classes}
    return write_cache(out, data, labels, model, f"synthetic-{seed}-{keys}x{dim}")


def tune_ratios(keys: int, dim: int, queries: int, repeats: int, clock: str, tmp: Path) -> dict[str, float]:
    classes = 10
    cache = KeyValueCache(path=str(synthetic_cache(tmp / f"tune-{dim}", keys, dim, classes)))
    rng = np.random.default_rng(1)
    q, y = clustered(queries, dim, classes, rng)
    query = torch.from_numpy(q)
    labels = torch.from_numpy(y)
    logits = torch.from_numpy(rng.standard_normal((queries, classes), dtype=np.float32))

    def scored_theta() -> None:
        with torch.no_grad():
            cache.log_pmem(query, 50.0)

    times = median_times(
        {
            "grid": lambda: tune_grid(cache, query, logits, labels, THETAS, LAMS),
            "one_theta_scored": scored_theta,
            "one_theta_grid": lambda: tune_grid(cache, query, logits, labels, [50.0], LAMS),
        },
        repeats,
        clock,
    )
    return times


def build_ratio(images: int, repeats: int, clock: str, tmp: Path) -> dict[str, float]:
    model = load_model(ModelSpec("cifar_resnet20"), "cpu")
    rng = np.random.default_rng(2)
    data = rng.integers(0, 256, (images, 32, 32, 3), dtype=np.uint8)
    dataset = ArrayDataset(data, rng.integers(0, 10, images), description="synthetic", num_classes=10)
    spec = DataSpec("synthetic")
    batches = [dataset.load(np.arange(i, min(i + 256, images))).images for i in range(0, images, 256)]
    counter = iter(range(10**6))

    def build() -> None:
        out = tmp / f"build-{next(counter)}"
        build_cache(model, dataset, spec, np.arange(images), layers=["penultimate"], out=out, batch_size=256)

    def forward() -> None:
        with torch.no_grad():
            for x in batches:
                model.module(x)

    return median_times({"build": build, "forward": forward}, repeats, clock)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keys", type=int, default=50_000)
    parser.add_argument("--queries", type=int, default=509)
    parser.add_argument("--dims", default="64,2048", help="key sizes, comma-separated (default 64,2048)")
    parser.add_argument("--build-images", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="wall", help="wall time or process CPU time")
    parser.add_argument("--skip-build", action="store_true", help="time the tuning only")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, {args.clock} clock")
    grid_size = f"{len(THETAS)} θ × {len(LAMS) + 1} λ"
    with tempfile.TemporaryDirectory() as tmp:
        for dim in (int(d) for d in args.dims.split(",")):
            t = tune_ratios(args.keys, dim, args.queries, args.repeats, args.clock, Path(tmp))
            ratio = t["grid"] / t["one_theta_scored"]
            print(
                f"cache tune, {args.queries} queries x {args.keys:,} keys x {dim}: grid ({grid_size}) "
                f"{t['grid']:.3f} s | one θ as scored {t['one_theta_scored']:.3f} s | one θ through the grid "
                f"{t['one_theta_grid']:.3f} s -> grid / one θ scored {ratio:.2f} "
                f"({'meets' if ratio <= GRID_TARGET else 'misses'} <= {GRID_TARGET}), "
                f"grid / one θ through the grid {t['grid'] / t['one_theta_grid']:.2f}"
            )
        if args.skip_build:
            return
        b = build_ratio(args.build_images, args.repeats, args.clock, Path(tmp))
        print(
            f"cache build, {args.build_images:,} images 32x32, ResNet-20 penultimate: build {b['build']:.3f} s, "
            f"forward alone {b['forward']:.3f} s -> build / forward {b['build'] / b['forward']:.2f}"
        )


if __name__ == "__main__":
    main()
