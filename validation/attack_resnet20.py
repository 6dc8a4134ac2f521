"""Does the cache raise gray-box adversarial accuracy? (Orhan 2018; Orhan & Lake 2019), on real models.

The published CIFAR-10 ResNet-20, the first 500 exact CIFAR-10 test images, targeted PGD (10 steps,
random start) in two budget conventions: ``range-linf`` (what the reference code ran) and ``rel-l2`` (what
the papers' text describes). Models: the backbone (white-box), and the backbone with a cache of the 5,085
exact training images keyed on the three stage-3 blocks flattened (the paper's "Cache3" layout), mixed
(θ, λ) and cache-only, attacked gray-box (examples made on the backbone) and white-box. θ and λ are the
values ``validation/cache_resnet20.py`` selected on held-out images. Also cross-checks robaudit's PGD
against foolbox's LinfPGD on the backbone with the same budget, steps and step size.

    ROBAUDIT_VALIDATION_DATA=../shared/data python validation/attack_resnet20.py
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

from robaudit.audits.attack import AttackAudit
from robaudit.data import DataSpec, load_dataset, select_samples
from robaudit.defenses.cache_build import build_cache
from robaudit.models import ModelSpec, load_model
from robaudit.reports.read import read_report
from robaudit.runner import RunSpec, run_audit

EPS = {"range-linf": [0.005, 0.01, 0.02, 0.04, 0.06], "rel-l2": [0.01, 0.02, 0.04, 0.06, 0.1]}
CACHES = {"cache (θ=5, λ=0.9)": "theta=5,lam=0.9", "cache-only (θ=20)": "theta=20,lam=1"}


def curves(path: Path) -> dict[tuple[str, str], dict[float, float]]:
    rows, _ = read_report(path)
    main = rows[rows["check_name"].isna() & ~rows["skipped"]]
    out: dict[tuple[str, str], dict[float, float]] = {}
    for (threat, judge), group in main.groupby(["threat", "judged_by"]):
        out[(threat, judge)] = group.groupby("eps")["correct"].mean().to_dict()
    return out


def main() -> None:
    root = Path(os.environ.get("ROBAUDIT_VALIDATION_DATA", ""))
    if not (root / "weights" / "cifar10_resnet20.th").exists():
        sys.exit("set ROBAUDIT_VALIDATION_DATA to the folder with weights/ and cifar10/")
    model = ModelSpec("cifar_resnet20", weights=str(root / "weights/cifar10_resnet20.th"))
    test = DataSpec(f"npz:{root / 'cifar10/test_exact_1017.npz'}", indices="0:500")
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "cache3"
        train_spec = DataSpec(f"npz:{root / 'cifar10/train_exact_5085.npz'}")
        train = load_dataset(train_spec)
        build_cache(
            load_model(model, "cpu"),
            train,
            train_spec,
            select_samples(train.labels, train_spec, 0),
            layers=["layer3.0", "layer3.1", "layer3.2"],
            pool="flatten",
            out=cache,
            dtype="float32",
        )
        table: list[tuple[str, str, str, dict[float, float]]] = []
        for mode, eps in EPS.items():
            norm = "linf" if mode.endswith("linf") else "l2"
            runs = [("backbone", (), ["white"])] + [
                (name, (f"cache:path={cache},{params}",), ["gray", "white"]) for name, params in CACHES.items()
            ]
            for name, defenses, threats in runs:
                started = time.perf_counter()
                audit = AttackAudit(
                    attack=f"pgd:norm={norm},steps=10",
                    threats=threats,
                    eps=eps,
                    eps_mode=mode,
                    targeted=True,
                    checks=False,
                )
                spec = RunSpec(model=model, data=test, defenses=defenses, batch_size=250, chunk_size=250)
                result = run_audit(audit, spec, Path(tmp) / f"{mode}-{name}", overwrite=True)
                for (threat, judge), curve in curves(result.path).items():
                    if judge != "backbone" or name == "backbone":
                        table.append((mode, name, threat, curve))
                print(f"  {mode} {name}: {time.perf_counter() - started:.0f} s", file=sys.stderr)
        print("\naccuracy (true label) under targeted PGD-10, 500 exact CIFAR-10 test images, ResNet-20")
        for mode, eps in EPS.items():
            print(f"\n{mode}: eps = {', '.join(f'{e:g}' for e in eps)}")
            for row_mode, name, threat, curve in table:
                if row_mode == mode:
                    print(f"  {name:22} {threat:6} " + "  ".join(f"{curve.get(e, float('nan')):.3f}" for e in eps))
        cross_check(model, test, Path(tmp))


def cross_check(model: ModelSpec, data: DataSpec, tmp: Path) -> None:
    """robaudit's PGD vs foolbox's LinfPGD: same ε, steps, step size; accuracies should agree within noise."""
    print("\ncross-check, untargeted L-inf PGD-20 (rel. step 0.1) on the backbone:")
    for attack in ("pgd:steps=20,rel_stepsize=0.1", "linf-pgd:steps=20,rel_stepsize=0.1"):
        audit = AttackAudit(attack=attack, eps=[2 / 255, 4 / 255, 8 / 255], checks=False)
        spec = RunSpec(model=model, data=data, batch_size=250, chunk_size=250)
        result = run_audit(audit, spec, tmp / attack.split(":")[0], overwrite=True)
        curve = curves(result.path)[("white", "backbone")]
        print(f"  {attack:36} " + "  ".join(f"eps={e * 255:.0f}/255: {a:.3f}" for e, a in sorted(curve.items())))


if __name__ == "__main__":
    main()
