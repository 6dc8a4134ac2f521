"""Audit commands: each builds a RunSpec from shared options, runs the audit, prints its summary."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from . import options as o

if TYPE_CHECKING:
    from ..runner import RunSpec

ATTACK = "Attack"


def run_and_report(audit: Any, spec: Any, report: o.ReportOptions, *, quiet: bool = False) -> dict[str, Any]:
    """Run ``audit`` with a progress bar, then print (unless ``quiet``) the summary derived from the report."""
    from ..reports.read import read_report
    from ..runner import run_audit
    from .output import print_json, print_summary, progress_bar, stderr

    with progress_bar(f"{audit.name}") as hook:
        result = run_audit(audit, spec, report.out, resume=report.resume, overwrite=report.overwrite, progress=hook)
    rows, meta = read_report(result.path)
    summary = type(audit).summarize(rows, meta)
    if result.chunks_resumed:
        stderr.print(f"resumed: {result.chunks_resumed} of {result.chunks_total} chunks were already done")
    if report.as_json and not quiet:
        print_json({"report": str(result.path), "summary": summary})
    elif not quiet:
        defended = " + ".join(spec.defenses)
        model = f"{spec.model.name} + {defended}" if defended else spec.model.name
        print_summary(f"{audit.name}: {model} on {meta['data']['description']}", summary)
        stderr.print(f"report: {result.path}")
    return summary


@o.audit_command()
def eval_command(
    spec: RunSpec,
    report: o.ReportOptions,
) -> None:
    """Clean accuracy (top-1, top-5) with a row per image: prediction, confidence, correct."""
    from .. import plugins

    audit = plugins.audits.get("eval")()
    run_and_report(audit, spec, report)


@o.audit_command(batch_size=64, chunk_size=128)
def attack_command(
    spec: RunSpec,
    report: o.ReportOptions,
    eps: Annotated[
        str | None,
        typer.Option(
            "--eps",
            help="Budgets to sweep, e.g. 0.01,0.02,0.04 or 2/255,8/255 (in --eps-mode units).",
            rich_help_panel=ATTACK,
        ),
    ] = None,
    attack: Annotated[
        str,
        typer.Option(
            "--attack",
            "-a",
            help="NAME[:key=value,...] (robaudit attacks lists them), e.g. pgd:steps=20 or ddn.",
            rich_help_panel=ATTACK,
        ),
    ] = "pgd",
    eps_mode: Annotated[
        str,
        typer.Option(
            "--eps-mode",
            help="linf | l2 | l1 (absolute radii in [0,1] pixels) | rel-l2 "
            "(||d||2 <= eps ||x||2 per image) | range-linf (eps x pixel range).",
            rich_help_panel=ATTACK,
        ),
    ] = "linf",
    threat: Annotated[
        list[str] | None,
        typer.Option(
            "--threat",
            help="white, gray (attack the backbone, judge the "
            "defended model) or black (attack --surrogate); repeatable. "
            "Default: white, plus gray with a defense.",
            rich_help_panel=ATTACK,
        ),
    ] = None,
    surrogate: Annotated[
        str | None,
        typer.Option("--surrogate", help="Model the black-box attack sees (any --model name).", rich_help_panel=ATTACK),
    ] = None,
    surrogate_weights: Annotated[
        Path | None, typer.Option("--surrogate-weights", help="Checkpoint of the surrogate.", rich_help_panel=ATTACK)
    ] = None,
    targeted: Annotated[
        bool, typer.Option("--targeted", help="Aim at a random other class per image (seeded).", rich_help_panel=ATTACK)
    ] = False,
    minimal: Annotated[
        bool,
        typer.Option(
            "--minimal",
            help="Smallest perturbation per image with minimization attacks (no --eps).",
            rich_help_panel=ATTACK,
        ),
    ] = False,
    ensemble: Annotated[
        list[str] | None,
        typer.Option(
            "--ensemble",
            help="More minimization attacks for --minimal; the smallest success per image is kept (repeatable).",
            rich_help_panel=ATTACK,
        ),
    ] = None,
    checks: Annotated[
        bool,
        typer.Option(
            "--checks/--no-checks",
            help="Gradient-masking evidence rows (on --check-samples images per batch).",
            rich_help_panel=ATTACK,
        ),
    ] = True,
    check_samples: Annotated[
        int, typer.Option("--check-samples", help="Images per batch for the masking checks.", rich_help_panel=ATTACK)
    ] = 8,
    amp: Annotated[
        bool,
        typer.Option(
            "--amp",
            help="bf16 autocast inside the attack (pgd, autoattack and its members; for GPUs).",
            rich_help_panel=ATTACK,
        ),
    ] = False,
    save_perturbations: Annotated[
        Path | None,
        typer.Option(
            "--save-perturbations",
            help="Keep every perturbation (float16) in the report and export them to this .npz (for spectra).",
            rich_help_panel=ATTACK,
        ),
    ] = None,
) -> None:
    """Accuracy under attack: white/gray/black-box threat models, eps sweeps or minimal perturbations,
    targeted or not, with gradient-masking checks."""
    from dataclasses import asdict

    from .. import plugins
    from ..models import load_model

    threats = [
        t.strip()
        for item in (threat or (["white", "gray"] if spec.defenses else ["white"]))
        for t in item.split(",")
        if t.strip()
    ]
    loaded_surrogate = None
    surrogate_params = None
    if surrogate is not None:
        surrogate_spec = o.model_spec(model=surrogate, weights=surrogate_weights)
        loaded_surrogate = load_model(surrogate_spec, spec.device)
        surrogate_params = {**asdict(surrogate_spec), "fingerprint": loaded_surrogate.fingerprint}
    if amp:
        attack = with_amp(attack)
    audit = plugins.audits.get("attack")(
        attack=attack,
        threats=threats,
        eps=o.budget_list(eps),
        eps_mode=eps_mode,
        targeted=targeted,
        minimal=minimal,
        ensemble=list(ensemble or []),
        checks=checks,
        check_samples=check_samples,
        seed=spec.seed,
        surrogate=surrogate_params,
        keep_perturbations=save_perturbations is not None,
    )
    audit.attach_surrogate(loaded_surrogate)
    run_and_report(audit, spec, report)
    if save_perturbations is not None:
        from ..audits.attack.audit import export_perturbations
        from ..data import parse_shard
        from ..runner import report_path
        from .output import stderr

        count = export_perturbations(report_path(report.out, "attack", parse_shard(spec.shard)), save_perturbations)
        stderr.print(f"perturbations: {count} written to {save_perturbations}")


def with_amp(attack: str) -> str:
    """``attack`` with ``amp=true`` added, for attacks that support bf16 autocast."""
    from .. import plugins
    from ..errors import InputError
    from ..params import parameters_of, parse_spec

    name, params = parse_spec(attack, "--attack")
    if "amp" not in parameters_of(plugins.attacks.get(name)):
        raise InputError(f"--amp needs an attack with bf16 autocast (pgd, autoattack, apgd-ce...); {name!r} has none")
    return f"{name}:" + ",".join(f"{k}={v}" for k, v in {**params, "amp": "true"}.items())
