"""The key-value cache: exactness of retrieval, gradients, artifacts, compression, build/tune commands."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from torch.nn.functional import one_hot

from robaudit.data import DataSpec, load_dataset, select_samples
from robaudit.defenses.base import compose
from robaudit.defenses.cache import (
    continuous_log_pmem,
    faiss_index,
    knn_log_pmem,
    label_bounds,
    mix,
    torch_topk,
)
from robaudit.defenses.cache_build import build_cache
from robaudit.errors import InputError
from robaudit.models import LoadedModel, ModelSpec, load_model


@pytest.fixture
def tiny(tiny_models: Path) -> LoadedModel:
    return load_model(ModelSpec(f"{tiny_models}:tiny"), "cpu")


def make_cache(model: LoadedModel, out: Path, **kw: object) -> Path:
    spec = DataSpec("digits", split="train", limit=120)
    dataset = load_dataset(spec)
    build_cache(
        model,
        dataset,
        spec,
        select_samples(dataset.labels, spec, 0),
        layers=kw.pop("layers", ["conv"]),  # type: ignore[arg-type]
        out=out,
        **kw,
    )  # type: ignore[arg-type]
    return out


def digits_batch(n: int = 6) -> torch.Tensor:
    dataset = load_dataset(DataSpec("digits"))
    return dataset.load(np.arange(n)).images


def test_continuous_retrieval_equals_dense_computation() -> None:
    gen = torch.Generator().manual_seed(0)
    keys = torch.nn.functional.normalize(torch.randn(103, 16, generator=gen), dim=1)
    labels = torch.randint(0, 5, (103,), generator=gen)
    query = torch.nn.functional.normalize(torch.randn(4, 16, generator=gen), dim=1)
    theta = 30.0
    weights = torch.softmax(theta * (query.double() @ keys.double().T), dim=1)
    dense = torch.log(weights @ torch.nn.functional.one_hot(labels, 5).double())
    chunked = continuous_log_pmem(query, keys, theta, 5, labels=labels, chunk=7)
    assert torch.allclose(chunked.double(), dense, atol=1e-4)
    values = torch.nn.functional.one_hot(labels, 5).float()
    assert torch.allclose(continuous_log_pmem(query, keys, theta, 5, values=values, chunk=10), chunked, atol=1e-5)
    everyone = torch.arange(103).expand(4, -1)
    assert torch.allclose(knn_log_pmem(query, keys, everyone, theta, 5, labels=labels), chunked, atol=1e-4)


@pytest.mark.parametrize("theta", [1.0, 30.0, 300.0])
def test_class_slices_equal_scattering_for_sorted_keys(theta: float) -> None:
    """Keys sorted by label are summed class by class as slices, across chunk edges that split classes and
    with a class absent; large θ drive most weights below float32's normal range (raised to it, which
    changes no probability)."""
    gen = torch.Generator().manual_seed(4)
    labels = torch.randint(0, 6, (211,), generator=gen)
    labels = labels[labels != 3].sort().values  # class 3 has no key
    keys = torch.nn.functional.normalize(torch.randn(len(labels), 16, generator=gen), dim=1)
    query = torch.nn.functional.normalize(torch.randn(5, 16, generator=gen), dim=1)
    bounds = label_bounds(labels, 6)
    assert bounds is not None and bounds[3] == bounds[4] and bounds[-1] == len(labels)
    dense = torch.softmax(theta * (query.double() @ keys.double().T), dim=1) @ one_hot(labels, 6).double()
    for chunk in (7, 64, 1000):
        sliced = continuous_log_pmem(query, keys, theta, 6, labels=labels, chunk=chunk, bounds=bounds)
        scattered = continuous_log_pmem(query, keys, theta, 6, labels=labels, chunk=chunk)
        assert torch.allclose(sliced.exp().double(), dense, atol=1e-6), chunk
        assert torch.allclose(sliced.exp(), scattered.exp(), atol=1e-6), chunk
    assert label_bounds(labels.flip(0), 6) is None  # unsorted: scattered


def test_torch_topk_matches_faiss_exact_search() -> None:
    gen = torch.Generator().manual_seed(1)
    keys = torch.nn.functional.normalize(torch.randn(500, 32, generator=gen), dim=1)
    query = torch.nn.functional.normalize(torch.randn(8, 32, generator=gen), dim=1)
    ours = torch_topk(query, keys, 10, chunk=64)
    _, theirs = faiss_index(keys.numpy(), "flat", 1).search(query.numpy(), 10)
    assert [set(r) for r in ours.tolist()] == [set(r) for r in theirs.tolist()]


def test_mixing_endpoints_and_normalization() -> None:
    gen = torch.Generator().manual_seed(2)
    logits = torch.randn(3, 4, generator=gen)
    log_mem = torch.log_softmax(torch.randn(3, 4, generator=gen), dim=1)
    assert torch.allclose(mix(logits, log_mem, 0.0), torch.log_softmax(logits, 1))
    assert torch.equal(mix(logits, log_mem, 1.0), log_mem)
    p = mix(logits, log_mem, 0.3).exp()
    assert torch.allclose(p, 0.7 * torch.softmax(logits, 1) + 0.3 * log_mem.exp(), atol=1e-6)
    assert torch.allclose(p.sum(1), torch.ones(3), atol=1e-6)


def test_cache_model_predicts_and_gradients_reach_pixels(tiny: LoadedModel, tmp_path: Path) -> None:
    path = make_cache(tiny, tmp_path / "c")
    x = digits_batch()
    for spec in (f"cache:path={path},theta=20,lam=0.5", f"cache:path={path},theta=20,lam=1,retrieval=knn,k=7"):
        model = compose(tiny, [spec])
        out = model.module(x)
        assert out.shape == (6, 10) and torch.isfinite(out).all()
        assert torch.allclose(out.exp().sum(1), torch.ones(6), atol=1e-5)
        pixels = x.clone().requires_grad_(True)
        torch.nn.functional.nll_loss(model.module(pixels), torch.zeros(6, dtype=torch.long)).backward()
        assert pixels.grad is not None and torch.isfinite(pixels.grad).all() and pixels.grad.abs().sum() > 0
    knn_all = compose(tiny, [f"cache:path={path},theta=20,lam=0.4,retrieval=knn,k=1000"]).module(x)
    continuous = compose(tiny, [f"cache:path={path},theta=20,lam=0.4"]).module(x)
    assert torch.allclose(knn_all, continuous, atol=1e-4)


def test_cache_only_recovers_training_labels(tiny: LoadedModel, tmp_path: Path) -> None:
    """A cache queried with its own images at a large θ returns their labels (nearest key = itself)."""
    path = make_cache(tiny, tmp_path / "c", layers=["conv"], pool="flatten", dtype="float32")
    spec = DataSpec("digits", split="train", limit=120)
    dataset = load_dataset(spec)
    indices = select_samples(dataset.labels, spec, 0)
    model = compose(tiny, [f"cache:path={path},theta=500,lam=1"])
    predictions = model.module(dataset.load(indices[:40]).images).argmax(1).numpy()
    assert (predictions == dataset.labels[indices[:40]]).all()


def test_artifact_contents_and_build_options(tiny: LoadedModel, tmp_path: Path) -> None:
    path = make_cache(tiny, tmp_path / "c", per_class=5)
    meta = json.loads((path / "meta.json").read_text())
    keys = np.load(path / "keys.npy")
    labels = np.load(path / "labels.npy")
    assert keys.dtype == np.float16 and keys.shape == (50, 8) and meta["count"] == 50
    assert np.allclose(np.linalg.norm(keys.astype(np.float32), axis=1), 1, atol=2e-3)
    assert np.bincount(labels).tolist() == [5] * 10 and meta["class_counts"] == [5] * 10
    assert meta["model"]["fingerprint"] == tiny.fingerprint and len(meta["fingerprint"]) == 64
    assert not (tmp_path / "c.partial").exists()
    with pytest.raises(InputError, match="already exists"):
        make_cache(tiny, path)
    per_class = make_cache(tiny, tmp_path / "k", clusters=3)
    assert np.bincount(np.load(per_class / "labels.npy")).tolist() == [3] * 10
    glob = make_cache(tiny, tmp_path / "g", clusters=15, cluster_mode="global")
    values = np.load(glob / "values.npy")
    assert values.shape[1] == 10 and len(values) <= 15 and np.allclose(values.sum(1), 1)
    assert not (glob / "labels.npy").exists()
    reduced = make_cache(tiny, tmp_path / "p", key_dims=4)
    assert np.load(reduced / "keys.npy").shape == (120, 4)
    for compressed in (per_class, glob, reduced):
        out = compose(tiny, [f"cache:path={compressed},theta=10,lam=1"]).module(digits_batch())
        assert torch.isfinite(out).all()


def test_cache_refuses_other_models_and_bad_parameters(tiny: LoadedModel, tiny_models: Path, tmp_path: Path) -> None:
    path = make_cache(tiny, tmp_path / "c")
    other = load_model(ModelSpec(f"{tiny_models}:tiny", num_classes=10, mean=(0.5, 0.5, 0.5)), "cpu")
    with pytest.raises(InputError, match="other weights"):
        compose(other, [f"cache:path={path}"])
    with pytest.raises(InputError, match="built behind input defenses 'none'"):
        compose(tiny, ["blur:sigma=1", f"cache:path={path}"])
    for bad, message in [
        ("theta=0", "theta must be a positive"),
        ("lam=1.5", r"lam must lie in \[0, 1\]"),
        ("retrieval=exact", "retrieval must be one of"),
        ("thetta=3", "did you mean 'theta'"),
        ("k=0,retrieval=knn", "k must be a positive"),
    ]:
        with pytest.raises(InputError, match=message):
            compose(tiny, [f"cache:path={path},{bad}"])
    with pytest.raises(InputError, match="does not exist"):
        compose(tiny, [f"cache:path={tmp_path / 'none'}"])
    with pytest.raises(InputError, match="needs path="):
        compose(tiny, ["cache"])
    with pytest.raises(InputError, match="at most one readout"):
        compose(tiny, [f"cache:path={path}", f"cache:path={path}"])
    with pytest.raises(InputError, match=r"no layer 'layer9'.*layers: conv, fc"):
        make_cache(tiny, tmp_path / "x", layers=["layer9"])
    (tmp_path / "empty").mkdir()
    for name in ("keys.npy", "labels.npy"):
        np.save(tmp_path / "empty" / name, np.zeros((0, 8) if name == "keys.npy" else 0))
    (tmp_path / "empty" / "meta.json").write_text(path.joinpath("meta.json").read_text())
    with pytest.raises(InputError, match="is empty"):
        compose(tiny, [f"cache:path={tmp_path / 'empty'}"])


def test_layers_and_aliases(tiny: LoadedModel, tmp_path: Path) -> None:
    from robaudit.defenses.features import FeatureReader

    x = digits_batch(3)
    pen, logits = FeatureReader(tiny.base, ["penultimate"])(tiny.base, x)
    assert pen.shape == (3, 8) and torch.allclose(pen.norm(dim=1), torch.ones(3), atol=1e-5)
    both, _ = FeatureReader(tiny.base, ["conv", "probs"])(tiny.base, x)
    assert both.shape == (3, 18)
    flat, _ = FeatureReader(tiny.base, ["conv"], pool="flatten")(tiny.base, x)
    assert flat.shape == (3, 8 * 32 * 32)
    assert torch.equal(logits, tiny.module(x))


def test_cache_build_and_tune_commands(cli, tiny_models: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    model = f"{tiny_models}:tiny"
    built = cli(
        "cache",
        "build",
        "--model",
        model,
        "--layers",
        "conv+penultimate",
        "--data",
        "digits",
        "--split",
        "train",
        "--out",
        tmp_path / "c",
        "--json",
    )
    assert built.code == 0, built.err
    summary = built.result
    assert summary["keys"] == 1438 and summary["dim"] == 16
    tuned = cli(
        "cache",
        "tune",
        "--cache",
        tmp_path / "c",
        "--data",
        "digits",
        "--indices",
        "0:150",
        "--thetas",
        "10,30",
        "--lams",
        "0.2:0.8:4",
        "--json",
    )
    assert tuned.code == 0, tuned.err
    result = {"summary": tuned.result}
    grid = pq.read_table(tmp_path / "c" / "tune.parquet").to_pandas()
    assert len(grid) == 2 * 5 and set(grid["lam"]) == {0.2, 0.4, 0.6, 0.8, 1.0}
    best = grid[~grid["cache_only"]].sort_values("accuracy").iloc[-1]
    assert result["summary"]["best_accuracy"] == pytest.approx(best["accuracy"])
    assert result["summary"]["samples"] == 150
    assert cli("cache", "tune", "--cache", tmp_path / "c", "--data", "digits").code == 2  # no silent overwrite
    theta, lam = result["summary"]["best_theta"], result["summary"]["best_lam"]
    evaluated = cli(
        "eval",
        "--model",
        model,
        "--defense",
        f"cache:path={tmp_path / 'c'},theta={theta},lam={lam}",
        "--data",
        "digits",
        "--indices",
        "0:150",
        "--out",
        tmp_path / "r",
        "--json",
    )
    assert evaluated.code == 0, evaluated.err
    assert evaluated.result["top1"] == pytest.approx(result["summary"]["best_accuracy"])
    rows = pq.read_table(tmp_path / "r" / "eval.parquet").to_pandas()
    assert rows["defense"].str.startswith("cache(").all()
    listed = cli("defenses", "--json")
    assert {d["name"] for d in listed.result} >= {"blur", "pca", "cache"}


def test_every_registered_defense_meets_the_contract(cli, tiny: LoadedModel, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Shape, finiteness, determinism, repr, and gradients where the defense says it is differentiable."""
    from robaudit import plugins

    cache = make_cache(tiny, tmp_path / "cache")
    assert cli("pca", "fit", "--data", "digits", "--split", "train", "--k", "16", "--out", tmp_path / "pca").code == 0
    specs = {
        "blur": "blur:sigma=1",
        "pca": f"pca:path={tmp_path / 'pca'}",
        "cache": f"cache:path={cache},lam=0.5",
        "grayscale": "grayscale",
    }
    missing = set(plugins.defenses.names()) - set(specs)
    assert not missing, f"add a contract spec for {missing}"
    x = digits_batch(4)
    for name, spec in specs.items():
        model = compose(tiny, [spec])
        defense = model.defenses[0]
        assert repr(defense).startswith(f"{name}(")
        first, second = model.module(x), model.module(x)
        assert first.shape == (4, 10) and torch.isfinite(first).all() and torch.equal(first, second), name
        if defense.differentiable:
            pixels = x.clone().requires_grad_(True)
            model.module(pixels).logsumexp(1).sum().backward()
            assert pixels.grad is not None and torch.isfinite(pixels.grad).all() and pixels.grad.abs().sum() > 0, name


