"""``robaudit corruptions``: accuracy under common corruptions, CE / mCE; ``robaudit corruptions preview``.

``corruptions`` is a group whose default command is the audit, so ``robaudit corruptions --model ...``
runs it while ``robaudit corruptions preview ...`` draws the corruption × severity grid of one image.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperGroup

from . import options as o

if TYPE_CHECKING:
    from ..runner import RunSpec

CORRUPTIONS = "Corruptions"
AUDIT = "audit"


class AuditByDefault(TyperGroup):
    """A group that runs its ``audit`` command unless the first argument names another subcommand."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if not args or args[0] not in self.commands:
            args = [AUDIT, *args]
        return super().parse_args(ctx, args)


app = typer.Typer(
    cls=AuditByDefault,
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


@app.command(AUDIT)
@o.audit_command(batch_size=64, chunk_size=256)
def corruptions_command(
    spec: RunSpec,
    report: o.ReportOptions,
    corruptions: CorruptionNames = "common",
    severities: Severities = "1-5",
    params: ParamSet = "auto",
    noise_levels: Annotated[
        str | None,
        typer.Option(
            "--noise-levels",
            help="Also add Gaussian noise of these σ (pixels in [0, 1]), e.g. 0.02,0.05,0.1: a noise curve.",
            rich_help_panel=CORRUPTIONS,
        ),
    ] = None,
    clean: Annotated[
        bool, typer.Option("--clean/--no-clean", help="Also classify the clean images.", rich_help_panel=CORRUPTIONS)
    ] = True,
    reference: Annotated[
        str,
        typer.Option(
            "--reference",
            help="Errors that normalize CE / mCE: auto (AlexNet for ImageNet-sized data, none otherwise), "
            "alexnet, none, or a baseline model's corruptions report (.parquet).",
            rich_help_panel=CORRUPTIONS,
        ),
    ] = "auto",
    clean_report: Annotated[
        Path | None,
        typer.Option(
            "--clean-report",
            help="An eval report of the same model, for the relative mCE on pre-rendered sets.",
            rich_help_panel=CORRUPTIONS,
        ),
    ] = None,
    frost_dir: FrostDir = None,
) -> None:
    """Accuracy under the ImageNet-C corruptions at severities 1-5, generated on the fly (or read from
    imagenet-c:ROOT / cifar10-c:ROOT): CE and mCE, relative mCE, corruption accuracy, bands.

    [dim]robaudit corruptions preview draws a corruption x severity grid of one image.[/dim]
    """
    from dataclasses import replace

    from .. import corruptions as catalog
    from .. import plugins
    from ..data import parse_source
    from .audit_commands import run_and_report
    from .output import stderr

    names = catalog.resolve_names(corruptions)
    chosen = catalog.parse_severities(severities)
    source, arg = parse_source(spec.data.source)
    prerendered = source in ("imagenet-c", "cifar10-c")
    if prerendered and arg and "::" not in arg:
        # the data source filters the released files, so unwanted ones are never decoded
        spec = replace(spec, data=replace(spec.data, source=f"{spec.data.source}::{','.join(names)}@{severities}"))
    if frost_dir is not None and not frost_dir.is_dir():
        from ..errors import InputError

        raise InputError(f"--frost-dir {frost_dir} is not a folder")
    audit = plugins.audits.get("corruptions")(
        corruptions=names,
        severities=chosen,
        param_set=params,
        noise_levels=list(o.floats(noise_levels, "--noise-levels") or []),
        clean=clean and not prerendered,
        seed=spec.seed,
        frost_dir=str(frost_dir) if frost_dir else None,
        reference=_reference(reference, names, chosen),
        clean_accuracy=_clean_accuracy(clean_report),
    )
    summary = run_and_report(audit, spec, report)
    stderr.print(f"plots: {', '.join(str(p) for p in plot_corruptions(summary, report.out))}")


def plot_corruptions(summary: dict[str, Any], folder: Path) -> list[Path]:
    """CE (or error) per corruption, the corruption × severity accuracy map, and the noise curve if any."""
    from ..reports.figures import (
        corruption_errors_figure,
        corruption_heatmap_figure,
        noise_curve_figure,
        save_png,
    )

    paths = [
        save_png(corruption_errors_figure(summary), folder / "corruptions.png"),
        save_png(corruption_heatmap_figure(summary), folder / "corruptions-heatmap.png"),
    ]
    if summary.get("noise_curve"):
        paths.append(save_png(noise_curve_figure(summary), folder / "corruptions-noise.png"))
    return paths


def _reference(choice: str, names: list[str], severities: list[int]) -> dict[str, Any] | str | None:
    """The reference errors ``--reference`` names (``auto`` is resolved by the summary, which knows the data)."""
    from ..audits.corruptions import alexnet_reference, reference_from_report

    if choice in ("none", "auto"):
        return None if choice == "none" else "auto"
    if choice == "alexnet":
        return alexnet_reference()
    return reference_from_report(choice, names, severities)


def _clean_accuracy(path: Path | None) -> float | None:
    if path is None:
        return None
    from ..errors import InputError
    from ..reports.read import read_report, summarize

    rows, meta = read_report(path)
    if meta.get("audit") not in ("eval", "corruptions"):
        raise InputError(f"--clean-report {path} is a {meta.get('audit')!r} report; give an eval report")
    kind, summary = summarize(rows, meta, path)
    value = summary["top1"] if kind == "eval" else summary["clean_accuracy"]
    if value is None:
        raise InputError(f"--clean-report {path} has no clean accuracy (a corruptions run without clean rows)")
    return float(value)


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
    from .. import corruptions as catalog
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
    from ..reports.figures import image_grid_figure, save_png

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
