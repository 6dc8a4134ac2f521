"""The tables of validation/train_resnet20.sh, read from its reports: ``python train_resnet20_table.py OUT``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from robaudit.reports.read import read_report, summarize


def summary(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    rows, meta = read_report(path)
    return summarize(rows, meta, path)[1]


def pct(value: Any) -> str:
    return f"{100 * value:.1f} %" if isinstance(value, (int, float)) else "–"


def num(value: Any, digits: int = 3) -> str:
    return f"{value:.{digits}g}" if isinstance(value, (int, float)) else "–"


def blur_table(out: Path) -> list[str]:
    names = ["published", "plain-ft", "blur10", "blur15"]
    lines = [
        "| model | clean top-1 | f_rev (cycles/px) | f0.5 (cycles/px) | median DDN L2 "
        "| corr. acc. low / mid / high band | noise σ 0.02 / 0.04 / 0.08 / 0.12 / 0.16 |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in names:
        d = out / "audits" / name
        ev, hy, sp = summary(d / "eval.parquet"), summary(d / "hybrid.parquet"), summary(d / "spectrum.parquet")
        at, co = summary(d / "attack.parquet"), summary(d / "corruptions.parquet")
        minimal = (at.get("minimal") or [{}])[0]
        bands = {b["band"]: b["accuracy"] for b in co.get("per_band", [])}
        noise = " / ".join(pct(p["accuracy"]) for p in co.get("noise_curve", []))
        f_rev = hy.get("f_rev")
        lines.append(
            f"| {name} | {pct(ev.get('top1'))} | {num(f_rev * 0.5 if f_rev is not None else None)} | "
            f"{num(sp.get('f_half_of_mean'))} | {num(minimal.get('median_l2'))} | "
            f"{' / '.join(pct(bands.get(b)) for b in ('low', 'mid', 'high'))} | {noise} |"
        )
    return lines


def similarity_table(out: Path) -> list[str]:
    lines = [
        "| student | RSA Spearman to teacher layer3 [95 % CI] | CKA | noise σ 0.02 / 0.04 / 0.08 / 0.12 / 0.16 |",
        "|---|---|---|---|",
    ]
    for name in ["a0", "a1", "a10", "a10-shuffled"]:
        d = out / "similarity" / name
        rsa, co = summary(d / "rsa.parquet"), summary(d / "corruptions.parquet")
        layer = (rsa.get("layers") or [{}])[0]
        ci = layer.get("spearman_ci95") or [None, None]
        noise = " / ".join(pct(p["accuracy"]) for p in co.get("noise_curve", []))
        spearman = f"{num(layer.get('spearman'))} [{num(ci[0])}, {num(ci[1])}]"
        lines.append(f"| {name} | {spearman} | {num(layer.get('cka'))} | {noise} |")
    return lines


def training_table(out: Path) -> list[str]:
    lines = ["| run | held-out accuracy per epoch (500 test images) |", "|---|---|"]
    for card in sorted((out / "runs").glob("*/card.json")):
        epochs = json.loads(card.read_text())["epochs"]
        lines.append(f"| {card.parent.name} | {' → '.join(pct(e['heldout']['accuracy']) for e in epochs)} |")
    return lines


if __name__ == "__main__":
    root = Path(sys.argv[1])
    print("\n".join([*training_table(root), "", *blur_table(root), "", *similarity_table(root)]))
