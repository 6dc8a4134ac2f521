"""AutoAttack against robaudit's PGD on the published CIFAR-10 ResNet-20, undefended and behind the cache.

1. Undefended, the first 500 exact CIFAR-10 test images, L∞ ε ∈ {1, 2, 4}/255: AutoAttack (standard) against
   robaudit's PGD-10 and PGD-100 with 5 restarts. AutoAttack must leave at most PGD's accuracy at every ε,
   image by image: an image PGD breaks and AutoAttack leaves correct would be a bug.
2. Behind the key-value cache (penultimate-layer keys of the 5,085 exact training images; θ = 5, λ = 0.9,
   cache-only θ = 5, λ = 1, and the defaults θ = 50, λ = 0.5), first 200 test images, ε = 1/255: white-box
   (the attack sees the cache) and gray-box (examples made on the backbone, judged by the cached model),
   PGD-50 with 2 restarts and AutoAttack (standard), with the gradient-masking checks. The cache's
   robustness is the per-image worst case over every attack and threat model.

Fewer images behind the cache: there AutoAttack's later members (APGD-T, FAB-T, 5,000 Square queries) run on
every image the gradient attacks cannot break, which costs minutes per image on two shared CPU cores.

Reports are kept in OUT (default ``/tmp/aa-validation``) and a rerun reuses the finished ones, so the
tables can be recomputed without attacking again. Each configuration's wall time is printed.

    ROBAUDIT_VALIDATION_DATA=/work/shared/data python validation/autoattack_resnet20.py [OUT] [--part 1|2]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd

from robaudit.audits.attack import AttackAudit
from robaudit.data import DataSpec
from robaudit.models import ModelSpec
from robaudit.reports.read import read_report
from robaudit.reports.stats import wilson_interval
from robaudit.runner import RunSpec, run_audit

EPS = [1 / 255, 2 / 255, 4 / 255]
ATTACKS = {"PGD-10": "pgd:steps=10", "AutoAttack": "autoattack", "PGD-100 x 5": "pgd:steps=100,restarts=5"}
CACHES = {
    "cache (θ=5, λ=0.9)": "theta=5,lam=0.9",
    "cache-only (θ=5, λ=1)": "theta=5,lam=1",
    "cache (θ=50, λ=0.5: defaults)": "theta=50,lam=0.5",
}
CACHE_ATTACKS = {"PGD-50 x 2": "pgd:steps=50,restarts=2", "AutoAttack": "autoattack"}


def run(name: str, audit: AttackAudit, spec: RunSpec, out: Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Run (or reuse) one report; its wall time is kept next to it, since a reused run cannot be timed."""
    started = time.perf_counter()
    result = run_audit(audit, spec, out / name, resume=(out / name).exists())
    timing = out / name / "seconds.json"
    if result.chunks_resumed < result.chunks_total:
        took = time.perf_counter() - started
        timing.write_text(json.dumps({"seconds": took, "fresh_chunks": result.chunks_total - result.chunks_resumed}))
    seconds = json.loads(timing.read_text())["seconds"] if timing.exists() else None
    print(f"  {name}: {seconds:.0f} s" if seconds else f"  {name}: reused", file=sys.stderr)
    rows, meta = read_report(result.path)
    return rows[~rows["skipped"]], {**meta, "seconds": seconds}


def accuracy(correct: pd.Series) -> str:
    lo, hi = wilson_interval(int(correct.sum()), len(correct))
    return f"{correct.mean():.1%} [{lo:.1%}, {hi:.1%}]"


def per_image(rows: pd.DataFrame, threat: str, eps: float) -> pd.Series:
    main = rows[rows["check_name"].isna() & (rows["threat"] == threat) & (rows["judged_by"] == "defended")]
    if not len(main):  # undefended: the white-box judge is the backbone
        main = rows[rows["check_name"].isna() & (rows["threat"] == threat)]
    return main[main["eps"] == eps].set_index("index")["correct"].astype(bool).sort_index()


