"""Building a cache folder from a model and data.

Building streams the data once: features are written straight into a memory-mapped ``.npy`` key matrix,
so peak memory stays near the size of that matrix. Optional compression then works on the finished
matrix: ``key_dims`` projects keys onto their top principal components (queries are centred with the same
mean and projected the same way, then both are re-normalized: the original code projected keys centred but
queries uncentred, an asymmetry not reproduced here), and ``clusters`` replaces the keys by spherical
k-means centroids, per class (values stay one-hot) or globally (a centroid's value is the label
distribution of its members).

Under torchrun the ranks share the streaming (:func:`_build_on_ranks`): each computes its share of the
batches, rank 0 assembles the key matrix in the planned order and finishes the cache, which is the one a
single process writes, byte for byte.
"""

from __future__ import annotations

import functools
import hashlib
import json
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.lib.format import open_memmap

from .. import __version__, distributed
from ..data import Chunk, Dataset, DataSpec, iter_batches, plan_chunks
from ..errors import InputError
from ..models import LoadedModel
from ..models.finite import MONITOR, on_batch
from .base import InputDefense, ReadoutDefense, describe
from .cache import CACHE_FORMAT
from .features import FeatureReader

ProgressHook = Callable[[int, int], None]
CLUSTER_MODES = ("per-class", "global")
#: rows copied at a time when rank 0 joins the ranks' keys
ASSEMBLY_ROWS = 65536


def model_meta(model: LoadedModel) -> dict[str, Any]:
    """The model a cache was built with, as its meta.json records it (checked when the cache is opened)."""
    return {
        "name": model.spec.name,
        "spec": asdict(model.spec),
        "fingerprint": model.fingerprint,
        "num_classes": model.num_classes,
        "preprocessing": model.preprocessing.as_dict(),
    }


def apply_input_defenses(model: LoadedModel, pixels: torch.Tensor) -> torch.Tensor:
    for defense in model.defenses:
        if isinstance(defense, InputDefense):
            pixels = defense(pixels)
    return pixels


def first_per_class(labels: np.ndarray, indices: np.ndarray, per_class: int | None) -> np.ndarray:
    """The first ``per_class`` samples of every class among ``indices`` (in index order)."""
    if per_class is None:
        return indices
    if per_class < 1:
        raise InputError(f"--per-class must be >= 1, got {per_class}")
    keep = np.zeros(len(indices), dtype=bool)
    for cls in np.unique(labels[indices]):
        keep[np.flatnonzero(labels[indices] == cls)[:per_class]] = True
    return indices[keep]


#: images per chunk of a cache build: the batches are cut within these chunks
BUILD_CHUNK = 4096


def build_batches(indices: np.ndarray, batch_size: int) -> list[Chunk]:
    """The batches a cache build reads, in order (each as a chunk of its own): those of a single process,
    whatever the number of ranks that share them, so that keys come out identical."""
    batches = [
        chunk.indices[start : start + batch_size]
        for chunk in plan_chunks(indices, BUILD_CHUNK)
        for start in range(0, len(chunk.indices), batch_size)
    ]
    return [Chunk(number, batch) for number, batch in enumerate(batches)]


def stream_inputs(
    model: LoadedModel,
    dataset: Dataset,
    indices: np.ndarray,
    batch_size: int,
    workers: int,
    skip_bad: bool,
    chunks: list[Chunk] | None = None,
) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
    MONITOR.reset()
    planned = plan_chunks(indices, BUILD_CHUNK) if chunks is None else chunks
    for _, _, batch in iter_batches(dataset, planned, batch_size, workers):
        if batch.failures and not skip_bad:
            index, reason = batch.failures[0]
            raise InputError(
                f"cannot decode image {index} ({reason}); pass --on-bad-image skip to leave such files out of the cache"
            )
        if len(batch.indices):
            yield batch.indices, apply_input_defenses(model, batch.images.to(model.device))
            # the consumer ran the model on the batch: features of a broken model must not become keys
            MONITOR.check(on_batch(batch.indices))


