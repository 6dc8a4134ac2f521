"""Normalization statistics of any shape that broadcasts to the model's input: per channel, or per pixel.

Most models normalize per channel (three means, three stds). Others, Keras-era models among them, subtract
a mean image: a C×H×W array, or an H×W one shared by the channels. A statistic is therefore an array of up
to three dimensions read against the input's (C, H, W):

* 0-d or 1-d: per channel, as ``--mean 0.5,0.4,0.3`` has always meant (a single value for all channels);
* 2-d: (H, W), the same for every channel;
* 3-d: (C, H, W).

Every axis must equal the input's or be 1. Statistics travel as nested tuples of floats (hashable and
comparable, like the rest of :class:`~robaudit.models.Preprocessing`); ``--mean``/``--std`` take a list of
numbers or a ``.npy`` file. A report records a small statistic's values and a large one's shape and sha256.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import InputError

#: statistics with more values than this are recorded by shape and sha256 instead of by value
RECORD_VALUES_UP_TO = 64


def as_array(stat: Any) -> np.ndarray:
    return np.asarray(stat, dtype=np.float64)


def to_nested(array: np.ndarray) -> tuple[Any, ...]:
    """A numeric array as nested tuples of floats (a 0-d array becomes a one-value tuple)."""
    values = np.asarray(array, dtype=np.float64).tolist()
    if not isinstance(values, list):
        return (float(values),)

    def nest(v: Any) -> Any:
        return tuple(nest(x) for x in v) if isinstance(v, list) else float(v)

    return tuple(nest(v) for v in values)


def read_stat(value: tuple[Any, ...] | str, option: str) -> tuple[Any, ...]:
    """``--mean``/``--std`` as a statistic: numbers as given, or the array of a ``.npy`` file."""
    if not isinstance(value, str):
        return value
    path = Path(value)
    if not path.is_file():
        raise InputError(f"{option} {value}: no such file (give comma-separated numbers or a .npy file)")
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise InputError(f"{option} {value}: not a NumPy .npy array ({exc})") from exc
    if not np.issubdtype(array.dtype, np.number) or np.iscomplexobj(array):
        raise InputError(f"{option} {value}: holds {array.dtype} values, not real numbers")
    return to_nested(array)


def view_shape(shape: tuple[int, ...], option: str) -> tuple[int, int, int, int]:
    """The (1, C, H, W) view of a statistic of ``shape`` (see the module docstring)."""
    if len(shape) <= 1:
        return (1, shape[0] if shape else 1, 1, 1)
    if len(shape) == 2:
        return (1, 1, *shape)
    if len(shape) == 3:
        return (1, *shape)
    raise InputError(f"{option} has shape {shape}: at most 3 dimensions (C,H,W), (H,W) or per channel (C,)")


def check_stat(stat: tuple[Any, ...], option: str, input_size: tuple[int, int, int], *, positive: bool) -> None:
    """A clear error for a statistic that is not finite, not positive (std) or does not broadcast."""
    array = as_array(stat)
    if array.size == 0:
        raise InputError(f"{option} is empty")
    if not np.isfinite(array).all():
        raise InputError(f"{option} holds non-finite values")
    if positive and (array <= 0).any():
        raise InputError(f"{option} must be positive, got {describe_short(stat)}")
    view = view_shape(array.shape, option)[1:]
    bad = [axis for axis, (n, m) in enumerate(zip(view, input_size, strict=True)) if n not in (1, m)]
    if bad:
        names = ", ".join("CHW"[a] for a in bad)
        raise InputError(
            f"{option} of shape {array.shape} (read as C,H,W = {view}) does not broadcast to the input "
            f"{'x'.join(map(str, input_size))}: axis {names} must be 1 or equal the input's "
            "(pass --input-size C,H,W if the input size is what differs)"
        )


def to_tensor(stat: tuple[Any, ...], option: str) -> torch.Tensor:
    array = as_array(stat)
    return torch.tensor(array, dtype=torch.float32).reshape(view_shape(array.shape, option))


def is_per_channel(stat: Any) -> bool:
    return all(isinstance(v, (int, float)) for v in stat)


def describe(stat: tuple[Any, ...]) -> list[float] | dict[str, Any]:
    """How a report records a statistic: per-channel values as a list (as always); other shapes with their
    shape, and their values when small or their sha256 (of the float32 C-order bytes) when large."""
    if is_per_channel(stat):
        return [float(v) for v in stat]
    array = as_array(stat)
    out: dict[str, Any] = {"shape": list(array.shape)}
    if array.size <= RECORD_VALUES_UP_TO:
        out["values"] = array.tolist()
    else:
        out["sha256"] = hashlib.sha256(np.ascontiguousarray(array, dtype=np.float32).tobytes()).hexdigest()
        out.update(min=float(array.min()), max=float(array.max()), mean=float(array.mean()))
    return out


def undescribe(recorded: Any) -> tuple[Any, ...] | None:
    """Inverse of :func:`describe` where the values were recorded; None where only a hash was."""
    if isinstance(recorded, list):
        return to_nested(np.asarray(recorded, dtype=np.float64))
    if isinstance(recorded, dict) and "values" in recorded:
        return to_nested(np.asarray(recorded["values"], dtype=np.float64).reshape(recorded["shape"]))
    return None


def describe_short(stat: tuple[Any, ...]) -> str:
    array = as_array(stat)
    if array.ndim <= 1 and array.size <= 8:
        return ",".join(f"{v:g}" for v in array.reshape(-1))
    return f"an array of shape {array.shape} (min {array.min():g}, max {array.max():g})"
