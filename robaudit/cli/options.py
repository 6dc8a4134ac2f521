"""Option bundles shared by the audit commands, and their conversion into specs.

Declared once here as ``Annotated`` aliases, so every command spells ``--model`` or ``--limit`` the same
way with the same help. Nothing heavy is imported: this module is loaded for ``robaudit --help``.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ..errors import InputError

if TYPE_CHECKING:
    from ..data import DataSpec
    from ..models import ModelSpec
    from ..runner import RunSpec

MODEL = "Model"
DATA = "Data"
RUN = "Run"

Model = Annotated[
    str,
    typer.Option(
        "--model",
        "-m",
        help="timm name (resnet50, resnet50.a1_in1k), hf-hub:org/name, "
        "tv:NAME, a plugin's model, pkg.module:factory or file.py:factory.",
        rich_help_panel=MODEL,
    ),
]
Pretrained = Annotated[
    bool,
    typer.Option(
        "--pretrained",
        help="Download (or take from the local cache) the library's pretrained weights.",
        rich_help_panel=MODEL,
    ),
]
Weights = Annotated[
    Path | None,
    typer.Option("--weights", help="Checkpoint to load: .safetensors or a torch state dict.", rich_help_panel=MODEL),
]
TrustCheckpoint = Annotated[
    bool,
    typer.Option(
        "--trust-checkpoint",
        help="Allow a checkpoint pickle that executes code when loaded (only for files you trust).",
        rich_help_panel=MODEL,
    ),
]
NumClasses = Annotated[
    int | None, typer.Option("--num-classes", help="Number of outputs of the classifier head.", rich_help_panel=MODEL)
]
Mean = Annotated[
    str | None, typer.Option("--mean", help="Override the normalization mean, e.g. 0.5,0.5,0.5.", rich_help_panel=MODEL)
]
Std = Annotated[str | None, typer.Option("--std", help="Override the normalization std.", rich_help_panel=MODEL)]
InputSize = Annotated[
    str | None,
    typer.Option("--input-size", help="Override the input size C,H,W, e.g. 3,224,224.", rich_help_panel=MODEL),
]
Device = Annotated[
    str, typer.Option("--device", help="auto (CUDA when available), cpu, cuda or cuda:N.", rich_help_panel=RUN)
]

Data = Annotated[
    str,
    typer.Option(
        "--data",
        "-d",
        help="digits (embedded), cifar10[:ROOT], imagefolder:PATH, npz:PATH, imagenet-c:ROOT, cifar10-c:ROOT, "
        "or a plugin's source.",
        rich_help_panel=DATA,
    ),
]
Split = Annotated[
    str | None,
    typer.Option(
        "--split", help="Split of the source (train/test/val); the source's default when omitted.", rich_help_panel=DATA
    ),
]
Limit = Annotated[
    int | None, typer.Option("--limit", help="Use a seeded, class-stratified subset of N images.", rich_help_panel=DATA)
]
Indices = Annotated[
    str | None,
    typer.Option(
        "--indices",
        help="START:STOP: only these samples of the source (before --limit), e.g. 509:1017.",
        rich_help_panel=DATA,
    ),
]
Defenses = Annotated[
    list[str] | None,
    typer.Option(
        "--defense",
        help="NAME[:key=value,...], repeatable and "
        "ordered, e.g. blur:sigma=1.5 or cache:path=DIR,theta=50,lam=0.5 "
        "(robaudit defenses lists them).",
        rich_help_panel=MODEL,
    ),
]
OnBadImage = Annotated[
    str,
    typer.Option(
        "--on-bad-image",
        help="fail (default) or skip undecodable images (skipped ones are counted in the report).",
        rich_help_panel=DATA,
    ),
]
BatchSize = Annotated[int, typer.Option("--batch-size", "-b", help="Images per forward pass.", rich_help_panel=RUN)]
Workers = Annotated[
    int, typer.Option("--workers", help="Processes decoding images (0 = in the main process).", rich_help_panel=RUN)
]
ChunkSize = Annotated[
    int, typer.Option("--chunk-size", help="Images per chunk: the unit of --resume and --shard.", rich_help_panel=RUN)
]
Seed = Annotated[int, typer.Option("--seed", help="Seed for subsets and every random draw.", rich_help_panel=RUN)]
Shard = Annotated[
    str | None, typer.Option("--shard", help="i/n: run only chunks with id % n == i.", rich_help_panel=RUN)
]
Resume = Annotated[
    bool, typer.Option("--resume", help="Continue an interrupted run with the same options.", rich_help_panel=RUN)
]
Overwrite = Annotated[
    bool, typer.Option("--overwrite", help="Replace an existing report or unfinished run.", rich_help_panel=RUN)
]
Out = Annotated[Path, typer.Option("--out", "-o", help="Report folder.", rich_help_panel=RUN)]
Json = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on stdout instead of tables.")]


def floats(text: str | None, option: str, length: int | None = None) -> tuple[float, ...] | None:
    if text is None:
        return None
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise InputError(f"{option} takes comma-separated numbers, got {text!r}") from None
    if length is not None and len(values) != length:
        raise InputError(f"{option} takes {length} numbers, got {len(values)}")
    return values


def model_spec(
    *,
    model: str,
    pretrained: bool = False,
    weights: Path | None = None,
    trust_checkpoint: bool = False,
    num_classes: int | None = None,
    mean: str | None = None,
    std: str | None = None,
    input_size: str | None = None,
) -> ModelSpec:
    """The ModelSpec of the shared model options."""
    from ..models import ModelSpec

    size = floats(input_size, "--input-size", 3)
    return ModelSpec(
        name=model,
        pretrained=pretrained,
        weights=str(weights) if weights else None,
        trust_checkpoint=trust_checkpoint,
        num_classes=num_classes,
        mean=floats(mean, "--mean"),
        std=floats(std, "--std"),
        input_size=tuple(int(v) for v in size) if size else None,  # type: ignore[arg-type]
    )


def data_spec(options: dict[str, Any]) -> DataSpec:
    """The DataSpec of a command's shared data options."""
    from ..data import DataSpec

    return DataSpec(
        source=options["data"],
        split=options["split"],
        limit=options["limit"],
        on_bad_image=options["on_bad_image"],
        indices=options["indices"],
    )


