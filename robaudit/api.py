"""robaudit from Python: load and defend models, run any audit on tensors, datasets or data sources.

The command line and this module run the same code: an audit run here writes the same Parquet report as
the command (in a temporary folder unless ``out=`` names one, which also makes a long run resumable), and
returns it as a :class:`Result` in memory — its rows as a DataFrame, the summary the command prints, the
audit's metrics, tables and figures — that :meth:`Result.save` writes where you want it.

* :func:`load_model` gives a model by name (timm, torchvision, Hugging Face, a plugin's, a file's), a
  plain ``nn.Module`` from pixels in [0, 1] to logits that carries its preprocessing and provenance;
* :func:`defend` composes defenses around any model, your own ``nn.Module`` included;
* :func:`audit` runs a registered audit by name; every audit is also a function of the package, named
  after it (``robaudit.attack``, ``robaudit.corruptions``, ``robaudit.fourier_map``, a plugin's too).

A model is a name, a loaded model or any ``nn.Module`` that takes pixels in [0, 1]; data is a data-source
spec (``"digits"``, ``"npz:test.npz"``, ...), a pair ``(images, labels)`` of tensors or arrays, or a torch
``Dataset`` / ``DataLoader`` yielding ``(image, label)`` (read once into memory).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import InputError

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa
    import torch
    from matplotlib.figure import Figure
    from torch import nn

    from .audits.base import Audit
    from .data import Dataset
    from .models import LoadedModel
    from .reports.content import Table
    from .reports.metrics import Metric

ModelLike = Any  # a name or an nn.Module from pixels in [0, 1] to logits
DataLike = Any  # a data-source spec, (images, labels), a torch Dataset or DataLoader


# -- models ----------------------------------------------------------------------------------------------------


def load_model(
    name: str,
    *,
    weights: str | Path | None = None,
    pretrained: bool = False,
    defenses: tuple[str, ...] | list[str] = (),
    device: str = "auto",
    num_classes: int | None = None,
    mean: Any = None,
    std: Any = None,
    input_size: tuple[int, int, int] | None = None,
    trust_checkpoint: bool = False,
    precision: str = "fp32",
) -> nn.Module:
    """The model ``name`` (as ``--model`` names it) with its weights and ``defenses``: a plain ``nn.Module``
    from pixels in [0, 1] to logits, in eval mode with frozen parameters, carrying ``preprocessing``,
    ``provenance``, ``num_classes`` and ``defenses`` as attributes."""
    from .defenses.base import compose
    from .models import ModelSpec
    from .models import load_model as load
    from .models.wrap import as_module

    spec = ModelSpec(
        name=name,
        pretrained=pretrained,
        weights=str(weights) if weights is not None else None,
        trust_checkpoint=trust_checkpoint,
        num_classes=num_classes,
        mean=_floats(mean),
        std=_floats(std),
        input_size=tuple(input_size) if input_size is not None else None,  # type: ignore[arg-type]
    )
    return as_module(compose(load(spec, device, precision=precision), list(defenses)))


def _floats(value: Any) -> tuple[float, ...] | None:
    return None if value is None else tuple(float(v) for v in value)


def defend(
    model: ModelLike,
    *defenses: str,
    device: str = "auto",
    input_size: tuple[int, int, int] | None = None,
) -> nn.Module:
    """``model`` behind ``defenses`` (``"blur:sigma=1"``, ``"cache:path=..."``, in order, after any it
    has): any ``nn.Module`` from pixels in [0, 1] to logits, or a name. A module robaudit did not load is
    read from one forward pass on zeros of ``input_size`` (C, H, W)."""
    import torch

    from .defenses.base import compose
    from .models.wrap import as_module

    sample = torch.zeros(1, *input_size) if input_size is not None else None
    loaded = as_model(model, device, sample)
    undefended = replace(loaded, module=loaded.base, defenses=[])
    return as_module(compose(undefended, [*(spec_text(d) for d in loaded.defenses), *defenses]))


def spec_text(defense: Any) -> str:
    """A composed defense back as the ``NAME:key=value,...`` text that builds it."""
    items = ",".join(f"{k}={v}" for k, v in defense.params.items() if v is not None)
    return f"{defense.name}:{items}" if items else str(defense.name)


def as_model(model: ModelLike, device: str = "auto", sample: torch.Tensor | None = None) -> LoadedModel:
    """A loaded model for any model-like value: a name is loaded, a module from :func:`load_model` or
    :func:`defend` led back to its model, any other ``nn.Module`` wrapped (it must take pixels in [0, 1];
    its class count is read from one forward pass on ``sample``)."""
    from torch import nn

    from .models import LoadedModel
    from .models.wrap import wrap_module

    if isinstance(model, LoadedModel):
        return model
    if isinstance(model, str):
        return as_model(load_model(model, device=device))
    if isinstance(model, nn.Module):
        if sample is None and not hasattr(model, "robaudit_model"):
            raise InputError(
                f"{type(model).__name__} is not a robaudit model: give input_size=(C, H, W) (or data) so that "
                "robaudit can read its class count from one forward pass"
            )
        return wrap_module(model, device=device, sample=sample)
    raise InputError(f"model must be a name or an nn.Module, got {type(model).__name__}")


# -- data ------------------------------------------------------------------------------------------------------


def as_data(data: DataLike) -> tuple[str, Dataset | None]:
    """A data-source spec (``str``, loaded by the runner), or data held in memory with its description."""
    from .data.memory import TensorDataset, from_torch

    if isinstance(data, str):
        return data, None
    if isinstance(data, TensorDataset):
        held = data
    elif isinstance(data, (tuple, list)) and len(data) == 2:
        held = TensorDataset(*data)
    elif hasattr(data, "__iter__") or (hasattr(data, "__getitem__") and hasattr(data, "__len__")):
        held = from_torch(data)
    else:
        raise InputError(
            "data must be a data-source spec (e.g. 'digits', 'npz:test.npz'), a pair (images, labels), "
            f"or a torch Dataset / DataLoader, got {type(data).__name__}"
        )
    return f"python:{held.description}", held


# -- results ---------------------------------------------------------------------------------------------------


@dataclass
class Result:
    """A finished audit: the report's ``table`` and ``metadata`` in memory, and its ``summary``."""

    audit: type[Audit]
    #: the report file's bytes, exactly as the command line writes it
    content: bytes = field(repr=False)
    rows: pd.DataFrame = field(repr=False)
    metadata: dict[str, Any] = field(repr=False)
    summary: dict[str, Any]
    #: where the report was written with ``out=`` (None when it lives only in memory)
    path: Path | None = None
    _report: Any = field(default=None, repr=False)

    @cached_property
    def table(self) -> pa.Table:
        """The rows as the Arrow table of the report (with its metadata)."""
        import io

        import pyarrow.parquet as pq

        return pq.read_table(io.BytesIO(self.content))

    def report(self) -> Any:
        from .reports.folder import Report

        if self._report is None:
            label = f"{self.audit.name}.parquet"
            self._report = Report(self.audit.name, [self.path or Path(label)], self.rows, self.metadata, self.summary)
            self._report.name = label
        return self._report

    def metrics(self) -> dict[str, Metric]:
        """The named metrics the gate reads, by name."""
        return {m.name: m for m in self.audit.metrics(self.summary, self.metadata)}

    def tables(self) -> list[Table]:
        return self.audit.tables(self.summary, self.metadata)

    def figures(self) -> dict[str, Figure]:
        """The audit's figures (matplotlib), by name."""
        return {spec.name: spec.figure for spec in self.audit.figures(self.report())}

    def save(self, folder: str | Path) -> Path:
        """Write the report as ``folder/<audit>.parquet`` (the file the command line writes) and return it."""
        import os

        from .reports.writer import check_output_file

        target = Path(folder) / f"{self.audit.name}.parquet"
        check_output_file(target, "save")
        tmp = target.with_name(target.name + ".tmp")
        tmp.write_bytes(self.content)
        os.replace(tmp, target)
        return target

    def __repr__(self) -> str:
        scalars = {k: v for k, v in self.summary.items() if isinstance(v, (int, float, str, bool)) and v is not None}
        shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in list(scalars.items())[:6])
        return f"<robaudit {self.audit.name} result: {len(self.rows)} rows; {shown}>"


