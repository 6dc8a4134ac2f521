"""RSA computations: per-image features of layers, the similarity matrices of a finished RSA report, their
comparison with a target (Pearson, Spearman, CKA with bootstrap intervals) and the figure of the matrices.
The audit that writes such reports is :class:`robaudit.audits.rsa.RSAAudit`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..errors import InputError
from .measures import cka, pearson, spearman, upper_triangle

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

POOLS = ("flatten", "avg")
MODEL, TARGET = "model", "target"
#: the layer name of a target file's rows, and how the summary names such a target
FILE_LAYER = "similarity"
FILE_TARGET = "similarity file"


def pooled(activation: torch.Tensor, pool: str) -> torch.Tensor:
    """(N, D) features: the activation flattened, or averaged over its spatial positions / tokens."""
    if pool == "avg" and activation.ndim == 4:
        return activation.mean(dim=(2, 3))
    if pool == "avg" and activation.ndim == 3:
        return activation.mean(dim=1)
    return activation.flatten(1)


def feature_rows(values: torch.Tensor) -> np.ndarray:
    """A (N, D) tensor as an object array of N float32 vectors (one list cell per row)."""
    array = values.detach().float().cpu().numpy()
    out = np.empty(len(array), dtype=object)
    for i, row in enumerate(array):
        out[i] = row
    return out


def rsa_summary(rows: pd.DataFrame, metadata: dict[str, Any]) -> dict[str, Any]:
    """Per layer: correlations and CKA against the target with bootstrap intervals; the best layer."""
    params = metadata.get("identity", {}).get("params", {})
    matrices = similarity_matrices(rows)
    rng = np.random.default_rng(int(params.get("seed", 0)))
    draws = [rng.integers(0, matrices.count, matrices.count) for _ in range(int(params.get("bootstrap", 0)))]
    layers = []
    for layer, (similarity, gram) in matrices.layers.items():
        layers.append({"layer": layer, **compare(similarity, gram, matrices.target, matrices.target_gram, draws)})
    summary: dict[str, Any] = {
        "images": matrices.count,
        "target": matrices.target_name,
        "bootstrap": len(draws),
        "layers": layers,
    }
    finite = [r for r in layers if np.isfinite(r["spearman"])]
    if finite:
        best = max(finite, key=lambda r: r["spearman"])
        summary.update(best_layer=best["layer"], best_spearman=best["spearman"])
    return summary


class Matrices:
    """The similarity matrices of a finished report, images in index order."""

    def __init__(
        self,
        indices: np.ndarray,
        labels: np.ndarray,
        target_name: str,
        target: np.ndarray,
        target_gram: np.ndarray,
        layers: dict[str, tuple[np.ndarray, np.ndarray]],
    ) -> None:
        self.indices, self.labels = indices, labels
        self.count = len(indices)
        self.target_name, self.target, self.target_gram = target_name, target, target_gram
        self.layers = layers


def _stack(column: pd.Series) -> np.ndarray:
    return np.stack([np.asarray(v, dtype=np.float64) for v in column])


def _similarity_and_gram(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The centred-cosine similarity matrix and the linear Gram matrix of centred features."""
    centred = features - features.mean(axis=0, keepdims=True)
    gram = centred @ centred.T
    norms = np.sqrt(np.clip(np.diag(gram), 1e-24, None))
    return gram / norms[:, None] / norms[None, :], gram


