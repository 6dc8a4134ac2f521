"""``robaudit demo``: the whole tool on the embedded digits data, offline, in well under a minute.

The demo is the built-in suite ``robaudit/suites/demo.toml`` (also ``robaudit run demo``), run into a fresh
folder after the digits CNN has been trained once (or again, with ``--retrain``).
"""

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
    """Train (or reuse) a small CNN on the embedded digits data, then audit it into one folder: clean accuracy,
    a key-value cache built and tuned on it, white- and gray-box PGD against the cached model, hybrid images,
    its Jacobian, perturbation and corruption spectra, a Fourier heat map, common corruptions, and an HTML
    report of it all (the built-in suite `demo`)."""
    from ..models.demo import train_digits_cnn, weights_path
    from .output import stderr
    from .run import load, run_suite

    if retrain or not weights_path().is_file():
        with stderr.status("training digits_cnn on the embedded digits data..."):
            info = train_digits_cnn()
        stderr.print(
            f"trained digits_cnn ({info['epochs']} epochs, final loss {info['final_loss']:.3f}), "
            f"cached at {weights_path()}"
        )
    suite = load("demo", force={"device": device})
    # The demo always starts afresh: its folder is the demo's own output.
    run_suite(suite, out, overwrite=True, as_json=as_json)
    stderr.print(f"demo reports in {out}/: open {out}/report.html, or robaudit report summarize {out}/attack.parquet")