# -- running an audit ------------------------------------------------------------------------------------------


def audit(
    name: str,
    model: ModelLike | None,
    data: DataLike = "digits",
    *,
    out: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    seed: int = 0,
    split: str | None = None,
    limit: int | None = None,
    indices: str | None = None,
    batch_size: int | None = None,
    chunk_size: int | None = None,
    workers: int = 0,
    device: str = "auto",
    shard: str | None = None,
    precision: str = "fp32",
    progress: bool = False,
    **options: Any,
) -> Result:
    """Run the registered audit ``name`` on ``model`` and ``data`` with its own ``options`` (as its command
    takes them: ``eps=[8/255]`` or ``eps="8/255"`` alike) and return the :class:`Result`.

    ``out`` keeps the report in that folder (``resume`` continues an interrupted run there); without it the
    report is written to a temporary folder and removed once read.
    """
    import numpy as np

    from . import plugins
    from .data import DataSpec
    from .reports.read import read_report, summarize
    from .runner import RunSpec, run_audit

    kind = plugins.audits.get(name)
    source, held = as_data(data)
    if held is None and _unloaded_module(model):
        # a module robaudit did not load is read from one forward pass on the data: load the source here
        # (images at their own size, or the default 224 crop for a folder of photographs)
        from .data import load_dataset
        from .models import Preprocessing

        held = load_dataset(DataSpec(source=source, split=split), Preprocessing())
    sample = held.load(np.arange(1)).images if held is not None else None
    loaded = as_model(model, device, sample) if model is not None else None
    spec = RunSpec(
        model=loaded.spec if loaded is not None else None,
        data=DataSpec(source=source, split=split, limit=limit, indices=indices),
        seed=seed,
        chunk_size=chunk_size or kind.chunk_size,
        batch_size=batch_size or kind.batch_size,
        workers=workers,
        device=device,
        shard=shard,
        precision=precision,
    )
    built = kind.build(spec, options)
    hook = _progress(name) if progress else None
    with tempfile.TemporaryDirectory(prefix="robaudit-") as scratch:
        folder = Path(out) if out is not None else Path(scratch)
        result = run_audit(
            built,
            spec,
            folder,
            resume=resume,
            overwrite=overwrite,
            progress=hook,
            model=loaded,
            dataset=held,
        )
        rows, meta = read_report(result.path)
        _, summary = summarize(rows, meta, result.path)
        content = result.path.read_bytes()
    return Result(type(built), content, rows, meta, summary, result.path if out is not None else None)


