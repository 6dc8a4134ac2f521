"""Speed of robaudit's batched corruptions against the per-image reference (``imagecorruptions`` 1.1.2).

robaudit corrupts a whole batch ``(N, 3, H, W)`` with torch; the reference corrupts one ``uint8`` image at
a time in numpy/OpenCV. For every corruption (the 15 common ones and the 4 extra ones) and severity, this
script times both on the same images, alternating repeat by repeat in one run so that the load of a shared
machine falls on both alike (absolute times mean little there; the ratios are the result):

* robaudit: ``robaudit.corruption.corrupt`` on a batch (64 images at 224², 256 at 32², after a warm-up),
  divided by the batch size;
* the reference: the median per-image time reported by ``benchmarks/reference_env/ic_worker.py``, a
  persistent process running in the reference's own virtual environment.

The reference only has the ImageNet-C parameters, so robaudit runs with ``--param-set imagenet`` at every
size by default (same work on both sides; ``auto`` would give 32² images the CIFAR-10-C parameters).

Targets (CPU, 224², batch 64): over the 15 common corruptions the aggregate speed-up — the sum of the
reference's per-image times over the sum of robaudit's, all severities — is at least 10×, and no corruption
is slower than the reference. On CUDA, robaudit should also corrupt at least 5,000 images/s over all
15 × 5 (corruption, severity) cells at 224². ``--strict`` turns a missed target into exit code 1.

Reference environment (once): ``python3 -m venv /tmp/icenv && /tmp/icenv/bin/pip install -r
benchmarks/reference_env/requirements.txt``. Run: ``python benchmarks/corruptions_speed.py
--reference-python /tmp/icenv/bin/python --images-dir /work/shared/data/imagenet/val20`` (the reference
python defaults to ``$ROBAUDIT_IC_PYTHON``; without one, only robaudit's times are printed).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch

from robaudit import corruption
from robaudit.corruption import COMMON, NAMES, base
from robaudit.errors import EXIT_GATE_FAILED, InputError, RobauditError, RunError, suggest

HERE = Path(__file__).resolve().parent
WORKER = HERE / "reference_env" / "ic_worker.py"
REQUIREMENTS = HERE / "reference_env" / "requirements.txt"
SETUP_HINT = (
    f"python3 -m venv /tmp/icenv && /tmp/icenv/bin/pip install -r {REQUIREMENTS.relative_to(HERE.parent)}, "
    "then pass --reference-python /tmp/icenv/bin/python or set ROBAUDIT_IC_PYTHON"
)
SPEEDUP_TARGET = 10.0
GPU_IMAGES_PER_S_TARGET = 5_000.0
TARGET_SIZE = 224


@lru_cache(maxsize=1)
def load_worker_module() -> ModuleType:
    """``ic_worker.py`` imported by path: its image loading is shared, so both sides see the same pixels."""
    spec = importlib.util.spec_from_file_location("ic_worker", WORKER)
    if spec is None or spec.loader is None:
        raise RunError(f"cannot import {WORKER}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class ReferenceWorker:
    """``ic_worker.py`` running under the reference's Python, asked for one measurement at a time."""

    def __init__(self, python: Path, images_dir: Path | None) -> None:
        command = [str(python), str(WORKER)] + (["--images-dir", str(images_dir)] if images_dir else [])
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        hello = self._receive()
        if not hello.get("ready"):
            raise RunError(f"the reference worker did not start: {hello}")
        self.versions: dict[str, str] = hello["versions"]
        self.names: list[str] = hello["corruptions"]

    def _receive(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            code = self.process.wait()
            raise RunError(f"the reference worker exited (code {code}); check its environment: {SETUP_HINT}")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def seconds_per_image(self, name: str, severity: int, size: int, n_images: int, seed: int, warmup: bool) -> float:
        """One timed pass of the reference over ``n_images`` images; raises RunError when it failed."""
        assert self.process.stdin is not None
        command = {"corruption": name, "severity": severity, "size": size, "n_images": n_images, "seed": seed}
        try:
            self.process.stdin.write(json.dumps({**command, "repeats": 1, "warmup": warmup}) + "\n")
            self.process.stdin.flush()
        except BrokenPipeError:
            raise RunError(f"the reference worker is gone (code {self.process.wait()})") from None
        answer = self._receive()
        if not answer.get("ok"):
            raise RunError(str(answer.get("error")))
        return float(answer["seconds_per_image"])

    def close(self) -> None:
        if self.process.poll() is None:
            assert self.process.stdin is not None
            self.process.stdin.write(json.dumps({"quit": True}) + "\n")
            self.process.stdin.close()
            self.process.wait(timeout=30)


@dataclass
class Cell:
    """One (corruption, severity, size) measurement: seconds per image on each side, or why it failed."""

    name: str
    severity: int
    size: int
    ours: float | None = None
    reference: float | None = None
    errors: list[str] = field(default_factory=list)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def ours_timer(images: torch.Tensor, name: str, severity: int, seed: int, param_set: str) -> Callable[[], float]:
    """A function that corrupts the batch once and returns the seconds per image."""

    def run() -> float:
        synchronize(images.device)
        start = time.perf_counter()
        corruption.corrupt(images, name, severity, seed=seed, param_set=param_set)
        synchronize(images.device)
        return (time.perf_counter() - start) / images.shape[0]

    return run


def measure_cell(
    cell: Cell,
    images: torch.Tensor,
    reference: ReferenceWorker | None,
    reference_images: int,
    repeats: int,
    seed: int,
    param_set: str,
) -> Cell:
    """Medians of ``repeats`` alternating timings, robaudit then the reference, after robaudit's warm-up.

    A corruption module that fails (they are written independently and may be unfinished) or a reference
    failure is recorded in the cell instead of ending the whole benchmark.
    """
    ours: Callable[[], float] | None = None
    if cell.name not in base.REGISTRY:
        cell.errors.append("robaudit: not registered yet")
    else:
        ours = ours_timer(images, cell.name, cell.severity, seed, param_set)
        try:
            ours()
        except Exception as error:
            cell.errors.append(f"robaudit: {type(error).__name__}: {error}")
            ours = None
    ours_times: list[float] = []
    reference_times: list[float] = []
    for repeat in range(repeats):
        if ours is not None:
            ours_times.append(ours())
        # after a reference failure the count falls behind ``repeat`` and the reference is not asked again
        if reference is not None and len(reference_times) == repeat:
            try:
                reference_times.append(
                    reference.seconds_per_image(
                        cell.name, cell.severity, cell.size, reference_images, seed, warmup=repeat == 0
                    )
                )
            except RunError as error:
                cell.errors.append(f"reference: {error}")
    cell.ours = statistics.median(ours_times) if ours_times else None
    cell.reference = statistics.median(reference_times) if len(reference_times) == repeats else None
    return cell


def to_batch(pixels: np.ndarray, device: torch.device) -> torch.Tensor:
    """``(N, H, W, 3)`` uint8 to the ``(N, 3, H, W)`` float [0, 1] batch robaudit corrupts."""
    return torch.from_numpy(pixels).permute(0, 3, 1, 2).float().div(255).contiguous().to(device)


@dataclass(frozen=True)
class Settings:
    names: list[str]
    severities: list[int]
    sizes: list[int]
    batch: dict[int, int]
    reference_images: dict[int, int]
    repeats: int
    seed: int
    param_set: str
    images_dir: Path | None
    device: torch.device


def measure_size(size: int, settings: Settings, reference: ReferenceWorker | None, worker: ModuleType) -> list[Cell]:
    pixels = worker.natural_images(size, settings.batch[size], settings.images_dir, settings.seed)
    images = to_batch(pixels, settings.device)
    cells = []
    for name in settings.names:
        for severity in settings.severities:
            cell = Cell(name, severity, size)
            count = settings.reference_images[size]
            cells.append(
                measure_cell(cell, images, reference, count, settings.repeats, settings.seed, settings.param_set)
            )
        print(f"  measured {name} at {size}x{size}", file=sys.stderr, flush=True)
    return cells


def mean_or_none(values: list[float | None]) -> float | None:
    """The mean, or None when any value is missing (a partial mean would not compare like with like)."""
    present = [v for v in values if v is not None]
    return statistics.fmean(present) if present and len(present) == len(values) else None


def ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1e3:.3f}"


