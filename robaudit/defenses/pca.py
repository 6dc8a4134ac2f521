"""``pca``: project inputs onto the top principal components of the training images, and fit that projection.

Li et al. (2023, code lizhe07/blur-net) filter inputs with a fixed linear layer ``W = W_kᵀ W_k``, where the
rows of ``W_k`` (k x D) are the top-k eigenvectors of the training images' pixel covariance (k = 512 for
CIFAR-10, D = 3·32·32): what survives is the image's component in the span of the dominant, mostly
low-frequency, directions of natural images. We remove the training mean first and add it back,

    x  ->  ((x - μ) W_kᵀ) W_k + μ,

so the layer is an orthogonal projection onto the affine subspace through μ: idempotent, the identity when
k = D, linear (exact gradients). Its output is not clamped to [0, 1].

Fitting (:func:`fit_pca`) streams the data in batches and never holds all images. Two methods:

* ``exact``: accumulate Σx and Σxxᵀ in float64, then a full ``eigh`` of the D x D covariance. Memory about
  3·D²·8 bytes (0.23 GB for D = 3072, 1.6 GB for D = 8192); hopeless at D = 150,528 (3x224x224: 540 GB).
* ``randomized`` (Halko, Martinsson & Tropp 2011, algorithm 4.4 + 5.3 on the covariance): never forms C.
  With L = k + oversample columns, one pass sketches Z = C Ω (Ω seeded Gaussian, D x L), each of
  ``power_iters`` passes computes Z = C·orth(Z), a last pass gives B = Qᵀ C Q (L x L) whose ``eigh`` yields
  the components Q·U. Each pass computes C V = (Σ x xᵀ V)/n − μ(μᵀV) batch by batch; μ is accumulated in
  the same pass and the correction applied at its end, so C V is exact. 2 + power_iters passes over the
  data; memory about 3·D·L·8 bytes at the QR steps (two D x L matrices during a pass) plus a float64
  batch: 2.1 GB + 0.3 GB for 3x224x224, k = 512, oversample 64, batch 256 (measured peak RSS 2.9 GB).

``auto`` takes exact for D <= 8192 (e.g. 3x32x32 and 3x64x64) and randomized above. Both accumulate
around a shift (the first batch's mean) rather than 0, which keeps the float64 sums well conditioned. The
covariance is normalized by n; eigenvector signs are fixed (largest entry positive) so fits are comparable.

An artifact folder holds ``mean.npy`` (D,), ``components.npy`` (k, D, rows by decreasing eigenvalue),
``eigenvalues.npy`` (k,) (all float32) and ``meta.json``; ``fingerprint`` is a sha256 over the arrays.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..errors import InputError
from .base import Defense, InputDefense

if TYPE_CHECKING:
    from ..data import Dataset
    from ..models import LoadedModel

METHODS = ("auto", "exact", "randomized")
#: ``auto`` uses the exact covariance up to this dimension (its D x D float64 matrix is 0.5 GB here)
EXACT_MAX_DIM = 8192
FORMAT = "robaudit-pca/1"
ARRAYS = ("mean", "components", "eigenvalues")


def artifact_fingerprint(arrays: dict[str, np.ndarray]) -> str:
    """sha256 over the name, shape and float32 bytes of mean, components and eigenvalues, in that order."""
    digest = hashlib.sha256()
    for name in ARRAYS:
        array = np.ascontiguousarray(arrays[name], dtype=np.float32)
        digest.update(f"{name}:{array.shape}:float32\n".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def load_artifact(path: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The arrays and meta of a folder written by :func:`fit_pca`, checked; InputError naming the bad file."""
    if not path.is_dir():
        raise InputError(f"pca: artifact folder {str(path)!r} does not exist (write one with robaudit pca fit)")
    meta_file = path / "meta.json"
    try:
        meta = json.loads(meta_file.read_text())
        shape = tuple(int(v) for v in meta["image_shape"])
        fingerprint = str(meta["fingerprint"])
        total_variance = float(meta["total_variance"])
    except FileNotFoundError:
        raise InputError(f"pca: {meta_file} is missing; is {path} a folder written by robaudit pca fit?") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"pca: {meta_file} is corrupt: {type(exc).__name__}: {exc}") from exc
    arrays: dict[str, np.ndarray] = {}
    for name in ARRAYS:
        file = path / f"{name}.npy"
        if not file.is_file():
            raise InputError(f"pca: {file} is missing")
        try:
            # Memory-mapped: only the k rows kept are read into memory (besides the hashing pass).
            arrays[name] = np.load(file, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise InputError(f"pca: {file} is corrupt: {type(exc).__name__}: {exc}") from exc
    dim = math.prod(shape)
    count = arrays["components"].shape[0] if arrays["components"].ndim == 2 else -1
    expected = {"mean": (dim,), "components": (count, dim), "eigenvalues": (count,)}
    for name, want in expected.items():
        if arrays[name].shape != want or arrays[name].dtype != np.float32:
            raise InputError(
                f"pca: {path / (name + '.npy')} is corrupt: float32 {want} expected for images {shape}, "
                f"got {arrays[name].dtype} {arrays[name].shape}"
            )
    if count < 1 or not math.isfinite(total_variance):
        raise InputError(f"pca: {meta_file} is corrupt: no components or a non-finite total variance")
    if artifact_fingerprint(arrays) != fingerprint:
        raise InputError(f"pca: the arrays in {path} do not match the fingerprint in {meta_file} (corrupt or edited)")
    return arrays, meta


class PCAProjection(InputDefense):
    """Projection onto the top-k principal components of training images (Li et al. 2023); fit by robaudit pca fit."""

    name = "pca"
    differentiable = True

    def __init__(self, *, path: str, k: int | None = None) -> None:
        path = str(path)  # "path=123" parses as a number
        arrays, meta = load_artifact(Path(path))
        k_max = arrays["components"].shape[0]
        if k is None:
            k = k_max
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= k_max:
            raise InputError(f"pca: k must be an integer in 1..{k_max} (the components stored in {path}), got {k!r}")
        super().__init__(path=path, k=k)
        self.k = k
        self.image_shape: tuple[int, ...] = tuple(int(v) for v in meta["image_shape"])
        self.fingerprint = str(meta["fingerprint"])
        total = float(meta["total_variance"])
        self.explained_variance = float(arrays["eigenvalues"][:k].sum()) / total if total > 0 else 1.0
        self.mean: torch.Tensor
        self.components: torch.Tensor
        # Buffers follow the model to its device; non-persistent because the artifact, not a state dict, is
        # their source of truth (and the fingerprint identifies it).
        self.register_buffer("mean", torch.from_numpy(np.array(arrays["mean"])), persistent=False)
        self.register_buffer("components", torch.from_numpy(np.array(arrays["components"][:k])), persistent=False)

    def artifacts(self) -> dict[str, str]:
        return {"pca": self.fingerprint}

    def bind(self, model: LoadedModel, upstream: list[Defense]) -> None:
        size = tuple(model.preprocessing.input_size)
        if size != self.image_shape:
            raise InputError(
                f"pca: the artifact {self.params['path']} was fitted on images of shape {list(self.image_shape)}, "
                f"but the model takes {list(size)}; fit it on data sized for this model"
            )

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        if pixels.dim() != 4 or tuple(pixels.shape[1:]) != self.image_shape:
            raise InputError(
                f"pca: the artifact {self.params['path']} expects images (N, {', '.join(map(str, self.image_shape))}), "
                f"got pixels of shape {tuple(pixels.shape)}"
            )
        flat = pixels.reshape(pixels.shape[0], -1)
        mean = self.mean.to(flat.dtype)
        components = self.components.to(flat.dtype)
        coefficients = (flat - mean) @ components.T
        return (coefficients @ components + mean).reshape(pixels.shape)


# -- fitting -------------------------------------------------------------------------------------------------


class _Stream:
    """Repeatable passes over the selected images as float64 (n, D) batches on ``device``, minus a shift."""

    def __init__(
        self, dataset: Dataset, indices: np.ndarray, batch_size: int, device: torch.device, skip_bad: bool
    ) -> None:
        from ..data import plan_chunks

        self.dataset = dataset
        self.chunks = plan_chunks(indices, batch_size)
        self.batch_size = batch_size
        self.device = device
        self.skip_bad = skip_bad
        self.shape: tuple[int, ...] | None = None
        self.shift: torch.Tensor | None = None
        self.n = 0

    def __iter__(self) -> Iterator[torch.Tensor]:
        from ..data import iter_batches

        n = 0
        for _, _, batch in iter_batches(self.dataset, self.chunks, self.batch_size):
            if batch.failures and not self.skip_bad:
                index, reason = batch.failures[0]
                raise InputError(f"cannot decode image {index} ({reason}); pass --on-bad-image skip to skip it")
            if not len(batch.indices):
                continue
            images = batch.images
            if self.shape is None:
                self.shape = tuple(images.shape[1:])
            if tuple(images.shape[1:]) != self.shape:
                raise InputError(f"images of different shapes in the data: {self.shape} and {tuple(images.shape[1:])}")
            if not bool(torch.isfinite(images).all()):
                raise InputError(f"the data holds NaN or inf pixels (indices {batch.indices[:5].tolist()}...)")
            x = images.reshape(len(images), -1).to(self.device, torch.float64, copy=True)
            del batch, images  # at 3x224x224 every copy of a batch counts
            if self.shift is None:
                # Sums around a point near the mean lose less to cancellation than raw second moments.
                self.shift = x.mean(0)
            x -= self.shift
            n += len(x)
            yield x
        if n == 0:
            raise InputError("no image of the selection could be decoded")
        self.n = n


def _top(eigenvalues: torch.Tensor, vectors: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The k largest eigenpairs (``eigh`` sorts ascending) as (k,) values (rounding below 0 cut) and (k, ·) rows."""
    order = torch.argsort(eigenvalues, descending=True)[:k]
    return eigenvalues[order].clamp_min(0), vectors[:, order].T


def _fix_signs(rows: torch.Tensor) -> torch.Tensor:
    """Flip each row so that its largest-magnitude entry is positive: eigenvectors are defined up to sign."""
    return rows * torch.sign(rows.gather(1, rows.abs().argmax(1, keepdim=True)))


def _exact(stream: _Stream, dim: int, k: int, tick: Callable[[int], None]) -> tuple[torch.Tensor, ...]:
    total = torch.zeros(dim, dtype=torch.float64, device=stream.device)
    outer = torch.zeros(dim, dim, dtype=torch.float64, device=stream.device)
    for x in stream:
        total += x.sum(0)
        outer.addmm_(x.T, x)
        tick(len(x))
    offset = total / stream.n  # mean - shift
    outer /= stream.n
    outer -= torch.outer(offset, offset)  # now the covariance
    eigenvalues, vectors = torch.linalg.eigh(outer)
    values, rows = _top(eigenvalues, vectors, k)
    return offset, values, rows, outer.trace()


def _randomized(
    stream: _Stream, dim: int, k: int, oversample: int, power_iters: int, seed: int, tick: Callable[[int], None]
) -> tuple[torch.Tensor, ...]:
    width = min(k + oversample, dim)

    def times_covariance(v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One pass: C v, the mean offset, the trace of C, all exact (the mean is corrected for at the end)."""
        product = torch.zeros_like(v)
        total = torch.zeros(dim, dtype=torch.float64, device=v.device)
        squares = torch.zeros((), dtype=torch.float64, device=v.device)
        for x in stream:
            product.addmm_(x.T, x @ v)
            total += x.sum(0)
            flat = x.view(-1)
            squares += flat @ flat  # no temporary the size of the batch, unlike (x * x).sum()
            tick(len(x))
        offset = total / stream.n
        product /= stream.n
        product -= torch.outer(offset, offset @ v)
        return product, offset, squares / stream.n - offset @ offset

    # Ω is drawn on the CPU so that a seed gives the same sketch on every device.
    generator = torch.Generator().manual_seed(seed)
    omega = torch.randn(dim, width, generator=generator, dtype=torch.float64).to(stream.device)
    sketch = times_covariance(omega)[0]
    del omega
    # power_iters passes refine the sketch; the last pass computes C Q for B = Qᵀ C Q. Deleting the old
    # sketch before each pass keeps at most two D x L matrices alive during a pass (three inside the QR).
    for _ in range(power_iters + 1):
        basis = torch.linalg.qr(sketch).Q
        del sketch
        sketch, offset, trace = times_covariance(basis)
    small = basis.T @ sketch
    eigenvalues, vectors = torch.linalg.eigh((small + small.T) / 2)
    values, rows = _top(eigenvalues, vectors, k)
    return offset, values, rows @ basis.T, trace


def _write_atomically(out: Path, arrays: dict[str, np.ndarray], meta: dict[str, Any], overwrite: bool) -> None:
    """Write into a hidden sibling folder, then rename it into place: readers never see half an artifact."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        for name, array in arrays.items():
            np.save(tmp / f"{name}.npy", array)
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
        if out.exists():
            if not overwrite:
                raise InputError(f"{out} exists; pass --overwrite to replace it")
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            out.rename(old)
            tmp.rename(out)
            if old.is_dir():
                shutil.rmtree(old)
            else:
                old.unlink()
        else:
            tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def fit_pca(
    dataset: Dataset,
    indices: np.ndarray,
    *,
    k: int,
    out: str | Path,
    method: str = "auto",
    batch_size: int = 256,
    oversample: int = 64,
    power_iters: int = 2,
    seed: int = 0,
    overwrite: bool = False,
    device: str = "cpu",
    on_bad_image: str = "fail",
    data: dict[str, Any] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Fit the top-``k`` principal components of ``dataset[indices]`` and write the artifact folder ``out``.

    ``data`` (e.g. the DataSpec as a dict) is recorded in the meta; ``progress(done, total)`` counts images
    over all passes. Returns the meta written to ``out/meta.json``.
    """
    from .. import __version__
    from ..models import resolve_device

    started = time.perf_counter()
    out = Path(out)
    indices = np.asarray(indices)
    if method not in METHODS:
        raise InputError(f"--method must be one of {', '.join(METHODS)}, got {method!r}")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise InputError(f"--k must be an integer >= 1, got {k!r}")
    for option, value, low in (("--batch-size", batch_size, 1), ("--oversample", oversample, 0)):
        if value < low:
            raise InputError(f"{option} must be >= {low}, got {value}")
    if power_iters < 0:
        raise InputError(f"--power-iters must be >= 0, got {power_iters}")
    if on_bad_image not in ("fail", "skip"):
        raise InputError(f"--on-bad-image must be fail or skip, got {on_bad_image!r}")
    if out.exists() and not overwrite:
        raise InputError(f"{out} exists; pass --overwrite to replace it")
    if len(indices) == 0:
        raise InputError("no samples selected to fit the PCA on")
    if k > len(indices):
        raise InputError(f"--k {k} exceeds the number of samples ({len(indices)}); a fit has at most n components")
    # The image shape (hence D) is needed before the first pass: to refuse k > D and to size the sketch.
    probe = dataset.load(indices[:16])
    if not len(probe.indices):
        raise InputError(f"cannot decode the first images of the data: {probe.failures[:1]}")
    shape = tuple(int(v) for v in probe.images.shape[1:])
    dim = math.prod(shape)
    if k > dim:
        raise InputError(f"--k {k} exceeds the pixel dimension D = {dim} of images {list(shape)}")
    chosen = method if method != "auto" else ("exact" if dim <= EXACT_MAX_DIM else "randomized")
    stream = _Stream(dataset, indices, batch_size, resolve_device(device), on_bad_image == "skip")
    passes = 1 if chosen == "exact" else 2 + power_iters
    done = 0

    def tick(count: int) -> None:
        nonlocal done
        done += count
        if progress is not None:
            progress(done, passes * len(indices))

    if chosen == "exact":
        offset, values, rows, trace = _exact(stream, dim, k, tick)
    else:
        offset, values, rows, trace = _randomized(stream, dim, k, oversample, power_iters, seed, tick)
    if stream.n < k:
        raise InputError(f"--k {k} exceeds the number of images that decoded ({stream.n})")
    assert stream.shift is not None
    arrays = {
        "mean": (stream.shift + offset).float().cpu().numpy(),
        "components": _fix_signs(rows).float().cpu().contiguous().numpy(),
        "eigenvalues": values.float().cpu().numpy(),
    }
    total_variance = float(trace)
    meta: dict[str, Any] = {
        "format": FORMAT,
        "image_shape": list(shape),
        "dim": dim,
        "k": k,
        "method": chosen,
        "centering": "mean removed before projecting and added back",
        "oversample": oversample if chosen == "randomized" else None,
        "power_iters": power_iters if chosen == "randomized" else None,
        "seed": seed,
        "data": data,
        "data_fingerprint": dataset.fingerprint(),
        "n_samples": stream.n,
        "total_variance": total_variance,
        "explained_variance": float(values.sum()) / total_variance if total_variance > 0 else 1.0,
        "robaudit_version": __version__,
        "fingerprint": artifact_fingerprint(arrays),
        "seconds": round(time.perf_counter() - started, 3),
    }
    _write_atomically(out, arrays, meta, overwrite)
    return meta
