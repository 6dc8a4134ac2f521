"""``robaudit demo``: the whole tool on the embedded digits data, offline, in well under a minute."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from . import options as o


def demo_command(
    out: o.Out = Path("robaudit-demo"),
    retrain: Annotated[
        bool, typer.Option("--retrain", help="Train the demo model again instead of using the cached one.")
    ] = False,
    device: o.Device = "auto",
    as_json: o.Json = False,
) -> None:
    """Train (or reuse) a small CNN on the embedded digits data and run every audit on it into one folder."""
    from .. import plugins
    from ..data import DataSpec
    from ..demo_model import train_digits_cnn, weights_path
    from ..models import ModelSpec
    from ..runner import RunSpec
    from .audit_commands import run_and_report
    from .output import stderr

    if retrain or not weights_path().is_file():
        with stderr.status("training digits_cnn on the embedded digits data..."):
            info = train_digits_cnn()
        stderr.print(
            f"trained digits_cnn ({info['epochs']} epochs, final loss {info['final_loss']:.3f}), "
            f"cached at {weights_path()}"
        )
    spec = RunSpec(
        model=ModelSpec("digits_cnn", pretrained=True),
        data=DataSpec("digits", split="test"),
        chunk_size=128,
        batch_size=128,
        device=device,
    )
    # The demo always starts afresh: its folder is the demo's own output.
    run_and_report(plugins.audits.get("eval")(), spec, out, resume=False, overwrite=True, as_json=as_json)
    stderr.print(f"demo reports in {out}/ (inspect with: robaudit report show {out}/eval.parquet)")
