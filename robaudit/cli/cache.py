"""``robaudit cache build|tune``: make a key-value cache for a model, and choose its θ and λ."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from . import options as o

if TYPE_CHECKING:
    from ..defenses.cache import CacheArtifact
    from ..models import LoadedModel

app = typer.Typer(help="Build and tune key-value caches (the cache defense).", no_args_is_help=True)

CACHE = "Cache"


@app.command("build")
def build_command(
    model: o.Model,
    layers: Annotated[
        str,
        typer.Option(
            "--layers",
            help="Key layers: module names, graph nodes (layer3.1.relu_1; `robaudit cache layers` lists both) or "
            "penultimate/logits/probs; join several with + (e.g. layer3.1+layer3.2).",
            rich_help_panel=CACHE,
        ),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Cache folder to write.", rich_help_panel=CACHE)],
    data: o.Data = "digits",
    pretrained: o.Pretrained = False,
    weights: o.Weights = None,
    trust_checkpoint: o.TrustCheckpoint = False,
    num_classes: o.NumClasses = None,
    mean: o.Mean = None,
    std: o.Std = None,
    input_size: o.InputSize = None,
    defense: o.Defenses = None,
    split: o.Split = None,
    limit: o.Limit = None,
    indices: o.Indices = None,
    on_bad_image: o.OnBadImage = "fail",
    per_class: Annotated[
        int | None, typer.Option("--per-class", help="Keep the first N images of each class.", rich_help_panel=CACHE)
    ] = None,
    pool: Annotated[
        str,
        typer.Option(
            "--pool",
            help="avg: global-average-pool spatial layers; flatten: keep the whole map.",
            rich_help_panel=CACHE,
        ),
    ] = "avg",
    dtype: Annotated[
        str, typer.Option("--dtype", help="Storage of keys: float16 or float32.", rich_help_panel=CACHE)
    ] = "float16",
    clusters: Annotated[
        int | None,
        typer.Option(
            "--clusters",
            help="Compress keys to N k-means centroids (per class, or in all with --cluster-mode global).",
            rich_help_panel=CACHE,
        ),
    ] = None,
    cluster_mode: Annotated[
        str, typer.Option("--cluster-mode", help="per-class or global.", rich_help_panel=CACHE)
    ] = "per-class",
    key_dims: Annotated[
        int | None,
        typer.Option("--key-dims", help="Project keys onto their top D principal components.", rich_help_panel=CACHE),
    ] = None,
    batch_size: o.BatchSize = 256,
    workers: o.Workers = 0,
    seed: o.Seed = 0,
    device: o.Device = "auto",
    overwrite: o.Overwrite = False,
    as_json: o.Json = False,
) -> None:
    """Stream a model's features of (training) images into a cache folder: keys.npy, labels.npy, meta.json."""
    from ..data import DataSpec, load_dataset, select_samples
    from ..defenses.base import compose
    from ..defenses.cache_build import build_cache
    from ..defenses.features import parse_layers
    from ..distributed import world
    from ..models import load_model
    from .output import print_json, print_summary, progress_bar, stderr

    spec = o.model_spec(
        model=model,
        pretrained=pretrained,
        weights=weights,
        trust_checkpoint=trust_checkpoint,
        num_classes=num_classes,
        mean=mean,
        std=std,
        input_size=input_size,
    )
    data_spec = DataSpec(source=data, split=split, limit=limit, on_bad_image=on_bad_image, indices=indices)
    from ..training.card import defenses_for_weights

    loaded = compose(load_model(spec, device), list(defenses_for_weights(weights, tuple(defense or ()))))
    dataset = load_dataset(data_spec, loaded.preprocessing)
    selection = select_samples(dataset.labels, data_spec, seed)
    with progress_bar("cache build") as hook:
        meta = build_cache(
            loaded,
            dataset,
            data_spec,
            selection,
            layers=parse_layers(layers),
            out=out,
            pool=pool,
            dtype=dtype,
            per_class=per_class,
            clusters=clusters,
            cluster_mode=cluster_mode,
            key_dims=key_dims,
            defense_specs=list(defense or []),
            batch_size=batch_size,
            workers=workers,
            seed=seed,
            overwrite=overwrite,
            progress=hook,
        )
    if not world().main:  # under torchrun rank 0, which wrote the cache, tells about it
        return
    summary = {
        "keys": meta["count"],
        "dim": meta["dim"],
        "layers": "+".join(meta["layers"]),
        "pool": meta["pool"],
        "dtype": meta["dtype"],
        "images": meta["data"]["images"],
        "skipped": meta["data"]["skipped"],
        "seconds": meta["seconds"],
    }
    if as_json:
        print_json({**summary, "fingerprint": meta["fingerprint"]}, files={"cache": out})
    else:
        print_summary(f"cache for {spec.name} on {meta['data']['description']}", summary)
        stderr.print(f"cache: {out} (use it with --defense cache:path={out},theta=50,lam=0.5)")


