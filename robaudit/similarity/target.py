"""Similarity targets: a file of neural (or any) responses or similarities, or a model layer.

A target file is a NumPy ``.npz`` with

* either ``similarity`` (N, N): a precomputed similarity matrix (symmetric, values in [-1, 1]),
* or ``responses`` (N, units) or (N, trials, units), from which the matrix is computed as Li et al. (2019)
  do (:func:`robaudit.similarity.measures.similarity_of_responses`: SNR scaling from the trials, centring,
  cosine similarity), optionally with ``snr_responses`` (M, trials, units), repeated presentations of other
  stimuli from which the SNR weights are taken instead;

and the N images the rows stand for:

* either ``x``: the images themselves, uint8 (N, H, W, 3) or (N, H, W), or floats in [0, 1] (with ``y``, labels,
  the file is also an ``npz:`` data source for ``robaudit rsa``),
* or ``ids``: the images' indices in a data source (named where the file is used).

:func:`write_target` writes such a file; :func:`layer_similarity` computes a model layer's matrix over a set
of images (a "teacher" target, e.g. the VGG-19 conv3-1 control of the paper).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import InputError
from .layers import LayerCapture, backbone_of
from .measures import cosine_similarity_matrix, similarity_of_responses

#: most memory a layer's features over the target images may take while a teacher matrix is computed
MAX_FEATURE_BYTES = 4 << 30
_SYMMETRY_TOLERANCE = 1e-5


@dataclass(frozen=True)
class SimilarityTarget:
    """A checked target: the (N, N) matrix and the N images (``images``) or their data indices (``ids``)."""

    path: Path
    sha256: str
    kind: str  # "similarity" or "responses"
    matrix: np.ndarray
    images: np.ndarray | None
    ids: np.ndarray | None
    labels: np.ndarray | None

    @property
    def size(self) -> int:
        return int(self.matrix.shape[0])


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_matrix(matrix: np.ndarray, where: str) -> np.ndarray:
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise InputError(f"{where}: 'similarity' must be a square (N, N) matrix, got shape {matrix.shape}")
    matrix = matrix.astype(np.float64)
    if not np.isfinite(matrix).all():
        raise InputError(f"{where}: 'similarity' contains NaN or inf")
    if np.abs(matrix).max() > 1 + 1e-6:
        raise InputError(f"{where}: similarities must lie in [-1, 1], found {np.abs(matrix).max():.4g}")
    asymmetry = float(np.abs(matrix - matrix.T).max())
    if asymmetry > _SYMMETRY_TOLERANCE:
        raise InputError(f"{where}: 'similarity' is not symmetric (largest |S - S^T| = {asymmetry:.3g})")
    return np.clip((matrix + matrix.T) / 2, -1.0, 1.0)


def read_target(path: str | Path) -> SimilarityTarget:
    """Read and check a target file; every problem is an InputError naming the file and the key."""
    path = Path(path)
    where = f"similarity target {path}"
    if not path.is_file():
        raise InputError(f"{where} does not exist")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: np.asarray(npz[k]) for k in npz.files}
    except Exception as exc:
        raise InputError(f"{where} is not a readable .npz file ({type(exc).__name__}: {exc})") from None
    has = set(arrays)
    if ("similarity" in has) == ("responses" in has):
        raise InputError(f"{where} must hold exactly one of 'similarity' and 'responses' (it holds {sorted(has)})")
    if ("x" in has) == ("ids" in has):
        raise InputError(f"{where} must hold exactly one of 'x' (the images) and 'ids' (their data indices)")
    if "snr_responses" in has and "responses" not in has:
        raise InputError(f"{where}: 'snr_responses' only goes with 'responses'")
    if "similarity" in has:
        kind, matrix = "similarity", _check_matrix(arrays["similarity"], where)
    else:
        responses = arrays["responses"]
        if responses.ndim not in (2, 3) or not np.issubdtype(responses.dtype, np.number):
            raise InputError(
                f"{where}: 'responses' must be numbers (N, units) or (N, trials, units), got {responses.shape}"
            )
        if not np.isfinite(responses).all():
            raise InputError(f"{where}: 'responses' contain NaN or inf")
        try:
            matrix = similarity_of_responses(responses, arrays.get("snr_responses"))
        except InputError as exc:
            raise InputError(f"{where}: {exc}") from None
        kind = "responses"
    count = matrix.shape[0]
    if count < 2:
        raise InputError(f"{where} covers {count} image(s); a similarity needs at least 2")
    images = arrays.get("x")
    ids = arrays.get("ids")
    named, held = ("x", images) if images is not None else ("ids", ids)
    assert held is not None
    if len(held) != count:
        raise InputError(
            f"{where}: the {kind} cover {count} images but {named!r} holds {len(held)}; they must match one to one"
        )
    if ids is not None:
        if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer):
            raise InputError(f"{where}: 'ids' must be a one-dimensional integer array, got {ids.dtype} {ids.shape}")
        if ids.min() < 0 or len(np.unique(ids)) != len(ids):
            raise InputError(f"{where}: 'ids' must be distinct non-negative data indices")
        ids = ids.astype(np.int64)
    labels = arrays.get("y")
    if labels is not None and len(labels) != count:
        raise InputError(f"{where}: 'y' holds {len(labels)} labels for {count} images")
    return SimilarityTarget(path, _sha256(path), kind, matrix, images, ids, labels)


def write_target(
    path: str | Path,
    *,
    similarity: np.ndarray | None = None,
    responses: np.ndarray | None = None,
    snr_responses: np.ndarray | None = None,
    images: np.ndarray | None = None,
    ids: np.ndarray | None = None,
    labels: np.ndarray | None = None,
) -> Path:
    """Write a target file (the same checks as reading it apply; the file is read back to prove it)."""
    arrays: dict[str, np.ndarray] = {}
    for key, value in (
        ("similarity", similarity),
        ("responses", responses),
        ("snr_responses", snr_responses),
        ("x", images),
        ("ids", ids),
        ("y", labels),
    ):
        if value is not None:
            arrays[key] = np.asarray(value)
    path = Path(path)
    np.savez_compressed(path, **arrays)  # type: ignore[arg-type]
    read_target(path)
    return path


@torch.no_grad()
def layer_features(model: nn.Module, layer: str, batches: Iterable[torch.Tensor], count: int) -> torch.Tensor:
    """(count, D) float32 activations of ``layer`` (a backbone module name) over the images of ``batches``, on
    the CPU; checked against ``MAX_FEATURE_BYTES`` as soon as the first batch shows D."""
    backbone = backbone_of(model)
    was_training = model.training
    model.eval()
    parts: list[torch.Tensor] = []
    try:
        for images in batches:
            with LayerCapture(backbone, [layer]) as captured:
                model(images)
            part = captured[layer].float().cpu()
            if not parts and part.shape[1] * count * 4 > MAX_FEATURE_BYTES:
                raise InputError(
                    f"layer {layer!r} has {part.shape[1]} values per image: {count} images would need "
                    f"{part.shape[1] * count * 4 / 2**30:.1f} GiB; use fewer images or a later layer"
                )
            parts.append(part)
    finally:
        model.train(was_training)
    features = torch.cat(parts)
    if features.shape[0] != count:
        raise InputError(f"expected the features of {count} images, got {features.shape[0]}")
    return features


def layer_similarity(model: nn.Module, layer: str, batches: Iterable[torch.Tensor], count: int) -> np.ndarray:
    """The (count, count) centred-cosine similarity matrix (float64) of a model layer over ``count`` images."""
    return cosine_similarity_matrix(layer_features(model, layer, batches, count).double()).numpy()