def run_spec(options: dict[str, Any]) -> RunSpec:
    """The RunSpec of a command's shared model, data and run options, taken from its parameters by name.

    Weights written by ``robaudit train`` come with a card: its defenses and class count stand in for
    ``--defense`` and ``--num-classes`` when those are not given (``--defense none``: no defense)."""
    from ..runner import RunSpec
    from ..training.card import defenses_for_weights, num_classes_for_weights

    return RunSpec(
        model=model_spec(
            model=options["model"],
            pretrained=options["pretrained"],
            weights=options["weights"],
            trust_checkpoint=options["trust_checkpoint"],
            num_classes=num_classes_for_weights(options["weights"], options["num_classes"]),
            mean=options["mean"],
            std=options["std"],
            input_size=options["input_size"],
        ),
        data=data_spec(options),
        defenses=defenses_for_weights(options["weights"], tuple(options["defense"] or ())),
        seed=options["seed"],
        chunk_size=options["chunk_size"],
        batch_size=options["batch_size"],
        workers=options["workers"],
        device=options["device"],
        shard=options["shard"],
    )


def budget_list(text: str | None) -> list[float] | None:
    """``"0.01,2/255"`` -> [0.01, 0.00784...]; fractions are allowed because budgets are often k/255."""
    if text is None:
        return None
    values = []
    for item in filter(None, (p.strip() for p in text.split(","))):
        num, sep, den = item.partition("/")
        try:
            values.append(float(num) / float(den) if sep else float(num))
        except (ValueError, ZeroDivisionError):
            raise InputError(f"--eps takes comma-separated numbers or fractions (8/255), got {item!r}") from None
    return values