def similarity_matrices(rows: pd.DataFrame) -> Matrices:
    """Rebuild the target's and every layer's matrices from a report's rows."""
    done = rows[~rows["skipped"]].sort_values("index")
    target_rows = done[done["role"] == TARGET]
    if len(target_rows) < 2:
        raise InputError(f"an RSA report needs at least 2 images, this one has {len(target_rows)}")
    indices = target_rows["index"].to_numpy()
    labels = target_rows["label"].to_numpy()
    layer = str(target_rows["layer"].iloc[0])
    if layer == FILE_LAYER and target_rows["target_row"].notna().all():
        positions = target_rows["target_position"].to_numpy().astype(np.int64)
        target = _stack(target_rows["target_row"])[:, positions]
        target = (target + target.T) / 2
        target_gram, name = target, FILE_TARGET
    else:
        target, target_gram = _similarity_and_gram(_stack(target_rows["features"]))
        name = f"model layer {layer}"
    layers: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    model_rows = done[done["role"] == MODEL]
    for name_of_layer in dict.fromkeys(model_rows["layer"]):
        part = model_rows[model_rows["layer"] == name_of_layer]
        if not np.array_equal(part["index"].to_numpy(), indices):
            raise InputError(f"layer {name_of_layer!r} of the RSA report does not cover the same images as the target")
        similarity, gram = _similarity_and_gram(_stack(part["features"]))
        # a similarity file is a kernel of normalized, centred responses: compare like with like
        layers[str(name_of_layer)] = (similarity, similarity if name == FILE_TARGET else gram)
    return Matrices(indices, labels, name, target, target_gram, layers)


def _correlations(model: np.ndarray, target: np.ndarray, sample: np.ndarray | None) -> tuple[float, float]:
    if sample is None:
        a, b = upper_triangle(model), upper_triangle(target)
    else:
        rows, cols = np.triu_indices(len(sample), k=1)
        distinct = sample[rows] != sample[cols]
        rows, cols = sample[rows[distinct]], sample[cols[distinct]]
        a, b = model[rows, cols], target[rows, cols]
    return pearson(a, b), spearman(a, b)


def compare(
    similarity: np.ndarray, gram: np.ndarray, target: np.ndarray, target_gram: np.ndarray, draws: list[np.ndarray]
) -> dict[str, Any]:
    """Pearson, Spearman (upper triangles) and linear CKA, each with a bootstrap 95 % interval over images."""
    r, rho = _correlations(similarity, target, None)
    result: dict[str, Any] = {"pearson": r, "spearman": rho, "cka": cka(gram, target_gram)}
    if draws:
        boot = np.array(
            [(*_correlations(similarity, target, s), cka(gram[np.ix_(s, s)], target_gram[np.ix_(s, s)])) for s in draws]
        )
        for column, key in enumerate(("pearson", "spearman", "cka")):
            values = boot[:, column][np.isfinite(boot[:, column])]
            result[f"{key}_ci95"] = (
                [float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))] if len(values) else [None, None]
            )
    return result


def rsa_figure(rows: pd.DataFrame, metadata: dict[str, Any], max_images: int = 100) -> Figure:
    """The target's and each layer's similarity matrix side by side, images sorted by label (at most
    ``max_images``, spread evenly over the report's images), each titled with its Spearman correlation."""
    from ..reports.plots import new_figure

    matrices = similarity_matrices(rows)
    order = np.argsort(matrices.labels, kind="stable")
    if len(order) > max_images:
        order = order[np.round(np.linspace(0, len(order) - 1, max_images)).astype(int)]
    panels: list[tuple[str, np.ndarray, float | None]] = [(f"target: {matrices.target_name}", matrices.target, None)]
    for layer, (similarity, _) in matrices.layers.items():
        panels.append((layer, similarity, spearman(upper_triangle(similarity), upper_triangle(matrices.target))))
    fig, axes = new_figure(2.6 * len(panels) + 0.6, 3.0, ncols=len(panels))
    image = None
    for ax, (title, matrix, correlation) in zip(axes, panels, strict=True):
        image = ax.imshow(matrix[np.ix_(order, order)], cmap="RdBu_r", vmin=-1, vmax=1, interpolation="nearest")
        ax.set_title(title if correlation is None else f"{title}\nSpearman {correlation:.3f}", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    if image is not None:
        fig.colorbar(image, ax=axes, shrink=0.8, label="cosine similarity (centred)")
    fig.suptitle(f"{len(order)} images sorted by label", fontsize=9)
    return fig
