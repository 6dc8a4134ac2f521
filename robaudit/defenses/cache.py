"""The key-value cache of Orhan (2018) and Orhan & Lake (2019), as a readout defense.

Keys μ_k are L2-normalized features of training images at chosen layers (:mod:`.features`), values v_k
their one-hot labels (or, for a compressed cache, the label distribution of a k-means cluster). For a test
image with normalized features φ(x), the cache's prediction is

    p_mem(y | x) = Σ_k v_ky exp(θ φ(x)·μ_k) / Σ_k exp(θ φ(x)·μ_k)

and the defended model predicts p = (1 − λ) p_net + λ p_mem (λ = 1: cache-only). The module returns
log p, so argmax, softmax and cross-entropy behave as for ordinary logits.

Retrieval ``continuous`` sums over all keys. It is computed in the log domain in chunks of keys with a
running log-sum-exp, so memory stays at (batch × chunk) whatever the cache size, and it is differentiable
with respect to the input. Retrieval ``knn`` keeps only the k most similar keys: they are found without
gradient (faiss, or a chunked matmul + top-k in torch), and their similarities are then recomputed in
torch so that gradients still reach the input. With k equal to the number of keys, knn equals continuous.
"""

from __future__ import annotations

import json
import math
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError, RunError
from .base import Defense, ReadoutDefense, describe
from .features import FeatureReader

if TYPE_CHECKING:
    from ..models import LoadedModel

