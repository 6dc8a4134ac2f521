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
import hashlib
import inspect
import re
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import plugins
from ..errors import InputError, suggest
from ..registry import import_file, import_target
from .finite import MONITOR
from .weights import apply_state_dict, file_sha256, read_state_dict

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Preprocessing:
    """How pixels are normalized for the backbone, and how raw images are brought to its input size."""

    mean: tuple[float, ...] = (0.0, 0.0, 0.0)
    std: tuple[float, ...] = (1.0, 1.0, 1.0)
    input_size: tuple[int, int, int] = (3, 224, 224)
    interpolation: str = "bilinear"
    crop_pct: float = 0.875

    def as_dict(self) -> dict[str, Any]:
        return {
            "mean": list(self.mean),
            "std": list(self.std),
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
        return cls(**fields)


@dataclass
class ModelBuild:
    """What a model factory returns: a backbone expecting normalized input, and its preprocessing."""

    backbone: nn.Module
    preprocessing: Preprocessing
    num_classes: int
    pretrained_from: str | None = None


@dataclass(frozen=True)
class ModelSpec:
    """Everything the user said about the model; part of a run's identity."""

    name: str
    pretrained: bool = False
    weights: str | None = None
    trust_checkpoint: bool = False
    num_classes: int | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
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
        fields: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        return cls(**fields)


class Normalized(nn.Module):
    """``backbone((x - mean) / std)``: the backbone behind a pixel-space interface.

    ``autocast_dtype`` and ``channels_last`` (set by :func:`robaudit.models.precision.apply_precision`) run
    the backbone under autocast and in NHWC layout; the logits are fp32 either way.
    """

    autocast_dtype: torch.dtype | None = None
    channels_last: bool = False

    def __init__(self, backbone: nn.Module, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        if len(mean) != len(std):
            raise InputError(f"mean {mean} and std {std} have different lengths")
        if any(s <= 0 for s in std):
            raise InputError(f"std must be positive, got {std}")
        self.backbone = backbone
        self.mean: torch.Tensor
        self.std: torch.Tensor
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = (pixels - self.mean) / self.std
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if self.autocast_dtype is None:
            return self.backbone(x)
        with torch.autocast(x.device.type, dtype=self.autocast_dtype):
            logits = self.backbone(x)
        return logits.float()


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
        digest = hashlib.sha256()
        for key, tensor in self.base.state_dict().items():
            digest.update(f"{key}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        return digest.hexdigest()

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


def _build(name: str, spec: ModelSpec) -> tuple[ModelBuild, str]:
    factory, inner_name, origin = resolve_factory(name)
    kwargs: dict[str, Any] = {"pretrained": spec.pretrained}
    if spec.num_classes is not None:
        kwargs["num_classes"] = spec.num_classes
    # Randomly initialized weights are drawn from a fixed seed, so that the same spec always gives the same
    # model (reports and resumed runs rely on it); the global RNG state is left as it was.
    try:
        inspect.signature(factory).bind(inner_name, **kwargs)
    except TypeError as exc:
        raise InputError(
            f"{name!r} resolves to {origin}, which is not a model factory: it cannot be called as "
            f"factory(name, {', '.join(f'{k}=...' for k in kwargs)}) ({exc})"
        ) from None
    except ValueError:  # no signature to check (some builtins): the call itself will tell
        pass
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        built = factory(inner_name, **kwargs)
    if isinstance(built, ModelBuild):
        return built, origin
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
        return ModelBuild(built, Preprocessing(input_size=size), int(out.shape[-1])), origin
    raise InputError(f"model factory for {name!r} returned {type(built).__name__}, not a ModelBuild or nn.Module")


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
    build, origin = _build(spec.name, spec)
    provenance: dict[str, Any] = {"model": spec.name, "resolved_by": origin, "pretrained_from": build.pretrained_from}
    if spec.weights is not None:
        path = Path(spec.weights)
        state = read_state_dict(path, trust=spec.trust_checkpoint)
        apply_state_dict(build.backbone, state, source=str(path))
        provenance["weights"] = str(path)
        provenance["weights_sha256"] = file_sha256(path)
    pre = build.preprocessing
    pre = replace(
        pre,
        mean=spec.mean if spec.mean is not None else pre.mean,
        std=spec.std if spec.std is not None else pre.std,
        input_size=spec.input_size if spec.input_size is not None else pre.input_size,
    )
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
