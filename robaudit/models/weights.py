"""Reading checkpoints safely and applying them with messages that say exactly what does not fit.

The file's kind is recognized by its first bytes (:mod:`.formats`): safetensors files are read directly,
PyTorch checkpoints go through ``torch.load(weights_only=True)``, which refuses pickles that would execute
code; those load only when the user passes ``--trust-checkpoint``.
Common wrappers are unwrapped: ``{"state_dict": ...}``, ``{"model": ...}``, ``{"model_state_dict": ...}``,
``{"module": ...}`` and the ``module.`` prefix that ``DataParallel`` adds to every key.
"""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import InputError
from .formats import check_weights_file

_NESTED_KEYS = ("state_dict", "model_state_dict", "model", "module", "net", "network")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _torch_load(path: Path, trust: bool) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if not trust:
            raise InputError(
                f"checkpoint {path} is a pickle that needs code execution to load (it is not a plain state "
                "dict); only if you trust where it came from, pass --trust-checkpoint"
            ) from exc
    except Exception as exc:
        raise InputError(f"cannot read checkpoint {path}: {type(exc).__name__}: {str(exc).splitlines()[0]}") from exc
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise InputError(f"cannot read checkpoint {path}: {type(exc).__name__}: {exc}") from exc


def _unwrap(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(obj, nn.Module):
        obj = obj.state_dict()
    for _ in range(3):
        if isinstance(obj, dict) and not any(isinstance(v, torch.Tensor) for v in obj.values()):
            nested = next((obj[k] for k in _NESTED_KEYS if isinstance(obj.get(k), (dict, nn.Module))), None)
            if nested is None:
                break
            obj = nested.state_dict() if isinstance(nested, nn.Module) else nested
    if not isinstance(obj, dict) or not obj:
        raise InputError(f"checkpoint {path} holds no state dict (found {type(obj).__name__})")
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise InputError(f"checkpoint {path} holds no tensors; keys: {', '.join(list(obj)[:8])}")
    if all(k.startswith("module.") for k in tensors):
        tensors = {k[len("module.") :]: v for k, v in tensors.items()}
    return tensors


def read_state_dict(path: Path, *, trust: bool = False) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint file, unwrapped, on the CPU."""
    kind = check_weights_file(path)
    if kind.reader == "safetensors":
        from safetensors.torch import load_file

        try:
            return _unwrap(load_file(str(path), device="cpu"), path)
        except Exception as exc:
            raise InputError(f"cannot read safetensors file {path}: {exc}") from exc
    return _unwrap(_torch_load(path, trust), path)


def _short(keys: list[str], n: int = 6) -> str:
    return ", ".join(keys[:n]) + (f" and {len(keys) - n} more" if len(keys) > n else "")


def apply_state_dict(model: nn.Module, state: dict[str, torch.Tensor], *, source: str) -> None:
    """Load ``state`` into ``model`` strictly; a mismatch says which keys or shapes differ."""
    own = model.state_dict()
    # Checkpoints saved before PyTorch 0.4.1 have no BatchNorm step counters; they are bookkeeping
    # (used only with momentum=None), so the model's own values stand in.
    state = {**{k: v for k, v in own.items() if k.endswith(".num_batches_tracked") and k not in state}, **state}
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [
        (k, tuple(state[k].shape), tuple(v.shape))
        for k, v in own.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    if shapes:
        detail = "; ".join(f"{k}: checkpoint {a}, model {b}" for k, a, b in shapes[:4])
        hint = ""
        last_key, ck_shape, model_shape = shapes[-1]
        head_like = last_key.endswith(("weight", "bias")) and len(ck_shape) >= 1 and len(model_shape) >= 1
        if head_like and ck_shape[1:] == model_shape[1:]:
            hint = f" (the checkpoint has {ck_shape[0]} outputs; pass --num-classes {ck_shape[0]})"
        raise InputError(f"weights {source} do not fit the model: shape mismatch in {detail}{hint}")
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing from the checkpoint: {_short(missing)}")
        if unexpected:
            parts.append(f"not in the model: {_short(unexpected)}")
        raise InputError(f"weights {source} do not fit the model: {'; '.join(parts)}")
    model.load_state_dict(state, strict=True)