def _old_grid(
    cache: Any,
    queries: torch.Tensor,
    logits: torch.Tensor,
    labels: torch.Tensor,
    thetas: list[float],
    lams: list[float],
) -> dict[tuple[float, float], int]:
    """The grid as scoring computes it: the cache's own log p_mem per θ and ``mix`` per λ."""
    counts = {}
    for theta in thetas:
        log_pmem = cache.log_pmem(queries, theta)
        for lam in sorted(set(lams) | {1.0}):
            counts[(theta, lam)] = int((mix(logits, log_pmem, lam).argmax(dim=1) == labels).sum())
    return counts


@pytest.mark.parametrize("retrieval", ["continuous", "knn"])
def test_tune_grid_reuses_similarities_and_equals_scoring(
    tiny: LoadedModel, tmp_path: Path, retrieval: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every (θ, λ) count of the grid equals what the defended model predicts, whatever the query batching,
    for one-hot labels (matrix product), scattered labels (many classes) and label distributions."""
    from robaudit.defenses import cache as cache_module
    from robaudit.defenses.cache_tune import held_out_queries, tune_grid

    paths = [make_cache(tiny, tmp_path / "c"), make_cache(tiny, tmp_path / "g", clusters=40, cluster_mode="global")]
    spec = DataSpec("digits", limit=90)
    dataset = load_dataset(spec)
    selection = select_samples(dataset.labels, spec, 0)
    # an evenly spaced run (weights carried by products, re-anchored), irregular values, in no order
    thetas = [80.0, 0.5, *np.linspace(10, 90, 17).tolist()[::-1], 5.0, 300.0]
    lams = [0.0, 0.1, 0.5, 0.9]
    for path in paths:
        for slice_limit in (64, 0):  # 0: the scatter path of many-class caches
            monkeypatch.setattr(cache_module, "SLICE_MAX_CLASSES", slice_limit)
            model = compose(tiny, [f"cache:path={path},retrieval={retrieval},k=25"])
            cache = model.defenses[-1]
            assert (cache.bounds is not None) == (slice_limit > 0 and cache.labels is not None)
            queries, logits, labels = held_out_queries(
                cache, model, dataset, selection, batch_size=32, workers=0, skip_bad=False
            )
            expected = _old_grid(cache, queries, logits, labels, thetas, lams)
            for batch in (1024, 7):
                rows = tune_grid(cache, queries, logits, labels, thetas, lams, query_batch=batch)
                assert {(r["theta"], r["lam"]): r["correct"] for r in rows} == expected, (path.name, batch)
            scored = cache.similarity_table(queries).log_pmem(thetas)
            for theta, log_pmem in zip(thetas, scored, strict=True):
                assert torch.allclose(log_pmem.exp(), cache.log_pmem(queries, theta).exp(), atol=1e-5)


def test_mixing_all_lambdas_at_once_equals_mix() -> None:
    from robaudit.defenses.cache_tune import mixed_correct

    gen = torch.Generator().manual_seed(3)
    logits = torch.randn(200, 7, generator=gen) * 3
    log_pmem = torch.log_softmax(torch.randn(200, 7, generator=gen) * 4, dim=1)
    labels = torch.randint(0, 7, (200,), generator=gen)
    lams = [0.0, 0.01, 0.2, 0.45, 0.5, 0.77, 0.999, 1.0]
    counts = mixed_correct(torch.log_softmax(logits, 1), log_pmem, lams, labels)
    assert counts.tolist() == [int((mix(logits, log_pmem, lam).argmax(1) == labels).sum()) for lam in lams]


def _rows(best: tuple[float, float], cache_only_theta: float, thetas: list[float], lams: list[float]) -> list[Any]:
    """Grid rows whose best mixed (θ, λ) and best cache-only θ are the given ones."""
    rows: list[dict[str, Any]] = []
    for theta in thetas:
        for lam in [*lams, 1.0]:
            hit = (theta, lam) == best or (lam == 1.0 and theta == cache_only_theta)
            rows.append({"theta": theta, "lam": lam, "cache_only": lam == 1.0, "correct": 9 if hit else 5})
            rows[-1].update(samples=10, accuracy=rows[-1]["correct"] / 10)
    return rows


def test_grid_summary_notes_best_values_on_the_edges() -> None:
    from robaudit.defenses.cache_tune import summarize_grid

    thetas, lams = [10.0, 20.0, 40.0], [0.2, 0.5, 0.8]
    logits, labels = torch.zeros(10, 2), torch.zeros(10, dtype=torch.long)
    inside = summarize_grid(_rows((20.0, 0.5), 20.0, thetas, lams), logits, labels)
    assert inside["note"] is None
    cases = {
        ((40.0, 0.5), 20.0): ["best θ (40) is the largest", "--thetas upwards (e.g. to 80)"],
        ((10.0, 0.5), 20.0): ["best θ (10) is the smallest", "--thetas downwards (e.g. to 5)"],
        ((20.0, 0.8), 20.0): ["best λ (0.8) is the largest", "--lams upwards (e.g. to 0.9)"],
        ((20.0, 0.2), 20.0): ["best λ (0.2) is the smallest", "--lams downwards (e.g. to 0.1)"],
        ((20.0, 0.5), 40.0): ["best cache-only θ (40) is the largest"],
    }
    for (best, only), phrases in cases.items():
        note = summarize_grid(_rows(best, only, thetas, lams), logits, labels)["note"]
        assert note is not None and all(p in note for p in phrases), (best, only, note)
        assert note.count("the best") == 1, note
    corner = summarize_grid(_rows((40.0, 0.2), 40.0, thetas, lams), logits, labels)["note"]
    assert corner is not None and corner.count("the best") == 3
    # a grid of one θ is a fixed choice; λ = 0 has nothing below it
    assert summarize_grid(_rows((20.0, 0.5), 20.0, [20.0], lams), logits, labels)["note"] is None
    assert summarize_grid(_rows((20.0, 0.0), 20.0, thetas, [0.0, 0.5]), logits, labels)["note"] is None


def test_the_tuning_grid_is_a_report_that_the_readers_understand(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    built = cli("cache", "build", "--model", "digits_cnn", "--pretrained", "--layers", "penultimate", "--data",
                "digits", "--split", "train", "--limit", 100, "--out", tmp_path / "c")  # fmt: skip
    assert built.code == 0, built.err
    tuned = cli("cache", "tune", "--cache", tmp_path / "c", "--data", "digits", "--limit", 40,
                "--thetas", "10,50", "--lams", "0.5", "--json")  # fmt: skip
    assert tuned.code == 0, tuned.err
    summarized = cli("report", "summarize", tmp_path / "c" / "tune.parquet", "--json")
    assert summarized.code == 0 and summarized.envelope["audit"] == "cache-tune"
    assert summarized.result == tuned.result
    from robaudit.presentation.html import write_html

    page = write_html(tmp_path / "c").read_text(encoding="utf-8")
    assert "unknown" not in page and 'data-section="cache-tune"' in page