def ratio_text(reference: float | None, ours: float | None) -> str:
    return "-" if reference is None or not ours else f"{reference / ours:.1f}x"


@dataclass(frozen=True)
class Aggregate:
    """The 15 common corruptions together: sums of per-image times over every severity measured."""

    ours: float | None
    reference: float | None
    complete: bool

    @property
    def speedup(self) -> float | None:
        return None if self.ours is None or self.reference is None or not self.ours else self.reference / self.ours


def aggregate_common(cells: list[Cell]) -> Aggregate:
    common = [c for c in cells if c.name in COMMON]
    measured = [c for c in common if c.ours is not None and c.reference is not None]
    complete = {c.name for c in measured} == set(COMMON) and len(measured) == len(common)
    if not measured:
        return Aggregate(None, None, False)
    return Aggregate(sum(c.ours or 0.0 for c in measured), sum(c.reference or 0.0 for c in measured), complete)


def slower_than_reference(cells: list[Cell]) -> list[tuple[str, float]]:
    """Corruptions whose mean per-image time over the severities exceeds the reference's, with the speed-up."""
    slow = []
    for name in dict.fromkeys(c.name for c in cells):
        rows = [c for c in cells if c.name == name]
        ours, reference = mean_or_none([c.ours for c in rows]), mean_or_none([c.reference for c in rows])
        if ours and reference is not None and reference < ours:
            slow.append((name, reference / ours))
    return slow