@app.command("layers")
def layers_command(
    model: o.Model,
    pattern: Annotated[
        str | None, typer.Argument(help="Show only names containing this text (e.g. relu, layer3).")
    ] = None,
    pretrained: o.Pretrained = False,
    weights: o.Weights = None,
    trust_checkpoint: o.TrustCheckpoint = False,
    num_classes: o.NumClasses = None,
    input_size: o.InputSize = None,
    as_json: o.Json = False,
) -> None:
    """List what `cache build --layers` can name: the model's modules (read with hooks, the fast path) and
    the nodes of its traced graph (any intermediate value, e.g. a functional ReLU inside a residual block)."""
    from rich.markup import escape
    from rich.table import Table

    from ..defenses.features import ALIASES, graph_nodes
    from ..errors import InputError
    from ..models import load_model
    from .output import print_json, stdout

    spec = o.model_spec(
        model=model,
        pretrained=pretrained,
        weights=weights,
        trust_checkpoint=trust_checkpoint,
        num_classes=num_classes,
        input_size=input_size,
    )
    # listing names does not audit anything: the model's caveats (random weights...) would only be noise here
    caveat_log = logging.getLogger("robaudit.models.caveats")
    level = caveat_log.level
    caveat_log.setLevel(logging.ERROR)
    try:
        backbone = load_model(spec, "cpu").backbone
    finally:
        caveat_log.setLevel(level)
    modules = {name: type(module).__name__ for name, module in backbone.named_modules() if name}
    try:
        nodes, problem = graph_nodes(backbone), None
    except InputError as exc:
        nodes, problem = [], str(exc)
    rows = [(name, "module", kind) for name, kind in modules.items()]
    rows += [(name, "graph node", "") for name in nodes if name not in modules]
    rows += [(name, "alias", "") for name in ALIASES]
    if pattern:
        rows = [row for row in rows if pattern in row[0]]
    if as_json:
        print_json({"layers": [{"name": n, "kind": k, "module": m or None} for n, k, m in rows], "graph": problem})
        return
    table = Table(title=escape(f"layers of {spec.name}"), title_justify="left")
    for column in ("name", "kind", "module"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*(escape(cell) for cell in row))
    stdout.print(table)
    if problem:
        stdout.print(f"[yellow]no graph nodes:[/yellow] {escape(problem)}", highlight=False, soft_wrap=True)


@app.command("tune")
def tune_command(
    cache: Annotated[
        Path, typer.Option("--cache", help="Cache folder from `robaudit cache build`.", rich_help_panel=CACHE)
    ],
    data: o.Data = "digits",
    split: o.Split = None,
    limit: o.Limit = None,
    indices: o.Indices = None,
    on_bad_image: o.OnBadImage = "fail",
    thetas: Annotated[
        str, typer.Option("--thetas", help="θ grid: START:STOP:COUNT or a comma list.", rich_help_panel=CACHE)
    ] = "10:90:33",
    lams: Annotated[
        str, typer.Option("--lams", help="λ grid (λ = 1, cache-only, is always added).", rich_help_panel=CACHE)
    ] = "0.1:0.9:33",
    retrieval: Annotated[
        str, typer.Option("--retrieval", help="continuous (all keys) or knn.", rich_help_panel=CACHE)
    ] = "continuous",
    k: Annotated[int, typer.Option("--k", help="Neighbours for knn retrieval.", rich_help_panel=CACHE)] = 50,
    batch_size: o.BatchSize = 256,
    workers: o.Workers = 0,
    seed: o.Seed = 0,
    device: o.Device = "auto",
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Grid report (default CACHE/tune.parquet).")] = None,
    overwrite: o.Overwrite = False,
    as_json: o.Json = False,
) -> None:
    """Grid-search θ and λ by accuracy on held-out data; features are computed once. The model is the one the
    cache was built for (recorded in its meta.json)."""
    from ..data import DataSpec, load_dataset, select_samples
    from ..defenses.cache import CacheArtifact, KeyValueCache
    from ..defenses.cache_tune import held_out_queries, summarize_grid, tune_grid, write_grid
    from ..errors import InputError
    from ..reports.writer import check_output_file
    from .output import print_json, print_summary, progress_bar, stderr

    artifact = CacheArtifact(cache)
    model = _cache_model(artifact, cache, retrieval, k, device)
    cache_defense = model.defenses[-1]
    assert isinstance(cache_defense, KeyValueCache)
    theta_grid, lam_grid = o.grid(thetas, "--thetas"), o.grid(lams, "--lams")
    data_spec = DataSpec(source=data, split=split, limit=limit, on_bad_image=on_bad_image, indices=indices)
    dataset = load_dataset(data_spec, model.preprocessing)
    selection = select_samples(dataset.labels, data_spec, seed)
    target = out or cache / "tune.parquet"
    if target.exists() and not overwrite:
        raise InputError(f"{target} already exists; pass --overwrite to replace it")
    check_output_file(target, "--out")
    with progress_bar("held-out features") as hook:
        queries, logits, labels = held_out_queries(
            cache_defense,
            model,
            dataset,
            selection,
            batch_size=batch_size,
            workers=workers,
            skip_bad=on_bad_image == "skip",
            progress=hook,
        )
    rows = tune_grid(cache_defense, queries, logits, labels, theta_grid, lam_grid)
    summary = summarize_grid(rows, logits, labels)
    write_grid(target, rows, summary, artifact.meta, data_spec, dataset.description, retrieval, k)
    if as_json:
        print_json(summary, files={"grid": target})
    else:
        print_summary(f"cache tune: {cache} on {dataset.description}", summary)
        stderr.print(
            f"grid: {target}\nbest: --defense cache:path={cache},theta={summary['best_theta']:g},"
            f"lam={summary['best_lam']:g}  (cache-only: lam=1,theta={summary['cache_only_theta']:g})"
        )
    if summary["note"]:
        stderr.print(f"warning: {summary['note']}")


def _cache_model(artifact: CacheArtifact, cache: Path, retrieval: str, k: int, device: str) -> LoadedModel:
    """The cache's own model (from its meta.json) with its input defenses and the cache itself."""
    from ..defenses.base import compose
    from ..models import ModelSpec, load_model

    spec = ModelSpec.from_dict(artifact.meta["model"]["spec"])
    cache_spec = f"cache:path={cache},retrieval={retrieval}" + (f",k={k}" if retrieval == "knn" else "")
    return compose(load_model(spec, device), [*artifact.meta.get("input_defense_specs", []), cache_spec])
