"""Data: where labelled images come from, which of them a run visits, and in what chunks.

A data spec is ``SOURCE[:ARG]`` (``digits``, ``cifar10[:ROOT]``, ``imagefolder:PATH``, ``npz:PATH``, or a
plugin's source). A source returns a :class:`Dataset`: labels up front, images loaded on demand as float
tensors in [0, 1], NCHW. A run visits a seeded, stratified subset (``--limit``) in fixed-size chunks; the
chunk is the unit of resumption (a finished chunk is never recomputed), sharding (``--shard i/n`` keeps
chunks with ``id % n == i``) and loss (a killed run loses at most the chunk in flight).
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import InputError

if TYPE_CHECKING:
    import torch

    from ..models import Preprocessing

BAD_IMAGE_POLICIES = ("fail", "skip")


@dataclass(frozen=True)
class DataSpec:
    """Everything the user said about the data; part of a run's identity."""

    source: str
    split: str | None = None
    limit: int | None = None
    on_bad_image: str = "fail"
    #: "START:STOP", a slice of the source's samples taken before ``limit`` (e.g. a held-out half)
    indices: str | None = None


@dataclass
class LoadedBatch:
    """Images that decoded (``images`` row i is sample ``indices[i]``) and the ones that did not."""

    indices: np.ndarray
    images: torch.Tensor
    failures: list[tuple[int, str]] = field(default_factory=list)
    #: (smallest, largest) pixel value, measured where the batch was decoded (in a worker when there are
    #: workers), so that checking the pixels costs the main process nothing; NaN when a pixel is NaN
    pixel_range: tuple[float, float] | None = None

    def pin_memory(self) -> LoadedBatch:
        """The batch with its images in page-locked memory (``DataLoader(pin_memory=True)`` calls this), from
        where they can be copied to a GPU asynchronously."""
        return replace(self, images=self.images.pin_memory())

    def check_pixels(self) -> None:
        """Raise InputError unless every pixel is finite and lies in [0, 1]."""
        import torch

        if not self.images.numel():
            return
        low, high = self.pixel_range if self.pixel_range is not None else pixel_range(self.images)
        if low >= 0 and high <= 1:  # False for NaN
            return
        if not bool(torch.isfinite(self.images).all()):
            raise InputError(f"input images contain NaN or inf (data indices {self.indices[:5].tolist()}...)")
        raise InputError("input pixels must lie in [0, 1]; the data source produced values outside")


def pixel_range(images: torch.Tensor) -> tuple[float, float]:
    """(min, max) of ``images`` in one pass; both NaN when any value is NaN."""
    import torch

    low, high = torch.aminmax(images)
    return float(low), float(high)


class Dataset(ABC):
    """Random access to a fixed list of labelled images."""

    #: integer class of every sample, int64, shape (N,)
    labels: np.ndarray
    num_classes: int
    class_names: list[str] | None = None
    #: a short human description, e.g. "npz:/data/x.npz (1017 images, 32x32)"
    description: str = ""
    #: what a sample is: "images" (pixels in [0, 1]) or "perturbations" (differences of images, for audits of
    #: perturbations only)
    kind: str = "images"

    def __len__(self) -> int:
        return len(self.labels)

    @abstractmethod
    def load(self, indices: np.ndarray) -> LoadedBatch:
        """Images of ``indices`` as float32 in [0, 1], shape (n, 3, H, W); undecodable ones as failures."""

    @abstractmethod
    def fingerprint(self) -> str:
        """A hash of what the data is (file list and sizes, or array bytes), recorded in reports."""

    def sample_info(self, indices: np.ndarray) -> dict[str, np.ndarray]:
        """Per-sample attributes beyond the label that audits may use (e.g. a pre-rendered corruption's
        name and severity), one array per attribute; none by default."""
        return {}


