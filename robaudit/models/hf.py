"""Hugging Face transformers image classifiers: ``hf:org/name`` or ``hf:/path/to/folder``.

``AutoModelForImageClassification`` builds the model (ViT, DeiT, BEiT, ConvNeXt, Swin, ... any
architecture transformers maps to image classification), and the model's image processor
(``AutoImageProcessor``) gives its preprocessing: mean, std, input size, resampling and crop fraction. The
model is wrapped to take a pixel tensor and return its logits, like every other backbone.

This is not ``hf-hub:``: that source builds *timm* models whose weights are stored on the hub
(``hf-hub:timm/resnet50.a1_in1k``); ``hf:`` builds *transformers* models (``hf:google/vit-base-patch16-224``).

Without ``--pretrained`` the architecture is built from its ``config.json`` with random weights, as for the
other sources; with it the weights are loaded. A repository id needs the Hugging Face cache or the network;
the cache is checked first and a miss fails at once (:mod:`.downloads`) with the ways to work offline: a
local folder written by ``save_pretrained``, or a copied cache (``HF_HOME``) with ``HF_HUB_OFFLINE=1``.
transformers is an optional dependency (``pip install 'robaudit[hf]'``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import InputError, RunError
from . import ModelBuild, Preprocessing
from .downloads import hf_offline, require_hf

_WEIGHT_FILES = (
    "model.safetensors",
    "pytorch_model.bin",
    "model.safetensors.index.json",
    "pytorch_model.bin.index.json",
)
_CONFIG_FILES = ("config.json", "preprocessor_config.json")
# PIL's resampling filters by number, as image processors store them
_RESAMPLE = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"}


def offline_alternatives() -> str:
    from huggingface_hub import constants

    return (
        "pass a local folder written by save_pretrained (--model hf:/path/to/folder), or copy the Hugging Face "
        f"cache ({constants.HF_HUB_CACHE}; HF_HOME moves it) from a machine with internet and set HF_HUB_OFFLINE=1"
    )


class TransformersLogits(nn.Module):
    """A transformers image classifier as a backbone: ``backbone(normalized pixels) -> logits``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=pixels).logits

    def get_classifier(self) -> nn.Module:
        """The classification head (for the cache's ``penultimate`` features)."""
        head = getattr(self.model, "classifier", None)
        return head if isinstance(head, nn.Module) else nn.Identity()


def _field(container: Any, key: str) -> Any:
    if container is None:
        return None
    if isinstance(container, dict):
        return container.get(key)
    return getattr(container, key, None)


def _pair(size: Any) -> tuple[int, int] | None:
    """(H, W) of an image processor's size: height/width, or a square of its shortest edge."""
    if isinstance(size, int):
        return size, size
    height, width = _field(size, "height"), _field(size, "width")
    if height and width:
        return int(height), int(width)
    edge = _field(size, "shortest_edge")
    return (int(edge), int(edge)) if edge else None


def _interpolation(resample: Any) -> str:
    value = getattr(resample, "value", resample)
    if isinstance(value, str):
        return value
    return _RESAMPLE.get(int(value), "bilinear") if value is not None else "bilinear"


def preprocessing_of(processor: Any, channels: int) -> Preprocessing:
    """The preprocessing an image processor applies: its normalization, the size the model sees (the crop
    when it center-crops), its resampling and the crop fraction."""
    normalize = _field(processor, "do_normalize") is not False
    mean = _field(processor, "image_mean") if normalize else None
    std = _field(processor, "image_std") if normalize else None
    resized = _pair(_field(processor, "size"))
    cropped = _pair(_field(processor, "crop_size")) if _field(processor, "do_center_crop") else None
    seen = cropped or resized
    if seen is None:
        raise InputError(f"the image processor {type(processor).__name__} names no input size; pass --input-size")
    crop_pct = _field(processor, "crop_pct")
    if crop_pct is None:
        crop_pct = cropped[0] / resized[0] if cropped and resized else 1.0
    return Preprocessing(
        mean=tuple(float(v) for v in mean) if mean is not None else (0.0,) * channels,
        std=tuple(float(v) for v in std) if std is not None else (1.0,) * channels,
        input_size=(channels, *seen),
        interpolation=_interpolation(_field(processor, "resample")),
        crop_pct=float(crop_pct),
    )


def _source(name: str, pretrained: bool) -> tuple[str, bool]:
    """The folder or repository id to load from, and whether the hub client must stay offline."""
    if not name:
        raise InputError("hf: needs a model: hf:org/name (a Hugging Face repository) or hf:/path/to/folder")
    folder = Path(name).expanduser()
    if folder.is_dir():
        missing = [f for f in ("config.json",) if not (folder / f).is_file()]
        if missing:
            raise InputError(f"{folder} is not a save_pretrained folder: it has no {', '.join(missing)}")
        return str(folder), True
    if name.startswith(("/", ".", "~")) or name.count("/") > 1:
        raise InputError(f"hf:{name}: no such folder (a repository id is org/name)")
    what = "pretrained weights of the transformers model" if pretrained else "the transformers model's config.json"
    offline = require_hf(
        name,
        _WEIGHT_FILES if pretrained else (),
        what,
        all_of=_CONFIG_FILES,
        alternatives=offline_alternatives(),
    )
    return name, offline


def transformers_model(
    name: str, *, pretrained: bool = False, num_classes: int | None = None, **kwargs: Any
) -> ModelBuild:
    """A transformers image classifier: ``hf:google/vit-base-patch16-224`` or ``hf:/path/to/folder``."""
    try:
        from transformers import AutoConfig, AutoImageProcessor, AutoModelForImageClassification
    except ImportError:
        raise InputError("hf: models need transformers: pip install 'robaudit[hf]'") from None
    from transformers.utils import logging as hf_logging

    source, offline = _source(name.removeprefix("hf:"), pretrained)
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # robaudit shows its own progress; the library's bars are noise on stderr
    try:
        with hf_offline(offline):
            config: Any = AutoConfig.from_pretrained(source)
            processor = AutoImageProcessor.from_pretrained(source)
            extra: dict[str, Any] = dict(kwargs)
            if pretrained:
                if num_classes is not None and num_classes != config.num_labels:
                    extra.update(num_labels=num_classes, ignore_mismatched_sizes=True)
                model: Any = AutoModelForImageClassification.from_pretrained(source, **extra)
            else:
                if num_classes is not None:
                    config.num_labels = num_classes
                model = AutoModelForImageClassification.from_config(config, **extra)
    except (OSError, ValueError) as exc:
        # a repository that is not an image classifier, or files that are not where the config says
        raise RunError(f"cannot load transformers model {source}: {str(exc).splitlines()[0]}") from exc
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    channels = int(getattr(config, "num_channels", 3))
    return ModelBuild(
        TransformersLogits(model),
        preprocessing_of(processor, channels),
        int(model.config.num_labels),
        source if pretrained else None,
        random_weights=not pretrained,
    )
