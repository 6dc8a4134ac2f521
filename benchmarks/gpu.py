"""robaudit's GPU throughput, every figure of its table in one run, with targets and pass/fail.

Measured on one GPU (an NVIDIA H200 for the targets), with timm models at random weights and data this
script makes itself (synthetic ImageNet-sized JPEGs: the throughput of decoding and corrupting does not
depend on what the photographs show):

* **PGD-10 bf16**: L∞ PGD, 10 steps, ResNet-50 224², batch 256, run at bf16 precision: images/s
  (target >= 1,000); **PGD / bare loop**: the same attack over 10 × (forward + backward to the input) of
  the same model, fp32 and bf16 (target <= 1.05); side by side, PGD-10 fp32 img/s, the bare loop in
  image-steps/s, and foolbox's and torchattacks' PGD (fp32) where they are installed.
* **PGD / bare loop, ResNet-18** at 32² and 64², batch 64, fp32 (target <= 1.10); also
  ``pgd:compile=true`` (CUDA graphs) with its compile time and its agreement with the eager attack.
* **corruption generation**: the 15 × 5 common cells alone at 224², batch 256: images/s (target >= 25,000);
  the slowest corruptions; jpeg_compression per image on the GPU and with libjpeg on the CPU, and the GPU
  codec's difference from libjpeg (targets: mean <= 0.5 level, <= 5 % of pixels more than 2 levels apart).
* **corruptions audit end to end**: ``run_audit`` of the 15 × 5 common corruptions + clean on 1,000 JPEGs
  (ResNet-50, bf16), model build to finished report: evaluations/s (target >= 6,400, i.e. an
  ImageNet-C-sized run of 50,000 × 76 in <= 10 min).
* **eval**: ``run_audit`` of the eval audit in a fresh process over a 10,000-JPEG folder (ResNet-50,
  DataLoader workers): images/s after the first batch (target >= 2,000) and start-up, from process start
  to the first batch done (target <= 5 s).
* **hybrid**: the hybrid-image probe over its own forwards (CIFAR ResNet-20, 1,000 images × 20 f_mix × 4
  repeats; target <= 1.3).
* **cache**: ResNet-50 with a continuous 275,000 × 2,048 cache (fp16 keys) over the backbone alone, batch
  256 (target <= 1.3).

Timings are medians of interleaved repeats after a warm-up, with the device synchronized around each. The
whole run takes about three minutes on an H200 (each section prints its own time). It needs robaudit's
own dependencies only (foolbox and torchattacks rows are skipped when absent); it does not need the
``robaudit`` console script. ``--quick`` runs every section at tiny sizes (on the CPU too) to check the
script itself; its figures mean nothing.

Run: ``python3 benchmarks/gpu.py [--json FILE] [--strict] [--only SECTION,...] [--workers N]``;
``python3 benchmarks/gpu.py --quick --device cpu`` for the check.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from multiprocessing import Pool
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from cache_forward import cache_overhead

from robaudit import corruption as catalog
from robaudit.attacks.base import build_attack
from robaudit.audits.base import AuditBatch
from robaudit.audits.corruptions import CorruptionsAudit
from robaudit.audits.hybrid import HybridAudit, hybrid_images
from robaudit.corruption import digital
from robaudit.corruption.jpeg import jpeg_round_trip_tensor
from robaudit.data import DataSpec
from robaudit.models import ModelSpec, load_model
from robaudit.runner import RunSpec, run_audit

SECTIONS = ("pgd", "pgd-small", "generation", "corruptions", "eval", "hybrid", "cache")


@dataclass(frozen=True)
class Profile:
    """Sizes of one run: the real one, or ``--quick``'s tiny one."""

    big: str = "resnet50"
    big_size: int = 224
    big_batch: int = 256
    small: str = "resnet18"
    small_sizes: tuple[int, ...] = (32, 64)
    small_batch: int = 64
    steps: int = 10
    repeats: int = 3
    small_repeats: int = 10
    jpeg_shape: tuple[int, int] = (500, 375)  # width, height: a typical ImageNet photograph
    eval_images: int = 10_000
    corruption_images: int = 1_000
    corruption_batch: int = 256
    severities: tuple[int, ...] = (1, 2, 3, 4, 5)
    hybrid_images: int = 1_000
    hybrid_fmix: int = 20
    hybrid_repeats: int = 4
    cache_keys: int = 275_000
    cache_batch: int = 256
    compile: bool = True