def grid(text: str, option: str) -> list[float]:
    """``"10:90:33"`` (33 evenly spaced values from 10 to 90) or ``"10,20,50"``."""
    try:
        if ":" in text:
            start, stop, count = text.split(":")
            n = int(count)
            if n < 1:
                raise ValueError
            step = (float(stop) - float(start)) / (n - 1) if n > 1 else 0.0
            return [round(float(start) + i * step, 10) for i in range(n)]
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise InputError(f"{option} takes START:STOP:COUNT or comma-separated numbers, got {text!r}") from None


def _shared_options(
    model: Model,
    data: Data = "digits",
    pretrained: Pretrained = False,
    weights: Weights = None,
    trust_checkpoint: TrustCheckpoint = False,
    num_classes: NumClasses = None,
    mean: Mean = None,
    std: Std = None,
    input_size: InputSize = None,
    defense: Defenses = None,
    split: Split = None,
    limit: Limit = None,
    indices: Indices = None,
    on_bad_image: OnBadImage = "fail",
    batch_size: BatchSize = 128,
    workers: Workers = 0,
    chunk_size: ChunkSize = 256,
    seed: Seed = 0,
    shard: Shard = None,
    device: Device = "auto",
    out: Out = Path("robaudit-report"),
    resume: Resume = False,
    overwrite: Overwrite = False,
    as_json: Json = False,
) -> None:
    """The options every audit command shares (a template read by :func:`audit_command`)."""


@dataclass(frozen=True)
class ReportOptions:
    """Where an audit command writes its report and how it treats an existing one."""

    out: Path
    resume: bool
    overwrite: bool
    as_json: bool


def audit_command(
    *, batch_size: int = 128, chunk_size: int = 256, model_required: bool = True
) -> Callable[[Callable[..., None]], Any]:
    """Give an audit command the shared options without repeating them.

    The decorated function declares only its own options plus ``spec`` (the :class:`RunSpec` built from the
    shared model, data and run options) and ``report`` (:class:`ReportOptions`); the command typer sees has
    ``--model`` first, then the command's own options, then the shared ones (Typer has no option groups that
    could be reused across commands, so the signature is assembled here). With ``model_required=False``
    ``--model`` may be left out, ``spec`` is then None, and a command that declares ``data_spec`` receives
    the :class:`~robaudit.data.DataSpec` of the data options either way.
    """

    def decorate(command: Callable[..., None]) -> Callable[..., None]:
        shared = inspect.signature(_shared_options, eval_str=True).parameters
        # only the command's own options are evaluated: ``spec: RunSpec`` names a type imported for checking only
        own = [
            p.replace(
                annotation=eval(p.annotation, command.__globals__) if isinstance(p.annotation, str) else p.annotation
            )
            for name, p in inspect.signature(command).parameters.items()
            if name not in ("spec", "report", "data_spec")
        ]
        wants_data = "data_spec" in inspect.signature(command).parameters
        defaults = {"batch_size": batch_size, "chunk_size": chunk_size}
        rest = [p.replace(default=defaults.get(name, p.default)) for name, p in shared.items() if name != "model"]

        @functools.wraps(command)
        def wrapper(**values: Any) -> None:
            options = {name: values.pop(name) for name in shared}
            report = ReportOptions(options["out"], options["resume"], options["overwrite"], options["as_json"])
            spec = run_spec(options) if options["model"] is not None else None
            if wants_data:
                values["data_spec"] = data_spec(options)
            command(spec=spec, report=report, **values)

        model = shared["model"]
        if not model_required:
            model = model.replace(annotation=Annotated[str | None, model.annotation.__metadata__[0]], default=None)
        parameters = [model, *own, *rest]
        wrapper.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in parameters}
        del wrapper.__wrapped__  # typer must read the assembled signature, not the command's own
        return wrapper

    return decorate
