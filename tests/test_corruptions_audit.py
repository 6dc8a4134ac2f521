"""The corruptions audit: rows, CE / mCE arithmetic, references, pre-rendered sets, preview, bad input."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from robaudit.corruption import mce
from robaudit.reports.read import read_report


def test_mce_arithmetic_matches_a_hand_computed_example() -> None:
    errors = {"fog": {1: 0.2, 2: 0.4}, "snow": {1: 0.1, 2: 0.3}}
    reference = {"fog": {1: 0.5, 2: 0.5}, "snow": {1: 0.4, 2: 0.4}}
    # CE_fog = 0.6 / 1.0, CE_snow = 0.4 / 0.8 -> mCE = 100 * (0.6 + 0.5) / 2 = 55
    assert mce.corruption_error(errors["fog"], reference["fog"]) == pytest.approx(0.6)
    value, stderr = mce.mean_corruption_error(
        errors, reference, ["fog", "snow"], {"fog": {1: 100, 2: 100}, "snow": {1: 100, 2: 100}}
    )
    assert value == pytest.approx(55.0)
    fog_var = (0.2 * 0.8 + 0.4 * 0.6) / 100 / 1.0**2
    snow_var = (0.1 * 0.9 + 0.3 * 0.7) / 100 / 0.8**2
    assert stderr == pytest.approx(100 * math.sqrt(fog_var + snow_var) / 2)
    # relative: (0.2-0.1 + 0.4-0.1) / (0.5-0.3 + 0.5-0.3) = 0.4 / 0.4 = 1
    assert mce.relative_corruption_error(errors["fog"], 0.1, reference["fog"], 0.3) == pytest.approx(1.0)
    # the AlexNet table: the mean of the 15 averages is 0.788993 (published sanity value)
    averages = [np.mean(mce.ALEXNET_ERRORS[c]) for c in list(mce.ALEXNET_ERRORS)[:15]]
    assert np.mean(averages) == pytest.approx(0.788993, abs=1e-6)


def run_corruptions(cli, tiny_models: Path, out: Path, *extra: object):  # type: ignore[no-untyped-def]
    return cli("corruptions", "-m", f"{tiny_models}:tiny", "-d", "digits", "--limit", "20", "-o", out, "--json", *extra)


def test_audit_rows_and_summary(cli, tiny_models: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    result = run_corruptions(
        cli, tiny_models, tmp_path, "-c", "gaussian_noise,contrast", "--severities", "1,5", "--noise-levels", "0.1"
    )
    assert result.code == 0, result.err
    summary = result.result
    rows, _ = read_report(tmp_path / "corruptions.parquet")
    assert len(rows) == 20 * (1 + 2 * 2 + 1)
    assert set(rows["corruption"]) == {"clean", "gaussian_noise", "contrast", "gaussian_noise_sigma"}
    assert set(rows.loc[rows["corruption"] == "contrast", "band"]) == {"low"}
    assert summary["param_set"] == "cifar" and summary["reference"] is None and summary["mCE"] is None
    cells = rows[rows["severity"].notna()]
    expected = cells.groupby(["corruption", "severity"])["correct"].mean().mean()
    assert summary["corruption_accuracy"] == pytest.approx(expected)
    assert summary["clean_accuracy"] == pytest.approx(rows.loc[rows["corruption"] == "clean", "correct"].mean())
    assert summary["noise_curve"][0]["sigma"] == pytest.approx(0.1) and summary["noise_curve"][0]["samples"] == 20
    assert (tmp_path / "corruptions.png").stat().st_size > 0

    # the AlexNet normalization by hand from the rows
    again = run_corruptions(
        cli,
        tiny_models,
        tmp_path / "alex",
        "-c",
        "gaussian_noise,contrast",
        "--severities",
        "1,5",
        "--reference",
        "alexnet",
    )
    summary = again.result
    ces = []
    for name in ("gaussian_noise", "contrast"):
        model = [1 - cells[(cells["corruption"] == name) & (cells["severity"] == s)]["correct"].mean() for s in (1, 5)]
        ces.append(sum(model) / (mce.ALEXNET_ERRORS[name][0] + mce.ALEXNET_ERRORS[name][4]))
    assert summary["mCE"] == pytest.approx(100 * np.mean(ces))
    assert "2 of the 15" in summary["note"]


def test_a_baseline_report_as_reference(cli, tiny_models: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    args = ("-c", "fog,pixelate", "--severities", "2")
    assert run_corruptions(cli, tiny_models, tmp_path / "base", *args).code == 0
    baseline = tmp_path / "base" / "corruptions.parquet"
    result = run_corruptions(cli, tiny_models, tmp_path / "same", *args, "--reference", baseline)
    summary = result.result
    # the same model against itself: every CE is 1 and the mCE exactly 100
    if all(c["error"] > 0 for c in summary["per_corruption"]):
        assert summary["mCE"] == pytest.approx(100.0)
    missing = run_corruptions(cli, tiny_models, tmp_path / "more", "-c", "fog,snow", "--reference", baseline)
    assert missing.code == 2 and "snow" in missing.err


@pytest.mark.parametrize(
    "args,message",
    [
        (("-c", "fogg"), "fog"),
        (("--severities", "7"), "1-5"),
        (("--params", "tiny"), "--params"),
        (("--noise-levels", "-0.1"), "noise"),
        (("--reference", "nowhere.parquet"), "nowhere"),
    ],
)
def test_bad_input_exits_2(cli, tiny_models: Path, tmp_path: Path, args, message) -> None:  # type: ignore[no-untyped-def]
    result = run_corruptions(cli, tiny_models, tmp_path, *args)
    assert result.code == 2 and message in result.err, result.err
    assert not (tmp_path / "corruptions.parquet").exists()


def make_cifar10_c(root: Path, names: list[str], n: int = 4) -> np.ndarray:
    root.mkdir(parents=True)
    labels = np.arange(n) % 10
    np.save(root / "labels.npy", np.tile(labels, 5).astype(np.uint8))
    rng = np.random.default_rng(0)
    for name in names:
        np.save(root / f"{name}.npy", rng.integers(0, 256, (5 * n, 32, 32, 3), dtype=np.uint8))
    return labels


def test_cifar10_c_files_are_read_with_their_corruption_and_severity(cli, tiny_models: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    labels = make_cifar10_c(tmp_path / "c10c", ["fog", "gaussian_noise"])
    result = cli(
        "corruptions",
        "-m",
        f"{tiny_models}:tiny",
        "-d",
        f"cifar10-c:{tmp_path / 'c10c'}",
        "-c",
        "fog,snow",
        "--severities",
        "2-3",
        "-o",
        tmp_path / "out",
        "--json",
    )
    assert result.code == 0, result.err
    rows, meta = read_report(tmp_path / "out" / "corruptions.parquet")
    assert len(rows) == 2 * 4 and set(rows["corruption"]) == {"fog"}
    assert sorted(rows["severity"].unique()) == [2, 3]
    assert (rows["label"].to_numpy() == np.tile(labels, 2)).all()
    assert "fog@2-3" in meta["run_spec"]["data"]["source"]
    assert result.result["param_set"] == "pre-rendered"
    # the clean accuracy of a pre-rendered run comes from an eval report of the same model
    evaluated = cli(
        "eval", "-m", f"{tiny_models}:tiny", "-d", "digits", "--limit", "20", "-o", tmp_path / "ev", "--json"
    )
    top1 = evaluated.result["top1"]
    with_clean = cli(
        "corruptions",
        "-m",
        f"{tiny_models}:tiny",
        "-d",
        f"cifar10-c:{tmp_path / 'c10c'}",
        "-c",
        "fog",
        "--clean-report",
        tmp_path / "ev" / "eval.parquet",
        "-o",
        tmp_path / "out2",
        "--json",
    )
    assert with_clean.result["clean_accuracy"] == pytest.approx(top1)
    wrong = cli(
        "corruptions",
        "-m",
        f"{tiny_models}:tiny",
        "-d",
        f"cifar10-c:{tmp_path / 'c10c'}",
        "--clean-report",
        tmp_path / "out" / "corruptions.parquet",
        "-o",
        tmp_path / "out3",
    )
    assert wrong.code == 2 and "no clean accuracy" in wrong.err


def make_imagenet_c(root: Path, names: list[str], wnids: list[str], severities=(1, 2)) -> None:  # type: ignore[no-untyped-def]
    for name in names:
        for s in severities:
            for k, wnid in enumerate(wnids):
                folder = root / name / str(s) / wnid
                folder.mkdir(parents=True)
                Image.fromarray(np.full((24, 24, 3), 40 * k + s, dtype=np.uint8)).save(folder / f"img{k}.JPEG")


def test_imagenet_c_tree_maps_wnids_to_imagenet_indices(tmp_path: Path) -> None:
    from robaudit.data import DataSpec, load_dataset

    make_imagenet_c(tmp_path / "inc", ["fog", "contrast"], ["n01440764", "n01443537"])
    dataset = load_dataset(DataSpec(f"imagenet-c:{tmp_path / 'inc'}::fog@2"))
    assert len(dataset) == 2 and dataset.num_classes == 1000
    assert dataset.labels.tolist() == [0, 1]
    info = dataset.sample_info(np.arange(2))
    assert info["corruption"].tolist() == ["fog", "fog"] and info["severity"].tolist() == [2, 2]
    batch = dataset.load(np.arange(2))
    assert batch.images.shape == (2, 3, 224, 224)


def test_malformed_imagenet_c_trees_are_named(tmp_path: Path) -> None:
    from robaudit.data import DataSpec, load_dataset
    from robaudit.errors import InputError

    make_imagenet_c(tmp_path / "a", ["fogg"], ["n01440764"])
    with pytest.raises(InputError, match="did you mean 'fog'"):
        load_dataset(DataSpec(f"imagenet-c:{tmp_path / 'a'}"))
    make_imagenet_c(tmp_path / "b", ["fog"], ["n01440764"], severities=(1,))
    with pytest.raises(InputError, match="missing fog/2"):
        load_dataset(DataSpec(f"imagenet-c:{tmp_path / 'b'}"))
    (tmp_path / "c").mkdir()
    np.save(tmp_path / "c" / "labels.npy", np.zeros(3, dtype=np.uint8))
    np.save(tmp_path / "c" / "fog.npy", np.zeros((7, 32, 32, 3), dtype=np.uint8))
    with pytest.raises(InputError, match="severity blocks"):
        load_dataset(DataSpec(f"cifar10-c:{tmp_path / 'c'}"))


def test_preview_grid(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    picture = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (80, 100, 3), dtype=np.uint8)).save(picture)
    out = tmp_path / "grid.png"
    result = cli(
        "corruptions",
        "preview",
        "--image",
        picture,
        "--size",
        "64",
        "-c",
        "noise,fog",
        "--severities",
        "1,5",
        "-o",
        out,
    )
    assert result.code == 0, result.err
    with Image.open(out) as grid:
        assert grid.size[1] > grid.size[0] > 0  # 4 rows (corruptions) x 3 columns (clean, 2 severities)
    assert cli("corruptions", "preview", "-o", out).code == 2


@pytest.mark.parametrize("bad_call", [0, 1, 3])
def test_rows_fetched_once_per_batch_and_nan_logits_recorded(tiny_models: Path, bad_call: int) -> None:
    """Results stay on the device until the end of the batch, and correct rows match the model's own
    predictions; a non-finite forward in any condition is still recorded for the runner's check."""
    import torch

    from robaudit.audits.base import AuditBatch
    from robaudit.audits.corruptions import CorruptionsAudit
    from robaudit.data import DataSpec, load_dataset
    from robaudit.models import ModelSpec, load_model
    from robaudit.models.finite import MONITOR

    model = load_model(ModelSpec(f"{tiny_models}:tiny"), "cpu")
    dataset = load_dataset(DataSpec("digits"))
    images = dataset.load(np.arange(6)).images
    batch = AuditBatch(np.arange(6), images, torch.from_numpy(dataset.labels[:6]))
    audit = CorruptionsAudit(corruptions=["contrast", "gaussian_noise"], severities=[2], noise_levels=[])
    rows = audit.run_batch(model, batch)
    with torch.no_grad():
        clean = model.module(images).argmax(1).numpy()
    assert rows["prediction"][:6].tolist() == clean.tolist() and rows["prediction"].dtype == np.int64
    assert (rows["correct"] == (rows["prediction"] == np.tile(dataset.labels[:6], 3))).all()
    conditions = ["clean", "contrast", "gaussian_noise"]
    calls = iter(range(100))
    forward = model.module.forward

    def poisoned(x: torch.Tensor) -> torch.Tensor:
        out = forward(x)
        return out * float("nan") if next(calls) == bad_call else out

    model.module.forward = poisoned  # type: ignore[method-assign]
    MONITOR.reset()
    assert len(audit.run_batch(model, batch)["prediction"]) == 18
    assert MONITOR.found() == (bad_call < len(conditions))
    MONITOR.reset()
