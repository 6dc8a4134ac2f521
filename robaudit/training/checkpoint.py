"""Per-epoch checkpoints as safetensors: the weights, and the state that continues the run exactly.

After epoch k a run writes, each to a temporary name and then renamed into place:

* ``checkpoints/epoch-000k.safetensors``: the backbone's state dict (weights and BatchNorm statistics), the
  same keys ``--weights`` loads, so any epoch can be audited;
* ``checkpoints/epoch-000k.state.safetensors``: the optimizer's tensors (momentum or Adam moments) under
  ``optimizer.<param>.<key>``, the regularizers' tensors (e.g. a layer mix) under ``regularizer.<i>.<key>``,
  and the rest of the optimizer's state as JSON in the file's metadata;
* ``model.safetensors``: the latest weights again, the run's result.

Nothing else is needed to continue: the learning rate is a function of the step, and every random draw of
an epoch comes from generators seeded by (seed, epoch) at its start (:mod:`.loop`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import InputError
from .card import CHECKPOINTS, temporary_name


def _save(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str] | None = None) -> None:
    from safetensors.torch import save_file

    # safetensors refuses tensors that share memory (tied weights): every entry gets its own copy
    plain = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in tensors.items()}
    tmp = temporary_name(path)
    try:
        save_file(plain, str(tmp), metadata=metadata)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def save_weights(backbone: nn.Module, path: Path) -> None:
    """The backbone's state dict as a safetensors file that ``--weights`` loads."""
    _save(dict(backbone.state_dict()), path)


def checkpoint_paths(out: Path, epoch: int) -> tuple[Path, Path]:
    folder = out / CHECKPOINTS
    return folder / f"epoch-{epoch:04d}.safetensors", folder / f"epoch-{epoch:04d}.state.safetensors"


def save_checkpoint(
    out: Path, epoch: int, backbone: nn.Module, optimizer: torch.optim.Optimizer, regularizers: list[nn.Module]
) -> tuple[Path, Path]:
    """Write epoch ``epoch``'s two checkpoint files; returns their paths."""
    weights, state_path = checkpoint_paths(out, epoch)
    weights.parent.mkdir(parents=True, exist_ok=True)
    save_weights(backbone, weights)
    tensors: dict[str, torch.Tensor] = {}
    opt_state = optimizer.state_dict()
    plain_state: dict[str, dict[str, Any]] = {}
    for param_id, entries in opt_state["state"].items():
        for key, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer.{param_id}.{key}"] = value
            else:
                plain_state.setdefault(str(param_id), {})[key] = value
    for i, regularizer in enumerate(regularizers):
        for key, value in regularizer.state_dict().items():
            tensors[f"regularizer.{i}.{key}"] = value
    metadata = {
        "epoch": str(epoch),
        "optimizer_param_groups": json.dumps(opt_state["param_groups"]),
        "optimizer_plain_state": json.dumps(plain_state),
        "optimizer_params": json.dumps(sorted(opt_state["state"])),
    }
    _save(tensors, state_path, metadata)
    return weights, state_path


def load_checkpoint(
    out: Path, epoch: int, backbone: nn.Module, optimizer: torch.optim.Optimizer, regularizers: list[nn.Module]
) -> None:
    """Restore the weights, optimizer and regularizers of epoch ``epoch`` (strictly: every key must fit)."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    weights, state_path = checkpoint_paths(out, epoch)
    for path in (weights, state_path):
        if not path.is_file():
            raise InputError(f"cannot resume: checkpoint {path} is missing (start again with --overwrite)")
    backbone.load_state_dict(load_file(str(weights)), strict=True)
    tensors = load_file(str(state_path))
    with safe_open(str(state_path), framework="pt") as fh:
        metadata = fh.metadata() or {}
    if metadata.get("epoch") != str(epoch):
        raise InputError(f"cannot resume: {state_path} records epoch {metadata.get('epoch')}, not {epoch}")
    state: dict[int, dict[str, Any]] = {int(p): {} for p in json.loads(metadata["optimizer_params"])}
    for param_id, entries in json.loads(metadata["optimizer_plain_state"]).items():
        state[int(param_id)].update(entries)
    regularizer_states: list[dict[str, torch.Tensor]] = [{} for _ in regularizers]
    for key, value in tensors.items():
        kind, index, name = key.split(".", 2)
        if kind == "optimizer":
            state[int(index)][name] = value
        else:
            regularizer_states[int(index)][name] = value
    optimizer.load_state_dict({"state": state, "param_groups": json.loads(metadata["optimizer_param_groups"])})
    for regularizer, saved in zip(regularizers, regularizer_states, strict=True):
        regularizer.load_state_dict(saved, strict=True)


def prune_checkpoints(out: Path, keep: int, latest: int) -> None:
    """Delete all but the ``keep`` newest epochs' checkpoint files (0: keep all); never ``latest``'s."""
    if keep <= 0:
        return
    for epoch in range(1, latest - keep + 1):
        for path in checkpoint_paths(out, epoch):
            path.unlink(missing_ok=True)
