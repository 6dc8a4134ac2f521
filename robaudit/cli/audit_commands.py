"""Audit commands: each builds a RunSpec from shared options, runs the audit, prints its summary."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from . import options as o


def run_and_report(audit: Any, spec: Any, out: Path, *, resume: bool, overwrite: bool, as_json: bool) -> dict[str, Any]:
    """Run ``audit`` with a progress bar, then print the summary derived from the written report."""
    from ..reports.read import read_report
    from ..runner import run_audit
    from .output import print_json, print_summary, progress_bar, stderr

    with progress_bar(f"{audit.name}") as hook:
        result = run_audit(audit, spec, out, resume=resume, overwrite=overwrite, progress=hook)
    rows, meta = read_report(result.path)
    summary = type(audit).summarize(rows, meta)
    if result.chunks_resumed:
        stderr.print(f"resumed: {result.chunks_resumed} of {result.chunks_total} chunks were already done")
    if as_json:
        print_json({"report": str(result.path), "summary": summary})
    else:
        defended = " + ".join(spec.defenses)
        model = f"{spec.model.name} + {defended}" if defended else spec.model.name
        print_summary(f"{audit.name}: {model} on {meta['data']['description']}", summary)
        stderr.print(f"report: {result.path}")
    return summary


def eval_command(
    model: o.Model,
    data: o.Data = "digits",
    pretrained: o.Pretrained = False,
    weights: o.Weights = None,
    trust_checkpoint: o.TrustCheckpoint = False,
    num_classes: o.NumClasses = None,
    mean: o.Mean = None,
    std: o.Std = None,
    input_size: o.InputSize = None,
    defense: o.Defenses = None,
    split: o.Split = None,
    limit: o.Limit = None,
    indices: o.Indices = None,
    on_bad_image: o.OnBadImage = "fail",
    batch_size: o.BatchSize = 128,
    workers: o.Workers = 0,
    chunk_size: o.ChunkSize = 256,
    seed: o.Seed = 0,
    shard: o.Shard = None,
    device: o.Device = "auto",
    out: o.Out = Path("robaudit-report"),
    resume: o.Resume = False,
    overwrite: o.Overwrite = False,
    as_json: o.Json = False,
) -> None:
    """Clean accuracy (top-1, top-5) with a row per image: prediction, confidence, correct."""
    from .. import plugins
    from ..data import DataSpec
    from ..runner import RunSpec

    spec = RunSpec(
        model=o.model_spec(
            model=model,
            pretrained=pretrained,
            weights=weights,
            trust_checkpoint=trust_checkpoint,
            num_classes=num_classes,
            mean=mean,
            std=std,
            input_size=input_size,
        ),
        data=DataSpec(source=data, split=split, limit=limit, on_bad_image=on_bad_image, indices=indices),
        defenses=tuple(defense or ()),
        seed=seed,
        chunk_size=chunk_size,
        batch_size=batch_size,
        workers=workers,
        device=device,
        shard=shard,
    )
    audit = plugins.audits.get("eval")()
    run_and_report(audit, spec, out, resume=resume, overwrite=overwrite, as_json=as_json)