class ArrayDataset(Dataset):
    """Images held in memory as uint8 NHWC (digits, npz, cifar10)."""

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        *,
        description: str,
        class_names: list[str] | None = None,
        num_classes: int | None = None,
    ) -> None:
        if images.ndim == 3:
            images = images[..., None]
        if images.ndim != 4 or images.shape[-1] not in (1, 3):
            raise InputError(f"{description}: images must be (N, H, W, 3) or (N, H, W), got shape {images.shape}")
        if len(images) != len(labels):
            raise InputError(f"{description}: {len(images)} images but {len(labels)} labels")
        if len(images) == 0:
            raise InputError(f"{description}: holds no images")
        labels = _check_labels(labels, description)
        if images.dtype != np.uint8:
            images = images.astype(np.float32)
            if not np.isfinite(images).all():
                raise InputError(f"{description}: images contain NaN or inf")
            if images.min() < 0 or images.max() > 1:
                raise InputError(
                    f"{description}: float images must lie in [0, 1] "
                    f"(found {images.min():.3g}..{images.max():.3g}); store uint8 0..255 instead"
                )
        self.images = images
        self.labels = labels
        self.num_classes = num_classes or int(labels.max()) + 1
        if self.labels.max() >= self.num_classes:
            raise InputError(f"{description}: label {int(labels.max())} >= number of classes {self.num_classes}")
        self.class_names = class_names
        self.description = f"{description} ({len(labels)} images, {images.shape[1]}x{images.shape[2]})"

    def load(self, indices: np.ndarray) -> LoadedBatch:
        import torch

        chunk = self.images[indices]
        tensor = torch.from_numpy(np.ascontiguousarray(chunk)).permute(0, 3, 1, 2)
        tensor = tensor.float() / 255.0 if chunk.dtype == np.uint8 else tensor.float()
        if tensor.shape[1] == 1:
            tensor = tensor.expand(-1, 3, -1, -1)
        return LoadedBatch(np.asarray(indices), tensor.contiguous())

    def fingerprint(self) -> str:
        digest = hashlib.sha256()
        digest.update(np.ascontiguousarray(self.images).tobytes())
        digest.update(self.labels.astype(np.int64).tobytes())
        return digest.hexdigest()


def _check_labels(labels: Any, description: str) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise InputError(f"{description}: labels must be one-dimensional, got shape {labels.shape}")
    integral = np.issubdtype(labels.dtype, np.integer) or (
        np.issubdtype(labels.dtype, np.floating) and np.all(np.isfinite(labels)) and np.all(labels == np.round(labels))
    )
    if not integral:
        raise InputError(f"{description}: labels must be integers, got {labels.dtype}")
    labels = labels.astype(np.int64)
    if len(labels) and labels.min() < 0:
        raise InputError(f"{description}: labels must be >= 0, found {labels.min()}")
    return labels


def parse_source(spec: str) -> tuple[str, str | None]:
    name, sep, arg = spec.partition(":")
    return name, (arg if sep else None)


def load_dataset(spec: DataSpec, preprocessing: Preprocessing | None = None) -> Dataset:
    """Resolve ``spec.source`` through the data-source registry and build the dataset."""
    from .. import plugins

    if spec.on_bad_image not in BAD_IMAGE_POLICIES:
        raise InputError(f"--on-bad-image must be one of {', '.join(BAD_IMAGE_POLICIES)}, got {spec.on_bad_image!r}")
    if spec.limit is not None and spec.limit < 1:
        raise InputError(f"--limit must be >= 1, got {spec.limit}")
    name, arg = parse_source(spec.source)
    factory = plugins.datasets.get(name)
    dataset = factory(arg, split=spec.split, preprocessing=preprocessing)
    if not isinstance(dataset, Dataset):
        raise InputError(f"data source {name!r} returned {type(dataset).__name__}, not a Dataset")
    return dataset


def parse_range(text: str | None, n: int) -> range:
    """``"START:STOP"`` (Python slice semantics, either side optional) -> the range of sample indices."""
    if text is None:
        return range(n)
    start, sep, stop = text.partition(":")
    try:
        if not sep:
            raise ValueError
        chosen = range(n)[slice(int(start) if start else None, int(stop) if stop else None)]
    except ValueError:
        raise InputError(f"--indices must look like START:STOP (e.g. 0:500), got {text!r}") from None
    if not chosen:
        raise InputError(f"--indices {text} selects no sample of the {n} in the data")
    return chosen


#: seeds are unsigned 32-bit: every random generator robaudit seeds (numpy, torch, per-image derived
#: seeds such as seed × 1000003 + index) accepts them without overflow
MAX_SEED = 2**32 - 1


def check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed <= MAX_SEED:
        raise InputError(f"--seed must be an integer from 0 to {MAX_SEED}, got {seed!r}")
    return int(seed)


def select_samples(labels: np.ndarray, spec: DataSpec, seed: int) -> np.ndarray:
    """The sorted sample indices a run visits: ``--indices`` first, then the stratified ``--limit``."""
    check_seed(seed)
    window = np.asarray(parse_range(spec.indices, len(labels)))
    return window[stratified_subset(labels[window], spec.limit, seed)]


