"""What torchrun buys: the speed-up of N processes over 1 on one audit, and what coordinating them costs.

One workload (by default a 10-step PGD attack audit of the digits CNN on the digits test set, in chunks of
16 images) is run alternately by one process, by ``torchrun --nproc-per-node N`` and by N independent shard
processes, each into a fresh folder; the repeats rotate the order, so that the load of a shared machine
falls on all alike.

Printed, side by side:

* ``speed-up``: the single process's run time over the N processes' (``run_audit`` from start to finished
  report, on rank 0), and the same for the whole job from outside (interpreter and torch start-up, model
  loading included). Target on CPU (N processes × 1 thread against 1 × 1, ``--threads 1``): >= 1.8 for 2;
* ``ceiling``: the same speed-up for N independent ``--shard i/N`` processes started together (no
  coordination, no join): what the machine itself allows. On a shared machine it shows how much of a
  shortfall is the machine's load rather than robaudit's;
* ``overhead``: per rank, the time that is neither preparing (loading the model and data, which a single
  process does too) nor computing chunks: the meetings with the other ranks (waiting for the slowest one
  included) and, on rank 0, joining the chunks into the report; as a fraction of that rank's run. Target on
  GPUs (one rank per GPU, a workload of minutes): <= 3 %.

The reports of both are compared too (same rows, same order): a speed-up of a wrong result is no speed-up.

Run on 2 CPU cores: ``python benchmarks/distributed.py --processes 2 --threads 1``; on a machine with N GPUs:
``python benchmarks/distributed.py --processes N --device cuda --split train --attack pgd:steps=200
--chunk-size 32 --batch-size 32`` (more images and steps make the coordination's share smaller;
``--model``, ``--weights``, ``--data`` choose another workload, e.g. ``--model cifar_resnet20 --weights W
--data npz:F``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def worker(args: argparse.Namespace) -> None:
    """One process of a measured run (under torchrun: one rank): run the audit, write its timings."""
    import torch

    from robaudit import distributed, plugins
    from robaudit.data import DataSpec
    from robaudit.models import ModelSpec
    from robaudit.runner import RunSpec, run_audit

    if args.threads:
        torch.set_num_threads(args.threads)
    spec = RunSpec(
        model=ModelSpec(args.model, pretrained=args.weights is None, weights=args.weights),
        data=DataSpec(args.data, split=args.split, limit=args.limit),
        chunk_size=args.chunk_size,
        batch_size=args.batch_size,
        device=args.device,
        shard=args.shard,
    )
    audit = plugins.audits.get("attack").build(spec, {"attack": args.attack, "eps": args.eps})
    started = time.perf_counter()
    result = run_audit(audit, spec, Path(args.out))
    rank = distributed.world().rank if args.shard is None else int(args.shard.split("/")[0])
    record = {"rank": rank, "seconds": time.perf_counter() - started, **result.timings}
    Path(args.timings).with_suffix(f".rank{rank}.json").write_text(json.dumps(record))


def launch(
    args: argparse.Namespace, processes: int, out: Path, timings: Path, *, shards: bool = False
) -> dict[str, Any]:
    """Run the workload with ``processes`` processes (torchrun, or with ``shards`` that many independent
    ``--shard i/N`` processes started together); wall time of the job and every process's timings."""
    own = [
        "--worker",
        "--out",
        str(out),
        "--timings",
        str(timings),
        *(f"--{k.replace('_', '-')}={v}" for k, v in _workload(args).items() if v is not None),
    ]
    if processes == 1:
        commands = [[sys.executable, __file__, *own]]
    elif shards:
        commands = [[sys.executable, __file__, *own, f"--shard={i}/{processes}"] for i in range(processes)]
    else:
        torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}"]
        commands = [[*torchrun, __file__, *own]]
    env = {**os.environ}
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
    started = time.perf_counter()
    jobs = [subprocess.Popen(c, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for c in commands]
    outputs = [job.communicate() for job in jobs]
    wall = time.perf_counter() - started
    for job, (_, err) in zip(jobs, outputs, strict=True):
        if job.returncode != 0:
            sys.exit(f"the run with {processes} process(es) failed:\n{err[-4000:]}")
    ranks = [json.loads(timings.with_suffix(f".rank{r}.json").read_text()) for r in range(processes)]
    return {"wall": wall, "ranks": ranks, "report": out / "attack.parquet"}


def _workload(args: argparse.Namespace) -> dict[str, Any]:
    keys = ("model", "weights", "data", "split", "limit", "attack", "eps", "chunk_size", "batch_size", "device")
    return {**{k: getattr(args, k) for k in keys}, "threads": args.threads}


#: the parts of a rank's run, as RunResult.timings names them
PARTS = (("prepare", "prepare"), ("compute", "compute"), ("meet", "meetings"), ("join", "join"))


def overhead(rank: dict[str, float]) -> float:
    """The share of a rank's run that is coordination and joining (neither preparing nor computing)."""
    run = rank["seconds"] - rank.get("prepare", 0.0)
    return (rank["seconds"] - rank.get("prepare", 0.0) - rank.get("compute", 0.0)) / run if run > 0 else 0.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--processes", type=int, default=2, help="N: processes of the distributed run")
    parser.add_argument("--repeats", type=int, default=2, help="interleaved runs of each (the best is kept)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads per process (1 on a small CPU)")
    parser.add_argument("--device", default="cpu", help="cpu, or cuda (each rank takes cuda:LOCAL_RANK)")
    parser.add_argument("--model", default="digits_cnn")
    parser.add_argument("--weights", default=None, help="a checkpoint (default: the model's pretrained weights)")
    parser.add_argument("--data", default="digits")
    parser.add_argument("--split", default="test")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--attack", default="pgd:steps=10")
    parser.add_argument("--eps", default="0.03")
    parser.add_argument("--chunk-size", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--timings", help=argparse.SUPPRESS)
    parser.add_argument("--shard", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args)
        return 0
    if args.processes < 2:
        parser.error("--processes must be >= 2")

    import pyarrow.parquet as pq

    from robaudit.models import ModelSpec, load_model

    if args.weights is None:  # the first load may train or download it: not part of any measured run
        load_model(ModelSpec(args.model, pretrained=True), "cpu")
    root = Path(tempfile.mkdtemp(prefix="robaudit-distributed-"))
    n = args.processes
    # the single process, torchrun, and (the machine's ceiling) N independent shard processes started together
    kinds = {"1 process": (1, False), f"torchrun {n}": (n, False), f"{n} shard processes": (n, True)}
    runs: dict[str, list[dict[str, Any]]] = {kind: [] for kind in kinds}
    try:
        for repeat in range(args.repeats):
            order = list(kinds)[repeat % len(kinds) :] + list(kinds)[: repeat % len(kinds)]
            for kind in order:
                processes, shards = kinds[kind]
                out, timings = root / f"{repeat}-{kind}".replace(" ", "-"), root / f"timings-{repeat}-{kind}"
                runs[kind].append(launch(args, processes, out, timings, shards=shards))
                print(f"  {kind}, repeat {repeat + 1}: {runs[kind][-1]['wall']:.1f} s", flush=True)
        single, many, apart = runs["1 process"], runs[f"torchrun {n}"], runs[f"{n} shard processes"]
        same = all(pq.read_table(a["report"]).equals(pq.read_table(b["report"])) for a in single for b in many[:1])
        run_1 = min(r["ranks"][0]["seconds"] for r in single)
        run_n = min(r["ranks"][0]["seconds"] for r in many)
        run_s = min(max(rank["seconds"] for rank in r["ranks"]) for r in apart)
        wall_1, wall_n = min(r["wall"] for r in single), min(r["wall"] for r in many)
        shares = [overhead(rank) for r in many for rank in r["ranks"]]
        best = min(many, key=lambda r: r["ranks"][0]["seconds"])
        threads = args.threads or "default"
        print(f"workload: {args.attack} attack audit, {args.model} on {args.data} ({args.split}), device {args.device}")
        print(f"processes: 1 vs {args.processes}, torch threads per process: {threads}, repeats: {args.repeats}")
        print(f"run time (rank 0, best):  1: {run_1:.2f} s   {n}: {run_n:.2f} s   speed-up {run_1 / run_n:.2f}x")
        print(f"job wall time (best):     1: {wall_1:.2f} s   {n}: {wall_n:.2f} s   speed-up {wall_1 / wall_n:.2f}x")
        for rank in best["ranks"]:
            parts = ", ".join(f"{name} {rank.get(key, 0.0):.2f} s" for key, name in PARTS)
            print(f"  rank {rank['rank']}: {parts}; overhead {100 * overhead(rank):.1f} %")
        print(
            f"ceiling: {n} independent shard processes (no coordination, no join): slowest {run_s:.2f} s, "
            f"speed-up {run_1 / run_s:.2f}x"
        )
        print(f"overhead per rank: median {100 * statistics.median(shares):.1f} %, max {100 * max(shares):.1f} %")
        print(f"reports identical to the single process's: {same}")
        missed = not same
        if args.device == "cpu" and args.threads == 1 and args.processes == 2 and run_1 / run_n < 1.8:
            print("target missed: speed-up < 1.8 with 2 processes × 1 thread")
            missed = True
        if args.device.startswith("cuda") and max(shares) > 0.03:
            print("target missed: overhead > 3 % on some rank")
            missed = True
        return 1 if missed and args.strict else 0
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