QUICK = Profile(
    big="test_resnet",  # timm's few-kilobyte test network
    big_size=32,
    big_batch=4,
    small="test_resnet",
    small_sizes=(32,),
    small_batch=4,
    steps=2,
    repeats=1,
    small_repeats=1,
    jpeg_shape=(48, 40),
    eval_images=16,
    corruption_images=4,
    corruption_batch=4,
    severities=(1,),
    hybrid_images=8,
    hybrid_fmix=2,
    hybrid_repeats=1,
    cache_keys=500,
    cache_batch=4,
    compile=False,
)


@dataclass
class Row:
    section: str
    name: str
    value: float | None
    unit: str
    target: str = ""
    passed: bool | None = None
    note: str = ""


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)

    def add(
        self,
        section: str,
        name: str,
        value: float | None,
        unit: str,
        *,
        at_least: float | None = None,
        at_most: float | None = None,
        note: str = "",
    ) -> None:
        target, passed = "", None
        if at_least is not None:
            target, passed = f">= {at_least:,g}", value is not None and value >= at_least
        elif at_most is not None:
            target, passed = f"<= {at_most:,g}", value is not None and value <= at_most
        self.rows.append(Row(section, name, value, unit, target, passed, note))


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_times(fns: dict[str, Callable[[], object]], repeats: int, device: torch.device) -> dict[str, float]:
    """Median seconds of each function, interleaved repeat by repeat after one warm-up each."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            synchronize(device)
            start = time.perf_counter()
            fn()
            synchronize(device)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


# ------------------------------------------------------------------------------------------------- PGD


def pgd_timers(
    model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, steps: int, attack_spec: str
) -> dict[str, Callable[[], object]]:
    eps = torch.full((len(images),), 4 / 255, device=images.device)
    attack = build_attack(attack_spec)

    def bare() -> None:
        for _ in range(steps):
            pixels = images.clone().requires_grad_(True)
            torch.autograd.grad(F.cross_entropy(model(pixels), labels, reduction="sum"), pixels)

    def pgd() -> None:
        generator = torch.Generator(device=images.device).manual_seed(0)
        attack.run(model, images, labels, targets=None, eps=eps, generator=generator)

    return {"bare": bare, "pgd": pgd}


def others(
    model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, steps: int
) -> dict[str, Callable[[], object]]:
    """foolbox's and torchattacks' L∞ PGD on the same model, where installed."""
    fns: dict[str, Callable[[], object]] = {}
    eps = torch.full((len(images),), 4 / 255, device=images.device)
    if importlib.util.find_spec("foolbox") is not None:
        foolbox = build_attack(f"linf-pgd:steps={steps}")
        fns["foolbox"] = lambda: foolbox.run(
            model, images, labels, targets=None, eps=eps, generator=torch.Generator(device=images.device)
        )
    if importlib.util.find_spec("torchattacks") is not None:
        import torchattacks

        attack = torchattacks.PGD(model, eps=4 / 255, alpha=1 / 255, steps=steps, random_start=True)
        fns["torchattacks"] = lambda: attack(images, labels)
    return fns


def section_pgd(report: Report, p: Profile, device: torch.device) -> None:
    batch, steps = p.big_batch, p.steps
    gen = torch.Generator().manual_seed(0)
    images = torch.rand(batch, 3, p.big_size, p.big_size, generator=gen).to(device)
    labels = torch.randint(0, 1000, (batch,), generator=gen).to(device)
    for precision in ("fp32", "bf16"):
        model = load_model(ModelSpec(p.big), str(device), precision=precision).module
        fns = pgd_timers(model, images, labels, steps, f"pgd:steps={steps}")
        if precision == "fp32":
            fns.update(others(model, images, labels, steps))
        t = median_times(fns, p.repeats, device)
        ratio = t["pgd"] / t["bare"]
        report.add("pgd", f"PGD-{steps} / bare loop, {p.big} {p.big_size}², {precision}", ratio, "x", at_most=1.05)
        if precision == "bf16":
            report.add("pgd", f"PGD-{steps} L∞ img/s, {p.big}, bf16", batch / t["pgd"], "img/s", at_least=1000)
        else:
            report.add("pgd", f"PGD-{steps} L∞ img/s, {p.big}, fp32", batch / t["pgd"], "img/s")
        report.add("pgd", f"bare loop ({steps} fwd+bwd), {precision}", batch * steps / t["bare"], "image-steps/s")
        for name in ("foolbox", "torchattacks"):
            if precision == "fp32":
                value = batch / t[name] if name in t else None
                note = "" if value else "not installed"
                report.add("pgd", f"{name} PGD-{steps} img/s, fp32", value, "img/s", note=note)
        del model
        if device.type == "cuda":
            torch.cuda.empty_cache()


def section_pgd_small(report: Report, p: Profile, device: torch.device) -> None:
    model = load_model(ModelSpec(p.small, num_classes=10), str(device)).module
    gen = torch.Generator().manual_seed(1)
    for size in p.small_sizes:
        images = torch.rand(p.small_batch, 3, size, size, generator=gen).to(device)
        labels = torch.randint(0, 10, (p.small_batch,), generator=gen).to(device)
        fns = pgd_timers(model, images, labels, p.steps, f"pgd:steps={p.steps}")
        fns.update({k: v for k, v in others(model, images, labels, p.steps).items() if k == "foolbox"})
        t = median_times(fns, p.small_repeats, device)
        name = f"PGD-{p.steps} / bare loop, {p.small} {size}², batch {p.small_batch}"
        report.add("pgd-small", name, t["pgd"] / t["bare"], "x", at_most=1.10)
        if "foolbox" in t:
            report.add("pgd-small", f"foolbox PGD / bare loop, {size}²", t["foolbox"] / t["bare"], "x")
        # one compilation (dynamic=False compiles per input shape): the first size shows whether it pays
        if p.compile and device.type == "cuda" and size == p.small_sizes[0]:
            compiled = build_attack(f"pgd:steps={p.steps},compile=true")
            eps = torch.full((len(images),), 4 / 255, device=device)

            def run_compiled(
                attack: object = compiled, images: torch.Tensor = images, labels: torch.Tensor = labels
            ) -> tuple[torch.Tensor, torch.Tensor]:
                generator = torch.Generator(device=device).manual_seed(0)
                eps = torch.full((len(images),), 4 / 255, device=device)
                return attack.run(model, images, labels, targets=None, eps=eps, generator=generator)  # type: ignore[attr-defined]

            start = time.perf_counter()
            try:
                adv, success = run_compiled()
            except Exception as exc:  # a failing compiler is a result to report, not a crash of the run
                report.add("pgd-small", f"PGD compile=true / bare, {size}²", None, "x", note=f"failed: {exc}"[:120])
                continue
            synchronize(device)
            compile_seconds = time.perf_counter() - start
            eager_adv, eager_success = build_attack(f"pgd:steps={p.steps}").run(
                model, images, labels, targets=None, eps=eps, generator=torch.Generator(device=device).manual_seed(0)
            )
            t = median_times({"bare": fns["bare"], "compiled": run_compiled}, p.small_repeats, device)
            agree = float((success == eager_success).float().mean())
            report.add(
                "pgd-small",
                f"PGD compile=true / bare, {size}²",
                t["compiled"] / t["bare"],
                "x",
                note=f"compiled in {compile_seconds:.0f} s; success agrees with eager on {agree:.0%}, "
                f"max |Δx| {float((adv - eager_adv).abs().max()):.2g}",
            )


# --------------------------------------------------------------------------------------------- data


def _synthetic_photo(args: tuple[int, int, int, str]) -> None:
    """One smooth-plus-texture RGB photograph-like JPEG (quality 90) at ``path``."""
    from PIL import Image

    seed, width, height, path = args
    rng = np.random.default_rng(seed)
    coarse = Image.fromarray(rng.integers(0, 256, (9, 12, 3), dtype=np.uint8)).resize((width, height), Image.BICUBIC)
    pixels = np.asarray(coarse, dtype=np.float32) + rng.normal(0, 6, (height, width, 3))
    Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(path, quality=90)


def make_folder(root: Path, images: int, shape: tuple[int, int], workers: int) -> Path:
    """``root/<class>/<n>.jpg``: ``images`` JPEGs in 10 classes, written by ``workers`` processes."""
    jobs = []
    for i in range(images):
        folder = root / f"class{i % 10}"
        folder.mkdir(parents=True, exist_ok=True)
        jobs.append((i, shape[0], shape[1], str(folder / f"{i:06d}.jpg")))
    with Pool(max(1, workers)) as pool:
        pool.map(_synthetic_photo, jobs, chunksize=64)
    return root


# ---------------------------------------------------------------------------------------- corruptions


def section_generation(report: Report, p: Profile, device: torch.device, folder: Path) -> None:
    from robaudit.data.sources import read_square

    files = sorted(folder.rglob("*.jpg"))[: p.corruption_batch]
    size = p.big_size
    arrays = np.stack([read_square(str(f), size, round(size / 0.875), "bilinear") for f in files])
    levels = torch.from_numpy(arrays).permute(0, 3, 1, 2).contiguous()
    x = (levels.float() / 255).to(device)
    cells = [(name, severity) for name in catalog.COMMON for severity in p.severities]
    generators = {cell: torch.Generator(device=device).manual_seed(k) for k, cell in enumerate(cells)}

    def corrupt_all() -> None:
        for name, severity in cells:
            catalog.corrupt(x, name, severity, generator=generators[(name, severity)])

    t = median_times({"all": corrupt_all}, p.repeats, device)["all"]
    report.add(
        "generation",
        f"corruption generation, {len(catalog.COMMON)} x {len(p.severities)} cells, {size}², batch {len(x)}",
        len(cells) * len(x) / t,
        "img/s",
        at_least=25_000,
    )
    slowest = []
    for name in catalog.COMMON:
        cell_t = median_times(
            {"c": lambda name=name: catalog.corrupt(x, name, p.severities[-1], seed=0)}, p.repeats, device
        )["c"]
        slowest.append((cell_t / len(x) * 1e3, name))
    slowest.sort(reverse=True)
    report.add(
        "generation",
        f"slowest corruptions (ms/img, severity {p.severities[-1]})",
        slowest[0][0],
        "ms/img",
        note=", ".join(f"{n} {v:.3f}" for v, n in slowest[:4]),
    )
    quality = catalog.get("jpeg_compression").parameters(p.severities[-1], catalog.param_set_for(size, size))
    gpu = median_times({"jpeg": lambda: catalog.corrupt(x, "jpeg_compression", p.severities[-1])}, p.repeats, device)
    codec = digital.jpeg_codec(device)
    report.add("generation", f"jpeg_compression on {device.type} ({codec})", gpu["jpeg"] / len(x) * 1e3, "ms/img")
    few = list(levels[: min(32, len(levels))])
    cpu = median_times({"jpeg": lambda: digital.jpeg_round_trip(few, quality)}, p.repeats, torch.device("cpu"))
    report.add("generation", "jpeg_compression with libjpeg on the CPU", cpu["jpeg"] / len(few) * 1e3, "ms/img")
    expected = torch.stack(digital.jpeg_round_trip(list(levels), quality)).int()
    got = jpeg_round_trip_tensor(levels.to(device), quality).cpu().int()
    difference = (got - expected).abs().float()
    report.add("generation", "jpeg tensor codec vs libjpeg: mean |Δ|", float(difference.mean()), "levels", at_most=0.5)
    far = float((difference > 2).float().mean())
    report.add("generation", "jpeg tensor codec vs libjpeg: pixels > 2 levels apart", far, "fraction", at_most=0.05)


def section_corruptions(report: Report, p: Profile, device: torch.device, folder: Path, workers: int) -> None:
    audit = CorruptionsAudit(corruptions=list(catalog.COMMON), severities=list(p.severities), noise_levels=[])
    spec = RunSpec(
        ModelSpec(p.big, input_size=(3, p.big_size, p.big_size)),
        DataSpec(f"imagefolder:{folder}", indices=f"0:{p.corruption_images}"),
        batch_size=p.corruption_batch,
        chunk_size=p.corruption_batch * 4,
        workers=workers,
        device=str(device),
        precision="bf16",
    )
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        run_audit(audit, spec, Path(out))
        synchronize(device)
        seconds = time.perf_counter() - start
    evaluations = p.corruption_images * (1 + len(catalog.COMMON) * len(p.severities))
    rate = evaluations / seconds
    report.add(
        "corruptions",
        f"corruptions audit end to end, {p.corruption_images} JPEGs, 15 x {len(p.severities)} + clean, bf16",
        rate,
        "evals/s",
        at_least=6_400,
        note=f"{evaluations:,} evaluations in {seconds:.1f} s; ImageNet-C size (50,000 x 76) "
        f"would take {50_000 * 76 / rate / 60:.1f} min",
    )


# ----------------------------------------------------------------------------------------------- eval

EVAL_CHILD = """
import json, sys, time
start = float(sys.argv[1])
from pathlib import Path
from robaudit.audits.eval import EvalAudit
from robaudit.data import DataSpec
from robaudit.models import ModelSpec
from robaudit.runner import RunSpec, run_audit
marks = []
def hook(done, total):
    marks.append((time.time(), done))
