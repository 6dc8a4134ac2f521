"""Cost of the cache defense, as ratios measured side by side in one run.

1. continuous cache forward (all keys) vs the backbone alone: ResNet-18 (timm, random weights) with a
   50,000 × 512 cache on its penultimate features, batch 256;
2. k-NN retrieval of 50 neighbours among 50,000 × 512 keys: faiss exact inner-product search vs torch
   matmul + top-k, to choose the default path per device;
3. on CUDA only: ResNet-50 with a 275,000 × 2,048 cache (the ImageNet cache size of the papers), fp16 keys,
   batch 256; target: the cache adds at most 30 % to the forward pass.

Part 2 needs faiss and is skipped without it; parts 1 and 3 need only robaudit's own dependencies.

Timings are medians of interleaved repeats (absolute times on a shared CPU mean little; the ratios are the
result). Run: ``python benchmarks/cache_forward.py [--size 64] [--repeats 5]``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from robaudit.defenses.base import compose
from robaudit.defenses.cache import CACHE_FORMAT, faiss_index, torch_topk
from robaudit.defenses.cache_build import model_meta
from robaudit.models import LoadedModel, ModelSpec, load_model


def write_cache(out: Path, keys: np.ndarray, labels: np.ndarray, model: dict[str, Any], fingerprint: str) -> Path:
    """A cache folder holding ``keys`` (unit rows, stored as fp16) and ``labels``, with the meta.json of a
    built cache for the penultimate layer of ``model`` (its meta.json block)."""
    out.mkdir(parents=True)
    np.save(out / "keys.npy", keys.astype(np.float16))
    np.save(out / "labels.npy", labels)
    meta = {
        "format": CACHE_FORMAT,
        "version": 1,
        "layers": ["penultimate"],
        "pool": "avg",
        "dim": int(keys.shape[1]),
        "count": int(keys.shape[0]),
        "model": model,
        "input_defenses": "none",
        "fingerprint": fingerprint,
    }
    (out / "meta.json").write_text(json.dumps(meta))
    return out


def synthetic_cache(model: LoadedModel, keys: int, dim: int, out: Path, seed: int = 0) -> Path:
    """A cache folder with random unit keys and labels, valid for ``model``'s penultimate layer."""
    rng = np.random.default_rng(seed)
    data = rng.standard_normal((keys, dim), dtype=np.float32)
    data /= np.linalg.norm(data, axis=1, keepdims=True)
    labels = rng.integers(0, model.num_classes, keys)
    return write_cache(out, data, labels, model_meta(model), f"synthetic-{seed}-{keys}x{dim}")


def timed(fn: Callable[[], object], device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def side_by_side(fns: dict[str, Callable[[], object]], repeats: int, device: torch.device) -> dict[str, float]:
    """Median seconds of each function, the functions interleaved repeat by repeat (after one warm-up)."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            times[name].append(timed(fn, device))
    return {name: statistics.median(t) for name, t in times.items()}


def cache_overhead(
    arch: str, keys: int, size: int, batch: int, repeats: int, device: torch.device, tmp: Path
) -> dict[str, float]:
    model = load_model(ModelSpec(arch), str(device))
    dim = int(model.backbone.num_features)
    path = synthetic_cache(model, keys, dim, tmp / f"{arch}-{keys}")
    cached = compose(model, [f"cache:path={path},theta=50,lam=0.5"])
    x = torch.rand(batch, 3, size, size, device=device)
    with torch.inference_mode():
        result = side_by_side({"backbone": lambda: model.module(x), "cache": lambda: cached.module(x)}, repeats, device)
    return {**result, "ratio": result["cache"] / result["backbone"], "dim": dim}


def knn_paths(keys: int, dim: int, batch: int, k: int, repeats: int) -> dict[str, float]:
    rng = np.random.default_rng(1)
    data = rng.standard_normal((keys, dim), dtype=np.float32)
    data /= np.linalg.norm(data, axis=1, keepdims=True)
    queries = rng.standard_normal((batch, dim), dtype=np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    index = faiss_index(data, "flat", 1)
    keys_t, queries_t = torch.from_numpy(data), torch.from_numpy(queries)
    result = side_by_side(
        {"faiss": lambda: index.search(queries, k), "torch": lambda: torch_topk(queries_t, keys_t, k)},
        repeats,
        torch.device("cpu"),
    )
    return {**result, "ratio_faiss_over_torch": result["faiss"] / result["torch"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=64, help="image side for the CPU runs (default 64)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    cpu = torch.device("cpu")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, cuda={torch.cuda.is_available()}")
    with tempfile.TemporaryDirectory() as tmp:
        r = cache_overhead("resnet18", 50_000, args.size, 256, args.repeats, cpu, Path(tmp))
        print(
            f"[cpu] resnet18 {args.size}x{args.size} batch 256, continuous cache 50,000 x {r['dim']}: "
            f"backbone {r['backbone']:.3f} s, with cache {r['cache']:.3f} s -> ratio {r['ratio']:.3f}"
        )
        if importlib.util.find_spec("faiss") is None:
            print("[cpu] 50-NN faiss vs torch: skipped (faiss is not installed; the other parts do not need it)")
        else:
            knn = knn_paths(50_000, 512, 256, 50, args.repeats)
            print(
                f"[cpu] 50-NN among 50,000 x 512 keys, 256 queries: faiss {knn['faiss'] * 1e3:.1f} ms, "
                f"torch matmul+topk {knn['torch'] * 1e3:.1f} ms -> faiss/torch {knn['ratio_faiss_over_torch']:.3f}"
            )
        if torch.cuda.is_available():
            gpu = torch.device("cuda")
            r = cache_overhead("resnet50", 275_000, 224, 256, args.repeats, gpu, Path(tmp))
            print(
                f"[cuda] resnet50 224x224 batch 256, continuous cache 275,000 x {r['dim']} (fp16 keys): "
                f"backbone {r['backbone']:.3f} s, with cache {r['cache']:.3f} s -> ratio {r['ratio']:.3f} "
                f"(target <= 1.30)"
            )
        else:
            print("[cuda] skipped: no CUDA device here (the 275,000 x 2,048 target needs a GPU)")


if __name__ == "__main__":
    main()
