"""Data held in memory: images as a tensor or array with their labels, for audits run from Python.

``(images, labels)`` pairs and torch ``Dataset``/``DataLoader`` objects given to the Python API become a
:class:`TensorDataset`: float pixels in [0, 1] (or uint8, scaled; channels last is turned to channels
first), integer labels, and a fingerprint over the bytes, so a run on the same tensors is the same run.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from ..errors import InputError
from . import Dataset, LoadedBatch


def _pixels(images: Any, where: str) -> Any:
    """Images as float32 (N, 3, H, W) in [0, 1]: floats as they are, uint8 scaled, one channel repeated."""
    import torch

    tensor = images.detach().cpu() if isinstance(images, torch.Tensor) else torch.as_tensor(np.asarray(images))
    if tensor.ndim != 4:
        raise InputError(f"{where}: images must be (N, C, H, W), got shape {tuple(tensor.shape)}")
    if tensor.dtype == torch.uint8:
        if tensor.shape[-1] in (1, 3) and tensor.shape[1] not in (1, 3):
            tensor = tensor.permute(0, 3, 1, 2)
        tensor = tensor.float() / 255
    tensor = tensor.float().contiguous()
    if tensor.shape[1] not in (1, 3):
        raise InputError(f"{where}: images must have 1 or 3 channels, got shape {tuple(tensor.shape)}")
    if not bool(torch.isfinite(tensor).all()):
        raise InputError(f"{where}: images contain NaN or inf")
    if tensor.numel() and (float(tensor.min()) < 0 or float(tensor.max()) > 1):
        raise InputError(
            f"{where}: float images must hold pixels in [0, 1], "
            f"found {float(tensor.min()):.3g}..{float(tensor.max()):.3g}"
        )
    return tensor.expand(-1, 3, -1, -1).contiguous() if tensor.shape[1] == 1 else tensor


class TensorDataset(Dataset):
    """Images and labels held in memory."""

    def __init__(self, images: Any, labels: Any, *, description: str = "tensors") -> None:
        pixels = _pixels(images, description)
        values = np.asarray(labels.detach().cpu() if hasattr(labels, "detach") else labels)
        if values.ndim != 1 or len(values) != len(pixels):
            raise InputError(f"{description}: {len(pixels)} images but labels of shape {values.shape}")
        if len(pixels) == 0:
            raise InputError(f"{description}: holds no images")
        if not (np.issubdtype(values.dtype, np.integer) or np.all(values == np.round(values))) or values.min() < 0:
            raise InputError(f"{description}: labels must be integers >= 0")
        self.pixels = pixels
        self.labels = values.astype(np.int64)
        self.num_classes = int(self.labels.max()) + 1
        shape = "x".join(str(s) for s in pixels.shape[2:])
        self.description = f"{description} ({len(pixels)} images, {shape})"

    def load(self, indices: np.ndarray) -> LoadedBatch:
        import torch

        return LoadedBatch(np.asarray(indices), self.pixels[torch.as_tensor(np.asarray(indices), dtype=torch.long)])

    def fingerprint(self) -> str:
        digest = hashlib.sha256()
        digest.update(self.pixels.numpy().tobytes())
        digest.update(self.labels.tobytes())
        return digest.hexdigest()


def from_torch(data: Any) -> TensorDataset:
    """A torch ``Dataset`` or ``DataLoader`` of ``(image, label)`` pairs (or batches), read once into memory."""
    import torch

    images, labels = [], []
    # a map-style Dataset (no __iter__) is read by index; an iterable one (or a DataLoader) by iterating
    items = (data[i] for i in range(len(data))) if not hasattr(data, "__iter__") else data
    for item in items:
        if not isinstance(item, (tuple, list)) or len(item) < 2:
            raise InputError(f"a {type(data).__name__} must yield (image, label) pairs, got {type(item).__name__}")
        x = torch.as_tensor(np.asarray(item[0])) if not isinstance(item[0], torch.Tensor) else item[0]
        images.append(x if x.ndim == 4 else x[None])  # a DataLoader yields batches, a Dataset single images
        labels.append(torch.as_tensor(item[1]).reshape(-1))
    if not images:
        raise InputError(f"the {type(data).__name__} yielded no images")
    return TensorDataset(torch.cat(images), torch.cat(labels), description=type(data).__name__)
