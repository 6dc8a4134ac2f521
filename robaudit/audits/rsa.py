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

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from ..errors import InputError
from .base import Audit, AuditBatch
from .options import Option

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from ..models import LoadedModel
    from ..reports.content import FigureSpec
    from ..reports.folder import Report
    from ..runner import RunSpec
    from ..similarity.target import SimilarityTarget


class RSAAudit(Audit):
    """Representational similarity of model layers to a target (file or model layer): RSA correlations and CKA."""

    name = "rsa"
    title = "Representational similarity"
    order = 80
    batch_size = 64
    chunk_size = 256
    columns: ClassVar[dict[str, Any]] = {
        "role": "string",
        "layer": "string",
        "features": "list<float32>",
        "target_position": "int64",
        "target_row": "list<float32>",
    }
    options = (
        Option(
            "layers",
            "The model's layers, joined with + (e.g. layer1.2.conv2+layer3); auto: 5 evenly spaced convolutions.",
            default="auto",
        ),
        Option("target", "A similarity target file (.npz: similarity or responses, x or ids).", type=Path),
        Option("target_model", "Or another model, whose --target-layer is the target."),
        Option("target_weights", "Checkpoint of the target model.", type=Path),
        Option("target_pretrained", "Load the target model's pretrained weights.", default=False, type=bool),
        Option("target_layer", "The target model's layer."),
        Option(
            "target_defense",
            "Defenses in front of the target model (default: from its training card; none for none).",
            multiple=True,
            parse=list,
        ),
        Option("pool", "flatten (whole activations) or avg (average over positions).", default="flatten"),
        Option("bootstrap", "Bootstrap resamples of the images for the intervals.", default=500, type=int),
    )

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
        from ..similarity.rsa import POOLS
        from ..similarity.target import read_target

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

    @classmethod
    def from_options(
        cls,
        spec: RunSpec,
        *,
        target: Path | None = None,
        target_model: str | None = None,
        target_weights: Path | None = None,
        target_pretrained: bool = False,
        target_defense: list[str] | None = None,
        **values: Any,
    ) -> RSAAudit:
        """A target model is loaded (with the defenses of its training card unless named) and attached."""
        from dataclasses import asdict

        from ..defenses.base import compose
        from ..models import ModelSpec, load_model
        from ..training.card import defenses_for_weights

        loaded = None
        target_params = None
        if target_model is not None:
            target_spec = ModelSpec(
                name=target_model,
                pretrained=target_pretrained,
                weights=str(target_weights) if target_weights else None,
            )
            defenses = defenses_for_weights(target_weights, tuple(target_defense or ()))
            loaded = compose(load_model(target_spec, spec.device), list(defenses))
            target_params = {
                **asdict(target_spec),
                "defenses": [repr(d) for d in loaded.defenses],
                "fingerprint": loaded.fingerprint,
            }
        audit = cls(
            target=str(target) if target is not None else None,
            target_model=target_params,
            seed=spec.seed,
            **values,
        )
        audit.attach_target_model(loaded)
        return audit

    def attach_target_model(self, model: LoadedModel | None) -> None:
        """The model whose layer is the target (``--target-model``); checked in :meth:`prepare`."""
        self.target_module = model

    def prepare(self, model: LoadedModel) -> None:
        from ..similarity.layers import resolve_layers

        self.layers = resolve_layers(model.backbone, self.params["layers"])
        self.params["layers"] = "+".join(self.layers)
        if self.params["target_model"] is not None:
            if self.target_module is None:
                raise InputError("--target-model was named but not loaded")
            resolve_layers(self.target_module.backbone, [self.params["target_layer"]])

    # -- rows ---------------------------------------------------------------------------------------------
    def _file_positions(self, batch: AuditBatch) -> np.ndarray:
        import numpy as np
        import torch

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
        import numpy as np
        import torch

        from ..similarity.layers import LayerCapture
        from ..similarity.rsa import FILE_LAYER, MODEL, TARGET, feature_rows, pooled

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
                    "features": feature_rows(pooled(captured.raw(layer), pool)),
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
                "target_row": feature_rows(rows),
            }
        else:
            assert self.target_module is not None
            layer = self.params["target_layer"]
            with torch.inference_mode(), LayerCapture(self.target_module.backbone, [layer]) as captured:
                self.target_module(batch.images.to(self.target_module.device))
            target = {
                "layer": np.full(n, layer, dtype=object),
                "features": feature_rows(pooled(captured.raw(layer), pool)),
                "target_position": np.full(n, None, dtype=object),
                "target_row": np.full(n, None, dtype=object),
            }
        parts.append({"sample": np.arange(n), "role": np.full(n, TARGET, dtype=object), **target})
        return {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}

    # -- the summary --------------------------------------------------------------------------------------
    @classmethod
    def summarize(cls, rows: pd.DataFrame, metadata: dict[str, Any]) -> dict[str, Any]:
        from ..similarity.rsa import rsa_summary

        return rsa_summary(rows, metadata)

    @classmethod
    def figures(cls, report: Report) -> list[FigureSpec]:
        from ..reports.content import FigureSpec
        from ..similarity.rsa import rsa_figure

        caption = "Similarity matrices of the target and of each layer, images sorted by label"
        return [FigureSpec("rsa", caption, rsa_figure(report.rows, report.meta))]