def stratified_subset(labels: np.ndarray, limit: int | None, seed: int) -> np.ndarray:
    """``limit`` indices (sorted) whose class proportions match ``labels``'; all indices when no limit.

    Each class's samples are ranked in a seeded random order; a sample's key is (rank + 0.5) / class size,
    and the ``limit`` smallest keys are taken, so every class gets its share to within one sample.
    """
    n = len(labels)
    if limit is None or limit >= n:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    keys = np.empty(n)
    for cls in np.unique(labels):
        members = order[labels[order] == cls]
        keys[members] = (np.arange(len(members)) + 0.5) / len(members)
    # Ties (equal class sizes) are broken by the seeded permutation position.
    position = np.empty(n)
    position[order] = np.arange(n)
    chosen = np.lexsort((position, keys))[:limit]
    return np.sort(chosen)


@dataclass(frozen=True)
class Chunk:
    id: int
    indices: np.ndarray


def plan_chunks(indices: np.ndarray, chunk_size: int) -> list[Chunk]:
    if chunk_size < 1:
        raise InputError(f"--chunk-size must be >= 1, got {chunk_size}")
    return [Chunk(i, indices[start : start + chunk_size]) for i, start in enumerate(range(0, len(indices), chunk_size))]


def check_workers(workers: int) -> int:
    """``--workers``: 0 (decode in this process) up to 8 per CPU; more would only fork processes that wait."""
    import os

    most = 8 * (os.cpu_count() or 1)
    if isinstance(workers, bool) or not isinstance(workers, int) or not 0 <= workers <= most:
        raise InputError(f"--workers must be from 0 to {most} (8 per CPU here), got {workers!r}")
    return workers


def parse_shard(shard: str | None) -> tuple[int, int]:
    """``"i/n"`` -> (i, n), with 0 <= i < n; None -> (0, 1)."""
    if shard is None:
        return 0, 1
    try:
        i, n = (int(p) for p in shard.split("/"))
    except ValueError:
        raise InputError(f"--shard must look like i/n (e.g. 0/4), got {shard!r}") from None
    if n < 1 or not 0 <= i < n:
        raise InputError(f"--shard {shard}: need 0 <= i < n")
    return i, n


def shard_chunks(chunks: Sequence[Chunk], shard: tuple[int, int]) -> list[Chunk]:
    i, n = shard
    return [c for c in chunks if c.id % n == i]


def iter_batches(
    dataset: Dataset, chunks: Sequence[Chunk], batch_size: int, workers: int = 0, *, device: torch.device | None = None
) -> Iterator[tuple[Chunk, bool, LoadedBatch]]:
    """``(chunk, is_last_batch_of_chunk, batch)`` in order; ``workers`` > 0 decodes in subprocesses.

    Workers start once for all the chunks. Each batch's pixel range is measured where it is decoded. With a
    CUDA ``device``, batches are placed in page-locked memory and their images copied to the device without
    blocking, so that the copy of one batch overlaps the work on the previous one.
    """
    import torch.utils.data

    if batch_size < 1:
        raise InputError(f"--batch-size must be >= 1, got {batch_size}")
    check_workers(workers)
    plan = []
    for chunk in chunks:
        starts = range(0, len(chunk.indices), batch_size)
        plan += [
            (chunk, start + batch_size >= len(chunk.indices), chunk.indices[start : start + batch_size])
            for start in starts
        ]

    cuda = device is not None and device.type == "cuda"
    loader: torch.utils.data.DataLoader[LoadedBatch] = torch.utils.data.DataLoader(
        _PlannedBatches(dataset, [p[2] for p in plan]),  # type: ignore[arg-type]
        batch_size=None,
        shuffle=False,
        num_workers=min(workers, len(plan)),  # no process without a batch to decode
        collate_fn=_identity,  # type: ignore[arg-type]
        pin_memory=cuda,
    )
    for (chunk, last, _), batch in zip(plan, loader, strict=True):
        if cuda:
            batch = replace(batch, images=batch.images.to(device, non_blocking=True))
        yield chunk, last, batch


def _identity(batch: LoadedBatch) -> LoadedBatch:
    return batch


class _PlannedBatches:
    """Map-style view "batch i -> dataset.load(batch i's indices)" for a DataLoader (picklable for workers)."""

    def __init__(self, dataset: Dataset, batches: list[np.ndarray]) -> None:
        self.dataset = dataset
        self.batches = batches

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, i: int) -> LoadedBatch:
        batch = self.dataset.load(self.batches[i])
        if batch.pixel_range is None and batch.images.numel():
            batch.pixel_range = pixel_range(batch.images)
        return batch
