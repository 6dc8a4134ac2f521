"""``robaudit train``: train or fine-tune a model behind fixed input defenses, with regularizers; resumable.

The command reads its options into a :class:`~robaudit.training.config.TrainConfig` and calls
:func:`robaudit.training.loop.train`; progress goes to stderr (a bar per epoch with loss, accuracy and ETA,
and one line per finished epoch), the summary to stdout (a table, or JSON with ``--json``).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from . import options as o

if TYPE_CHECKING:
    from ..data import DataSpec

TRAIN = "Training"
HELDOUT = "Held-out data"
NONE = "none"


class EpochProgress:
    """A transient bar per epoch (step, loss, accuracy, ETA of the epoch) and a line per finished epoch."""

    def __init__(self) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        from .output import stderr

        self.console = stderr
        self.bar = Progress(
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]} acc {task.fields[accuracy]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=stderr,
            transient=True,
        )
        self.task: Any = None
        self.epochs = 0
        self.started = time.perf_counter()
        self.finished = 0

    def start_epoch(self, epoch: int, epochs: int, steps: int) -> None:
        self.epochs = epochs
        if self.task is not None:
            self.bar.remove_task(self.task)
        self.task = self.bar.add_task(f"epoch {epoch}/{epochs}", total=steps, loss="-", accuracy="-")
        if not self.bar.live.is_started:
            self.bar.start()

    def step(self, done: int, loss: float, accuracy: float) -> None:
        self.bar.update(self.task, completed=done, loss=f"{loss:.4f}", accuracy=f"{accuracy:.1%}")

    def end_epoch(self, record: dict[str, Any]) -> None:
        self.finished += 1
        elapsed = time.perf_counter() - self.started
        remaining = (self.epochs - record["epoch"]) * elapsed / self.finished
        heldout = record.get("heldout")
        parts = [
            f"epoch {record['epoch']}/{self.epochs}",
            f"loss {record['loss']:.4f}",
            f"accuracy {record['accuracy']:.1%}",
            *([f"held-out {heldout['accuracy']:.1%}"] if heldout else []),
            *(f"{name} {value:.4f}" for name, value in (record.get("terms") or {}).items()),
            f"{record['images_per_s']} images/s",
            f"ETA {time.strftime('%H:%M:%S', time.gmtime(remaining))}",
        ]
        self.console.print(", ".join(parts), markup=False, highlight=False)

    def close(self) -> None:
        if self.bar.live.is_started:
            self.bar.stop()


def _split(value: str | None, default: str | None) -> str | None:
    if value is None:
        return default
    return None if value.lower() == NONE else value


def data_specs(
    *,
    data: str,
    split: str | None,
    limit: int | None,
    indices: str | None,
    on_bad_image: str,
    val_data: str | None,
    val_split: str | None,
    val_limit: int | None,
    val_indices: str | None,
) -> tuple[DataSpec, DataSpec | None]:
    """The training and held-out data specs, with training's defaults (``train``; ``test`` of the same source)."""
    from ..data import DataSpec

    train = DataSpec(data, _split(split, "train"), limit, on_bad_image, indices)
    if val_data is not None and val_data.lower() == NONE:
        return train, None
    same = val_data is None
    heldout = DataSpec(
        data if same else str(val_data),
        _split(val_split, "test" if same else None),
        val_limit,
        on_bad_image,
        val_indices,
    )
    return train, heldout