def _unloaded_module(model: Any) -> bool:
    from torch import nn

    return isinstance(model, nn.Module) and not hasattr(model, "robaudit_model")


def _progress(name: str) -> Any:
    import sys

    from .cli.output import plain_progress

    return plain_progress(name, lambda line: print(line, file=sys.stderr, flush=True), every=5.0)


# -- one function per audit ------------------------------------------------------------------------------------


def audit_function(name: str) -> Any:
    """``robaudit.<name>(model, data, **options)``: :func:`audit` for the registered audit ``name``, with its
    options listed in the docstring (generated from the registry, so a plugin's audit has one too)."""
    from . import plugins

    kind = plugins.audits.get(name)

    def run(model: ModelLike = None, data: DataLike = "digits", **options: Any) -> Result:
        return audit(name, model, data, **options)

    lines = [f"Run the {kind.title or name} audit (``robaudit {name}``) and return its :class:`Result`.", ""]
    lines += [f"{kind.__doc__ or ''}".strip(), "", "Options (keyword arguments):"]
    for option in kind.options:
        default = f" Default {option.default!r}." if option.default is not None else ""
        lines.append(f"    {option.name}: {option.help}{default}")
    run.__name__ = run.__qualname__ = python_name(name)
    run.__doc__ = "\n".join(lines)
    return run


def python_name(audit_name: str) -> str:
    """An audit's name as a Python identifier: ``fourier-map`` -> ``fourier_map``."""
    return audit_name.replace("-", "_")


def audit_for_attribute(attribute: str) -> str | None:
    """The registered audit a package attribute names (``fourier_map`` -> ``fourier-map``), if any."""
    from . import plugins

    for name in plugins.audits.names():
        if python_name(name) == attribute:
            return name
    return None
