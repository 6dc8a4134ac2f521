"""``robaudit demo``: the whole tool on the embedded digits data, offline, in well under a minute."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from . import options as o

if TYPE_CHECKING:
    from ..models import ModelSpec


def demo_command(
    out: o.Out = Path("robaudit-demo"),
    retrain: Annotated[
        bool, typer.Option("--retrain", help="Train the demo model again instead of using the cached one.")
    ] = False,
    device: o.Device = "auto",
    as_json: o.Json = False,
) -> None:
    """Train (or reuse) a small CNN on the embedded digits data, then audit it into one folder: clean accuracy,
    a key-value cache built and tuned on it, and white- and gray-box PGD against the cached model."""
    from .. import plugins
    from ..data import DataSpec
    from ..demo_model import train_digits_cnn, weights_path
    from ..models import ModelSpec
    from ..runner import RunSpec
    from .audit_commands import run_and_report
    from .output import print_json, stderr

    if retrain or not weights_path().is_file():
        with stderr.status("training digits_cnn on the embedded digits data..."):
            info = train_digits_cnn()
        stderr.print(
            f"trained digits_cnn ({info['epochs']} epochs, final loss {info['final_loss']:.3f}), "
            f"cached at {weights_path()}"
        )
    model = ModelSpec("digits_cnn", pretrained=True)
    summaries: dict[str, Any] = {}
    # The demo always starts afresh: its folder is the demo's own output.
    report = o.ReportOptions(out, resume=False, overwrite=True, as_json=False)
    eval_spec = RunSpec(
        model=model, data=DataSpec("digits", split="test"), chunk_size=128, batch_size=128, device=device
    )
    summaries["eval"] = run_and_report(plugins.audits.get("eval")(), eval_spec, report, quiet=as_json)

    # A key-value cache on the model's penultimate features, tuned on the first half of the test split.
    cache_dir = out / "cache-penultimate"
    summaries["cache"] = build_and_tune_demo_cache(model, cache_dir, device)
    theta, lam = summaries["cache"]["best_theta"], summaries["cache"]["best_lam"]

    # White- and gray-box PGD against the cached model, on the other half of the test split.
    attack_spec = RunSpec(
        model=model,
        data=DataSpec("digits", split="test", indices="180:", limit=96),
        defenses=(f"cache:path={cache_dir},theta={theta:g},lam={lam:g}",),
        chunk_size=48,
        batch_size=48,
        device=device,
    )
    attack = plugins.audits.get("attack")(
        attack="pgd:steps=10", threats=["white", "gray"], eps=[0.01, 0.02, 0.05], eps_mode="linf"
    )
    summaries["attack"] = run_and_report(attack, attack_spec, report, quiet=as_json)
    if as_json:
        print_json({"reports": str(out), "summaries": summaries})
    stderr.print(f"demo reports in {out}/ (inspect with: robaudit report summarize {out}/attack.parquet)")


def build_and_tune_demo_cache(model: ModelSpec, cache_dir: Path, device: str) -> dict[str, Any]:
    """Build the demo's cache from the digits training split and tune θ, λ on test images 0-179."""
    import numpy as np

    from ..data import DataSpec, load_dataset, select_samples
    from ..defenses.base import compose
    from ..defenses.cache_build import build_cache
    from ..defenses.cache_tune import held_out_queries, summarize_grid, tune_grid
    from ..models import load_model
    from .output import stderr

    loaded = load_model(model, device)
    train_spec = DataSpec("digits", split="train")
    train = load_dataset(train_spec)
    with stderr.status("building the demo cache..."):
        build_cache(
            loaded,
            train,
            train_spec,
            select_samples(train.labels, train_spec, 0),
            layers=["penultimate"],
            out=cache_dir,
            overwrite=True,
        )
    cached = compose(loaded, [f"cache:path={cache_dir}"])
    test = load_dataset(DataSpec("digits", split="test"))
    queries, logits, labels = held_out_queries(
        cached.defenses[-1], cached, test, np.arange(180), batch_size=180, workers=0, skip_bad=False
    )
    rows = tune_grid(cached.defenses[-1], queries, logits, labels, [5, 10, 20, 40], [0.25, 0.5, 0.75])
    summary = summarize_grid(rows, logits, labels)
    stderr.print(
        f"cache: {cache_dir} (tuned on test 0-179: theta={summary['best_theta']:g}, "
        f"lam={summary['best_lam']:g}, accuracy {summary['best_accuracy']:.3f} vs backbone "
        f"{summary['backbone_accuracy']:.3f})"
    )
    return summary
