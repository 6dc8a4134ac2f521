"""The built-in model sources: timm (default for bare names, ``timm:``, ``hf-hub:``) and torchvision (``tv:``).

Each reads the model's own preprocessing (mean, std, input size, interpolation, crop) from the library:
timm's pretrained config, torchvision's weight enums. Pretrained downloads go through the libraries' real
code after a fast offline check (:mod:`robaudit.models.downloads`).
"""

from __future__ import annotations

from typing import Any

from ..errors import InputError, RunError, suggest
from . import ModelBuild, Preprocessing
from .downloads import hf_offline, require_hf, require_url, torch_hub_cached

_HF_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin")


def _timm_preprocessing(model: Any) -> Preprocessing:
    from timm.data import resolve_data_config

    cfg = resolve_data_config({}, model=model)
    return Preprocessing(
        mean=tuple(cfg["mean"]),
        std=tuple(cfg["std"]),
        input_size=tuple(cfg["input_size"]),
        interpolation=str(cfg.get("interpolation", "bilinear")),
        crop_pct=float(cfg.get("crop_pct", 0.875)),
    )


def timm_model(name: str, *, pretrained: bool = False, num_classes: int | None = None, **kwargs: Any) -> ModelBuild:
    """Any timm model: ``resnet50``, ``resnet50.a1_in1k``, ``hf-hub:org/name``."""
    import timm

    offline = False
    if name.startswith("hf-hub:"):
        # hf-hub models read their config from the hub even without pretrained weights.
        repo = name.split(":", 1)[1]
        offline = require_hf(
            repo,
            _HF_WEIGHT_FILES if pretrained else (),
            f"model {name} (its config.json is needed even with --weights)",
            all_of=("config.json",),
            weights_help=False,
        )
    else:
        if not timm.is_model(name):
            raise InputError(
                f"unknown model {name!r}{suggest(name, _known_model_names())} "
                "(run `robaudit models` to list sources and plugin models)"
            )
        if pretrained:
            offline = _prepare_timm_download(name)
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    try:
        with hf_offline(offline):
            model = timm.create_model(name, pretrained=pretrained, **kwargs)
    except RuntimeError as exc:
        if any(m in str(exc) for m in ("Unknown model", "No pretrained weights", "Invalid pretrained tag")):
            tags = timm.list_pretrained(f"{name.partition('.')[0]}.*")
            raise InputError(f"{exc}" + (f"; available: {', '.join(tags)}" if tags else "")) from exc
        raise
    pretrained_from = None
    if pretrained:
        cfg = getattr(model, "pretrained_cfg", {}) or {}
        pretrained_from = cfg.get("hf_hub_id") or cfg.get("url") or name
    return ModelBuild(
        model,
        _timm_preprocessing(model),
        int(model.num_classes),  # type: ignore[arg-type]
        pretrained_from,
        random_weights=not pretrained,
    )


def _prepare_timm_download(name: str) -> bool:
    import timm
    from timm.models import get_pretrained_cfg

    arch, _, tag = name.partition(".")
    available = timm.list_pretrained(f"{arch}.*")
    if not available:
        raise InputError(f"timm has no pretrained weights for {arch!r}; use --weights PATH")
    if tag and name not in available:
        raise InputError(
            f"timm has no pretrained tag {name!r}{suggest(name, available)}; available: {', '.join(available)}"
        )
    cfg = get_pretrained_cfg(name)
    if cfg is None:
        raise InputError(f"timm has no pretrained config for {name!r}")
    if cfg.hf_hub_id:
        return require_hf(cfg.hf_hub_id.split("@")[0], _HF_WEIGHT_FILES, f"pretrained weights for {name}")
    url = cfg.url if isinstance(cfg.url, str) else None
    if url:
        if not torch_hub_cached(url):
            require_url(url, f"pretrained weights for {name}")
        return False
    raise RunError(f"timm's config for {name!r} names no download location; use --weights PATH")


def _known_model_names() -> list[str]:
    import timm
    import torchvision

    from .. import plugins

    names = list(timm.list_models()) + [f"tv:{n}" for n in torchvision.models.list_models(module=torchvision.models)]
    return names + plugins.models.names()


def torchvision_model(
    name: str, *, pretrained: bool = False, num_classes: int | None = None, **kwargs: Any
) -> ModelBuild:
    """A torchvision classification model: ``tv:resnet50`` or ``tv:resnet50.IMAGENET1K_V1``."""
    import torchvision
    from torchvision.models import get_model, get_model_weights

    arch, _, tag = name.partition(".")
    available = torchvision.models.list_models(module=torchvision.models)
    if arch not in available:
        raise InputError(f"unknown torchvision model {arch!r}{suggest(arch, available)}")
    enum = get_model_weights(arch)
    if tag:
        try:
            weights = enum[tag]
        except KeyError:
            raise InputError(
                f"torchvision has no weights {name!r}; available: {', '.join(w.name for w in enum)}"
            ) from None
    else:
        weights = enum.DEFAULT
    categories = len(weights.meta["categories"])
    if pretrained:
        if num_classes is not None and num_classes != categories:
            raise InputError(
                f"{weights} has {categories} classes, not {num_classes}; "
                "use --weights for a checkpoint with your classes"
            )
        if not torch_hub_cached(weights.url):
            require_url(weights.url, f"pretrained weights {weights}")
        try:
            model = get_model(arch, weights=weights, **kwargs)
        except Exception as exc:
            raise RunError(f"loading {weights} failed: {exc}") from exc
    else:
        model = get_model(arch, weights=None, num_classes=num_classes or categories, **kwargs)
    # The weights' own transforms describe the preprocessing even when the weights are not downloaded.
    tf = weights.transforms()
    crop = int(tf.crop_size[0])
    resize = int(tf.resize_size[0])
    classes = num_classes or categories
    pre = Preprocessing(
        mean=tuple(tf.mean),
        std=tuple(tf.std),
        input_size=(3, crop, crop),
        interpolation=str(tf.interpolation.value),
        crop_pct=crop / resize,
    )
    return ModelBuild(model, pre, int(classes), weights.url if pretrained else None, random_weights=not pretrained)
