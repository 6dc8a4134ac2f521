"""Cost of reading cache keys at graph nodes instead of with module hooks, as ratios in one run.

The same values are read two ways: a block's output with a forward hook on the block module (the fast path)
and as the graph node that computes it (``layer3.2`` vs ``layer3.2.relu_1`` on the CIFAR ResNet-20, where the
block returns ``F.relu(out + shortcut)``), through a ``torch.fx`` feature extractor sharing the weights. The
features must be equal; the timings compare a forward pass with and without gradients to the pixels (as a
cache defense under attack needs), against the plain model. Also timed: building the extractor (tracing),
paid once per reader.

Timings are medians of interleaved repeats (absolute times on a shared CPU mean little; the ratios are the
result). Run: ``python benchmarks/feature_nodes.py [--batch 256] [--repeats 7]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

import torch

from robaudit.defenses.features import FeatureReader
from robaudit.models import ModelSpec, load_model


def timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = load_model(ModelSpec("cifar_resnet20"), "cpu")
    x = torch.rand(args.batch, 3, 32, 32)
    build_times = [timed(lambda: FeatureReader(model.base, ["layer3.2.relu_1"])) for _ in range(3)]
    hooks = FeatureReader(model.base, ["layer3.2"])
    nodes = FeatureReader(model.base, ["layer3.2.relu_1"])
    assert hooks._extractor is None and nodes._extractor is not None
    with torch.no_grad():
        same = torch.allclose(hooks(model.base, x)[0], nodes(model.base, x)[0], atol=1e-5)

    def backward(reader: FeatureReader) -> Callable[[], object]:
        def run() -> None:
            pixels = x.clone().requires_grad_(True)
            reader(model.base, pixels)[0].sum().backward()

        return run

    def plain_backward() -> None:
        pixels = x.clone().requires_grad_(True)
        model.base(pixels).sum().backward()

    cases: dict[str, Callable[[], object]] = {
        "model": lambda: model.base(x),
        "hooks": lambda: hooks(model.base, x),
        "nodes": lambda: nodes(model.base, x),
        "model+grad": plain_backward,
        "hooks+grad": backward(hooks),
        "nodes+grad": backward(nodes),
    }
    times: dict[str, list[float]] = {name: [] for name in cases}
    for name, fn in cases.items():  # warm-up
        with torch.no_grad() if "grad" not in name else torch.enable_grad():
            fn()
    for _ in range(args.repeats):
        for name, fn in cases.items():
            with torch.no_grad() if "grad" not in name else torch.enable_grad():
                times[name].append(timed(fn))
    median = {name: statistics.median(values) for name, values in times.items()}
    result = {
        "batch": args.batch,
        "threads": torch.get_num_threads(),
        "features_equal": same,
        "extractor_build_s": round(statistics.median(build_times), 3),
        "median_s": {k: round(v, 4) for k, v in median.items()},
        "nodes_over_hooks": round(median["nodes"] / median["hooks"], 3),
        "hooks_over_model": round(median["hooks"] / median["model"], 3),
        "nodes_over_hooks_with_grad": round(median["nodes+grad"] / median["hooks+grad"], 3),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