CACHE_FORMAT = "robaudit-cache"
RETRIEVALS = ("continuous", "knn")
SEARCHES = ("auto", "faiss", "torch")
DTYPES = {"auto": None, "float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
_TINY = torch.finfo(torch.float32).tiny
_LOG_TINY = math.log(_TINY)
#: up to this many classes, keys are sorted by label and each class is summed as one slice of them; beyond,
#: one operation per class costs more than scattering the weights into their classes
SLICE_MAX_CLASSES = 64
#: the most floats a :class:`SimilarityTable` holds at once
TABLE_FLOATS = 1 << 25
#: floats per block when a table is scored (4 MiB: stays in a CPU's last-level cache across the θ)
BLOCK_FLOATS = 1 << 20
#: on an evenly spaced θ grid, weights are carried from one θ to the next by a product; every REANCHOR-th θ
#: they are computed afresh, so that rounding cannot pile up (each product adds at most half an ulp)
REANCHOR = 8


class CacheArtifact:
    """A cache folder: ``keys.npy`` (M, d), ``labels.npy`` (M,) or ``values.npy`` (M, C), optional key
    projection (``key_mean.npy``, ``key_components.npy``), and ``meta.json``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        meta_file = path / "meta.json"
        if not path.is_dir():
            raise InputError(f"cache {path} does not exist (build one with `robaudit cache build`)")
        try:
            self.meta: dict[str, Any] = json.loads(meta_file.read_text())
        except (OSError, ValueError) as exc:
            raise InputError(f"cache {path}: cannot read meta.json ({exc})") from exc
        if not isinstance(self.meta, dict) or self.meta.get("format") != CACHE_FORMAT:
            found = self.meta.get("format") if isinstance(self.meta, dict) else type(self.meta).__name__
            raise InputError(f"{path} is not a robaudit cache (meta.json format {found!r})")
        _check_meta(self.meta, path)
        self.keys = self._array("keys.npy")
        self.labels = self._array("labels.npy") if (path / "labels.npy").exists() else None
        self.values = self._array("values.npy") if (path / "values.npy").exists() else None
        if (self.labels is None) == (self.values is None):
            raise InputError(f"cache {path} needs exactly one of labels.npy and values.npy")
        count = len(self.labels if self.labels is not None else self.values)  # type: ignore[arg-type]
        if self.keys.ndim != 2 or len(self.keys) != count:
            raise InputError(f"cache {path}: keys {self.keys.shape} do not match {count} values")
        if count == 0:
            raise InputError(f"cache {path} is empty")
        if self.keys.shape[1] != self.meta["dim"] or not np.issubdtype(self.keys.dtype, np.floating):
            raise InputError(
                f"cache {path}: keys.npy holds {self.keys.dtype} keys of width {self.keys.shape[1]}, "
                f"meta.json says float keys of width {self.meta['dim']}; rebuild the cache"
            )
        self._check_values(path)
        self.projection = None
        if (path / "key_components.npy").exists():
            self.projection = (self._array("key_mean.npy"), self._array("key_components.npy"))

    def _check_values(self, path: Path) -> None:
        classes = self.num_classes
        if self.labels is not None:
            labels = np.asarray(self.labels)
            if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
                raise InputError(
                    f"cache {path}: labels.npy must hold integer labels, got {labels.dtype} {labels.shape}"
                )
            if labels.min() < 0 or labels.max() >= classes:
                raise InputError(f"cache {path}: labels.npy holds labels outside 0..{classes - 1}")
        elif self.values is not None and (self.values.ndim != 2 or self.values.shape[1] != classes):
            raise InputError(f"cache {path}: values.npy must be (keys, {classes}), got {self.values.shape}")

    def _array(self, name: str) -> np.ndarray:
        try:
            return np.load(self.path / name, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise InputError(f"cache {self.path}: cannot read {name} ({exc})") from exc

    @property
    def num_classes(self) -> int:
        return int(self.meta["model"]["num_classes"])


#: what a cache's meta.json must hold (key, JSON type), checked when the cache is opened
_META_FIELDS: tuple[tuple[str, type | tuple[type, ...]], ...] = (
    ("layers", list),
    ("pool", str),
    ("dim", int),
    ("fingerprint", str),
    ("model", dict),
)
_MODEL_FIELDS: tuple[tuple[str, type | tuple[type, ...]], ...] = (
    ("name", str),
    ("spec", dict),
    ("fingerprint", str),
    ("num_classes", int),
)


def _check_meta(meta: dict[str, Any], path: Path) -> None:
    """A meta.json edited by hand or damaged is refused here, naming the field, before anything uses it."""
    from .features import POOLS

    for where, table, fields in (("", meta, _META_FIELDS), ("model.", meta.get("model"), _MODEL_FIELDS)):
        for key, kind in fields:
            value = table.get(key) if isinstance(table, dict) else None
            if not isinstance(value, kind) or isinstance(value, bool):
                raise InputError(
                    f"cache {path}: meta.json field {where}{key} is missing or not a {getattr(kind, '__name__', kind)} "
                    "(the file was edited or damaged); rebuild the cache"
                )
    if not meta["layers"] or not all(isinstance(layer, str) for layer in meta["layers"]):
        raise InputError(f"cache {path}: meta.json field layers must list layer names, got {meta['layers']!r}")
    if meta["pool"] not in POOLS:
        raise InputError(f"cache {path}: meta.json field pool must be one of {', '.join(POOLS)}, got {meta['pool']!r}")
    if meta["model"]["num_classes"] < 1 or meta["dim"] < 1:
        raise InputError(f"cache {path}: meta.json gives {meta['model']['num_classes']} classes and dim {meta['dim']}")
    from ..models import ModelSpec

    try:
        ModelSpec.from_dict(meta["model"]["spec"])
    except InputError as exc:
        raise InputError(f"cache {path}: meta.json: {exc}; rebuild the cache") from None
    specs = meta.get("input_defense_specs", [])
    if not isinstance(specs, list) or not all(isinstance(s, str) for s in specs):
        raise InputError(f"cache {path}: meta.json field input_defense_specs must be a list of --defense strings")


def class_sums(
    weights: torch.Tensor,
    num_classes: int,
    *,
    labels: torch.Tensor | None = None,
    values: torch.Tensor | None = None,
    bounds: list[int] | None = None,
    start: int = 0,
) -> torch.Tensor:
    """Σ_k w_k v_kc (N, C) for weights (N, K) of keys ``start`` .. ``start + K``.

    With ``bounds`` (keys sorted by label: class c holds keys ``bounds[c]`` .. ``bounds[c + 1]``) each class
    is the sum of one contiguous slice, a pass at memory speed; else the weights are scattered into their
    classes (``labels``) or multiplied with the label distributions (``values``).
    """
    if bounds is not None:
        stop = start + weights.shape[1]
        empty = weights.new_zeros(weights.shape[0])
        columns = []
        for c in range(num_classes):
            low, high = max(bounds[c], start), min(bounds[c + 1], stop)
            columns.append(weights[:, low - start : high - start].sum(dim=1) if high > low else empty)
        return torch.stack(columns, dim=1)
    if labels is not None:
        return torch.zeros(weights.shape[0], num_classes, device=weights.device).index_add(
            1, labels[start : start + weights.shape[1]], weights
        )
    assert values is not None
    return weights @ values[start : start + weights.shape[1]].float()


def label_bounds(labels: torch.Tensor, num_classes: int) -> list[int] | None:
    """Where each class starts in ``labels`` (C + 1 offsets) if they are sorted and the classes few enough
    for one slice sum each (``SLICE_MAX_CLASSES``); None otherwise."""
    if num_classes > SLICE_MAX_CLASSES or (len(labels) > 1 and bool((labels[1:] < labels[:-1]).any())):
        return None
    return torch.searchsorted(labels, torch.arange(num_classes + 1, device=labels.device)).tolist()


def _weights(scores: torch.Tensor) -> torch.Tensor:
    """exp of (shifted, so ≤ 0) scores, in place. Scores below log(float32's smallest normal) are raised to
    it first: exp of them would only give subnormal numbers, which add nothing next to the row's largest
    weight (1) but make exp an order of magnitude slower on CPUs."""
    return scores.clamp_(min=_LOG_TINY).exp_()


def _log_ratio(per_class: torch.Tensor, weights: torch.Tensor, labels_given: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(log Σ_k∈c w_k, log Σ_k w_k) with absent classes clamped to ~0 (log(0)'s gradient is NaN)."""
    # With one label per key the class sums add up to the total: no second pass over the weights needed.
    total = per_class.sum(dim=1) if labels_given else weights.sum(dim=1)
    return torch.log(per_class.clamp_min(_TINY)), torch.log(total)


def continuous_log_pmem(
    query: torch.Tensor,
    keys: torch.Tensor,
    theta: float,
    num_classes: int,
    *,
    labels: torch.Tensor | None = None,
    values: torch.Tensor | None = None,
    chunk: int = 16384,
    bounds: list[int] | None = None,
) -> torch.Tensor:
    """log p_mem (N, C) over all keys, chunked over keys with a running log-sum-exp.

    ``bounds`` (from :func:`label_bounds`, for keys sorted by label) sums each class as one slice.
    """
    n = query.shape[0]
    num = torch.full((n, num_classes), -math.inf, device=query.device)
    den = torch.full((n,), -math.inf, device=query.device)
    q = (theta * query).to(keys.dtype)  # scaling the (N, d) query is cheaper than the (N, chunk) scores
    for start in range(0, keys.shape[0], chunk):
        scores = (q @ keys[start : start + chunk].T).float()
        # Subtracting the (detached) row maximum keeps exp in range; it is added back exactly below.
        shift = scores.max(dim=1, keepdim=True).values.detach()
        # in place: the matrix product's backward needs its inputs only, exp's backward its output only
        weights = _weights(scores.sub_(shift))
        per_class = class_sums(weights, num_classes, labels=labels, values=values, bounds=bounds, start=start)
        log_class, log_total = _log_ratio(per_class, weights, values is None)
        num = torch.logaddexp(num, log_class + shift)
        den = torch.logaddexp(den, log_total + shift.squeeze(1))
    return num - den[:, None]


def knn_log_pmem(
    query: torch.Tensor,
    keys: torch.Tensor,
    neighbours: torch.Tensor,
    theta: float,
    num_classes: int,
    *,
    labels: torch.Tensor | None = None,
    values: torch.Tensor | None = None,
) -> torch.Tensor:
    """log p_mem (N, C) over each query's ``neighbours`` (N, k), similarities recomputed with gradient."""
    return knn_log_pmem_from_scores(
        _knn_similarities(query, keys, neighbours), neighbours, theta, num_classes, labels=labels, values=values
    )


def _knn_similarities(query: torch.Tensor, keys: torch.Tensor, neighbours: torch.Tensor) -> torch.Tensor:
    return torch.einsum("nd,nkd->nk", query.float(), keys[neighbours].float())


def knn_log_pmem_from_scores(
    scores: torch.Tensor,
    neighbours: torch.Tensor,
    theta: float,
    num_classes: int,
    *,
    labels: torch.Tensor | None = None,
    values: torch.Tensor | None = None,
) -> torch.Tensor:
    """log p_mem (N, C) from the similarities (N, k) of each query to its ``neighbours``."""
    weights = (theta * scores).softmax(dim=1)
    if labels is not None:
        p = torch.zeros(scores.shape[0], num_classes, device=scores.device).scatter_add(1, labels[neighbours], weights)
    else:
        assert values is not None
        p = torch.einsum("nk,nkc->nc", weights, values[neighbours].float())
    return torch.log(p.clamp_min(_TINY))


class SimilarityTable:
    """The similarities of a batch of queries to the keys a cache retrieves, computed once and then scored
    at any θ without touching the keys again (tuning θ over a grid).

    Continuous retrieval keeps the (N, K) similarities minus each row's maximum, so that exp(θ·s) of any θ
    stays in range; k-NN retrieval keeps each query's k neighbours and their similarities. Memory is one
    float per query × key (see :meth:`KeyValueCache.table_rows`). Scoring goes block of rows by block of
    rows, every θ of a block while the block sits in the CPU's cache; on an evenly spaced grid of θ the
    weights of one θ are those of the previous θ times exp(Δθ·s), a product instead of an exp.
    """

    def __init__(self, cache: KeyValueCache, query: torch.Tensor) -> None:
        self.cache = cache
        self.neighbours: torch.Tensor | None = None
        with torch.no_grad():
            if cache.retrieval == "knn":
                self.neighbours = cache.neighbours(query)
                self.scores = _knn_similarities(query, cache.keys, self.neighbours)
            else:
                # the same product as continuous_log_pmem's (query in the keys' dtype), without the θ
                scores = (query.to(cache.keys.dtype) @ cache.keys.T).float()
                self.scores = scores.sub_(scores.max(dim=1, keepdim=True).values)

    def log_pmem(self, thetas: list[float]) -> torch.Tensor:
        """log p_mem (T, N, C) at every θ of ``thetas``; equal to :meth:`KeyValueCache.log_pmem` at each θ up
        to float rounding."""
        cache, n = self.cache, self.scores.shape[0]
        out = torch.empty(len(thetas), n, cache.num_classes, device=self.scores.device)
        with torch.no_grad():
            if self.neighbours is not None:
                for t, theta in enumerate(thetas):
                    out[t] = knn_log_pmem_from_scores(
                        self.scores, self.neighbours, theta, cache.num_classes, labels=cache.labels, values=cache.values
                    )
                return out
            rows = max(1, BLOCK_FLOATS // self.scores.shape[1])
            weights = torch.empty(min(rows, n), self.scores.shape[1], device=self.scores.device)
            ratio = torch.empty_like(weights)
            order = sorted(range(len(thetas)), key=lambda t: thetas[t])
            step = _common_step([thetas[t] for t in order])
            for first in range(0, n, rows):
                block = self.scores[first : first + rows]
                w, r = weights[: len(block)], ratio[: len(block)]
                if step is not None:
                    _weights(torch.mul(block, step, out=r))
                chained = REANCHOR
                for i, t in enumerate(order):
                    if chained < REANCHOR and step is not None and _same(thetas[t] - thetas[order[i - 1]], step):
                        # exp(θ'·s) = exp(θ·s)·exp(Δθ·s): on an evenly spaced grid a product replaces the exp
                        w.mul_(r).clamp_(min=_TINY)
                        chained += 1
                    else:
                        _weights(torch.mul(block, thetas[t], out=w))
                        chained = 1
                    per_class = class_sums(
                        w, cache.num_classes, labels=cache.labels, values=cache.values, bounds=cache.bounds
                    )
                    log_class, log_total = _log_ratio(per_class, w, cache.values is None)
                    out[t, first : first + rows] = log_class - log_total[:, None]
        return out


def _same(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-9 * max(abs(a), abs(b))


def _common_step(thetas: list[float]) -> float | None:
    """The step between consecutive θ (sorted) that occurs most often, if it occurs twice or more."""
    steps: list[tuple[float, int]] = []
    for a, b in pairwise(thetas):
        for j, (step, count) in enumerate(steps):
            if _same(b - a, step):
                steps[j] = (step, count + 1)
                break
        else:
            steps.append((b - a, 1))
    best = max(steps, key=lambda sc: sc[1], default=(0.0, 0))
    return best[0] if best[1] >= 2 and best[0] > 0 else None


def torch_topk(query: torch.Tensor, keys: torch.Tensor, k: int, chunk: int = 16384) -> torch.Tensor:
    """Indices of the k keys with the largest inner products, by chunked matmul and a running top-k."""
    best_scores: torch.Tensor | None = None
    best_index: torch.Tensor | None = None
    q = query.to(keys.dtype)
    for start in range(0, keys.shape[0], chunk):
        scores = (q @ keys[start : start + chunk].T).float()
        index = torch.arange(start, start + scores.shape[1], device=query.device).expand_as(scores)
        if best_scores is not None:
            scores = torch.cat([best_scores, scores], dim=1)
            index = torch.cat([best_index, index], dim=1)  # type: ignore[list-item]
        top = scores.topk(min(k, scores.shape[1]), dim=1)
        best_scores, best_index = top.values, index.gather(1, top.indices)
    assert best_index is not None
    return best_index


def parse_index(spec: str, count: int) -> tuple[str, int]:
    """``flat`` -> ("flat", 0), ``ivf[:NLIST]`` -> ("ivf", NLIST; default √count), ``hnsw[:M]`` -> ("hnsw", M)."""
    kind, _, arg = str(spec).partition(":")
    if kind not in ("flat", "ivf", "hnsw") or (arg and not arg.isdigit()) or (kind == "flat" and arg):
        raise InputError(f"cache index must be flat, ivf[:NLIST] or hnsw[:M], got {spec!r}")
    if kind == "ivf":
        nlist = int(arg or max(1, int(math.sqrt(count))))
        if not 1 <= nlist <= count:
            raise InputError(f"cache index ivf:{nlist} needs 1 to {count} lists (at least one key per list)")
        return kind, nlist
    if kind == "hnsw" and int(arg or 32) < 2:
        raise InputError(f"cache index hnsw:M needs M >= 2, got {spec!r}")
    return kind, int(arg or 32) if kind == "hnsw" else 0


def faiss_index(keys: np.ndarray, spec: str, nprobe: int) -> Any:
    """An inner-product faiss index over ``keys``: ``flat`` (exact), ``ivf:NLIST`` or ``hnsw:M``."""
    import faiss

    data = np.ascontiguousarray(keys, dtype=np.float32)
    dim = data.shape[1]
    kind, size = parse_index(spec, len(data))
    index: Any
    if kind == "flat":
        index = faiss.IndexFlatIP(dim)
    elif kind == "ivf":
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, size, faiss.METRIC_INNER_PRODUCT)
        index.cp.min_points_per_centroid = 1  # quiets a C++ warning on stderr; the lists are the same
        index.train(data)
        index.nprobe = nprobe
    else:
        index = faiss.IndexHNSWFlat(dim, size, faiss.METRIC_INNER_PRODUCT)
    index.add(data)
    return index


class KeyValueCache(ReadoutDefense):
    """Key-value cache over layer features (Orhan 2018): p = (1-λ) p_net + λ p_mem; λ=1 is cache-only."""

    name = "cache"

    def __init__(
        self,
        *,
        path: str,
        theta: float = 50.0,
        lam: float = 0.5,
        retrieval: str = "continuous",
        k: int = 50,
        search: str = "auto",
        index: str = "flat",
        nprobe: int = 8,
        chunk: int = 16384,
        dtype: str = "auto",
    ) -> None:
        params: dict[str, Any] = {"path": str(path), "theta": theta, "lam": lam, "retrieval": retrieval}
        if retrieval == "knn":
            params.update(k=k, search=search, index=index)
        super().__init__(**params)
        if not (isinstance(theta, (int, float)) and math.isfinite(theta) and theta > 0):
            raise InputError(f"cache theta must be a positive number, got {theta!r}")
        if not (isinstance(lam, (int, float)) and 0 <= lam <= 1):
            raise InputError(f"cache lam must lie in [0, 1], got {lam!r}")
        if retrieval not in RETRIEVALS:
            raise InputError(f"cache retrieval must be one of {', '.join(RETRIEVALS)}, got {retrieval!r}")
        if search not in SEARCHES:
            raise InputError(f"cache search must be one of {', '.join(SEARCHES)}, got {search!r}")
        if not isinstance(k, int) or k < 1:
            raise InputError(f"cache k must be a positive integer, got {k!r}")
        if dtype not in DTYPES:
            raise InputError(f"cache dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
        for label, value in (("nprobe", nprobe), ("chunk", chunk)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"cache {label} must be a positive integer, got {value!r}")
        self.artifact = CacheArtifact(Path(path))
        parse_index(index, len(self.artifact.keys))
        self.theta, self.lam, self.retrieval = float(theta), float(lam), retrieval
        self.k, self.search, self.index_spec, self.nprobe, self.chunk = k, search, index, nprobe, chunk
        self.dtype_name = dtype
        self.num_classes = self.artifact.num_classes
        meta = self.artifact.meta
        self.reader: FeatureReader | None = None
        self._faiss: Any = None
        self.keys: torch.Tensor
        self.labels: torch.Tensor | None
        self.values: torch.Tensor | None
        self.key_mean: torch.Tensor | None
        self.key_components: torch.Tensor | None
        keys = self.artifact.keys
        labels = self.artifact.labels
        values = self.artifact.values
        if labels is not None:
            if len(labels) and not 0 <= int(labels.min()) <= int(labels.max()) < self.num_classes:
                raise InputError(f"cache {path}: labels.npy holds labels outside 0..{self.num_classes - 1}")
            # The cache is a set: sorted by label, each class is a contiguous run of keys (see class_sums).
            order = np.argsort(labels, kind="stable")
            keys, labels = np.asarray(keys)[order], np.asarray(labels)[order]
        self.register_buffer("keys", torch.from_numpy(np.array(keys, dtype=np.float32)), persistent=False)
        self.register_buffer(
            "labels", None if labels is None else torch.from_numpy(np.array(labels, np.int64)), persistent=False
        )
        self.register_buffer(
            "values", None if values is None else torch.from_numpy(np.array(values, np.float32)), persistent=False
        )
        self.bounds = None if self.labels is None else label_bounds(self.labels, self.num_classes)
        projection = self.artifact.projection
        self.register_buffer(
            "key_mean", None if projection is None else torch.from_numpy(np.array(projection[0])), persistent=False
        )
        self.register_buffer(
            "key_components",
            None if projection is None else torch.from_numpy(np.array(projection[1])),
            persistent=False,
        )
        self.layers: list[str] = list(meta["layers"])
        self.pool: str = meta.get("pool", "avg")

    @property
    def size(self) -> int:
        return int(self.keys.shape[0])

    def artifacts(self) -> dict[str, str]:
        return {"cache": str(self.artifact.meta["fingerprint"])}

    def bind(self, model: LoadedModel, upstream: list[Defense]) -> None:
        meta = self.artifact.meta
        where = f"cache {self.artifact.path}"
        if meta["model"]["fingerprint"] != model.fingerprint:
            raise InputError(
                f"{where} was built for model {meta['model']['name']!r} with other weights "
                f"(fingerprint {meta['model']['fingerprint'][:12]}, this model "
                f"{model.fingerprint[:12]}); rebuild it for this model"
            )
        built_with = meta.get("input_defenses", "none")
        if built_with != describe(upstream):
            raise InputError(
                f"{where} was built behind input defenses {built_with!r}, but here they are {describe(upstream)!r}"
            )
        if self.num_classes != model.num_classes:
            raise InputError(f"{where} has {self.num_classes} classes, the model {model.num_classes}")
        self.reader = FeatureReader(model.base, self.layers, self.pool)
        dtype = DTYPES[self.dtype_name] or (torch.float16 if model.device.type == "cuda" else torch.float32)
        self.keys = self.keys.to(model.device, dtype)

    def query(self, base: nn.Module, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(normalized, projected query features, backbone logits)."""
        if self.reader is None:
            raise RunError("the cache is not bound to a model (compose it with robaudit.defenses.base.compose)")
        features, logits = self.reader(base, pixels)
        if self.key_components is not None and self.key_mean is not None:
            if features.shape[1] != self.key_components.shape[1]:
                raise InputError(
                    f"cache {self.artifact.path}: its key projection takes {self.key_components.shape[1]} features, "
                    f"the model gives {features.shape[1]} at {'+'.join(self.layers)}; rebuild the cache"
                )
            features = F.normalize((features - self.key_mean) @ self.key_components.T, dim=1)
        if features.shape[1] != self.keys.shape[1]:
            raise InputError(
                f"cache {self.artifact.path}: its keys have width {self.keys.shape[1]}, the model's features at "
                f"{'+'.join(self.layers)} have width {features.shape[1]}; rebuild the cache for this model"
            )
        return features, logits

    def log_pmem(self, query: torch.Tensor, theta: float | None = None) -> torch.Tensor:
        theta = self.theta if theta is None else theta
        if self.retrieval == "continuous":
            return continuous_log_pmem(
                query,
                self.keys,
                theta,
                self.num_classes,
                labels=self.labels,
                values=self.values,
                chunk=self.chunk,
                bounds=self.bounds,
            )
        return knn_log_pmem(
            query, self.keys, self.neighbours(query), theta, self.num_classes, labels=self.labels, values=self.values
        )

    def similarity_table(self, query: torch.Tensor) -> SimilarityTable:
        """The similarities of ``query`` (from :meth:`query`) to the keys, to be scored at many θ."""
        return SimilarityTable(self, query)

    def table_rows(self) -> int:
        """How many queries one :class:`SimilarityTable` may hold within ``TABLE_FLOATS``."""
        width = min(self.k, self.size) if self.retrieval == "knn" else self.size
        return max(1, TABLE_FLOATS // width)

    def neighbours(self, query: torch.Tensor) -> torch.Tensor:
        k = min(self.k, self.size)
        with torch.no_grad():
            use_faiss = self.search == "faiss" or (self.search == "auto" and query.device.type == "cpu")
            if not use_faiss:
                return torch_topk(query.detach(), self.keys, k, self.chunk)
            if self._faiss is None:
                self._faiss = faiss_index(self.keys.float().cpu().numpy(), self.index_spec, self.nprobe)
            _, index = self._faiss.search(np.ascontiguousarray(query.detach().float().cpu().numpy()), k)
        if (index < 0).any():
            raise RunError(f"the faiss index returned fewer than k={k} neighbours; raise nprobe or use index=flat")
        return torch.from_numpy(index).to(query.device)

    def forward(self, base: nn.Module, pixels: torch.Tensor) -> torch.Tensor:
        query, logits = self.query(base, pixels)
        return mix(logits, self.log_pmem(query), self.lam)


def mix(logits: torch.Tensor, log_pmem: torch.Tensor, lam: float) -> torch.Tensor:
    """log((1 - λ) softmax(logits) + λ p_mem), computed stably."""
    if lam >= 1:
        return log_pmem
    log_net = F.log_softmax(logits.float(), dim=1)
    if lam <= 0:
        return log_net
    return torch.logaddexp(math.log1p(-lam) + log_net, math.log(lam) + log_pmem)