def part1(root: Path, out: Path, results: dict[str, Any]) -> None:
    model = ModelSpec("cifar_resnet20", weights=str(root / "weights/cifar10_resnet20.th"))
    data = DataSpec(f"npz:{root / 'cifar10/test_exact_1017.npz'}", indices="0:500")
    spec = RunSpec(model=model, data=data, batch_size=250, chunk_size=250)
    print("\n1. undefended ResNet-20, 500 images, white-box, accuracy [95 % CI]")
    correct = {}
    for label, attack in ATTACKS.items():
        rows, meta = run(f"backbone-{label}", AttackAudit(attack=attack, eps=EPS, checks=False), spec, out)
        correct[label] = {e: per_image(rows, "white", e) for e in EPS}
        results.setdefault("backbone", {})[label] = {
            "accuracy": {f"{round(e * 255)}/255": float(correct[label][e].mean()) for e in EPS},
            "seconds": meta.get("seconds"),
        }
    for label in ATTACKS:
        print(f"  {label:12} " + "  ".join(f"{round(e * 255)}/255: {accuracy(correct[label][e])}" for e in EPS))
    print("  images a PGD breaks that AutoAttack leaves correct (must be 0), and the reverse:")
    for label in ("PGD-10", "PGD-100 x 5"):
        cells = []
        for e in EPS:
            aa, pgd = correct["AutoAttack"][e], correct[label][e]
            missed, extra = int((aa & ~pgd).sum()), int((~aa & pgd).sum())
            cells.append(f"{round(e * 255)}/255: {missed} / {extra}")
            results["backbone"][label].setdefault("pgd_only_breaks", {})[f"{round(e * 255)}/255"] = missed
            results["backbone"][label].setdefault("autoattack_only_breaks", {})[f"{round(e * 255)}/255"] = extra
        print(f"  {label:12} " + "  ".join(cells))


def part2(root: Path, out: Path, results: dict[str, Any]) -> None:
    model = ModelSpec("cifar_resnet20", weights=str(root / "weights/cifar10_resnet20.th"))
    data = DataSpec(f"npz:{root / 'cifar10/test_exact_1017.npz'}", indices="0:200")
    cache = Path(os.environ.get("ROBAUDIT_AA_CACHE", "/tmp/aa-cache"))
    if not (cache / "keys.npy").exists():
        sys.exit(
            f"build the cache first: robaudit cache build --model cifar_resnet20 --weights "
            f"{root}/weights/cifar10_resnet20.th --layers penultimate --data "
            f"npz:{root}/cifar10/train_exact_5085.npz --out {cache}"
        )
    eps = 1 / 255
    print("\n2. cached ResNet-20, 200 images, ε = 1/255, accuracy [95 % CI]")
    for name, params in CACHES.items():
        spec = RunSpec(
            model=model, data=data, batch_size=100, chunk_size=100, defenses=(f"cache:path={cache},{params}",)
        )
        per: dict[str, pd.Series] = {}
        entry: dict[str, Any] = {}
        for label, attack in CACHE_ATTACKS.items():
            audit = AttackAudit(attack=attack, threats=["white", "gray"], eps=[eps], check_samples=8)
            rows, meta = run(f"{params}-{label}", audit, spec, out)
            summary = AttackAudit.summarize(rows, meta)
            for threat in ("white", "gray"):
                per[f"{label} {threat}"] = per_image(rows, threat, eps)
                print(f"  {name:22} {label:11} {threat:5}-box {accuracy(per[f'{label} {threat}'])}")
            clean = rows[rows["check_name"].isna() & (rows["judged_by"] == "defended") & (rows["threat"] == "white")]
            entry[label] = {
                "white": float(per[f"{label} white"].mean()),
                "gray": float(per[f"{label} gray"].mean()),
                "clean": float((clean["clean_prediction"] == clean["label"]).mean()),
                "flags": {k: v["flag"] for k, v in summary["flags"].items()},
                "evidence": {k: v["evidence"] for k, v in summary["flags"].items() if v["flag"]},
                "members": summary.get("members", []),
                "seconds": meta.get("seconds"),
            }
            raised = [k for k, v in summary["flags"].items() if v["flag"]]
            print(f"  {'':22} {label:11} flags raised: {', '.join(raised) or 'none'}")
            for m in summary.get("members", []):
                if m["threat"] == "white":
                    print(
                        f"  {'':22} {'':11} {m['member']:8} attacked {m['attacked']:3}, broke {m['broken']:3}, "
                        f"accuracy after {m['accuracy_after']:.1%}"
                    )
        worst = pd.concat(per.values(), axis=1).all(axis=1)
        entry["worst_case"] = float(worst.mean())
        print(f"  {name:22} worst case over every attack and threat: {accuracy(worst)}")
        results.setdefault("cache", {})[name] = entry


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", nargs="?", default="/tmp/aa-validation", type=Path)
    parser.add_argument("--part", type=int, choices=[1, 2], action="append")
    args = parser.parse_args()
    root = Path(os.environ.get("ROBAUDIT_VALIDATION_DATA", ""))
    if not (root / "weights" / "cifar10_resnet20.th").exists():
        sys.exit("set ROBAUDIT_VALIDATION_DATA to the folder with weights/ and cifar10/")
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {}
    for part in args.part or [1, 2]:
        (part1 if part == 1 else part2)(root, args.out, results)
    (args.out / "results.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
