"""Does bf16 (or fp16) autocast change what an audit measures? The published ResNet-20 on CPU.

The same runs at fp32 and at the lower precision, through ``run_audit`` (``RunSpec.precision``): clean
accuracy (eval), accuracy under the 15 common corruptions at severities 1, 3 and 5 (corruptions), and
accuracy under untargeted L∞ PGD-10 at ε = 0.5/255 and 1/255 (attack; this undefended model keeps
about 40 % and 10 % there), on the 1,017 exact CIFAR-10 test
images. Images, corruptions and random starts are the same at both precisions, so the comparison is
paired: for each figure the script prints both accuracies, their difference, the images × conditions
whose correctness differs (fp32-only correct / low-precision-only correct), the standard error of the
paired difference, and the binomial standard error of the fp32 accuracy itself (the sampling noise of the
figure).

    ROBAUDIT_VALIDATION_DATA=../shared/data python validation/precision_resnet20.py [--precision bf16] [--limit N]
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from robaudit.audits.attack import AttackAudit
from robaudit.audits.base import Audit
from robaudit.audits.corruptions import CorruptionsAudit
from robaudit.audits.eval import EvalAudit
from robaudit.corruption import COMMON
from robaudit.data import DataSpec
from robaudit.models import ModelSpec
from robaudit.reports.read import read_report
from robaudit.runner import RunSpec, run_audit

EPS = [0.5 / 255, 1 / 255]


def audits() -> dict[str, Audit]:
    return {
        "eval": EvalAudit(),
        "corruptions": CorruptionsAudit(corruptions=list(COMMON), severities=[1, 3, 5], noise_levels=[]),
        "attack": AttackAudit(attack="pgd:steps=10", eps=EPS, checks=False),
    }


def outcomes(name: str, path: Path) -> dict[str, pd.Series]:
    """Correctness per (image, condition), one series per reported figure."""
    rows, _ = read_report(path)
    rows = rows[~rows["skipped"].astype(bool)]
    if name == "eval":
        return {"clean accuracy": rows.set_index("index")["correct"].astype(bool)}
    if name == "corruptions":
        cells = rows[rows["corruption"] != "clean"]
        return {
            "clean accuracy (corruptions run)": rows[rows["corruption"] == "clean"].set_index("index")["correct"],
            "corruption accuracy (15 x sev 1,3,5)": cells.set_index(["index", "corruption", "severity"])["correct"],
        }
    main = rows[rows["check_name"].isna()]
    return {
        f"PGD-10 robust accuracy, eps={e * 255:g}/255": main[np.isclose(main["eps"], e)].set_index("index")["correct"]
        for e in EPS
    }


def compare(reference: pd.Series, other: pd.Series) -> str:
    a, b = reference.astype(bool).sort_index(), other.astype(bool).sort_index()
    assert a.index.equals(b.index), "the two runs must cover the same images and conditions"
    n = len(a)
    only_ref, only_other = int((a & ~b).sum()), int((~a & b).sum())
    p = a.mean()
    diff = b.mean() - p
    paired_se = math.sqrt(max(only_ref + only_other - (only_other - only_ref) ** 2 / n, 0)) / n
    noise = math.sqrt(p * (1 - p) / n)
    return (
        f"{p:.4f} -> {b.mean():.4f}  diff {diff:+.4f}  differing {only_ref}/{only_other} of {n:,}  "
        f"paired s.e. {paired_se:.4f}  sampling s.e. {noise:.4f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--precision", default="bf16", choices=["bf16", "fp16"])
    parser.add_argument("--limit", type=int, default=None, help="images (default: all 1,017)")
    args = parser.parse_args()
    root = Path(os.environ.get("ROBAUDIT_VALIDATION_DATA", ""))
    if not (root / "weights" / "cifar10_resnet20.th").exists():
        sys.exit("set ROBAUDIT_VALIDATION_DATA to the folder with weights/ and cifar10/")
    model = ModelSpec("cifar_resnet20", weights=str(root / "weights/cifar10_resnet20.th"))
    data = DataSpec(f"npz:{root / 'cifar10/test_exact_1017.npz'}", limit=args.limit)
    results: dict[str, dict[str, dict[str, pd.Series]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for precision in ("fp32", args.precision):
            for name, audit in audits().items():
                started = time.perf_counter()
                spec = RunSpec(model=model, data=data, batch_size=256, chunk_size=256, precision=precision)
                result = run_audit(audit, spec, Path(tmp) / f"{precision}-{name}")
                results.setdefault(precision, {})[name] = outcomes(name, result.path)
                print(f"  {precision} {name}: {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    print(f"\nResNet-20, {args.limit or 1017} exact CIFAR-10 test images: fp32 -> {args.precision}")
    for name in audits():
        for figure, series in results["fp32"][name].items():
            print(f"  {figure:42} {compare(series, results[args.precision][name][figure])}")


if __name__ == "__main__":
    main()
