"""The representational-similarity audit: how alike are a model's layers and a target in which images they
find similar?

For the N audited images, each chosen layer's activations (flattened, or global-average-pooled with
``pool=avg``) give a similarity matrix: the cosine similarities of the activations centred over the N
images (:mod:`robaudit.similarity.measures`). The target is a similarity file (neural responses or a
precomputed matrix, :mod:`robaudit.similarity.target`) or a layer of another model. Per layer the summary
gives

* Pearson and Spearman correlations of the two matrices' upper triangles (each image pair once), the
  classic RSA comparison (Kriegeskorte et al. 2008);
* CKA (centred kernel alignment, Kornblith et al. 2019): against another model's layer, linear CKA of the
  two Gram matrices of centred activations; against a similarity file, which is itself the Gram matrix of
  normalized, centred responses, the layer's similarity matrix (the Gram matrix of its normalized, centred
  activations) is the kernel compared, so that like is compared with like;

each with a 95 % percentile interval from a bootstrap over images (resampled with replacement; for the
correlations, pairs of an image with its own copy are left out).

Rows: per image, one row per model layer (``role = model``) holding its activations, and one target row
(``role = target``) holding either the target model's activations or, for a file, the image's row of the
target matrix and its position in the file. A finished report is therefore self-contained: the summary and
the figure (:func:`rsa_figure`, the matrices side by side) are computed from its rows alone. Images are
matched to a target file by ``ids`` (data indices) or, when the file holds the images themselves (``x``),
by index, and their pixels are checked to be the file's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pyarrow as pa
import torch

from ..errors import InputError
from ..similarity.layers import LayerCapture, resolve_layers
from ..similarity.measures import cka, pearson, spearman, upper_triangle
from ..similarity.target import SimilarityTarget, read_target
from .base import Audit, AuditBatch

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

    from ..models import LoadedModel

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


def _rows(values: torch.Tensor) -> np.ndarray:
    """A (N, D) tensor as an object array of N float32 vectors (one list cell per row)."""
    array = values.detach().float().cpu().numpy()
    out = np.empty(len(array), dtype=object)
    for i, row in enumerate(array):
        out[i] = row
    return out


class RSAAudit(Audit):
    """Representational similarity of model layers to a target (file or model layer): RSA correlations and CKA."""

    name = "rsa"
    columns: ClassVar[dict[str, pa.DataType]] = {
        "role": pa.string(),
        "layer": pa.string(),
        "features": pa.list_(pa.float32()),
        "target_position": pa.int64(),
        "target_row": pa.list_(pa.float32()),
    }

    def __init__(
        self,
        *,
        layers: str | list[str] = "auto",
        target: str | None = None,
        target_model: dict[str, Any] | None = None,
        target_layer: str | None = None,
        pool: str = "flatten",
        bootstrap: int = 500,
        seed: int = 0,
    ) -> None:
        if (target is None) == (target_model is None):
            raise InputError("rsa needs exactly one target: --target FILE or --target-model MODEL")
        if target_model is not None and not target_layer:
            raise InputError("--target-model needs --target-layer, the target model's layer")
        if target is not None and target_layer is not None:
            raise InputError("--target-layer goes with --target-model, not with a target file")
        if pool not in POOLS:
            raise InputError(f"--pool must be one of {', '.join(POOLS)}, got {pool!r}")
        if bootstrap < 0:
            raise InputError(f"--bootstrap must be >= 0, got {bootstrap}")
        self.target: SimilarityTarget | None = read_target(target) if target is not None else None
        super().__init__(
            layers=layers if isinstance(layers, str) else "+".join(layers),
            target=target,
            target_sha256=self.target.sha256 if self.target else None,
            target_model=target_model,
            target_layer=target_layer,
            pool=pool,
            bootstrap=bootstrap,
            seed=seed,
        )
        self.layers: list[str] = []
        self.target_module: LoadedModel | None = None
        self._positions: dict[int, int] = {}
        if self.target is not None and self.target.ids is not None:
            self._positions = {int(i): p for p, i in enumerate(self.target.ids)}

    def attach_target_model(self, model: LoadedModel | None) -> None:
        """The model whose layer is the target (``--target-model``); checked in :meth:`prepare`."""
        self.target_module = model

    def prepare(self, model: LoadedModel) -> None:
        self.layers = resolve_layers(model.backbone, self.params["layers"])
        self.params["layers"] = "+".join(self.layers)
        if self.params["target_model"] is not None:
            if self.target_module is None:
                raise InputError("--target-model was named but not loaded")
            resolve_layers(self.target_module.backbone, [self.params["target_layer"]])

    # -- rows ---------------------------------------------------------------------------------------------
    def _file_positions(self, batch: AuditBatch) -> np.ndarray:
        target = self.target
        assert target is not None
        if target.ids is not None:
            missing = [int(i) for i in batch.indices if int(i) not in self._positions]
            if missing:
                raise InputError(
                    f"data image {missing[0]} is not among the ids of {target.path} ({len(missing)} in this batch); "
                    "audit the images the target file names (e.g. --indices, or a file with their ids)"
                )
            return np.array([self._positions[int(i)] for i in batch.indices], dtype=np.int64)
        assert target.images is not None
        if int(batch.indices.max()) >= target.size:
            raise InputError(
                f"{target.path} holds {target.size} images but the data has image {int(batch.indices.max())}; "
                f"audit the file's own images (--data npz:{target.path} when it has labels 'y')"
            )
        stored = target.images[batch.indices]
        expected = torch.from_numpy(np.ascontiguousarray(stored)).float()
        expected = expected / 255.0 if stored.dtype == np.uint8 else expected
        if expected.ndim == 3:
            expected = expected[..., None]
        expected = expected.permute(0, 3, 1, 2).expand_as(batch.images.cpu())
        if not torch.allclose(expected, batch.images.float().cpu(), atol=1e-6):
            raise InputError(
                f"the audited images are not the images of {target.path} (data indices "
                f"{batch.indices[:3].tolist()}...); audit --data npz:{target.path} or give the file 'ids'"
            )
        return batch.indices.astype(np.int64)

    def run_batch(self, model: LoadedModel, batch: AuditBatch) -> dict[str, np.ndarray]:
        pool, n = self.params["pool"], len(batch.indices)
        with torch.inference_mode(), LayerCapture(model.backbone, self.layers) as captured:
            model(batch.images)
        parts: list[dict[str, np.ndarray]] = []
        for layer in self.layers:
            parts.append(
                {
                    "sample": np.arange(n),
                    "role": np.full(n, MODEL, dtype=object),
                    "layer": np.full(n, layer, dtype=object),
                    "features": _rows(pooled(captured.raw(layer), pool)),
                    "target_position": np.full(n, None, dtype=object),
                    "target_row": np.full(n, None, dtype=object),
                }
            )
        if self.target is not None:
            positions = self._file_positions(batch)
            rows = torch.from_numpy(self.target.matrix[positions])
            target = {
                "layer": np.full(n, FILE_LAYER, dtype=object),
                "features": np.full(n, None, dtype=object),
                "target_position": positions.astype(object),
                "target_row": _rows(rows),
            }
        else:
            assert self.target_module is not None
            layer = self.params["target_layer"]
            with torch.inference_mode(), LayerCapture(self.target_module.backbone, [layer]) as captured:
                self.target_module(batch.images.to(self.target_module.device))
            target = {
                "layer": np.full(n, layer, dtype=object),
                "features": _rows(pooled(captured.raw(layer), pool)),
                "target_position": np.full(n, None, dtype=object),
                "target_row": np.full(n, None, dtype=object),
            }
        parts.append({"sample": np.arange(n), "role": np.full(n, TARGET, dtype=object), **target})
        return {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}

    # -- the summary --------------------------------------------------------------------------------------
    @classmethod
    def summarize(cls, rows: pd.DataFrame, metadata: dict[str, Any]) -> dict[str, Any]:
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
    from ..reports.figures import new_figure

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
