"""Loading any classifier as a module that takes pixels in [0, 1] and returns logits.

A model name is resolved in this order:

* ``path/to/file.py:factory`` — a factory function in a loose Python file;
* ``SOURCE:rest`` where ``SOURCE:`` is a registered model source (``tv:``, ``timm:``, ``hf-hub:``, or a
  plugin's) — the source's factory receives ``rest``;
* a registered model name (built-in or a plugin's, e.g. ``cifar_resnet20``);
* ``package.module:factory`` — an importable factory;
* otherwise a timm model name (``resnet50``, ``resnet50.a1_in1k``).

A factory is called as ``factory(name, pretrained=..., num_classes=...)`` and returns a :class:`ModelBuild`
(the backbone, which expects normalized input, plus its preprocessing) or a plain ``nn.Module`` that takes
pixels in [0, 1]. :func:`load_model` then applies ``--weights``, wraps normalization into the module (so
every audit works in pixel space), freezes the parameters and puts the model in eval mode on its device.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import plugins
from ..errors import InputError, suggest
from ..registry import import_file, import_target
from . import normalization
from .caveats import (
    RANDOM_WEIGHTS,
    UNKNOWN_NORMALIZATION,
    Caveat,
    caveats_of,
    has_state,
    report_caveats,
    state_sha256,
    weights_differ,
)
from .finite import MONITOR
from .weights import apply_state_dict, check_weights_file, file_sha256, read_state_dict

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Preprocessing:
    """How pixels are normalized for the backbone, and how raw images are brought to its input size.

    ``mean`` and ``std`` are per channel, or nested tuples of any shape that broadcasts to the input
    (:mod:`.normalization`: a C×H×W mean image, say)."""

    mean: tuple[Any, ...] = (0.0, 0.0, 0.0)
    std: tuple[Any, ...] = (1.0, 1.0, 1.0)
    input_size: tuple[int, int, int] = (3, 224, 224)
    interpolation: str = "bilinear"
    crop_pct: float = 0.875

    def as_dict(self) -> dict[str, Any]:
        return {
            "mean": normalization.describe(self.mean),
            "std": normalization.describe(self.std),
            "input_size": list(self.input_size),
            "interpolation": self.interpolation,
            "crop_pct": self.crop_pct,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Preprocessing:
        """Inverse of :meth:`as_dict` (unknown keys are ignored: a report may come from a newer version)."""
        fields: dict[str, Any] = {
            k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in cls.__dataclass_fields__
        }
        for key in ("mean", "std"):
            if key not in data:
                continue
            stat = normalization.undescribe(data[key])
            if stat is None:  # a statistic recorded only by its hash cannot be rebuilt: the default stands in
                fields.pop(key)
            else:
                fields[key] = stat
        return cls(**fields)


@dataclass
class ModelBuild:
    """What a model factory returns: a backbone expecting normalized input, and its preprocessing."""

    backbone: nn.Module
    preprocessing: Preprocessing
    num_classes: int
    pretrained_from: str | None = None
    #: True: the factory initialized the weights randomly; False: it loaded them; None: it does not say,
    #: and robaudit finds out by building the model twice (:mod:`robaudit.models.caveats`)
    random_weights: bool | None = None


@dataclass(frozen=True)
class ModelSpec:
    """Everything the user said about the model; part of a run's identity."""

    name: str
    pretrained: bool = False
    weights: str | None = None
    trust_checkpoint: bool = False
    num_classes: int | None = None
    #: per-channel values, nested values of a broadcastable shape, or the path of a .npy file
    mean: tuple[Any, ...] | str | None = None
    std: tuple[Any, ...] | str | None = None
    input_size: tuple[int, int, int] | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelSpec:
        """Inverse of ``dataclasses.asdict`` (JSON turns tuples into lists); a damaged dict is an input error."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known) if isinstance(data, dict) else []
        if not isinstance(data, dict) or unknown or not isinstance(data.get("name"), str):
            raise InputError(
                f"a recorded model spec is damaged ({f'unknown field(s) {unknown}' if unknown else 'no model name'})"
            )
        fields: dict[str, Any] = {k: _tuples(v) if isinstance(v, list) else v for k, v in data.items()}
        return cls(**fields)


def _tuples(value: list[Any]) -> tuple[Any, ...]:
    return tuple(_tuples(v) if isinstance(v, list) else v for v in value)


class Normalized(nn.Module):
    """``backbone((x - mean) / std)``: the backbone behind a pixel-space interface.

    ``autocast_dtype`` and ``channels_last`` (set by :func:`robaudit.models.precision.apply_precision`) run
    the backbone under autocast and in NHWC layout; the logits are fp32 either way.
    """

    autocast_dtype: torch.dtype | None = None
    channels_last: bool = False

    def __init__(self, backbone: nn.Module, mean: tuple[Any, ...], std: tuple[Any, ...]) -> None:
        super().__init__()
        if (normalization.as_array(std) <= 0).any():
            raise InputError(f"std must be positive, got {normalization.describe_short(std)}")
        self.backbone = backbone
        self.mean: torch.Tensor
        self.std: torch.Tensor
        self.register_buffer("mean", normalization.to_tensor(mean, "mean"))
        self.register_buffer("std", normalization.to_tensor(std, "std"))
        #: the (H, W) a per-pixel statistic fixes, checked on every batch for a clear error
        size = [max(a, b) for a, b in zip(self.mean.shape[2:], self.std.shape[2:], strict=True)]
        self._pixel_size = tuple(size) if max(size) > 1 else None

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.run(self.backbone, pixels)

    def run(self, backbone: Callable[[torch.Tensor], Any], pixels: torch.Tensor) -> Any:
        """``backbone`` (this model's backbone, or a module sharing its weights, such as a feature extractor)
        applied as the forward applies it: normalized input, the model's memory format and precision
        (floating-point outputs, nested in dicts or not, come back in fp32)."""
        x = self.normalize(pixels)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if self.autocast_dtype is None:
            return backbone(x)
        with torch.autocast(x.device.type, dtype=self.autocast_dtype):
            out = backbone(x)
        if isinstance(out, dict):
            return {k: v.float() if torch.is_tensor(v) and v.is_floating_point() else v for k, v in out.items()}
        return out.float()

    def normalize(self, pixels: torch.Tensor) -> torch.Tensor:
        """``(pixels - mean) / std``, with a clear error where a per-pixel statistic does not fit the batch."""
        size = self._pixel_size
        if size is not None and any(n not in (1, p) for n, p in zip(size, pixels.shape[-2:], strict=True)):
            raise InputError(
                f"the model's per-pixel normalization is {size[0]}x{size[1]} but the "
                f"images are {pixels.shape[-2]}x{pixels.shape[-1]}; resize the data (imagefolder resizes to "
                "--input-size) or give a statistic of matching size"
            )
        return (pixels - self.mean) / self.std


@dataclass
class LoadedModel:
    """A ready classifier: ``module(pixels in [0,1], NCHW) -> logits``, in eval mode, parameters frozen.

    ``base`` is the undefended pixel model; ``module`` is the same unless defenses were composed onto it
    (:func:`robaudit.defenses.base.compose`), in which case ``defenses`` lists them in order.
    """

    spec: ModelSpec
    module: nn.Module
    base: Normalized
    preprocessing: Preprocessing
    num_classes: int
    device: torch.device
    provenance: dict[str, Any] = field(default_factory=dict)
    defenses: list[Any] = field(default_factory=list)
    #: the forward's precision (:mod:`robaudit.models.precision`)
    precision: str = "fp32"

    @property
    def backbone(self) -> nn.Module:
        return self.base.backbone

    @cached_property
    def fingerprint(self) -> str:
        """sha256 over the base model's state (names, shapes, bytes), normalization included."""
        return state_sha256(self.base)

    @property
    def caveats(self) -> list[Caveat]:
        """What a reader of this model's reports must know (random weights, unknown normalization)."""
        return caveats_of(self.provenance)

    def __call__(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.module(pixels)


def resolve_device(device: str) -> torch.device:
    """``auto`` picks CUDA when available; asking for CUDA without it is an input error. Under torchrun,
    ``auto`` and ``cuda`` mean this process's own GPU, ``cuda:LOCAL_RANK``."""
    from ..distributed import cuda_device

    own = device in ("auto", "cuda") and (device == "cuda" or torch.cuda.is_available())
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        device = cuda_device()
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise InputError(f"--device {device!r} is not a device (use auto, cpu, cuda or cuda:N)") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"--device {device} asked for CUDA, but torch sees no CUDA device here; use --device cpu")
    if own and dev.index is not None:  # a torchrun rank: its GPU is the current one (no context on GPU 0)
        if dev.index >= torch.cuda.device_count():
            raise InputError(
                f"this process is local rank {dev.index} but torch sees {torch.cuda.device_count()} GPU(s) here; "
                "start at most one process per GPU (torchrun --nproc-per-node)"
            )
        torch.cuda.set_device(dev)
    return dev


_FACTORY_RE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


def _file_factory(spec: str) -> Any:
    path_str, _, attr = spec.rpartition(":")
    path = Path(path_str)
    if not path.is_file():
        raise InputError(f"model file {path_str!r} does not exist")
    module = import_file(path, f"robaudit_model_file_{path.stem}_{abs(hash(path.resolve()))}")
    if not hasattr(module, attr):
        names = [n for n in vars(module) if callable(getattr(module, n)) and not n.startswith("_")]
        raise InputError(f"{path_str} has no factory {attr!r}{suggest(attr, names)}")
    return getattr(module, attr)


def resolve_factory(name: str) -> tuple[Any, str, str]:
    """``(factory, name passed to it, description of where it came from)`` for a model name."""
    if not name:
        raise InputError("--model is empty")
    prefix, sep, rest = name.partition(":")
    if sep and name.rpartition(":")[0].endswith(".py"):
        return _file_factory(name), name.rpartition(":")[2], f"file {name.rpartition(':')[0]}"
    if sep and f"{prefix}:" in plugins.models:
        entry = plugins.models.entry(f"{prefix}:")
        source_name = name if prefix == "hf-hub" else rest
        return entry.load(), source_name, f"{entry.name} ({entry.source})"
    if name in plugins.models:
        entry = plugins.models.entry(name)
        return entry.load(), name, entry.source
    sources = [n for n in plugins.models.names() if n.endswith(":")]
    if sep and _FACTORY_RE.match(name):
        try:
            return import_target(name), name, f"factory {name}"
        except (ImportError, AttributeError) as exc:
            if "." in prefix:
                raise InputError(f"cannot import model factory {name!r}: {exc}") from exc
            # A bare word before the colon is more likely a mistyped source than a top-level module.
            raise InputError(
                f"unknown model source {prefix + ':'!r}{suggest(prefix + ':', sources)} and no factory "
                f"{name!r} to import; known sources: {', '.join(sources)}"
            ) from exc
    if sep:
        raise InputError(
            f"unknown model source {prefix + ':'!r}{suggest(prefix + ':', sources)}; known: {', '.join(sources)}"
        )
    entry = plugins.models.entry("timm:")
    return entry.load(), name, f"timm: ({entry.source})"


@dataclass
class _Built:
    """A factory's result, where it came from, and how to build it again (for the weights probe)."""

    build: ModelBuild
    origin: str
    bare: bool
    construct: Any  # (seed) -> the factory's raw result


def _build(name: str, spec: ModelSpec) -> _Built:
    factory, inner_name, origin = resolve_factory(name)
    kwargs: dict[str, Any] = {"pretrained": spec.pretrained}
    if spec.num_classes is not None:
        kwargs["num_classes"] = spec.num_classes
    try:
        inspect.signature(factory).bind(inner_name, **kwargs)
    except TypeError as exc:
        raise InputError(
            f"{name!r} resolves to {origin}, which is not a model factory: it cannot be called as "
            f"factory(name, {', '.join(f'{k}=...' for k in kwargs)}) ({exc})"
        ) from None
    except ValueError:  # no signature to check (some builtins): the call itself will tell
        pass

    def construct(seed: int) -> Any:
        # Randomly initialized weights are drawn from a fixed seed, so that the same spec always gives the
        # same model (reports and resumed runs rely on it); the global RNG state is left as it was.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return factory(inner_name, **kwargs)

    built = construct(0)
    if isinstance(built, ModelBuild):
        return _Built(built, origin, False, construct)
    if isinstance(built, nn.Module):
        # A bare module takes pixels directly unless --mean/--std say otherwise; its class count is
        # read from one forward pass at the declared input size.
        size = spec.input_size or (3, 224, 224)
        try:
            with torch.no_grad():
                out = built.eval()(torch.zeros(1, *size))
        except RuntimeError as exc:
            raise InputError(
                f"model {name!r} is a plain nn.Module and fails on a {size} input "
                f"({str(exc).splitlines()[0]}); pass --input-size C,H,W"
            ) from exc
        return _Built(ModelBuild(built, Preprocessing(input_size=size), int(out.shape[-1])), origin, True, construct)
    raise InputError(f"model factory for {name!r} returned {type(built).__name__}, not a ModelBuild or nn.Module")


#: the seed of the probe's second construction (the model itself is built under seed 0)
PROBE_SEED = 1


def _weights_origin(spec: ModelSpec, built: _Built) -> str:
    """Where the audited weights come from (:mod:`.caveats`); builds the model a second time only when the
    factory does not say whether its weights are random."""
    build = built.build
    if spec.weights is not None:
        return "checkpoint"
    if not has_state(build.backbone):
        return "none"
    if build.pretrained_from is not None:
        return "pretrained"
    if build.random_weights is not None:
        return "random" if build.random_weights else "factory"
    again = built.construct(PROBE_SEED)
    other = again.backbone if isinstance(again, ModelBuild) else again
    differ = isinstance(other, nn.Module) and weights_differ(build.backbone, other)
    del again, other
    return "random" if differ else "factory"


def _caveats(spec: ModelSpec, built: _Built, weights_origin: str) -> list[Caveat]:
    caveats = []
    if weights_origin == "random":
        if spec.pretrained:
            why = (
                f"it was asked for pretrained weights, but its factory ({built.origin}) ignored pretrained=True: "
                "two constructions under different random seeds hold different parameters"
            )
        else:
            why = "neither --pretrained nor --weights was given"
        caveats.append(Caveat(RANDOM_WEIGHTS, f"random weights: {why}, so the audit measures an untrained network"))
    if built.bare and spec.mean is None and spec.std is None:
        caveats.append(
            Caveat(
                UNKNOWN_NORMALIZATION,
                "unknown normalization: the factory returned a bare module, which is fed pixels in [0, 1] as they "
                "are; pass --mean and --std if it expects normalized input",
            )
        )
    return caveats


def load_model(spec: ModelSpec, device: str = "auto", *, precision: str = "fp32") -> LoadedModel:
    """Build, load weights, wrap normalization, freeze, eval mode, move to ``device``, set the ``precision``
    of the forward (:mod:`robaudit.models.precision`)."""
    from .precision import apply_precision, check_precision

    if spec.num_classes is not None and spec.num_classes < 1:
        raise InputError(f"--num-classes must be >= 1, got {spec.num_classes}")
    if spec.input_size is not None and min(spec.input_size) < 1:
        raise InputError(f"--input-size must be positive C,H,W, got {','.join(map(str, spec.input_size))}")
    check_precision(precision)
    dev = resolve_device(device)
    if dev.type == "cuda":
        # cuDNN tries its algorithms once per input shape and keeps the fastest: a fixed cost paid on the
        # first batch of a run, then never again (audits keep their batch shapes)
        torch.backends.cudnn.benchmark = True
    # files of the wrong kind are found before the model is built
    if spec.weights is not None:
        check_weights_file(Path(spec.weights))
    mean = normalization.read_stat(spec.mean, "--mean") if spec.mean is not None else None
    std = normalization.read_stat(spec.std, "--std") if spec.std is not None else None
    built = _build(spec.name, spec)
    build = built.build
    pre = replace(
        build.preprocessing,
        mean=mean if mean is not None else build.preprocessing.mean,
        std=std if std is not None else build.preprocessing.std,
        input_size=spec.input_size if spec.input_size is not None else build.preprocessing.input_size,
    )
    for option, stat in (("--mean", pre.mean), ("--std", pre.std)):
        normalization.check_stat(stat, option, pre.input_size, positive=option == "--std")
    provenance: dict[str, Any] = {
        "model": spec.name,
        "resolved_by": built.origin,
        "pretrained_from": build.pretrained_from,
    }
    if spec.weights is not None:
        path = Path(spec.weights)
        state = read_state_dict(path, trust=spec.trust_checkpoint)
        apply_state_dict(build.backbone, state, source=str(path))
        provenance["weights"] = str(path)
        provenance["weights_sha256"] = file_sha256(path)
    weights_origin = _weights_origin(spec, built)
    caveats = _caveats(spec, built, weights_origin)
    provenance["weights_origin"] = weights_origin
    # the weights themselves, however they were loaded (a factory's own download has no file to hash)
    provenance["parameters_sha256"] = state_sha256(build.backbone)
    provenance["caveats"] = [c.as_dict() for c in caveats]
    report_caveats(spec.name, caveats)
    files = {k: v for k, v in (("mean", spec.mean), ("std", spec.std)) if isinstance(v, str)}
    if files:
        provenance["normalization_files"] = files
    module = Normalized(build.backbone, pre.mean, pre.std).to(dev).eval()
    # Audits differentiate with respect to the input only; frozen parameters skip needless weight
    # gradients (a large saving for iterative attacks).
    module.requires_grad_(False)
    MONITOR.watch(module)
    loaded = LoadedModel(
        spec=spec,
        module=module,
        base=module,
        preprocessing=pre,
        num_classes=build.num_classes,
        device=dev,
        provenance=provenance,
    )
    return apply_precision(loaded, precision)