def print_table(size: int, cells: list[Cell], settings: Settings, per_severity: bool) -> None:
    source = f"photos from {settings.images_dir}" if settings.images_dir else "synthetic images"
    print(
        f"\n{size}x{size}, batch {settings.batch[size]} ({settings.reference_images[size]} images for the reference),"
        f" severities {','.join(map(str, settings.severities))}, {source}, params {settings.param_set}"
    )
    print(f"{'corruption':<20}{'robaudit ms/img':>17}{'reference ms/img':>18}{'speed-up':>10}")
    slow = dict(slower_than_reference(cells))
    for name in dict.fromkeys(c.name for c in cells):
        rows = [c for c in cells if c.name == name]
        ours, reference = mean_or_none([c.ours for c in rows]), mean_or_none([c.reference for c in rows])
        flag = "  SLOWER than reference" if name in slow else ""
        errors = sorted({e for c in rows for e in c.errors})
        note = f"  [{'; '.join(errors)}]" if errors else ""
        print(f"{name:<20}{ms(ours):>17}{ms(reference):>18}{ratio_text(reference, ours):>10}{flag}{note}")
        if per_severity:
            for c in rows:
                label = f"  severity {c.severity}"
                print(f"{label:<20}{ms(c.ours):>17}{ms(c.reference):>18}{ratio_text(c.reference, c.ours):>10}")
    print_aggregate(size, cells)


def print_aggregate(size: int, cells: list[Cell]) -> None:
    """The 15 common corruptions together, against the target where it applies (224²)."""
    total = aggregate_common(cells)
    if total.speedup is None:
        ours = [c.ours for c in cells if c.name in COMMON and c.ours is not None]
        cover = {c.name for c in cells if c.name in COMMON and c.ours is not None}
        print(f"15 common: robaudit {ms(sum(ours))} ms/img summed over the {len(cover)} measured; no speed-up")
        return
    coverage = "" if total.complete else " (INCOMPLETE: not every common corruption was measured on both sides)"
    target = f" (target >= {SPEEDUP_TARGET:.0f}x)" if size == TARGET_SIZE else ""
    print(
        f"15 common, sum over severities: robaudit {ms(total.ours)} ms/img, reference {ms(total.reference)} ms/img"
        f" -> aggregate speed-up {total.speedup:.1f}x{target}{coverage}"
    )


def cpu_target_failures(cells: list[Cell]) -> list[str]:
    """The CPU targets (224², against the reference) that were missed or could not be checked."""
    total = aggregate_common(cells)
    failures = []
    if not total.complete or total.speedup is None:
        failures.append("aggregate speed-up not measured for all 15 common corruptions")
    elif total.speedup < SPEEDUP_TARGET:
        failures.append(f"aggregate speed-up {total.speedup:.1f}x < {SPEEDUP_TARGET:.0f}x")
    failures += [f"{name} slower than the reference ({s:.2f}x)" for name, s in slower_than_reference(cells)]
    return failures


