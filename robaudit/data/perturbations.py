"""The ``perturbations:PATH.npz`` data source: a perturbation file read as samples, for audits of perturbations.

Each perturbation of the file (see :mod:`robaudit.reports.perturbations`) is one sample: its "image" is the
perturbation δ itself (values in [-1, 1], not pixels), its label the label of the image it was made for,
and its attributes (``Dataset.sample_info``) say which image that was (``data_index``), the threat, the
model that made it, the budget and whether the attack succeeded. Such a dataset has ``kind =
"perturbations"``: only audits that take perturbations accept it (``robaudit spectrum``), so a
perturbation is never mistaken for an image.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import InputError
from . import Dataset, LoadedBatch

if TYPE_CHECKING:
    from ..models import Preprocessing


class PerturbationDataset(Dataset):
    kind = "perturbations"

    def __init__(self, path: Path) -> None:
        from ..reports.perturbations import load_perturbations

        self.path = path
        arrays = load_perturbations(path)
        self.delta = arrays["delta"]
        self.labels = arrays["label"].astype(np.int64)
        self.num_classes = int(self.labels.max()) + 1
        self.info = {
            "data_index": arrays["index"].astype(np.int64),
            "threat": arrays["threat"].astype(str),
            "made_by": arrays["made_by"].astype(str) if "made_by" in arrays else np.full(len(self.labels), ""),
            "eps": arrays["eps"].astype(np.float64),
            "success": arrays["success"].astype(bool),
        }
        #: the images the perturbations were computed on, as the attack report named them ("" if unknown)
        self.data = str(arrays.get("data", ""))
        self.data_fingerprint = str(arrays.get("data_fingerprint", ""))
        shape = "x".join(str(s) for s in self.delta.shape[1:])
        self.description = f"perturbations:{path} ({len(self.labels)} perturbations, {shape})"

    def load(self, indices: np.ndarray) -> LoadedBatch:
        import torch

        chosen = np.ascontiguousarray(self.delta[indices], dtype=np.float32)
        return LoadedBatch(np.asarray(indices), torch.from_numpy(chosen))

    def sample_info(self, indices: np.ndarray) -> dict[str, np.ndarray]:
        return {name: values[indices] for name, values in self.info.items()}

    def fingerprint(self) -> str:
        digest = hashlib.sha256()
        with open(self.path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        return digest.hexdigest()


def perturbations(
    arg: str | None = None, *, split: str | None = None, preprocessing: Preprocessing | None = None
) -> Dataset:
    """A perturbation file written by ``robaudit attack --save-perturbations`` (for ``robaudit spectrum``)."""
    if not arg:
        raise InputError("perturbations needs a path: perturbations:PATH.npz")
    if split is not None:
        raise InputError("perturbation files have no splits; drop --split")
    return PerturbationDataset(Path(arg))
