"""Input mistakes never look like bugs: a broad family of broken inputs, fed to every command.

Every case must end with exit 2 and one line ``robaudit: error: ...`` on stderr: no traceback, no
"internal error", no usage block. Add a case whenever a new kind of mistake is found.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import QUICK_AUDIT_ARGS, TINY_MODELS, CliResult
from PIL import Image

from robaudit import plugins
from robaudit.reports.writer import METADATA_KEY

Cli = Callable[..., CliResult]


@dataclass
class Workspace:
    """Valid inputs made once; cases damage copies of them."""

    root: Path
    models: Path
    report: Path  # an eval report of the tiny model
    cache: Path  # a cache built for the tiny model
    images: Path  # an image folder with two classes

    @property
    def tiny(self) -> str:
        return f"{self.models}:tiny"


def _main(*args: object) -> None:
    from robaudit.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main([str(a) for a in args])
    assert exit_info.value.code == 0


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    root = tmp_path_factory.mktemp("broken")
    models = root / "tiny_models.py"
    models.write_text(textwrap.dedent(TINY_MODELS))
    tiny = f"{models}:tiny"
    _main("eval", "--model", tiny, "--limit", 20, "--device", "cpu", "--out", root / "reports")
    _main("cache", "build", "--model", tiny, "--layers", "penultimate", "--limit", 40, "--device", "cpu",
          "--out", root / "cache")  # fmt: skip
    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        (root / "images" / cls).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(root / "images" / cls / f"{i}.png")
    return Workspace(root, models, root / "reports" / "eval.parquet", root / "cache", root / "images")


# -- damaged copies ------------------------------------------------------------------------------------------------
def with_metadata(ws: Workspace, tmp: Path, raw: bytes) -> Path:
    table = pq.read_table(ws.report)
    path = tmp / "reports" / "eval.parquet"
    path.parent.mkdir(exist_ok=True)
    pq.write_table(table.replace_schema_metadata({METADATA_KEY: raw}), path)
    return path


def with_meta_change(ws: Workspace, tmp: Path, **changes: object) -> Path:
    meta = json.loads(pq.read_schema(ws.report).metadata[METADATA_KEY])
    return with_metadata(ws, tmp, json.dumps({**meta, **changes}).encode())


def with_table(ws: Workspace, tmp: Path, change: Callable[[pa.Table], pa.Table]) -> Path:
    table = pq.read_table(ws.report)
    path = tmp / "reports" / "eval.parquet"
    path.parent.mkdir(exist_ok=True)
    pq.write_table(change(table).replace_schema_metadata(table.schema.metadata), path)
    return path


def retyped(table: pa.Table, column: str, values: list[object]) -> pa.Table:
    return table.set_column(table.schema.get_field_index(column), column, pa.array(values))


def cache_copy(ws: Workspace, tmp: Path, change: Callable[[Path], None]) -> Path:
    folder = tmp / "cache"
    shutil.copytree(ws.cache, folder)
    change(folder)
    return folder


def edit_meta(folder: Path, edit: Callable[[dict[str, object]], None]) -> None:
    meta = json.loads((folder / "meta.json").read_text())
    edit(meta)
    (folder / "meta.json").write_text(json.dumps(meta))


def file(tmp: Path, name: str = "file.txt", text: str = "not what was expected\n") -> Path:
    path = tmp / name
    path.write_text(text)
    return path


def dangling_folder(ws: Workspace, tmp: Path) -> Path:
    folder = tmp / "imgs"
    shutil.copytree(ws.images, folder)
    (folder / "a" / "gone.png").symlink_to(tmp / "nowhere.png")
    return folder


def text_report(tmp: Path) -> Path:
    (tmp / "reports").mkdir()
    return file(tmp / "reports", "eval.parquet")


def partial_with_identity(tmp: Path, text: str) -> Path:
    partial = tmp / "o" / "eval.parquet.partial"
    partial.mkdir(parents=True)
    (partial / "identity.json").write_text(text)
    return tmp / "o"


def policy(tmp: Path, text: str) -> Path:
    return file(tmp, "gate.toml", textwrap.dedent(text))


def perturbations(tmp: Path, **arrays: np.ndarray) -> Path:
    n = 4
    base = {
        "delta": np.zeros((n, 3, 8, 8), np.float16),
        "index": np.arange(n),
        "label": np.zeros(n, int),
        "threat": np.array(["white"] * n),
        "eps": np.full(n, 0.1),
        "success": np.ones(n, bool),
    }
    path = tmp / "p.npz"
    np.savez(path, **{k: v for k, v in {**base, **arrays}.items() if v is not None})
    return path


# -- the cases -----------------------------------------------------------------------------------------------------
Argv = Callable[[Workspace, Path], list[object]]

#: audit commands and the options each needs to run on a few images
AUDITS: dict[str, list[object]] = dict(QUICK_AUDIT_ARGS)
#: every other registered audit (a plugin's) has a command too, and meets the same broken inputs
AUDITS.update({name: [] for name in plugins.audits.names() if name not in AUDITS})


def audit(command: str, *extra: object, model: str | None = None) -> Argv:
    def argv(ws: Workspace, tmp: Path) -> list[object]:
        resolved = [e(ws, tmp) if callable(e) else e for e in extra]
        base = ["--model", model or ws.tiny, "--limit", 8, "--device", "cpu", "--out", tmp / "out"]
        return [*command.split(), *AUDITS[command], *base, *resolved]

    return argv


#: mistakes in the options every audit command shares: (name, extra arguments, expected words)
SHARED: list[tuple[str, list[object], str]] = [
    ("--out names a file", ["--out", lambda ws, t: file(t)], "not a folder"),
    ("--out below a file", ["--out", lambda ws, t: file(t) / "sub"], "--out"),
    ("negative --seed", ["--seed", -1], "--seed"),
    ("huge --seed", ["--seed", 10**30], "--seed"),
    ("--resume with --overwrite", ["--resume", "--overwrite"], "not both"),
    ("--limit 0", ["--limit", 0], "--limit"),
    ("--batch-size 0", ["--batch-size", 0], "--batch-size"),
    ("unknown --precision", ["--precision", "fp8"], "fp8"),
    ("--chunk-size 0", ["--chunk-size", 0], "--chunk-size"),
    ("--workers -1", ["--workers", -1], "--workers"),
    ("--workers beyond the CPUs", ["--workers", 10**6], "--workers"),
    ("empty --indices", ["--indices", "9:3"], "--indices"),
    ("--indices not a range", ["--indices", "abc"], "--indices"),
    ("--shard out of range", ["--shard", "2/2"], "--shard"),
    ("--device unknown", ["--device", "tpu"], "--device"),
    ("--on-bad-image unknown", ["--on-bad-image", "ignore"], "--on-bad-image"),
    ("--split unknown", ["--split", "validation"], "split"),
    ("--data unknown source", ["--data", "mnistt"], "data source"),
    ("--data npz missing", ["--data", lambda ws, t: f"npz:{t / 'none.npz'}"], "does not exist"),
    ("--data npz is text", ["--data", lambda ws, t: f"npz:{file(t, 'x.npz')}"], "npz"),
    ("--data imagefolder missing", ["--data", lambda ws, t: f"imagefolder:{t / 'none'}"], "does not exist"),
    ("--data imagefolder empty", ["--data", lambda ws, t: f"imagefolder:{t}"], "no images"),
    ("dangling symlink", ["--data", lambda ws, t: f"imagefolder:{dangling_folder(ws, t)}"], "gone.png"),
    ("--defense unknown", ["--defense", "blurr:sigma=1"], "did you mean"),
    ("--defense parameter twice", ["--defense", "blur:sigma=1,sigma=2"], "twice"),
    ("--defense parameter misspelt", ["--defense", "blur:sgma=1"], "sigma"),
    ("--defense value of the wrong kind", ["--defense", "blur:sigma=big"], "sigma"),
    ("--defense without a name", ["--defense", ":sigma=1"], "names nothing"),
    ("--defense cache missing", ["--defense", lambda ws, t: f"cache:path={t / 'none'}"], "does not exist"),
    ("--model unknown", ["--model", "resnet5"], "did you mean"),
    ("--model file without factory", ["--model", lambda ws, t: f"{ws.models}:nope"], "no factory"),
    ("--model file missing", ["--model", lambda ws, t: f"{t / 'm.py'}:tiny"], "does not exist"),
    ("--model file broken", ["--model", lambda ws, t: f"{file(t, 'm.py', 'def (')}:tiny"], "m.py"),
    ("--weights missing", ["--weights", lambda ws, t: t / "none.pt"], "weights"),
    ("--weights a folder", ["--weights", lambda ws, t: t], "weights"),
    ("--weights not a checkpoint", ["--weights", lambda ws, t: file(t, "w.pt")], "w.pt"),
    ("--mean not numbers", ["--mean", "0.5,abc,0.5"], "--mean"),
    ("--std zero", ["--std", "0,1,1"], "std"),
    ("--num-classes 0", ["--num-classes", 0], "--num-classes"),
    ("--input-size two numbers", ["--input-size", "32,32"], "--input-size"),
    ("--input-size with a zero", ["--input-size", "3,0,32"], "--input-size"),
    ("--model not a factory", ["--model", "os:system"], "not a model factory"),
    (
        "--defense cache index unknown",
        ["--defense", lambda ws, t: f"cache:path={ws.cache},retrieval=knn,index=lsh"],
        "index",
    ),
    (
        "--defense cache more lists than keys",
        ["--defense", lambda ws, t: f"cache:path={ws.cache},retrieval=knn,index=ivf:9999"],
        "ivf",
    ),
    ("unknown option", ["--lmit", 3], "--limit"),
    ("option value not a number", ["--batch-size", "many"], "--batch-size"),
]

CASES: list[tuple[str, Argv, str]] = [
    (f"{command}: {name}", audit(command, *extra), words) for command in AUDITS for name, extra, words in SHARED
]

CASES += [
    ("attack: negative --check-samples", audit("attack", "--check-samples", -1), "--check-samples"),
    # a damaged earlier run in --out (the later --out wins over the one audit() gives)
    (
        "eval: --resume onto a damaged report",
        lambda ws, t: [*audit("eval")(ws, t), "--out", with_metadata(ws, t, b"[").parent, "--resume"],
        "already exists",
    ),
    (
        "eval: --resume with identity.json not JSON",
        lambda ws, t: [*audit("eval")(ws, t), "--out", partial_with_identity(t, "{"), "--resume"],
        "unreadable",
    ),
    (
        "eval: --resume with identity.json a list",
        lambda ws, t: [*audit("eval")(ws, t), "--out", partial_with_identity(t, "[1]"), "--resume"],
        "damaged",
    ),
    # attack
    ("attack: --eps not a number", audit("attack", "--eps", "big"), "--eps"),
    ("attack: negative --eps", audit("attack", "--eps", "-0.1"), "--eps"),
    ("attack: unknown --attack", audit("attack", "--attack", "pgdd"), "did you mean"),
    ("attack: --attack bad parameter", audit("attack", "--attack", "pgd:steps=0"), "steps"),
    ("attack: --attack parameter twice", audit("attack", "--attack", "pgd:steps=1,steps=2"), "twice"),
    ("attack: unknown --threat", audit("attack", "--threat", "purple"), "--threat"),
    ("attack: gray without defense", audit("attack", "--threat", "gray"), "--defense"),
    ("attack: unknown --eps-mode", audit("attack", "--eps-mode", "l3"), "--eps-mode"),
    ("attack: --minimal with --eps", audit("attack", "--minimal"), "--minimal"),
    ("attack: unknown --surrogate", audit("attack", "--threat", "black", "--surrogate", "resnet5"), "did you mean"),
    (
        "attack: --save-perturbations is a folder",
        audit("attack", "--save-perturbations", lambda ws, t: t),
        "--save-perturbations",
    ),
    (
        "attack: --save-perturbations below a file",
        audit("attack", "--save-perturbations", lambda ws, t: file(t) / "p.npz"),
        "--save-perturbations",
    ),
    ("attack: --amp with a foolbox attack", audit("attack", "--amp", "--attack", "linf-pgd"), "--amp"),
    # corruptions
    ("corruptions: unknown name", audit("corruptions", "--corruptions", "gaussian_nois"), "did you mean"),
    ("corruptions: severity 9", audit("corruptions", "--severities", "9"), "severit"),
    ("corruptions: severities not numbers", audit("corruptions", "--severities", "a-b"), "severit"),
    ("corruptions: unknown --params", audit("corruptions", "--params", "mnist"), "--params"),
    ("corruptions: --noise-levels not numbers", audit("corruptions", "--noise-levels", "x"), "--noise-levels"),
    (
        "corruptions: --frost-dir missing",
        audit("corruptions", "--corruptions", "frost", "--frost-dir", lambda ws, t: t / "none"),
        "frost",
    ),
    (
        "corruptions: --clean-report missing",
        audit("corruptions", "--clean-report", lambda ws, t: t / "x.parquet"),
        "x.parquet",
    ),
    ("corruptions: unknown --reference", audit("corruptions", "--reference", "alexnett"), "alexnett"),
    # hybrid, fourier-map, jacobian
    ("hybrid: --fmix not numbers", audit("hybrid", "--fmix", "a,b"), "--fmix"),
    ("hybrid: --fmix above Nyquist", audit("hybrid", "--fmix", "2"), "--fmix"),
    ("hybrid: --repeats 0", audit("hybrid", "--repeats", 0), "--repeats"),
    ("fourier-map: --step 0", audit("fourier-map", "--step", 0), "step"),
    ("fourier-map: negative --norm", audit("fourier-map", "--norm", -1), "norm"),
    ("jacobian: --top-k 0", audit("jacobian", "--top-k", 0), "top"),
    ("jacobian: unknown --method", audit("jacobian", "--method", "exactt"), "method"),
    ("jacobian: --probes 0", audit("jacobian", "--method", "randomized", "--probes", 0), "probes"),
    # spectrum
    (
        "spectrum: --perturbations missing",
        lambda ws, t: ["spectrum", "-p", t / "none.npz", "--out", t / "o"],
        "no such file",
    ),
    ("spectrum: --perturbations not npz", lambda ws, t: ["spectrum", "-p", file(t, "p.npz"), "--out", t / "o"], "npz"),
    (
        "spectrum: --perturbations lacks keys",
        lambda ws, t: ["spectrum", "-p", perturbations(t, success=None), "--out", t / "o"],
        "success",
    ),
    (
        "spectrum: --perturbations wrong shape",
        lambda ws, t: ["spectrum", "-p", perturbations(t, delta=np.zeros((4, 8, 8))), "--out", t / "o"],
        "delta",
    ),
    (
        "spectrum: --threat absent",
        lambda ws, t: ["spectrum", "-p", perturbations(t), "--threat", "gray", "--out", t / "o"],
        "--threat",
    ),
    (
        "spectrum: --out names a file, with --perturbations",
        lambda ws, t: ["spectrum", "-p", perturbations(t), "--out", file(t)],
        "--out",
    ),
    ("spectrum: unknown --of", lambda ws, t: ["spectrum", "--of", "noise", "--out", t / "o"], "--of"),
    ("spectrum: no input", lambda ws, t: ["spectrum", "--out", t / "o"], "--perturbations"),
    ("spectrum: unknown --norm", audit("spectrum", "--norm", "l3"), "--norm"),
    (
        "spectrum: corruptions unknown",
        lambda ws, t: ["spectrum", "--of", "corruptions", "-c", "fogg", "--out", t / "o"],
        "did you mean",
    ),
    ("spectrum: --grid 0", lambda ws, t: ["spectrum", "-p", perturbations(t), "--grid", 0, "--out", t / "o"], "--grid"),
    # corruptions preview
    (
        "corruptions preview: --image missing",
        lambda ws, t: ["corruptions", "preview", "--image", t / "x.png", "--out", t / "p.png"],
        "x.png",
    ),
    (
        "corruptions preview: --image not an image",
        lambda ws, t: ["corruptions", "preview", "--image", file(t, "x.png"), "--out", t / "p.png"],
        "x.png",
    ),
    (
        "corruptions preview: --index out of range",
        lambda ws, t: ["corruptions", "preview", "--index", 10**6, "--out", t / "p.png"],
        "--index",
    ),
    (
        "corruptions preview: --size 0",
        lambda ws, t: ["corruptions", "preview", "--data", "digits", "--size", 0, "--out", t / "p.png"],
        "--size",
    ),
    (
        "corruptions preview: --out below a file",
        lambda ws, t: ["corruptions", "preview", "--data", "digits", "--out", file(t) / "p.png"],
        "not a folder",
    ),
    # cache build
    ("cache build: no --layers", lambda ws, t: ["cache", "build", "--model", ws.tiny, "--out", t / "c"], "--layers"),
    (
        "cache build: unknown layer",
        lambda ws, t: ["cache", "build", "--model", ws.tiny, "--layers", "fcc", "--out", t / "c"],
        "did you mean",
    ),
    (
        "cache build: --out names a file",
        lambda ws, t: ["cache", "build", "--model", ws.tiny, "--layers", "penultimate", "--out", file(t)],
        "file.txt",
    ),
    (
        "cache build: --out exists",
        lambda ws, t: ["cache", "build", "--model", ws.tiny, "--layers", "penultimate", "--out", t],
        "--overwrite",
    ),
    (
        "cache build: unknown --dtype",
        lambda ws, t: [
            "cache",
            "build",
            "--model",
            ws.tiny,
            "--layers",
            "penultimate",
            "--dtype",
            "int8",
            "--out",
            t / "c",
        ],
        "--dtype",
    ),
    (
        "cache build: --clusters 0",
        lambda ws, t: [
            "cache",
            "build",
            "--model",
            ws.tiny,
            "--layers",
            "penultimate",
            "--clusters",
            0,
            "--out",
            t / "c",
        ],
        "--clusters",
    ),
    (
        "cache build: --per-class 0",
        lambda ws, t: [
            "cache",
            "build",
            "--model",
            ws.tiny,
            "--layers",
            "penultimate",
            "--per-class",
            0,
            "--out",
            t / "c",
        ],
        "--per-class",
    ),
    (
        "cache build: unknown --pool",
        lambda ws, t: [
            "cache",
            "build",
            "--model",
            ws.tiny,
            "--layers",
            "penultimate",
            "--pool",
            "max",
            "--out",
            t / "c",
        ],
        "pool",
    ),
    (
        "cache build: --key-dims 0",
        lambda ws, t: [
            "cache",
            "build",
            "--model",
            ws.tiny,
            "--layers",
            "penultimate",
            "--key-dims",
            0,
            "--limit",
            20,
            "--out",
            t / "c",
        ],
        "--key-dims",
    ),
    (
        "cache build: negative --seed",
        lambda ws, t: ["cache", "build", "--model", ws.tiny, "--layers", "penultimate", "--seed", -3, "--out", t / "c"],
        "--seed",
    ),
    (
        "cache build: a cache defense",
        lambda ws, t: [
            "cache",
            "build",
            "--model",
            ws.tiny,
            "--layers",
            "penultimate",
            "--defense",
            f"cache:path={ws.cache}",
            "--out",
            t / "c",
        ],
        "cache",
    ),
    # cache layers
    ("cache layers: no --model", lambda ws, t: ["cache", "layers"], "--model"),
    ("cache layers: unknown model", lambda ws, t: ["cache", "layers", "--model", "resnt18"], "did you mean"),
    (
        "cache layers: --weights not a checkpoint",
        lambda ws, t: ["cache", "layers", "--model", ws.tiny, "--weights", file(t)],
        "text file",
    ),
    (
        "cache layers: --input-size not three numbers",
        lambda ws, t: ["cache", "layers", "--model", ws.tiny, "--input-size", "3,32"],
        "--input-size",
    ),
    # cache tune and cache defenses with damaged caches
    ("cache tune: --cache missing", lambda ws, t: ["cache", "tune", "--cache", t / "none"], "does not exist"),
    ("cache tune: --cache is a file", lambda ws, t: ["cache", "tune", "--cache", file(t)], "does not exist"),
    (
        "cache tune: --thetas not numbers",
        lambda ws, t: ["cache", "tune", "--cache", ws.cache, "--thetas", "a"],
        "--thetas",
    ),
    (
        "cache tune: --lams above 1",
        lambda ws, t: ["cache", "tune", "--cache", ws.cache, "--lams", "2", "--out", t / "g.parquet"],
        "λ",
    ),
    (
        "cache tune: unknown --retrieval",
        lambda ws, t: ["cache", "tune", "--cache", ws.cache, "--retrieval", "exact", "--out", t / "g.parquet"],
        "retrieval",
    ),
    (
        "cache tune: --k 0",
        lambda ws, t: ["cache", "tune", "--cache", ws.cache, "--retrieval", "knn", "--k", 0, "--out", t / "g.parquet"],
        "k",
    ),
    (
        "cache tune: --out exists",
        lambda ws, t: ["cache", "tune", "--cache", ws.cache, "--out", file(t, "g.parquet")],
        "--overwrite",
    ),
    (
        "cache tune: --out below a file",
        lambda ws, t: ["cache", "tune", "--cache", ws.cache, "--limit", 10, "--out", file(t) / "g.parquet"],
        "not a folder",
    ),
]

#: a cache folder damaged in one way, given to cache tune and to an audit's --defense cache
DAMAGED_CACHES: list[tuple[str, Callable[[Path], None], str]] = [
    ("meta.json not JSON", lambda c: (c / "meta.json").write_text("{"), "meta.json"),
    ("meta.json a list", lambda c: (c / "meta.json").write_text("[]"), "meta.json"),
    ("meta.json without format", lambda c: edit_meta(c, lambda m: m.pop("format")), "not a robaudit cache"),
    ("meta.json without model", lambda c: edit_meta(c, lambda m: m.pop("model")), "meta.json"),
    ("meta.json without layers", lambda c: edit_meta(c, lambda m: m.pop("layers")), "meta.json"),
    ("meta.json layer renamed", lambda c: edit_meta(c, lambda m: m.__setitem__("layers", ["fcc"])), "fcc"),
    (
        "meta.json model spec edited",
        lambda c: edit_meta(c, lambda m: m["model"]["spec"].__setitem__("colour", "red")),
        "meta.json",
    ),  # type: ignore[index]
    ("meta.json pool edited", lambda c: edit_meta(c, lambda m: m.__setitem__("pool", 3)), "pool"),
    ("keys.npy missing", lambda c: (c / "keys.npy").unlink(), "keys.npy"),
    ("keys.npy not an array", lambda c: (c / "keys.npy").write_text("x"), "keys.npy"),
    ("keys.npy of another width", lambda c: np.save(c / "keys.npy", np.ones((40, 3), np.float16)), "keys"),
    ("keys.npy of another length", lambda c: np.save(c / "keys.npy", np.ones((7, 8), np.float16)), "keys"),
    ("keys.npy one-dimensional", lambda c: np.save(c / "keys.npy", np.ones(40, np.float16)), "keys"),
    ("labels.npy of floats", lambda c: np.save(c / "labels.npy", np.full(40, 0.5)), "labels"),
    ("labels.npy beyond the classes", lambda c: np.save(c / "labels.npy", np.full(40, 99)), "labels"),
    ("labels.npy and values.npy", lambda c: np.save(c / "values.npy", np.ones((40, 10))), "exactly one"),
]
for name, damage, words in DAMAGED_CACHES:
    CASES += [
        (f"cache tune: {name}", lambda ws, t, d=damage: ["cache", "tune", "--cache", cache_copy(ws, t, d), "--limit",
                                                         10, "--out", t / "g.parquet"], words),
        (f"eval --defense cache: {name}", lambda ws, t, d=damage: audit(
            "eval", "--defense", f"cache:path={cache_copy(ws, t, d)}")(ws, t), words),
    ]  # fmt: skip

CASES += [
    # pca fit
    ("pca fit: --k 0", lambda ws, t: ["pca", "fit", "--k", 0, "--data", "digits", "--out", t / "p"], "--k"),
    (
        "pca fit: --k above D",
        lambda ws, t: ["pca", "fit", "--k", 10**6, "--data", "digits", "--limit", 20, "--out", t / "p"],
        "k",
    ),
    (
        "pca fit: --out names a file",
        lambda ws, t: ["pca", "fit", "--k", 2, "--data", "digits", "--out", file(t)],
        "file.txt",
    ),
    ("pca fit: --out exists", lambda ws, t: ["pca", "fit", "--k", 2, "--data", "digits", "--out", t], "--overwrite"),
    (
        "pca fit: unknown --method",
        lambda ws, t: ["pca", "fit", "--k", 2, "--data", "digits", "--method", "fast", "--out", t / "p"],
        "method",
    ),
    (
        "pca fit: imagefolder without size",
        lambda ws, t: ["pca", "fit", "--k", 2, "--data", f"imagefolder:{ws.images}", "--out", t / "p"],
        "--image-size",
    ),
    (
        "pca fit: --crop-pct 2",
        lambda ws, t: [
            "pca",
            "fit",
            "--k",
            2,
            "--data",
            f"imagefolder:{ws.images}",
            "--image-size",
            32,
            "--crop-pct",
            2,
            "--out",
            t / "p",
        ],
        "--crop-pct",
    ),
    (
        "pca fit: huge --seed",
        lambda ws, t: ["pca", "fit", "--k", 2, "--data", "digits", "--seed", 2**64, "--out", t / "p"],
        "--seed",
    ),
    ("pca fit: no --data", lambda ws, t: ["pca", "fit", "--k", 2, "--out", t / "p"], "--data"),
]


def train(*extra: object) -> Argv:
    return lambda ws, t: [
        "train",
        "--model",
        "digits_cnn",
        "--data",
        "digits",
        "--limit",
        20,
        "--out",
        t / "tr",
        *extra,
    ]


CASES += [
    ("train: --epochs 0", train("--epochs", 0), "--epochs"),
    ("train: unknown --optimizer", train("--optimizer", "adam"), "--optimizer"),
    ("train: unknown regularizer", train("--regularizer", "simlarity"), "did you mean 'similarity'"),
    ("train: negative --lr", train("--lr", -1), "--lr"),
    (
        "train: --out names a file",
        lambda ws, t: ["train", "-m", "digits_cnn", "-d", "digits", "-o", file(t)],
        "file.txt",
    ),
]

#: a damaged report, given to report show and summarize, to gate, and as a baseline
DAMAGED_REPORTS: list[tuple[str, Callable[[Workspace, Path], Path], str]] = [
    ("missing", lambda ws, t: t / "reports" / "eval.parquet", "does not exist"),
    ("a text file", lambda ws, t: text_report(t), "Parquet"),
    ("metadata not JSON", lambda ws, t: with_metadata(ws, t, b"{not json"), "JSON"),
    ("metadata a list", lambda ws, t: with_metadata(ws, t, b"[1, 2]"), "JSON"),
    ("unknown format_version", lambda ws, t: with_meta_change(ws, t, format_version=99), "format_version"),
    ("format_version a string", lambda ws, t: with_meta_change(ws, t, format_version="1"), "format_version"),
    ("unknown audit", lambda ws, t: with_meta_change(ws, t, audit="evall"), "evall"),
    ("a column missing", lambda ws, t: with_table(ws, t, lambda tb: tb.drop_columns(["correct"])), "correct"),
    (
        "a column mistyped",
        lambda ws, t: with_table(ws, t, lambda tb: retyped(tb, "correct", ["yes"] * tb.num_rows)),
        "correct",
    ),
    ("index mistyped", lambda ws, t: with_table(ws, t, lambda tb: retyped(tb, "index", ["a"] * tb.num_rows)), "index"),
    ("data metadata a string", lambda ws, t: with_meta_change(ws, t, data="digits"), "data"),
]
for name, make, words in DAMAGED_REPORTS:
    CASES += [
        (f"report show: {name}", lambda ws, t, m=make: ["report", "show", m(ws, t)], words),
        (f"report summarize: {name}", lambda ws, t, m=make: ["report", "summarize", m(ws, t)], words),
        (f"report md: {name}", lambda ws, t, m=make: [*(["report", "md", m(ws, t).parent])], ""),
        (f"report html: {name}", lambda ws, t, m=make: ["report", "html", m(ws, t).parent, "-o", t / "r.html"], ""),
        (f"gate: {name}", lambda ws, t, m=make: ["gate", m(ws, t).parent, "--policy",
                                                 policy(t, 'rule = [{metric = "eval.top1", min = 0.0}]')], ""),
        (f"gate --list-metrics: {name}", lambda ws, t, m=make: ["gate", m(ws, t).parent, "--list-metrics"], ""),
        (f"gate baseline: {name}", lambda ws, t, m=make: [
            "gate", ws.report.parent, "--baseline", m(ws, t).parent,
            "--policy", policy(t, '[[rule]]\nmetric = "eval.top1"\nmax_drop = 0.1\n')], ""),
    ]  # fmt: skip

GATE_POLICIES: list[tuple[str, str, str]] = [
    ("min = nan", '[[rule]]\nmetric = "eval.top1"\nmin = nan\n', "nan"),
    ("max = nan", '[[rule]]\nmetric = "eval.top1"\nmax = nan\n', "nan"),
    ("equals = nan", '[[rule]]\nmetric = "eval.top1"\nequals = nan\n', "equals"),
    ("check with nan", '[[rule]]\ncheck = "eval.top1 >= nan"\n', "nan"),
    ("max_drop negative", '[[rule]]\nmetric = "eval.top1"\nmax_drop = -0.1\n', "max_drop"),
    ("min a string", '[[rule]]\nmetric = "eval.top1"\nmin = "high"\n', "min"),
    ("unknown key", '[[rule]]\nmetric = "eval.top1"\nminn = 0.5\n', "did you mean"),
    ("not TOML", "[[rule]\nmetric = ", "line"),
    ("no rules", "# nothing\n", "no rules"),
    ("unknown metric", '[[rule]]\nmetric = "eval.top11"\nmin = 0.5\n', "eval.top1"),
    ("unknown level", '[[rule]]\nmetric = "eval.top1"\nmin = 0.5\nlevel = "fatal"\n', "level"),
]
CASES += [
    (f"gate: {name}", lambda ws, t, x=text: ["gate", ws.report.parent, "--policy", policy(t, x)], words)
    for name, text, words in GATE_POLICIES
]
CASES += [
    ("gate: no --policy", lambda ws, t: ["gate", ws.report.parent], "--policy"),
    ("gate: --policy missing", lambda ws, t: ["gate", ws.report.parent, "--policy", t / "g.toml"], "g.toml"),
    ("gate: --policy a folder", lambda ws, t: ["gate", ws.report.parent, "--policy", t], "policy"),
    (
        "gate: reports missing",
        lambda ws, t: ["gate", t / "none", "--policy", policy(t, '[[rule]]\nmetric = "eval.top1"\nmin = 0\n')],
        "none",
    ),
    ("gate: reports empty", lambda ws, t: ["gate", t, "--list-metrics"], ""),
    (
        "gate: --baseline missing",
        lambda ws, t: [
            "gate",
            ws.report.parent,
            "--baseline",
            t / "none",
            "--policy",
            policy(t, '[[rule]]\nmetric = "eval.top1"\nmax_drop = 0.1\n'),
        ],
        "none",
    ),
    (
        "gate: --junit below a file",
        lambda ws, t: [
            "gate",
            ws.report.parent,
            "--junit",
            file(t) / "j.xml",
            "--policy",
            policy(t, '[[rule]]\nmetric = "eval.top1"\nmin = 0\n'),
        ],
        "--junit",
    ),
    # report commands given other things
    ("report show: a folder", lambda ws, t: ["report", "show", ws.report.parent], "folder"),
    ("report show: negative --rows", lambda ws, t: ["report", "show", ws.report, "--rows", -5], "--rows"),
    ("report show: unknown --columns", lambda ws, t: ["report", "show", ws.report, "--columns", "nope"], "nope"),
    ("report html: folder missing", lambda ws, t: ["report", "html", t / "none"], "none"),
    ("report html: a file", lambda ws, t: ["report", "html", file(t)], "file.txt"),
    (
        "report html: -o below a file",
        lambda ws, t: ["report", "html", ws.report.parent, "-o", file(t) / "r.html"],
        "not a folder",
    ),
    ("report md: folder missing", lambda ws, t: ["report", "md", t / "none"], "none"),
    (
        "report md: -o below a file",
        lambda ws, t: ["report", "md", ws.report.parent, "-o", file(t) / "r.md"],
        "not a folder",
    ),
    ("report merge: shard folder missing", lambda ws, t: ["report", "merge", t / "out", t / "none"], "none"),
    (
        "report merge: no shard in the folder",
        lambda ws, t: ["report", "merge", t / "out", ws.report.parent],
        "no shard",
    ),
    ("report merge: a report that is no shard", lambda ws, t: ["report", "merge", t / "out", ws.report], "not a shard"),
    ("report merge: OUT is a file", lambda ws, t: ["report", "merge", file(t), ws.report.parent], "not a folder"),
    (
        "report merge: a damaged shard",
        lambda ws, t: ["report", "merge", t / "out", file(t, "eval.shard-0-of-2.parquet", "x")],
        "eval.shard-0-of-2.parquet",
    ),
    # suites
    ("run: suite missing", lambda ws, t: ["run", t / "s.toml"], "s.toml"),
    ("run: unknown built-in suite", lambda ws, t: ["run", "demoo"], "did you mean"),
    ("run: suite not TOML", lambda ws, t: ["run", file(t, "s.toml", "[[step]\n")], "s.toml"),
    ("run: unknown command", lambda ws, t: ["run", file(t, "s.toml", '[[steps]]\ncommand = "evall"\n')], "evall"),
    (
        "run: unknown option",
        lambda ws, t: ["run", file(t, "s.toml", '[[steps]]\ncommand = "eval"\nmodle = "x"\n')],
        "modle",
    ),
    (
        "run: --resume with --overwrite",
        lambda ws, t: ["run", "demo", "--resume", "--overwrite", "--out", t / "o"],
        "--resume",
    ),
    ("run: --out names a file", lambda ws, t: ["run", "demo", "--out", file(t)], "file.txt"),
    ("run: bad --set", lambda ws, t: ["run", "demo", "--set", "run.limit", "--out", t / "o"], "--set"),
    ("run: no suite", lambda ws, t: ["run"], "suite"),
    ("demo: --out names a file", lambda ws, t: ["demo", "--out", file(t)], "file.txt"),
    ("demo: unknown --device", lambda ws, t: ["demo", "--device", "tpu", "--out", t / "o"], "--device"),
    # global options
    ("--plugins-dir missing", lambda ws, t: ["--plugins-dir", t / "none", "plugins"], "none"),
    (
        "--plugins-dir with a broken plugin",
        lambda ws, t: ["--plugins-dir", file(t, "p.py", "import nonexistent_module_xyz\n").parent, "plugins"],
        "p.py",
    ),
    ("unknown command", lambda ws, t: ["evaluate"], "evaluate"),
    # any audit by name
    ("audit: unknown audit", lambda ws, t: ["audit", "hybird", "--model", ws.tiny, "--out", t / "o"], "hybrid"),
    (
        "audit: unknown option of the audit",
        lambda ws, t: ["audit", "hybrid", "--model", ws.tiny, "-O", "fmx=0.5", "--out", t / "o"],
        "fmix",
    ),
    ("audit: option without a value", lambda ws, t: ["audit", "hybrid", "--model", ws.tiny, "-O", "fmix"], "KEY=VALUE"),
    ("audit: shared option broken", lambda ws, t: ["audit", "eval", "--model", ws.tiny, "--seed", -1], "--seed"),
]


def leaf_commands() -> list[list[str]]:
    """Every command robaudit has (as argv prefixes), read from the command tree itself."""
    import typer

    from robaudit.cli import app

    out: list[list[str]] = []

    def walk(command: Any, path: list[str]) -> None:
        if hasattr(command, "list_commands"):  # a group (of click, or of the click typer vendors)
            context = command.context_class(command)  # audit commands are made when listed
            for name in command.list_commands(context):
                walk(command.get_command(context, name), [*path, name])
        else:
            out.append(path)

    walk(typer.main.get_command(app), [])
    return out


CASES += [(f"{' '.join(p)}: unknown option", lambda ws, t, p=p: [*p, "--no-such-option"], "--no-such-option")
          for p in leaf_commands()]  # fmt: skip


def one_error_line(result: CliResult) -> str:
    assert "Traceback" not in result.err and "internal error" not in result.err, result.err
    lines = [line for line in result.err.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("robaudit:")]
    assert len(errors) == 1 and lines[-1] == errors[0], result.err
    assert errors[0].startswith("robaudit: error: "), result.err
    assert not any(word in result.err for word in ("Usage:", "Warning", "warn(")), result.err
    return errors[0]


PARAMS = [c if isinstance(c, type(pytest.param())) else pytest.param(*c, id=c[0]) for c in CASES]


@pytest.mark.parametrize(("name", "argv", "words"), PARAMS)
def test_a_broken_input_exits_2_with_one_line(
    cli: Cli, ws: Workspace, tmp_path: Path, name: str, argv: Argv, words: str
) -> None:
    result = cli(*argv(ws, tmp_path))
    line = one_error_line(result)
    assert result.code == 2, line
    assert words in line, line


def test_every_command_is_covered() -> None:
    names = {" ".join(p).replace("corruptions audit", "corruptions") for p in leaf_commands()}
    assert names >= {"eval", "attack", "corruptions", "corruptions preview", "hybrid", "jacobian", "fourier-map",
                     "spectrum", "cache build", "cache tune", "pca fit", "report show", "report summarize",
                     "report html", "report md", "gate", "run", "demo"}  # fmt: skip
    for command in names:
        cases = [p for p in PARAMS if str(p.id).startswith(f"{command}:")]
        assert len(cases) >= (1 if command in ("plugins", "models", "defenses", "attacks") else 3), command


def test_a_dangling_symlink_is_skipped_with_on_bad_image_skip(cli: Cli, ws: Workspace, tmp_path: Path) -> None:
    folder = dangling_folder(ws, tmp_path)
    result = cli("eval", "--model", ws.tiny, "--data", f"imagefolder:{folder}", "--on-bad-image", "skip",
                 "--device", "cpu", "--out", tmp_path / "out", "--json")  # fmt: skip
    assert result.code == 0, result.err
    assert result.result["skipped"] == 1


def test_library_warnings_stay_off_stderr_unless_verbose(ws: Workspace, tmp_path: Path) -> None:
    """A plugin that warns (as torch, PIL or faiss do) prints nothing around the error line without -v."""
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "noisy.py").write_text(
        "import warnings\nwarnings.warn('a library deprecation', DeprecationWarning)\n"
        "warnings.warn('a library warning', UserWarning)\n"
    )
    argv = ["--plugins-dir", tmp_path / "plugins", "eval", "--model", ws.tiny, "--seed", -1, "--out", tmp_path / "o"]
    env = {**os.environ, "PYTHONWARNINGS": "always"}
    run = [sys.executable, "-m", "robaudit"]
    quiet = subprocess.run([*run, *map(str, argv)], capture_output=True, text=True, env=env, timeout=300)
    assert quiet.returncode == 2 and quiet.stderr.strip().splitlines() == [quiet.stderr.strip()], quiet.stderr
    verbose = subprocess.run([*run, "-v", *map(str, argv)], capture_output=True, text=True, env=env, timeout=300)
    assert verbose.returncode == 2 and "a library warning" in verbose.stderr


HUNGRY = """

class Hungry(Tiny):
    def forward(self, x):
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 32000000000000 bytes")


def hungry(name, *, pretrained=False, num_classes=None):
    return _build(Hungry(num_classes or 10), num_classes or 10)
"""


def test_running_out_of_memory_is_one_line_with_exit_3(cli: Cli, tmp_path: Path) -> None:
    models = tmp_path / "m.py"
    models.write_text(textwrap.dedent(TINY_MODELS) + textwrap.dedent(HUNGRY))
    result = cli("eval", "--model", f"{models}:hungry", "--limit", 8, "--device", "cpu", "--out", tmp_path / "o")
    line = one_error_line(result)
    assert result.code == 3 and "out of memory" in line and "--batch-size" in line