def gpu_throughput(settings: Settings) -> float | None:
    """Images per second over all 15 common corruptions × 5 severities at 224², medians per cell summed."""
    worker = load_worker_module()
    pixels = worker.natural_images(TARGET_SIZE, settings.batch[TARGET_SIZE], settings.images_dir, settings.seed)
    images = to_batch(pixels, settings.device)
    seconds_per_image = 0.0
    for name in COMMON:
        if name not in base.REGISTRY:
            print(f"[cuda] {name} is not registered: no images/s figure", file=sys.stderr)
            return None
        for severity in corruption.SEVERITIES:
            timer = ours_timer(images, name, severity, settings.seed, settings.param_set)
            timer()
            seconds_per_image += statistics.median(timer() for _ in range(settings.repeats))
    return len(COMMON) * len(corruption.SEVERITIES) / seconds_per_image


def profile_slow(cells: list[Cell], settings: Settings, rows: int) -> None:
    """Where robaudit spends its time in the corruptions slower than the reference (torch.profiler, self CPU)."""
    from torch.profiler import ProfilerActivity, profile

    worker = load_worker_module()
    for size in settings.sizes:
        sized = [c for c in cells if c.size == size]
        for name, _ in slower_than_reference(sized):
            worst = min((c for c in sized if c.name == name), key=lambda c: (c.reference or 0) / (c.ours or 1))
            pixels = worker.natural_images(size, settings.batch[size], settings.images_dir, settings.seed)
            images = to_batch(pixels, settings.device)
            activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if settings.device.type == "cuda" else [])
            with profile(activities=activities) as prof:
                corruption.corrupt(images, name, worst.severity, seed=settings.seed, param_set=settings.param_set)
            print(f"\nprofile of {name} severity {worst.severity} at {size}x{size} (batch {images.shape[0]}):")
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows))


def parse_sizes(spec: str) -> list[int]:
    try:
        sizes = [int(part) for part in spec.split(",") if part.strip()]
    except ValueError:
        raise InputError(f"--sizes takes comma-separated integers such as 224,32, got {spec!r}") from None
    if not sizes or any(s < 32 for s in sizes):
        raise InputError(f"--sizes needs image sides of at least 32 pixels (the reference's minimum), got {spec!r}")
    return sizes


def parse_device(name: str) -> torch.device:
    if name not in ("cpu", "cuda"):
        raise InputError(f"--device must be cpu or cuda, got {name!r}")
    if name == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda: no CUDA device is available here")
    return torch.device(name)


def reference_python(given: str | None) -> Path | None:
    """The reference's interpreter from the option or ``$ROBAUDIT_IC_PYTHON``; None when neither is set."""
    value = given if given is not None else os.environ.get("ROBAUDIT_IC_PYTHON")
    if not value:
        return None
    path = Path(value).expanduser()
    if not path.is_file():
        raise InputError(f"reference python {value!r} does not exist; create it with: {SETUP_HINT}")
    return path


def images_folder(value: str | None) -> Path | None:
    if value is None:
        return None
    folder = Path(value).expanduser()
    worker = load_worker_module()
    if not folder.is_dir() or not worker.photo_paths(folder):
        raise InputError(f"--images-dir {value!r} is not a folder of images (.jpeg, .jpg, .png, ...)")
    return folder


def per_size(value: int | None, sizes: list[int], small: int, large: int) -> dict[int, int]:
    """``value`` for every size, or the default for small (≤ 64 px, CIFAR-like) and large images."""
    if value is not None and value < 1:
        raise InputError(f"batch and image counts must be at least 1, got {value}")
    return {s: value if value is not None else (small if s <= corruption.CIFAR_MAX_SIDE else large) for s in sizes}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="224,32", help="image sides, comma-separated (default 224,32)")
    parser.add_argument("--severities", default="1,3,5", help="e.g. 1,3,5 or 1-5 (default 1,3,5)")
    parser.add_argument("--corruptions", default="all", help="all, common, groups, bands or names (default all)")
    parser.add_argument("--reference-python", default=None, help="python of the reference env ($ROBAUDIT_IC_PYTHON)")
    parser.add_argument("--images-dir", default=None, help="folder of photos (default: smooth synthetic images)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (robaudit's side; the reference is CPU)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's own)")
    parser.add_argument("--batch", type=int, default=None, help="robaudit batch (default 64 at 224², 256 at 32²)")
    parser.add_argument("--reference-images", type=int, default=None, help="per reference pass (default 8 / 32)")
    parser.add_argument("--repeats", type=int, default=3, help="alternating timed repeats per cell (default 3)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--param-set", default="imagenet", help="imagenet (the reference's), cifar or auto")
    parser.add_argument("--per-severity", action="store_true", help="also print one row per severity")
    parser.add_argument("--profile", type=int, default=0, metavar="ROWS", help="profile slow corruptions (top ROWS)")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    return parser


