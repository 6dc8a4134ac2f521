"""``robaudit rsa``: representational similarity of a model's layers to a target, with a figure of the matrices."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from . import options as o

if TYPE_CHECKING:
    from ..runner import RunSpec

RSA = "RSA"


@o.audit_command(batch_size=64, chunk_size=256)
def rsa_command(
    spec: RunSpec,
    report: o.ReportOptions,
    layers: Annotated[
        str,
        typer.Option(
            "--layers",
            help="The model's layers, joined with + (e.g. layer1.2.conv2+layer3); auto: 5 evenly spaced convolutions.",
            rich_help_panel=RSA,
        ),
    ] = "auto",
    target: Annotated[
        Path | None,
        typer.Option(
            "--target", help="A similarity target file (.npz: similarity or responses, x or ids).", rich_help_panel=RSA
        ),
    ] = None,
    target_model: Annotated[
        str | None,
        typer.Option(
            "--target-model", help="Or another model, whose --target-layer is the target.", rich_help_panel=RSA
        ),
    ] = None,
    target_weights: Annotated[
        Path | None, typer.Option("--target-weights", help="Checkpoint of the target model.", rich_help_panel=RSA)
    ] = None,
    target_layer: Annotated[
        str | None, typer.Option("--target-layer", help="The target model's layer.", rich_help_panel=RSA)
    ] = None,
    target_defense: Annotated[
        list[str] | None,
        typer.Option(
            "--target-defense",
            help="Defenses in front of the target model (default: from its training card; none for none).",
            rich_help_panel=RSA,
        ),
    ] = None,
    pool: Annotated[
        str,
        typer.Option(
            "--pool", help="flatten (whole activations) or avg (average over positions).", rich_help_panel=RSA
        ),
    ] = "flatten",
    bootstrap: Annotated[
        int,
        typer.Option("--bootstrap", help="Bootstrap resamples of the images for the intervals.", rich_help_panel=RSA),
    ] = 500,
) -> None:
    """Representational similarity analysis: per layer, Pearson and Spearman correlation of the similarity
    matrices' upper triangles and linear CKA against a target file or another model's layer, with bootstrap
    intervals over images, and a figure of the matrices side by side (rsa.png)."""
    from dataclasses import asdict

    from .. import plugins
    from ..defenses.base import compose
    from ..models import load_model
    from ..reports.figures import save_png
    from ..reports.read import read_report
    from ..training.card import defenses_for_weights
    from .audit_commands import run_and_report
    from .output import stderr

    loaded_target = None
    target_params = None
    if target_model is not None:
        target_spec = o.model_spec(model=target_model, weights=target_weights)
        defenses = defenses_for_weights(target_weights, tuple(target_defense or ()))
        loaded_target = compose(load_model(target_spec, spec.device), list(defenses))
        target_params = {
            **asdict(target_spec),
            "defenses": [repr(d) for d in loaded_target.defenses],
            "fingerprint": loaded_target.fingerprint,
        }
    audit = plugins.audits.get("rsa")(
        layers=layers,
        target=str(target) if target is not None else None,
        target_model=target_params,
        target_layer=target_layer,
        pool=pool,
        bootstrap=bootstrap,
        seed=spec.seed,
    )
    audit.attach_target_model(loaded_target)
    run_and_report(audit, spec, report)
    from ..audits.rsa import rsa_figure
    from ..data import parse_shard
    from ..runner import report_path

    rows, metadata = read_report(report_path(report.out, "rsa", parse_shard(spec.shard)))
    stderr.print(f"figure: {save_png(rsa_figure(rows, metadata), report.out / 'rsa.png')}")