def _spherical_kmeans(keys: np.ndarray, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    import faiss

    n = min(n, len(keys))
    # min_points_per_centroid only decides whether faiss prints a warning (from C++, onto stderr) about few
    # points per centroid; 1 keeps it quiet without changing the clustering
    kmeans = faiss.Kmeans(
        keys.shape[1], n, niter=25, seed=seed, spherical=True, verbose=False, min_points_per_centroid=1
    )
    kmeans.train(np.ascontiguousarray(keys, dtype=np.float32))
    _, assignment = kmeans.index.search(np.ascontiguousarray(keys, dtype=np.float32), 1)
    return np.asarray(kmeans.centroids), assignment[:, 0]


def _key_projection(keys: np.ndarray, dims: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    if not 1 <= dims <= keys.shape[1]:
        raise InputError(f"--key-dims must lie in 1..{keys.shape[1]} (the key size), got {dims}")
    data = torch.from_numpy(np.asarray(keys, dtype=np.float32))
    mean = data.mean(dim=0)
    if keys.shape[1] <= 4096:
        centred = (data - mean).double()
        _, vectors = torch.linalg.eigh(centred.T @ centred)
        components = vectors.flip(1)[:, :dims].T.float()
    else:  # randomized low-rank PCA: the d x d covariance would not fit
        torch.manual_seed(seed)
        _, _, v = torch.pca_lowrank(data, q=dims, center=True, niter=4)
        components = v.T
    return mean.numpy(), components.contiguous().numpy()


def _fingerprint(folder: Path, names: list[str]) -> str:
    digest = hashlib.sha256()
    for name in names:
        digest.update(name.encode())
        digest.update(np.load(folder / name, mmap_mode="r").tobytes())
    return digest.hexdigest()


def build_cache(
    model: LoadedModel,
    dataset: Dataset,
    data_spec: DataSpec,
    indices: np.ndarray,
    *,
    layers: list[str],
    out: Path,
    pool: str = "avg",
    dtype: str = "float16",
    per_class: int | None = None,
    clusters: int | None = None,
    cluster_mode: str = "per-class",
    key_dims: int | None = None,
    defense_specs: list[str] | None = None,
    batch_size: int = 256,
    workers: int = 0,
    seed: int = 0,
    overwrite: bool = False,
    progress: ProgressHook | None = None,
) -> dict[str, Any]:
    """Write a cache folder at ``out`` and return its metadata."""
    started = time.perf_counter()
    if any(isinstance(d, ReadoutDefense) for d in model.defenses):
        raise InputError("build a cache from the model and its input defenses only (no cache defense)")
    if dtype not in ("float16", "float32"):
        raise InputError(f"--dtype must be float16 or float32, got {dtype!r}")
    if cluster_mode not in CLUSTER_MODES:
        raise InputError(f"--cluster-mode must be one of {', '.join(CLUSTER_MODES)}, got {cluster_mode!r}")
    if clusters is not None and clusters < 1:
        raise InputError(f"--clusters must be >= 1, got {clusters}")
    if out.exists() and not overwrite:
        raise InputError(f"{out} already exists; pass --overwrite to replace it")
    if dataset.labels[indices].max() >= model.num_classes:
        raise InputError(
            f"the data has labels up to {int(dataset.labels[indices].max())} but the model has "
            f"{model.num_classes} classes"
        )
    indices = first_per_class(dataset.labels, indices, per_class)
    reader = FeatureReader(model.base, layers, pool)
    tmp = out.with_name(out.name + ".partial")
    compress = clusters is not None or key_dims is not None
    raw_name = "keys_raw.npy" if compress else "keys.npy"
    stream = _Stream(model, reader, dataset, batch_size, workers, data_spec.on_bad_image == "skip", progress)
    storage = np.dtype(np.float32 if compress else dtype)
    finish = functools.partial(
        _finish,
        model,
        dataset,
        data_spec,
        indices,
        tmp,
        out,
        raw_name,
        layers=layers,
        pool=pool,
        dtype=dtype,
        per_class=per_class,
        clusters=clusters,
        cluster_mode=cluster_mode,
        key_dims=key_dims,
        defense_specs=defense_specs,
        seed=seed,
        started=started,
    )
    if distributed.world().active:
        return _build_on_ranks(stream, indices, tmp, raw_name, storage, finish)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    keys, read = stream.keys(plan_chunks(indices, BUILD_CHUNK), tmp / raw_name, len(indices), storage)
    written = len(read)
    if keys is None or written == 0:
        shutil.rmtree(tmp)
        raise InputError("no image could be read for the cache")
    keys.flush()
    return finish(keys, dataset.labels[read], written)


class _Stream:
    """Streams a model's keys of planned batches into a memory-mapped ``.npy`` matrix."""

    def __init__(
        self,
        model: LoadedModel,
        reader: FeatureReader,
        dataset: Dataset,
        batch_size: int,
        workers: int,
        skip_bad: bool,
        progress: ProgressHook | None,
    ) -> None:
        self.model, self.reader, self.dataset = model, reader, dataset
        self.batch_size, self.workers, self.skip_bad, self.progress = batch_size, workers, skip_bad, progress

    def keys(
        self, chunks: list[Chunk], path: Path, rows: int, storage: np.dtype[Any]
    ) -> tuple[np.memmap | None, np.ndarray]:
        """The key matrix (``rows`` rows, the first ones filled; None when no image was read) and the data
        indices of its filled rows, in order."""
        keys: np.memmap | None = None
        read: list[np.ndarray] = []
        written = 0
        indices = np.concatenate([c.indices for c in chunks]) if chunks else np.empty(0, dtype=np.int64)
        with torch.no_grad():
            for batch_indices, pixels in stream_inputs(
                self.model, self.dataset, indices, self.batch_size, self.workers, self.skip_bad, chunks
            ):
                features = self.reader(self.model.base, pixels)[0].float().cpu().numpy()
                if keys is None:
                    keys = open_memmap(path, mode="w+", shape=(rows, features.shape[1]), dtype=storage)
                keys[written : written + len(features)] = features
                read.append(batch_indices)
                written += len(features)
                if self.progress is not None:
                    self.progress(written, rows)
        return keys, np.concatenate(read) if read else np.empty(0, dtype=np.int64)


def _build_on_ranks(
    stream: _Stream,
    indices: np.ndarray,
    tmp: Path,
    raw_name: str,
    storage: np.dtype[Any],
    finish: Callable[[np.memmap, np.ndarray, int], dict[str, Any]],
) -> dict[str, Any]:
    """A cache build shared by the ranks of a torchrun job.

    The batches of a single process's build are dealt out round-robin; each rank streams its keys into its
    own part of the partial folder (``part-rank-R/``: keys and the data indices they belong to). Rank 0 then
    copies the parts, in the planned order, into the one memory-mapped key matrix and finishes the cache as
    a single process does (compression, labels, metadata); every rank returns its metadata.
    """
    here = distributed.init()

    def prepare() -> None:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)

    distributed.phase("preparing the cache folder", prepare, on="main")
    part = tmp / f"part-rank-{here.rank}"
    error: BaseException | None = None
    try:
        part.mkdir()
        mine = build_batches(indices, stream.batch_size)[here.rank :: here.size]
        keys, read = stream.keys(mine, part / "keys.npy", sum(len(c.indices) for c in mine), storage)
        if keys is not None:
            keys.flush()
            del keys
        np.save(part / "indices.npy", read)
    except BaseException as exc:  # every rank meets below, where the first failure stops them all
        error = exc
    distributed.phase("computing the keys", lambda: None, own_error=error)

    def assemble() -> dict[str, Any]:
        parts = [tmp / f"part-rank-{rank}" for rank in range(here.size)]
        read = [np.load(p / "indices.npy") for p in parts]
        written = sum(len(r) for r in read)
        if written == 0:
            shutil.rmtree(tmp)
            raise InputError("no image could be read for the cache")
        # the planned position of every row read, and from it the row each part's keys go to
        planned = np.argsort(indices, kind="stable")
        positions = [planned[np.searchsorted(indices[planned], r)] for r in read]
        destination = np.empty(written, dtype=np.int64)
        destination[np.argsort(np.concatenate(positions), kind="stable")] = np.arange(written)
        pieces = np.split(destination, np.cumsum([len(r) for r in read])[:-1])
        sources = [np.load(p / "keys.npy", mmap_mode="r") if len(r) else None for p, r in zip(parts, read, strict=True)]
        dim = next(s.shape[1] for s in sources if s is not None)
        keys = open_memmap(tmp / raw_name, mode="w+", shape=(len(indices), dim), dtype=storage)
        for source, rows in zip(sources, pieces, strict=True):
            for start in range(0, len(rows), ASSEMBLY_ROWS):  # bounded memory, whatever the part's size
                keys[rows[start : start + ASSEMBLY_ROWS]] = source[start : start + ASSEMBLY_ROWS]  # type: ignore[index]
        keys.flush()
        del sources
        for p in parts:
            shutil.rmtree(p)
        order = np.concatenate(read)[np.argsort(np.concatenate(positions), kind="stable")]
        return finish(keys, stream.dataset.labels[order], written)

    meta: dict[str, Any] = distributed.phase("assembling the cache", assemble, on="main")
    return meta


def _finish(
    model: LoadedModel,
    dataset: Dataset,
    data_spec: DataSpec,
    indices: np.ndarray,
    tmp: Path,
    out: Path,
    raw_name: str,
    keys: np.memmap,
    labels: np.ndarray,
    written: int,
    *,
    layers: list[str],
    pool: str,
    dtype: str,
    per_class: int | None,
    clusters: int | None,
    cluster_mode: str,
    key_dims: int | None,
    defense_specs: list[str] | None,
    seed: int,
    started: float,
) -> dict[str, Any]:
    """Compress the streamed keys if asked, write labels or values and meta.json, and move the folder into place."""
    compress = clusters is not None or key_dims is not None
    compression: dict[str, Any] = {
        "clusters": clusters,
        "cluster_mode": cluster_mode if clusters else None,
        "key_dims": key_dims,
    }
    names = ["keys.npy"]
    if compress:
        final = np.asarray(keys[:written], dtype=np.float32)
        if key_dims is not None:
            mean, components = _key_projection(final, key_dims, seed)
            np.save(tmp / "key_mean.npy", mean)
            np.save(tmp / "key_components.npy", components)
            names += ["key_mean.npy", "key_components.npy"]
            projected = (final - mean) @ components.T
            final = projected / np.linalg.norm(projected, axis=1, keepdims=True).clip(1e-12)
        values = None
        if clusters is not None:
            final, labels, values = _cluster(final, labels, clusters, cluster_mode, model.num_classes, seed)
        np.save(tmp / "keys.npy", final.astype(dtype))
        (tmp / raw_name).unlink()
        if values is not None:
            np.save(tmp / "values.npy", values)
            names.append("values.npy")
    elif written < len(indices):  # skipped images: trim the unused tail of the key matrix
        np.save(tmp / "keys_trim.npy", np.asarray(keys[:written]))
        del keys
        (tmp / "keys_trim.npy").replace(tmp / "keys.npy")
    else:
        del keys
    if not (tmp / "values.npy").exists():
        np.save(tmp / "labels.npy", labels)
        names.append("labels.npy")
    final_keys = np.load(tmp / "keys.npy", mmap_mode="r")
    meta = {
        "format": CACHE_FORMAT,
        "version": 1,
        "layers": list(layers),
        "pool": pool,
        "dim": int(final_keys.shape[1]),
        "count": int(final_keys.shape[0]),
        "dtype": dtype,
        "model": model_meta(model),
        "input_defenses": describe(model.defenses),
        "input_defense_specs": list(defense_specs or []),
        "data": {
            "spec": asdict(data_spec),
            "description": dataset.description,
            "fingerprint": dataset.fingerprint(),
            "images": int(written),
            "skipped": int(len(indices) - written),
            "per_class": per_class,
        },
        "class_counts": np.bincount(labels, minlength=model.num_classes).tolist()
        if clusters is None or cluster_mode == "per-class"
        else None,
        "compression": compression,
        "fingerprint": _fingerprint(tmp, names),
        "seconds": round(time.perf_counter() - started, 3),
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "robaudit_version": __version__,
    }
    (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return meta


def _cluster(
    keys: np.ndarray, labels: np.ndarray, clusters: int, mode: str, num_classes: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Centroid keys, their labels (per class) or label distributions (global)."""
    if mode == "per-class":
        parts, part_labels = [], []
        for cls in np.unique(labels):
            centroids, _ = _spherical_kmeans(keys[labels == cls], clusters, seed)
            parts.append(centroids)
            part_labels.append(np.full(len(centroids), cls, dtype=np.int64))
        return _normalize(np.concatenate(parts)), np.concatenate(part_labels), None
    centroids, assignment = _spherical_kmeans(keys, clusters, seed)
    counts = np.zeros((len(centroids), num_classes), dtype=np.float64)
    np.add.at(counts, (assignment, labels), 1.0)
    used = counts.sum(axis=1) > 0  # an empty cluster has no label distribution: drop it
    values = (counts[used] / counts[used].sum(axis=1, keepdims=True)).astype(np.float32)
    return _normalize(centroids[used]), np.empty(0, dtype=np.int64), values


def _normalize(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True).clip(1e-12)).astype(np.float32)
