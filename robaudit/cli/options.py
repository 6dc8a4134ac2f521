"""The options shared by the commands, declared once, and their conversion into specs.

Every option is an :class:`~robaudit.audits.options.Option` — the same plain declaration an audit uses for
its own options — and :func:`parameter` turns one into a typer parameter. Audit commands are assembled from
the shared model, data and run options plus the audit's own (:mod:`.audit_commands`); hand-written
commands (``cache build``, ``pca fit`` ...) use the ``Annotated`` aliases below, made from the same
declarations, so every command spells ``--model`` or ``--limit`` the same way with the same help.
Nothing heavy is imported: this module is loaded for ``robaudit --help``.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ..audits.options import Option
from ..audits.options import budget_list as _budget_list
from ..errors import InputError

if TYPE_CHECKING:
    from ..data import DataSpec
    from ..models import ModelSpec
    from ..runner import RunSpec

MODEL = "Model"
DATA = "Data"
RUN = "Run"

MODEL_OPTIONS = (
    Option(
        "model",
        "timm name (resnet50, resnet50.a1_in1k), hf-hub:org/name, tv:NAME, a plugin's model, pkg.module:factory "
        "or file.py:factory.",
        flags=("--model", "-m"),
        panel=MODEL,
    ),
    Option(
        "pretrained",
        "Download (or take from the local cache) the library's pretrained weights.",
        default=False,
        type=bool,
        panel=MODEL,
    ),
    Option("weights", "Checkpoint to load: .safetensors or a torch state dict.", type=Path, panel=MODEL),
    Option(
        "trust_checkpoint",
        "Allow a checkpoint pickle that executes code when loaded (only for files you trust).",
        default=False,
        type=bool,
        panel=MODEL,
    ),
    Option("num_classes", "Number of outputs of the classifier head.", type=int, panel=MODEL),
    Option(
        "mean",
        "Override the normalization mean: per channel (0.5,0.5,0.5) or a .npy file of any shape that broadcasts "
        "to C,H,W (a mean image).",
        panel=MODEL,
    ),
    Option("std", "Override the normalization std (numbers or a .npy file, as --mean).", panel=MODEL),
    Option("input_size", "Override the input size C,H,W, e.g. 3,224,224.", panel=MODEL),
    Option(
        "defense",
        "NAME[:key=value,...], repeatable and ordered, e.g. blur:sigma=1.5 or cache:path=DIR,theta=50,lam=0.5 "
        "(robaudit defenses lists them).",
        multiple=True,
        panel=MODEL,
    ),
)
DATA_OPTIONS = (
    Option(
        "data",
        "digits (embedded), cifar10[:ROOT], imagefolder:PATH, npz:PATH, imagenet-c:ROOT, cifar10-c:ROOT, "
        "perturbations:FILE.npz, or a plugin's source.",
        default="digits",
        flags=("--data", "-d"),
        panel=DATA,
    ),
    Option("split", "Split of the source (train/test/val); the source's default when omitted.", panel=DATA),
    Option("limit", "Use a seeded, class-stratified subset of N images.", type=int, panel=DATA),
    Option(
        "indices",
        "START:STOP: only these samples of the source (before --limit), e.g. 509:1017.",
        panel=DATA,
    ),
    Option(
        "on_bad_image",
        "fail (default) or skip undecodable images (skipped ones are counted in the report).",
        default="fail",
        panel=DATA,
    ),
)
RUN_OPTIONS = (
    Option("batch_size", "Images per forward pass.", default=128, type=int, flags=("--batch-size", "-b"), panel=RUN),
    Option("workers", "Processes decoding images (0 = in the main process).", default=0, type=int, panel=RUN),
    Option("chunk_size", "Images per chunk: the unit of --resume and --shard.", default=256, type=int, panel=RUN),
    Option("seed", "Seed for subsets and every random draw.", default=0, type=int, panel=RUN),
    Option("shard", "i/n: run only chunks with id % n == i.", panel=RUN),
    Option("device", "auto (CUDA when available), cpu, cuda or cuda:N.", default="auto", panel=RUN),
    Option(
        "precision",
        "fp32, or bf16 / fp16 autocast around the model (faster on GPUs; docs/usage.md says what it changes).",
        default="fp32",
        panel=RUN,
    ),
    Option("out", "Report folder.", default=Path("robaudit-report"), type=Path, flags=("--out", "-o"), panel=RUN),
    Option("resume", "Continue an interrupted run with the same options.", default=False, type=bool, panel=RUN),
    Option("overwrite", "Replace an existing report or unfinished run.", default=False, type=bool, panel=RUN),
    Option(
        "as_json",
        "Print machine-readable JSON on stdout instead of tables.",
        default=False,
        type=bool,
        flags=("--json",),
    ),
)
SHARED = (*MODEL_OPTIONS, *DATA_OPTIONS, *RUN_OPTIONS)
_BY_NAME = {o.name: o for o in SHARED}


def annotation(option: Option, panel: str | None = None, required: bool = False) -> Any:
    """``Annotated[type, typer.Option(...)]`` for one declared option (``panel`` overrides its help group)."""
    flags = list(option.cli_flags)
    if option.type is bool and option.negatable:
        flags = [f"{option.long_flag}/--no-{option.long_flag[2:]}"]
    kind: Any = option.type
    if option.multiple:
        kind = list[option.type] | None  # type: ignore[name-defined]
    elif not required and option.default is None:
        kind = option.type | None
    info = typer.Option(
        *flags, help=option.help, rich_help_panel=(panel if panel is not None else option.panel) or None
    )
    return Annotated[kind, info]


def parameter(option: Option, panel: str | None = None, *, default: Any = inspect.Parameter.empty) -> inspect.Parameter:
    """A keyword parameter of a generated command for ``option`` (its default, unless ``default`` is given)."""
    value = option.default if default is inspect.Parameter.empty else default
    required = value is inspect.Parameter.empty
    return inspect.Parameter(
        option.name, inspect.Parameter.KEYWORD_ONLY, default=value, annotation=annotation(option, panel, required)
    )


Model = annotation(_BY_NAME["model"], required=True)
Pretrained = annotation(_BY_NAME["pretrained"])
Weights = annotation(_BY_NAME["weights"])
TrustCheckpoint = annotation(_BY_NAME["trust_checkpoint"])
NumClasses = annotation(_BY_NAME["num_classes"])
Mean = annotation(_BY_NAME["mean"])
Std = annotation(_BY_NAME["std"])
InputSize = annotation(_BY_NAME["input_size"])
Defenses = annotation(_BY_NAME["defense"])
Data = annotation(_BY_NAME["data"])
Split = annotation(_BY_NAME["split"])
Limit = annotation(_BY_NAME["limit"])
Indices = annotation(_BY_NAME["indices"])
OnBadImage = annotation(_BY_NAME["on_bad_image"])
BatchSize = annotation(_BY_NAME["batch_size"])
Workers = annotation(_BY_NAME["workers"])
ChunkSize = annotation(_BY_NAME["chunk_size"])
Seed = annotation(_BY_NAME["seed"])
Shard = annotation(_BY_NAME["shard"])
Device = annotation(_BY_NAME["device"])
Out = annotation(_BY_NAME["out"])
Resume = annotation(_BY_NAME["resume"])
Overwrite = annotation(_BY_NAME["overwrite"])
Json = annotation(_BY_NAME["as_json"], panel="")


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


def statistic(text: str | None, option: str) -> tuple[float, ...] | str | None:
    """``--mean``/``--std``: comma-separated numbers, or the path of a ``.npy`` file (read when the model is
    loaded, where its shape is checked against the input)."""
    if text is None:
        return None
    if text.endswith(".npy") or Path(text).is_file():
        return text
    try:
        return floats(text, option)
    except InputError:
        raise InputError(f"{option} takes comma-separated numbers or a .npy file, got {text!r}") from None


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
        mean=statistic(mean, "--mean"),
        std=statistic(std, "--std"),
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
    """The RunSpec of a command's shared model, data and run options, taken from its parameters by name
    (without ``--model``, the spec of an audit of the data alone).

    Weights written by ``robaudit train`` come with a card: its defenses and class count stand in for
    ``--defense`` and ``--num-classes`` when those are not given (``--defense none``: no defense)."""
    from ..runner import RunSpec
    from ..training.card import defenses_for_weights, num_classes_for_weights

    model = None
    if options["model"] is not None:
        given = {o.name: options[o.name] for o in MODEL_OPTIONS if o.name != "defense"}
        given["num_classes"] = num_classes_for_weights(options["weights"], options["num_classes"])
        model = model_spec(**given)
    return RunSpec(
        model=model,
        data=data_spec(options),
        defenses=defenses_for_weights(options["weights"], tuple(options["defense"] or ())),
        seed=options["seed"],
        chunk_size=options["chunk_size"],
        batch_size=options["batch_size"],
        workers=options["workers"],
        device=options["device"],
        precision=options["precision"],
        shard=options["shard"],
    )


def budget_list(text: str | None) -> list[float] | None:
    """``"0.01,2/255"`` -> [0.01, 0.00784...]; fractions are allowed because budgets are often k/255."""
    return None if text is None else _budget_list(text)


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


@dataclass(frozen=True)
class ReportOptions:
    """Where an audit command writes its report and how it treats an existing one."""

    out: Path
    resume: bool
    overwrite: bool
    as_json: bool