spec = RunSpec(ModelSpec(sys.argv[2], input_size=(3, int(sys.argv[3]), int(sys.argv[3]))),
               DataSpec("imagefolder:" + sys.argv[4]), batch_size=int(sys.argv[5]), chunk_size=int(sys.argv[5]) * 8,
               workers=int(sys.argv[6]), device=sys.argv[7])
run_audit(EvalAudit(), spec, Path(sys.argv[8]), progress=hook)
print(json.dumps({"start": start, "marks": marks}))
"""


def section_eval(report: Report, p: Profile, device: torch.device, folder: Path, workers: int) -> None:
    batch = p.big_batch
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}
    with tempfile.TemporaryDirectory() as out:
        start = time.time()
        args = [str(start), p.big, str(p.big_size), str(folder), str(batch), str(workers), str(device), out]
        done = subprocess.run(
            [sys.executable, "-c", EVAL_CHILD, *args], capture_output=True, text=True, check=False, env=env
        )
    if done.returncode != 0:
        report.add("eval", "eval run", None, "", note=f"failed: {done.stderr.strip().splitlines()[-1:]}")
        return
    marks = json.loads(done.stdout.strip().splitlines()[-1])["marks"]
    (first_time, first_done), (last_time, last_done) = marks[0], marks[-1]
    rate = (last_done - first_done) / (last_time - first_time) if last_time > first_time else math.nan
    report.add(
        "eval",
        f"eval img/s after the first batch, {last_done:,} JPEGs {p.jpeg_shape[0]}x{p.jpeg_shape[1]}, "
        f"{p.big}, {workers} workers",
        rate,
        "img/s",
        at_least=2_000,
    )
    report.add("eval", "eval start-up (process start to first batch done)", first_time - start, "s", at_most=5)


# ---------------------------------------------------------------------------------------------- hybrid


def section_hybrid(report: Report, p: Profile, device: torch.device) -> None:
    from hybrid_speed import data

    root = os.environ.get("ROBAUDIT_VALIDATION_DATA")
    weights = Path(root) / "weights" / "cifar10_resnet20.th" if root else None
    spec = ModelSpec("cifar_resnet20", weights=str(weights) if weights and weights.is_file() else None)
    model = load_model(spec, str(device))
    x, y = data(p.hybrid_images)
    grid = [round(float(f), 4) for f in np.linspace(1 / p.hybrid_fmix, 1.0, p.hybrid_fmix)]
    audit = HybridAudit(fmix=grid, repeats=p.hybrid_repeats, seed=0)
    size = 250
    batches = [
        AuditBatch(np.arange(s, min(s + size, len(x))), x[s : s + size].to(device), y[s : s + size].to(device))
        for s in range(0, len(x), size)
    ]
    inputs = [hybrid_images(b.images, b.images.flip(0), f) for b in batches for f in grid]

    def probe() -> None:
        for b in batches:
            audit.run_batch(model, b)

    def forwards() -> None:
        with torch.inference_mode():
            for _ in range(p.hybrid_repeats):
                for pixels in inputs:
                    model(pixels)

    t = median_times({"probe": probe, "forwards": forwards}, max(2, p.repeats), device)
    report.add("hybrid", "hybrid probe / its forwards", t["probe"] / t["forwards"], "x", at_most=1.3)


def section_cache(report: Report, p: Profile, device: torch.device) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        r = cache_overhead(p.big, p.cache_keys, p.big_size, p.cache_batch, p.repeats, device, Path(tmp))
    report.add(
        "cache",
        f"continuous cache {p.cache_keys:,} x {r['dim']} on {p.big} / backbone",
        r["ratio"],
        "x",
        at_most=1.3,
        note=f"backbone {r['backbone'] * 1e3:.1f} ms, with cache {r['cache'] * 1e3:.1f} ms",
    )


# ---------------------------------------------------------------------------------------------- main


def print_table(report: Report) -> None:
    def fmt(value: float | None) -> str:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return "—"
        return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"

    width = max(len(r.name) for r in report.rows)
    print(f"\n{'figure':<{width}}  {'measured':>12}  {'unit':<13} {'target':<10} result")
    for r in report.rows:
        result = {True: "PASS", False: "FAIL", None: ""}[r.passed]
        print(f"{r.name:<{width}}  {fmt(r.value):>12}  {r.unit:<13} {r.target:<10} {result}  {r.note}".rstrip())
    failed = [r for r in report.rows if r.passed is False]
    print(
        f"\n{sum(r.passed is True for r in report.rows)} targets met, {len(failed)} missed; "
        + ", ".join(f"{k} {v:.0f} s" for k, v in report.seconds.items())
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks the script, measures nothing")
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"sections to run: {','.join(SECTIONS)}")
    parser.add_argument("--workers", type=int, default=None, help="DataLoader workers (default: cores - 2, <= 14)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU operators)")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows as JSON")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    chosen = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = sorted(set(chosen) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda, but torch sees no CUDA device; use --quick --device cpu to check the script")
    p = QUICK if args.quick else Profile()
    if args.threads:
        torch.set_num_threads(args.threads)
    workers = args.workers if args.workers is not None else max(0, min(14, (os.cpu_count() or 2) - 2))
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"torch {torch.__version__}, {name}, {workers} workers, {'quick' if args.quick else 'full'} profile")
    report = Report()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        folder = None
        if {"generation", "corruptions", "eval"} & set(chosen):
            t = time.perf_counter()
            count = max(p.eval_images if "eval" in chosen else 0, p.corruption_images, p.corruption_batch)
            folder = make_folder(Path(tmp) / "jpegs", count, p.jpeg_shape, os.cpu_count() or 1)
            report.seconds["jpegs"] = time.perf_counter() - t
        runs: dict[str, Callable[[], None]] = {
            "pgd": lambda: section_pgd(report, p, device),
            "pgd-small": lambda: section_pgd_small(report, p, device),
            "generation": lambda: section_generation(report, p, device, folder),  # type: ignore[arg-type]
            "corruptions": lambda: section_corruptions(report, p, device, folder, workers),  # type: ignore[arg-type]
            "eval": lambda: section_eval(report, p, device, folder, workers),  # type: ignore[arg-type]
            "hybrid": lambda: section_hybrid(report, p, device),
            "cache": lambda: section_cache(report, p, device),
        }
        for section in SECTIONS:
            if section in chosen:
                t = time.perf_counter()
                runs[section]()
                report.seconds[section] = time.perf_counter() - t
                print(f"[{section}] {report.seconds[section]:.1f} s", flush=True)
    report.seconds["total"] = time.perf_counter() - started
    print_table(report)
    if args.json:
        rows = [asdict(r) for r in report.rows]
        args.json.write_text(json.dumps({"rows": rows, "seconds": report.seconds}, indent=2))
    return 1 if args.strict and any(r.passed is False for r in report.rows) else 0


if __name__ == "__main__":
    sys.exit(main())
