"""``similarity``: the neural-similarity regularizer of Li et al. (2019, "Learning from brains how to regularize
machines").

The model is trained to represent a set of *regularization images* the way a target does: the target's
similarity matrix T over those images comes from a file (neural responses, SNR-scaled, centred, cosine
similarity; or a precomputed matrix; :mod:`robaudit.similarity.target`) or from a layer of another network
(``teacher=MODEL,layer=NAME``: the paper's VGG-19 conv3-1 control). Each training step, after the task
batch, takes ``batch`` regularization images (a seeded draw without replacement), reads the activations of
the chosen layers, computes each layer's centred-cosine similarity matrix over the drawn images, mixes them
with trainable softmax weights (equal at start), and adds

    weight * mean over drawn pairs i < j of (arctanh S_ij - arctanh T_ij)^2

to the loss (:mod:`robaudit.similarity.measures`). The features are centred by their mean over the drawn
images, an estimate of the mean over the whole set that the paper centres by. ``shuffle=true`` permutes the
target's images (rows and columns alike, seeded): the same similarity values attached to the wrong images,
the paper's control.

Parameters: ``target=FILE`` or ``teacher=MODEL`` (with ``layer=NAME``, optional ``teacher_weights=PATH``,
whose training card supplies the teacher's input defenses), ``layers`` (the trained model's layers, ``+``-joined,
default ``auto``: 5 evenly spaced convolutions), ``weight`` (α >= 0, default 1), ``shuffle``, ``batch``
(images per step, default the training batch size), and where the images come from: a target file's ``x``, or
its ``ids`` indexing ``data``/``split`` (default the training data), or for a teacher ``limit`` images
(default 1000, a seeded class-stratified subset) of ``data``/``split``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from ..data import ArrayDataset, Dataset, DataSpec, load_dataset, select_samples
from ..errors import InputError
from ..similarity.layers import LayerCapture, resolve_layers
from ..similarity.measures import cosine_similarity_matrix, mix_layers, similarity_loss
from ..similarity.target import layer_similarity, read_target
from .data import derived_seed
from .regularizer import Regularizer, TrainContext, TrainStep, check_weight

#: regularization images taken for a teacher target when ``limit`` is not given
TEACHER_IMAGES = 1000


class NeuralSimilarity(Regularizer):
    """Neural-similarity loss (Li et al. 2019): pull the model's representational similarity toward a target."""

    name = "similarity"

    def __init__(
        self,
        *,
        target: str | None = None,
        teacher: str | None = None,
        teacher_weights: str | None = None,
        layer: str | None = None,
        layers: str = "auto",
        weight: float = 1.0,
        shuffle: bool = False,
        batch: int | None = None,
        data: str | None = None,
        split: str | None = None,
        limit: int | None = None,
    ) -> None:
        where = "regularizer similarity"
        if (target is None) == (teacher is None):
            raise InputError(f"{where} needs exactly one of target=FILE and teacher=MODEL")
        if teacher is None and (layer is not None or teacher_weights is not None or limit is not None):
            raise InputError(f"{where}: layer, teacher_weights and limit go with teacher=MODEL")
        if teacher is not None and layer is None:
            raise InputError(f"{where}: teacher={teacher} needs layer=NAME, the teacher's layer to take as target")
        if not isinstance(shuffle, bool):
            raise InputError(f"{where}: shuffle must be true or false, got {shuffle!r}")
        if batch is not None and (isinstance(batch, bool) or not isinstance(batch, int) or batch < 2):
            raise InputError(f"{where}: batch must be an integer >= 2 (images per step), got {batch!r}")
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 2):
            raise InputError(f"{where}: limit must be an integer >= 2, got {limit!r}")
        params = {
            "target": target,
            "teacher": teacher,
            "teacher_weights": teacher_weights,
            "layer": layer,
            "layers": str(layers),
            "weight": weight,
            "shuffle": shuffle,
            "batch": batch,
            "data": data,
            "split": split,
            "limit": limit,
        }
        super().__init__(**{k: v for k, v in params.items() if v is not None})
        self.weight = check_weight(self.name, weight)
        self.spec: dict[str, Any] = params
        self.layers: list[str] = []
        self.mix = nn.Parameter(torch.zeros(0))
        self.target: torch.Tensor = torch.zeros(0)
        self.dataset: Dataset | None = None
        self.positions = np.zeros(0, dtype=np.int64)
        self.batch = 0
        self.generator = torch.Generator()
        self._fingerprints: dict[str, Any] = {}

    # -- binding ------------------------------------------------------------------------------------------
    def _images_spec(self, context: TrainContext, limit: int | None) -> DataSpec:
        data, split = self.spec["data"], self.spec["split"]
        return DataSpec(
            source=data or context.data_spec.source,
            split=split if (data or split) else context.data_spec.split,
            limit=limit,
            on_bad_image="fail",
        )

    def _from_file(self, context: TrainContext) -> np.ndarray:
        target = read_target(str(self.spec["target"]))
        self._fingerprints["target_sha256"] = target.sha256
        if target.images is not None:
            if self.spec["data"] is not None or self.spec["split"] is not None:
                raise InputError(f"similarity target {target.path} holds its images ('x'); drop data= and split=")
            labels = target.labels if target.labels is not None else np.zeros(target.size, dtype=np.int64)
            self.dataset = ArrayDataset(target.images, labels, description=f"similarity target {target.path}")
            self.positions = np.arange(target.size)
        else:
            assert target.ids is not None
            spec = self._images_spec(context, None)
            self.dataset = load_dataset(spec, context.loaded.preprocessing)
            if target.ids.max() >= len(self.dataset):
                raise InputError(
                    f"similarity target {target.path}: 'ids' go up to {int(target.ids.max())} but {spec.source} "
                    f"({spec.split or 'default split'}) has {len(self.dataset)} images"
                )
            self.positions = target.ids
            self._fingerprints["images_fingerprint"] = self.dataset.fingerprint()
        return target.matrix

    def _from_teacher(self, context: TrainContext) -> np.ndarray:
        from pathlib import Path

        from ..defenses.base import compose
        from ..models import ModelSpec, load_model
        from .card import defenses_for_weights

        weights = self.spec["teacher_weights"]
        teacher = load_model(ModelSpec(str(self.spec["teacher"]), weights=weights), str(context.device))
        teacher = compose(teacher, list(defenses_for_weights(Path(weights) if weights else None, ())))
        layer = resolve_layers(teacher.backbone, [str(self.spec["layer"])])[0]
        spec = self._images_spec(context, self.spec["limit"] or TEACHER_IMAGES)
        self.dataset = load_dataset(spec, context.loaded.preprocessing)
        self.positions = select_samples(self.dataset.labels, spec, context.seed)
        self._fingerprints.update(
            teacher_fingerprint=teacher.fingerprint,
            teacher_defenses=[repr(d) for d in teacher.defenses],
            images_fingerprint=self.dataset.fingerprint(),
        )
        dataset, positions = self.dataset, self.positions
        batches = (
            dataset.load(positions[i : i + context.batch_size]).images.to(context.device)
            for i in range(0, len(positions), context.batch_size)
        )
        return layer_similarity(teacher.module, layer, batches, len(positions))

    def bind(self, context: TrainContext) -> None:
        self.layers = resolve_layers(context.backbone, self.spec["layers"])
        matrix = self._from_file(context) if self.spec["target"] is not None else self._from_teacher(context)
        _, height, width = context.loaded.preprocessing.input_size
        assert self.dataset is not None
        shape = tuple(self.dataset.load(self.positions[:1]).images.shape[2:])
        if shape != (height, width):
            raise InputError(
                f"regularizer similarity: its images are {shape[0]}x{shape[1]} but the model takes {height}x{width}"
            )
        if self.spec["shuffle"]:
            order = np.random.default_rng(derived_seed(context.seed, 0, "similarity-shuffle")).permutation(len(matrix))
            matrix = matrix[order][:, order]
        self.batch = self.spec["batch"] or context.batch_size
        if self.batch > len(self.positions):
            raise InputError(
                f"regularizer similarity: batch={self.batch} but the target covers {len(self.positions)} images; "
                "pass a smaller batch="
            )
        self.target = torch.tensor(matrix, dtype=torch.float32, device=context.device)
        self.mix = nn.Parameter(torch.zeros(len(self.layers), device=context.device))

    # -- training -----------------------------------------------------------------------------------------
    def identity(self) -> dict[str, Any]:
        return {**super().identity(), **self._fingerprints, "layers": self.layers}

    def start_epoch(self, epoch: int, seed: int) -> None:
        self.generator = torch.Generator().manual_seed(seed)

    def term(self, step: TrainStep) -> torch.Tensor:
        assert self.dataset is not None
        picks = torch.randperm(len(self.positions), generator=self.generator)[: self.batch]
        loaded = self.dataset.load(self.positions[picks.numpy()])
        if loaded.failures:
            index, reason = loaded.failures[0]
            raise InputError(f"cannot decode regularization image {index} ({reason})")
        images = loaded.images.to(self.target.device)
        with LayerCapture(step.backbone, self.layers) as captured, step.autocast():
            step.model(images)
        similarities = [cosine_similarity_matrix(captured[layer].float()) for layer in self.layers]
        picks = picks.to(self.target.device)
        return similarity_loss(mix_layers(similarities, self.mix), self.target[picks][:, picks])

    def layer_weights(self) -> dict[str, float]:
        weights = torch.softmax(self.mix.detach().float(), dim=0).cpu().tolist()
        return dict(zip(self.layers, weights, strict=True))

    def epoch_metrics(self) -> dict[str, Any]:
        return {"layer_weights": self.layer_weights()}