def settings_from(args: argparse.Namespace) -> Settings:
    if args.repeats < 1:
        raise InputError(f"--repeats must be at least 1, got {args.repeats}")
    if args.threads is not None and args.threads < 1:
        raise InputError(f"--threads must be at least 1, got {args.threads}")
    if args.param_set not in ("auto", *base.PARAM_SETS):
        choices = ("auto", *base.PARAM_SETS)
        raise InputError(
            f"--param-set must be auto, imagenet or cifar, got {args.param_set!r}{suggest(args.param_set, choices)}"
        )
    sizes = parse_sizes(args.sizes)
    return Settings(
        names=corruption.resolve_names(args.corruptions),
        severities=corruption.parse_severities(args.severities),
        sizes=sizes,
        # the GPU throughput figure is always taken at 224², whatever --sizes says
        batch=per_size(args.batch, [*sizes, TARGET_SIZE], small=256, large=64),
        reference_images=per_size(args.reference_images, sizes, small=32, large=8),
        repeats=args.repeats,
        seed=args.seed,
        param_set=args.param_set,
        images_dir=images_folder(args.images_dir),
        device=parse_device(args.device),
    )


def run(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    python = reference_python(args.reference_python)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    corruption._load()
    missing = [n for n in settings.names if n not in base.REGISTRY]
    print(f"torch {torch.__version__}, device {settings.device}, {torch.get_num_threads()} CPU threads")
    if missing:
        print(f"not registered in robaudit yet ({len(missing)} of {len(NAMES)}): {', '.join(missing)}")
    if python is None:
        print(f"no reference python: robaudit's times only. To compare, create the reference env: {SETUP_HINT}")
    worker = load_worker_module()
    failures: list[str] = []
    reference = ReferenceWorker(python, settings.images_dir) if python else None
    try:
        if reference is not None:
            print("reference: " + ", ".join(f"{k} {v}" for k, v in reference.versions.items()))
        cells: list[Cell] = []
        for size in settings.sizes:
            sized = measure_size(size, settings, reference, worker)
            print_table(size, sized, settings, args.per_severity)
            cells += sized
            if size == TARGET_SIZE and settings.device.type == "cpu":
                failures += cpu_target_failures(sized)
    finally:
        if reference is not None:
            reference.close()
    if TARGET_SIZE not in settings.sizes and settings.device.type == "cpu":
        failures.append(f"the CPU targets are defined at {TARGET_SIZE}x{TARGET_SIZE}, which was not measured")
    if settings.device.type == "cuda":
        rate = gpu_throughput(settings)
        shown = "-" if rate is None else f"{rate:,.0f}"
        print(f"\n[cuda] 15 common x 5 severities at 224x224: {shown} images/s (target >= 5,000/s)")
        if rate is None or rate < GPU_IMAGES_PER_S_TARGET:
            failures.append(f"GPU throughput {shown} images/s < {GPU_IMAGES_PER_S_TARGET:,.0f}")
    if args.profile:
        profile_slow(cells, settings, args.profile)
    print("\ntargets: " + ("all met" if not failures else "MISSED: " + "; ".join(failures)))
    return EXIT_GATE_FAILED if failures and args.strict else 0


def main() -> None:
    args = build_parser().parse_args()
    try:
        code = run(args)
    except RobauditError as error:
        print(f"corruptions_speed: error: {error}", file=sys.stderr)
        code = error.exit_code
    sys.exit(code)


if __name__ == "__main__":
    main()
