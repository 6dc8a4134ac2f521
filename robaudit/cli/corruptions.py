"""``robaudit corruptions preview``: one image under every corruption and severity, as a PNG grid.

``corruptions`` is a group named like the corruptions audit, so the command line makes the audit its
default subcommand (see :mod:`.audit_commands`): ``robaudit corruptions --model ...`` runs the audit while
``robaudit corruptions preview ...`` draws the grid.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from . import options as o

CORRUPTIONS = "Corruptions"

app = typer.Typer(
    help="Accuracy under the ImageNet-C corruptions (the audit), or a preview grid of them.",
    no_args_is_help=False,
)

CorruptionNames = Annotated[
    str,
    typer.Option(
        "--corruptions",
        "-c",
        help="all | common (the 15 of the mCE) | extra | noise,blur,weather,digital | low,mid,high | names.",
        rich_help_panel=CORRUPTIONS,
    ),
]
Severities = Annotated[
    str, typer.Option("--severities", help="Severities, e.g. 1-5, 3 or 1,3,5.", rich_help_panel=CORRUPTIONS)
]
ParamSet = Annotated[
    str,
    typer.Option(
        "--params",
        help="auto (CIFAR-10-C parameters up to 64 px a side, ImageNet-C above), imagenet or cifar.",
        rich_help_panel=CORRUPTIONS,
    ),
]
FrostDir = Annotated[
    Path | None,
    typer.Option(
        "--frost-dir",
        help="Folder of frost photographs to blend instead of the procedural texture.",
        rich_help_panel=CORRUPTIONS,
    ),
]


@app.command("preview")
def preview_command(
    out: Annotated[Path, typer.Option("--out", "-o", help="PNG file to write.")] = Path("corruptions-preview.png"),
    image: Annotated[
        Path | None, typer.Option("--image", help="An image file (resized and centre-cropped to --size).")
    ] = None,
    data: Annotated[str | None, typer.Option("--data", "-d", help="Or a data source; see --index.")] = None,
    split: o.Split = None,
    index: Annotated[int, typer.Option("--index", help="Which sample of --data.")] = 0,
    size: Annotated[
        int | None, typer.Option("--size", help="Side in pixels (default: 224, or the data's own).")
    ] = None,
    corruptions: CorruptionNames = "all",
    severities: Severities = "1-5",
    params: ParamSet = "auto",
    frost_dir: FrostDir = None,
    seed: o.Seed = 0,
) -> None:
    """Draw one image under every chosen corruption (rows) and severity (columns) into a PNG grid."""
    from .. import corruption as catalog
    from ..errors import InputError
    from ..reports.writer import check_output_file
    from .output import stderr

    check_output_file(out, "--out")
    if size is not None and size < 1:
        raise InputError(f"--size must be >= 1, got {size}")
    names = catalog.resolve_names(corruptions)
    chosen = catalog.parse_severities(severities)
    if (image is None) == (data is None):
        raise InputError("give either --image FILE or --data SOURCE (with --index)")
    picture = _preview_image(image, data, split, index, size)
    context = catalog.CorruptionContext(catalog.param_set_for(picture.shape[-2], picture.shape[-1], params), frost_dir)
    cells = [[catalog.corrupt(picture, name, s, seed=seed, context=context)[0] for s in chosen] for name in names]
    from ..reports.plots import image_grid_figure, save_png

    images = [[_pixels(picture[0]), *(_pixels(cell) for cell in row)] for row in cells]
    titles = [[name, *([""] * len(chosen))] for name in names]
    columns = ["clean", *(f"severity {s} ({context.param_set})" for s in chosen)]
    path = save_png(image_grid_figure(images, columns, titles), out)
    stderr.print(
        f"preview: {path} ({len(names)} corruptions x {len(chosen)} severities, {context.param_set} parameters)"
    )


def _preview_image(image: Path | None, data: str | None, split: str | None, index: int, size: int | None) -> Any:
    """One image as a (1, 3, H, W) tensor in [0, 1]."""
    import numpy as np
    import torch

    from ..data import DataSpec, load_dataset
    from ..data.sources import read_square
    from ..errors import InputError
    from ..models import Preprocessing

    if image is not None:
        if not image.is_file():
            raise InputError(f"--image {image} does not exist")
        side = size or 224
        try:
            pixels = read_square(str(image), side, round(side / 0.875) if side >= 64 else side, "bilinear")
        except Exception as exc:
            raise InputError(f"cannot read --image {image}: {type(exc).__name__}: {exc}") from None
        return torch.from_numpy(pixels.copy()).permute(2, 0, 1)[None].float() / 255
    side = size or 224
    dataset = load_dataset(DataSpec(str(data), split=split), Preprocessing(input_size=(3, side, side)))
    if not 0 <= index < len(dataset):
        raise InputError(f"--index {index} is outside the data's {len(dataset)} samples")
    batch = dataset.load(np.asarray([index]))
    if not len(batch.indices):
        raise InputError(f"sample {index} cannot be decoded: {batch.failures[0][1]}")
    picture = batch.images
    if size is not None and picture.shape[-1] != size:
        picture = torch.nn.functional.interpolate(picture, size=(size, size), mode="bilinear", antialias=True)
    return picture.clamp(0, 1)


def _pixels(image: Any) -> Any:
    """(3, H, W) tensor → (H, W, 3) numpy array for drawing."""
    return image.permute(1, 2, 0).cpu().numpy()
