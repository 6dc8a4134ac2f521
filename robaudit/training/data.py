"""The images a run trains on and is evaluated on, and the order and augmentation of every epoch.

Training data is any robaudit data source (``--data``, ``--split`` (default ``train``), ``--limit`` for a
seeded class-stratified subset, ``--indices``); held-out data likewise (``--val-data``, ``--val-split``...),
evaluated after every epoch. Held-out images that are also training images (same data, overlapping
selection) are an error: an accuracy measured on them is not held out.

Each epoch visits the training images in a fresh permutation drawn from (seed, epoch) and drops the last
incomplete batch (a batch of one image breaks BatchNorm, and equal batches keep steps comparable). Batches
are decoded and augmented in a ``DataLoader`` (``--workers`` processes, or the main one); each image gets its
own augmentation draw (:mod:`.augment`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..data import Dataset, DataSpec, load_dataset, select_samples
from ..errors import InputError
from .augment import Transform, augment_batch

if TYPE_CHECKING:
    from ..models import Preprocessing


def derived_seed(seed: int, epoch: int, purpose: str) -> int:
    """A 63-bit seed for one purpose in one epoch, independent of every other (seed, epoch, purpose)."""
    digest = hashlib.sha256(f"{seed}/{epoch}/{purpose}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


@dataclass
class Split:
    """A data source and the indices of the samples used."""

    spec: DataSpec
    dataset: Dataset
    indices: np.ndarray
    fingerprint: str

    def describe(self) -> dict[str, Any]:
        return {
            "source": self.spec.source,
            "split": self.spec.split,
            "description": self.dataset.description,
            "fingerprint": self.fingerprint,
            "images": len(self.indices),
        }


def load_split(spec: DataSpec, preprocessing: Preprocessing, num_classes: int, seed: int, role: str) -> Split:
    try:
        dataset = load_dataset(spec, preprocessing)
    except InputError as exc:
        if spec.split is None:
            raise
        option = "--split" if role == "training" else "--val-split"
        raise InputError(
            f"{exc} ({role} data, split {spec.split!r}: {option} none reads a source without splits)"
        ) from None
    if dataset.labels.max() >= num_classes:
        raise InputError(
            f"the {role} data has labels up to {int(dataset.labels.max())} but the model has {num_classes} "
            "outputs; pass --num-classes"
        )
    return Split(spec, dataset, select_samples(dataset.labels, spec, seed), dataset.fingerprint())


def check_held_out(train: Split, heldout: Split) -> None:
    """Held-out images must not be training images."""
    if train.fingerprint != heldout.fingerprint:
        return
    shared = np.intersect1d(train.indices, heldout.indices)
    if len(shared):
        raise InputError(
            f"{len(shared)} held-out image(s) are also training images (the same data, e.g. index "
            f"{int(shared[0])}); hold out other images with --val-split, --val-data or --val-indices"
        )


def epoch_order(count: int, seed: int, epoch: int) -> np.ndarray:
    """The permutation of the training samples in ``epoch`` (1-based)."""
    return np.random.default_rng(derived_seed(seed, epoch, "order")).permutation(count)


class AugmentedBatches(torch.utils.data.Dataset):
    """Batch i -> (augmented images, labels, decoding failures) of the samples in ``batches[i]``."""

    def __init__(self, dataset: Dataset, batches: list[np.ndarray], transform: Transform | None) -> None:
        self.dataset = dataset
        self.batches = batches
        self.transform = transform

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, list[tuple[int, str]]]:
        loaded = self.dataset.load(self.batches[i])
        labels = torch.from_numpy(self.dataset.labels[loaded.indices].astype(np.int64))
        return augment_batch(self.transform, loaded.images), labels, loaded.failures


def _unbatched(item: Any) -> Any:
    return item


def epoch_loader(
    train: Split, epoch: int, seed: int, batch_size: int, transform: Transform | None, workers: int
) -> torch.utils.data.DataLoader[Any]:
    """The epoch's batches, in the epoch's order, without the last incomplete one."""
    order = train.indices[epoch_order(len(train.indices), seed, epoch)]
    steps = len(order) // batch_size
    batches = [order[i * batch_size : (i + 1) * batch_size] for i in range(steps)]
    return torch.utils.data.DataLoader(
        AugmentedBatches(train.dataset, batches, transform),
        batch_size=None,
        shuffle=False,
        num_workers=workers,
        collate_fn=_unbatched,
    )


def steps_per_epoch(train: Split, batch_size: int) -> int:
    steps = len(train.indices) // batch_size
    if steps < 1:
        raise InputError(
            f"--batch-size {batch_size} is larger than the {len(train.indices)} training images; use a smaller batch"
        )
    return steps
