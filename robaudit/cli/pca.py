"""``robaudit pca fit``: fit the principal components behind the ``pca`` defense and write its artifact folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from . import options as o

app = typer.Typer(help="Fit PCA artifacts for the pca defense (--defense pca:path=DIR,k=K).", no_args_is_help=True)

PCA = "PCA"


@app.command("fit")
def fit_command(
    k: Annotated[
        int, typer.Option("--k", help="Components to keep (512 in Li et al. for CIFAR-10).", rich_help_panel=PCA)
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Artifact folder to write.", rich_help_panel=PCA)],
    data: o.Data,
    split: o.Split = None,
    limit: o.Limit = None,
    indices: o.Indices = None,
    on_bad_image: o.OnBadImage = "fail",
    image_size: Annotated[
        int | None,
        typer.Option(
            "--image-size", help="imagefolder only: crop images to 3xNxN as the model will.", rich_help_panel=o.DATA
        ),
    ] = None,
    crop_pct: Annotated[
        float,
        typer.Option(
            "--crop-pct", help="imagefolder only: resize the short side to N / P first.", rich_help_panel=o.DATA
        ),
    ] = 0.875,
    interpolation: Annotated[
        str, typer.Option("--interpolation", help="imagefolder only: resampling filter.", rich_help_panel=o.DATA)
    ] = "bilinear",
    method: Annotated[
        str,
        typer.Option("--method", help="auto (exact up to D = 8192), exact or randomized.", rich_help_panel=PCA),
    ] = "auto",
    oversample: Annotated[
        int, typer.Option("--oversample", help="randomized: extra sketch columns.", rich_help_panel=PCA)
    ] = 64,
    power_iters: Annotated[
        int, typer.Option("--power-iters", help="randomized: power iterations (passes).", rich_help_panel=PCA)
    ] = 2,
    batch_size: o.BatchSize = 256,
    seed: o.Seed = 0,
    device: o.Device = "auto",
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing artifact folder.")] = False,
    as_json: o.Json = False,
) -> None:
    """Fit the top-k principal components of the data's images (streamed; never all in memory)."""
    from dataclasses import asdict

    from ..data import DataSpec, load_dataset, parse_source, select_samples
    from ..defenses.pca import fit_pca
    from ..errors import InputError
    from ..models import Preprocessing
    from .output import print_json, print_summary, progress_bar, stderr

    preprocessing = None
    if image_size is not None:
        if image_size < 1 or not 0 < crop_pct <= 1:
            raise InputError(f"--image-size must be >= 1 and --crop-pct in (0, 1], got {image_size} and {crop_pct}")
        preprocessing = Preprocessing(
            input_size=(3, image_size, image_size), crop_pct=crop_pct, interpolation=interpolation
        )
    elif parse_source(data)[0] == "imagefolder":
        raise InputError("imagefolder data needs --image-size (and --crop-pct) matching the model's preprocessing")
    spec = DataSpec(source=data, split=split, limit=limit, on_bad_image=on_bad_image, indices=indices)
    dataset = load_dataset(spec, preprocessing)
    selection = select_samples(dataset.labels, spec, seed)
    with progress_bar(f"pca fit k={k}") as hook:
        meta = fit_pca(
            dataset,
            selection,
            k=k,
            out=out,
            method=method,
            batch_size=batch_size,
            oversample=oversample,
            power_iters=power_iters,
            seed=seed,
            overwrite=overwrite,
            device=device,
            on_bad_image=on_bad_image,
            data={
                **asdict(spec),
                "description": dataset.description,
                "sizing": {"image_size": image_size, "crop_pct": crop_pct, "interpolation": interpolation}
                if preprocessing
                else None,
            },
            progress=hook,
        )
    if as_json:
        print_json(meta, files={"pca": out})
        return
    summary = {
        "k": meta["k"],
        "D": meta["dim"],
        "images": meta["n_samples"],
        "explained variance": meta["explained_variance"],
        "method": meta["method"],
        "seconds": meta["seconds"],
    }
    print_summary(f"pca fit on {dataset.description}", summary)
    stderr.print(f"artifact: {out} (use --defense pca:path={out},k={k})")