def train_command(
    model: o.Model,
    out: Annotated[
        Path,
        typer.Option(
            "--out", "-o", help="Run folder: card.json, model.safetensors, checkpoints/.", rich_help_panel=o.RUN
        ),
    ],
    data: o.Data = "digits",
    split: Annotated[
        str | None,
        typer.Option(
            "--split",
            help="Split to train on (default train; none for a source without splits).",
            rich_help_panel=o.DATA,
        ),
    ] = None,
    limit: o.Limit = None,
    indices: o.Indices = None,
    on_bad_image: o.OnBadImage = "fail",
    val_data: Annotated[
        str | None,
        typer.Option(
            "--val-data",
            help="Held-out data evaluated after every epoch (default: --data; none for no held-out evaluation).",
            rich_help_panel=HELDOUT,
        ),
    ] = None,
    val_split: Annotated[
        str | None,
        typer.Option(
            "--val-split",
            help="Its split (default test of --data, or --val-data's own default; none for no split).",
            rich_help_panel=HELDOUT,
        ),
    ] = None,
    val_limit: Annotated[
        int | None,
        typer.Option(
            "--val-limit", help="A seeded, class-stratified subset of N held-out images.", rich_help_panel=HELDOUT
        ),
    ] = None,
    val_indices: Annotated[
        str | None, typer.Option("--val-indices", help="START:STOP of the held-out source.", rich_help_panel=HELDOUT)
    ] = None,
    pretrained: o.Pretrained = False,
    weights: o.Weights = None,
    trust_checkpoint: o.TrustCheckpoint = False,
    num_classes: o.NumClasses = None,
    mean: o.Mean = None,
    std: o.Std = None,
    input_size: o.InputSize = None,
    defense: o.Defenses = None,
    grayscale: Annotated[
        bool,
        typer.Option(
            "--grayscale",
            help="Train (and audit) on grayscale: the grayscale defense goes first.",
            rich_help_panel=o.MODEL,
        ),
    ] = False,
    epochs: Annotated[int, typer.Option("--epochs", help="Epochs to train.", rich_help_panel=TRAIN)] = 10,
    batch_size: o.BatchSize = 128,
    optimizer: Annotated[
        str, typer.Option("--optimizer", help="sgd (momentum) or adamw.", rich_help_panel=TRAIN)
    ] = "sgd",
    lr: Annotated[
        float | None,
        typer.Option("--lr", help="Peak learning rate (default 0.1 for sgd, 0.001 for adamw).", rich_help_panel=TRAIN),
    ] = None,
    momentum: Annotated[float, typer.Option("--momentum", help="SGD momentum.", rich_help_panel=TRAIN)] = 0.9,
    weight_decay: Annotated[
        float | None,
        typer.Option(
            "--weight-decay",
            help="Default 5e-4 for sgd, 0.05 for adamw; not on norms and biases.",
            rich_help_panel=TRAIN,
        ),
    ] = None,
    warmup_epochs: Annotated[
        float, typer.Option("--warmup-epochs", help="Linear warm-up before the cosine decay.", rich_help_panel=TRAIN)
    ] = 1.0,
    min_lr: Annotated[
        float, typer.Option("--min-lr", help="Learning rate at the end of the cosine.", rich_help_panel=TRAIN)
    ] = 0.0,
    label_smoothing: Annotated[
        float, typer.Option("--label-smoothing", help="Label smoothing of the cross-entropy.", rich_help_panel=TRAIN)
    ] = 0.0,
    augment: Annotated[
        str,
        typer.Option(
            "--augment",
            help="standard (pad-crop+flip up to 64 px, random-resized-crop+flip above), crop (no flip), flip, none, or "
            "timm:rand-m9-mstd0.5 (standard + timm RandAugment).",
            rich_help_panel=TRAIN,
        ),
    ] = "standard",
    regularizer: Annotated[
        list[str] | None,
        typer.Option(
            "--regularizer",
            "-r",
            help="NAME[:key=value,...], repeatable: similarity:target=FILE,layers=auto,weight=1 | "
            "similarity:teacher=MODEL,layer=NAME | adversarial:eps=8/255,steps=7 (robaudit plugins lists them).",
            rich_help_panel=TRAIN,
        ),
    ] = None,
    amp: Annotated[
        bool | None,
        typer.Option("--amp/--no-amp", help="bf16 autocast (default: on CUDA only).", rich_help_panel=TRAIN),
    ] = None,
    keep_checkpoints: Annotated[
        int,
        typer.Option("--keep-checkpoints", help="Keep the N newest epoch checkpoints (0: all).", rich_help_panel=o.RUN),
    ] = 0,
    seed: o.Seed = 0,
    workers: o.Workers = 0,
    device: o.Device = "auto",
    resume: Annotated[
        bool,
        typer.Option("--resume", help="Continue an interrupted run from its last checkpoint.", rich_help_panel=o.RUN),
    ] = False,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Start over in a folder that holds a run.", rich_help_panel=o.RUN)
    ] = False,
    as_json: o.Json = False,
) -> None:
    """Train or fine-tune a model behind fixed input defenses (blur, pca, grayscale...) with augmentation, a
    cosine schedule and regularizers; a checkpoint and card per epoch, --resume continues exactly. Audit the
    result with --weights OUT/model.safetensors (the card supplies the defenses)."""
    from ..training.config import TrainConfig
    from ..training.loop import summary, train
    from .output import print_json, print_summary, stderr

    train_spec, heldout_spec = data_specs(
        data=data,
        split=split,
        limit=limit,
        indices=indices,
        on_bad_image=on_bad_image,
        val_data=val_data,
        val_split=val_split,
        val_limit=val_limit,
        val_indices=val_indices,
    )
    config = TrainConfig(
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
        data=train_spec,
        heldout=heldout_spec,
        out=out,
        defenses=tuple(defense or ()),
        grayscale=grayscale,
        epochs=epochs,
        batch_size=batch_size,
        optimizer=optimizer,
        lr=lr,
        momentum=momentum,
        weight_decay=weight_decay,
        warmup_epochs=warmup_epochs,
        min_lr=min_lr,
        label_smoothing=label_smoothing,
        augment=augment,
        regularizers=tuple(regularizer or ()),
        seed=seed,
        workers=workers,
        device=device,
        amp=amp,
        keep_checkpoints=keep_checkpoints,
    )
    progress = EpochProgress()
    try:
        result = train(config, resume=resume, overwrite=overwrite, progress=progress)
    finally:
        progress.close()
    figures = summary(result)
    if result.resumed_from:
        stderr.print(f"resumed after epoch {result.resumed_from} of {config.epochs}", markup=False)
    if as_json:
        print_json(figures, files={"run": result.out, "weights": result.weights, "card": result.out / "card.json"})
        return
    defended = " + ".join(config.defense_specs)
    print_summary(f"train: {model}{' + ' + defended if defended else ''} on {data}", figures)
    stderr.print(f"weights: {result.weights} (card: {result.out / 'card.json'})", markup=False)
