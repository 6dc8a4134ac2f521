"""The attack audit: budgets, threat models, targets, minimal perturbations, masking flags, bad input."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from robaudit.reports.read import read_metadata

DIGITS = ["--model", "digits_cnn", "--pretrained", "--data", "digits"]

OBFUSCATED = '''
import torch
from robaudit.models.demo import digits_cnn
from robaudit.models import ModelBuild


class Quantized(torch.nn.Module):
    """Rounds its input to 4 levels before the network: zero gradients almost everywhere."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        levels = 4.0
        # undo the normalization, quantize the pixels, normalize again
        pixels = (x * 0.5 + 0.5).clamp(0, 1)
        return self.inner((torch.round(pixels * levels) / levels - 0.5) / 0.5)


def quantized(name, *, pretrained=False, num_classes=None):
    build = digits_cnn(pretrained=True)
    return ModelBuild(Quantized(build.backbone), build.preprocessing, build.num_classes)
'''


def attack(cli, out: Path, *args: object):  # type: ignore[no-untyped-def]
    result = cli("attack", *args, "--out", out, "--json")
    assert result.code == 0, result.err
    return result.result, pq.read_table(out / "attack.parquet").to_pandas()


def test_linf_sweep_rows_respect_budgets(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    summary, rows = attack(cli, tmp_path, *DIGITS, "--limit", 30, "--eps", "0.01,4/255,0.05", "--no-checks")
    assert len(rows) == 90 and sorted(rows["eps"].unique()) == pytest.approx([0.01, 4 / 255, 0.05])
    assert (rows["linf"] <= rows["eps"] + 1e-6).all()
    assert (rows["correct"] == (rows["adv_prediction"] == rows["label"])).all()
    assert (rows["success"] == (rows["adv_prediction"] != rows["label"])).all()
    failed = rows[~rows["source_success"]]
    assert (failed["l2"] == 0).all() and (failed["adv_prediction"] == failed["clean_prediction"]).all()
    curve = [c["accuracy"] for c in sorted(summary["curves"], key=lambda c: c["eps"])]
    assert curve == sorted(curve, reverse=True) and curve[-1] < 0.5
    assert set(rows["threat"]) == {"white"} and set(rows["judged_by"]) == {"backbone"}
    assert (rows["defense"] == "none").all()
    assert read_metadata(tmp_path / "attack.parquet")["identity"]["batch_size"] == 64


def test_saved_perturbations_match_the_rows(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _, rows = attack(
        cli,
        tmp_path,
        *DIGITS,
        "--limit",
        12,
        "--eps",
        "0.02,0.05",
        "--no-checks",
        "--save-perturbations",
        tmp_path / "delta.npz",
    )
    saved = np.load(tmp_path / "delta.npz")
    assert saved["delta"].shape == (24, 3, 32, 32) and saved["delta"].dtype == np.float16
    linf = np.abs(saved["delta"].astype(np.float32)).reshape(24, -1).max(axis=1)
    expected = rows.set_index(["index", "eps"]).loc[list(zip(saved["index"], saved["eps"], strict=True)), "linf"]
    assert np.allclose(linf, expected.to_numpy(), atol=1e-4)
    assert (linf <= saved["eps"] + 1e-4).all()


def test_relative_l2_budgets_scale_with_the_image(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _, rows = attack(
        cli,
        tmp_path,
        *DIGITS,
        "--limit",
        20,
        "--attack",
        "pgd:norm=l2,steps=10",
        "--eps-mode",
        "rel-l2",
        "--eps",
        "0.05",
        "--no-checks",
    )
    from robaudit.data import DataSpec, load_dataset

    images = load_dataset(DataSpec("digits")).load(rows["index"].to_numpy()).images
    norms = images.flatten(1).norm(dim=1).numpy()
    assert np.allclose(rows["eps_abs"], 0.05 * norms, rtol=1e-5)
    assert (rows["rel_l2"] <= 0.05 * (1 + 1e-4)).all()
    # the masking checks work with per-image budgets too (the noise check groups images by budget)
    summary, _ = attack(
        cli,
        tmp_path / "checked",
        *DIGITS,
        "--limit",
        8,
        "--attack",
        "pgd:norm=l2,steps=10",
        "--eps-mode",
        "rel-l2",
        "--eps",
        "0.05",
    )
    assert summary["flags"]["gradient_free_beats_gradient"]["flag"] is False


def test_targeted_attacks_aim_at_seeded_targets(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _, a = attack(cli, tmp_path / "a", *DIGITS, "--limit", 20, "--eps", "0.1", "--targeted", "--no-checks")
    _, b = attack(
        cli, tmp_path / "b", *DIGITS, "--limit", 20, "--eps", "0.1", "--targeted", "--no-checks", "--batch-size", 7
    )
    assert (a["target"] != a["label"]).all() and a["target"].tolist() == b["target"].tolist()
    assert (a["success"] == (a["adv_prediction"] == a["target"])).all() and a["success"].mean() > 0.5


def test_gray_and_black_box_rows_name_maker_and_judge(cli, tiny_models: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    summary, rows = attack(
        cli,
        tmp_path,
        *DIGITS,
        "--limit",
        16,
        "--eps",
        "0.05",
        "--defense",
        "blur:sigma=0.5",
        "--threat",
        "white,gray",
        "--threat",
        "black",
        "--surrogate",
        f"{tiny_models}:tiny",
        "--no-checks",
    )
    pairs = set(zip(rows["threat"], rows["made_by"], rows["judged_by"], strict=True))
    assert pairs == {
        ("white", "defended", "defended"),
        ("gray", "backbone", "defended"),
        ("gray", "backbone", "backbone"),
        ("black", "surrogate", "defended"),
        ("black", "surrogate", "backbone"),
    }
    assert set(rows[rows["judged_by"] == "defended"]["defense"]) == {"blur(padding='circular', sigma=0.5)"}
    assert set(rows[rows["judged_by"] == "backbone"]["defense"]) == {"none"}
    assert summary["flags"]["white_weaker_than_transfer"]["flag"] is not None
    meta = read_metadata(tmp_path / "attack.parquet")
    assert meta["identity"]["params"]["surrogate"]["fingerprint"]


def test_minimal_perturbations_with_an_ensemble(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    summary, rows = attack(
        cli,
        tmp_path,
        *DIGITS,
        "--limit",
        16,
        "--minimal",
        "--attack",
        "ddn:steps=20",
        "--ensemble",
        "l2-deepfool:steps=20",
    )
    assert rows["eps"].isna().all() and rows["success"].mean() > 0.8
    clean = rows[rows["clean_prediction"] == rows["label"]]
    found = clean[clean["success"]]
    assert (found["l2"] > 0).all() and np.allclose(found["rel_l2"], found["rel_l2"])
    (result,) = summary["minimal"]
    # statistics over the clean-correct images only, and the summary says so
    assert result["samples"] == len(clean) and result["images"] == len(rows)
    assert f"the {len(clean)} images" in result["basis"]
    assert result["success_rate"] == pytest.approx(clean["success"].mean())
    assert result["median_rho"] == pytest.approx(found["rel_l2"].median())
    curve = result["success_vs_eps"]
    assert curve[0][1] == 0 and curve[-1][1] == pytest.approx(result["success_rate"])
    _, single = attack(cli, tmp_path / "single", *DIGITS, "--limit", 16, "--minimal", "--attack", "ddn:steps=20")
    assert (rows["l2"] <= single["l2"].where(single["success"], np.inf) + 1e-5).all()


def test_plain_model_raises_no_masking_flag(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    summary, rows = attack(cli, tmp_path, *DIGITS, "--limit", 24, "--eps", "0.02,0.05,0.1", "--check-samples", 8)
    assert set(rows["check_name"].dropna()) == {"gradient", "unbounded", "gradient-free"}
    flags = summary["flags"]
    own = ("accuracy_rises_with_eps", "unbounded_attack_fails", "gradient_free_beats_gradient")
    assert all(flags[name]["flag"] is False for name in (*own, "zero_or_nonfinite_gradients")), flags
    # AutoAttack's own checks belong to AutoAttack runs: not evaluated here, and said so
    for name in ("randomized_outputs", "probability_outputs", "dynamic_defense"):
        assert flags[name]["flag"] is None and "--attack autoattack" in flags[name]["evidence"]
    assert summary["gradient_masking"] is False


def test_obfuscated_model_is_flagged(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "obfuscated.py"
    path.write_text(textwrap.dedent(OBFUSCATED))
    summary, _ = attack(
        cli,
        tmp_path / "r",
        "--model",
        f"{path}:quantized",
        "--data",
        "digits",
        "--limit",
        24,
        "--eps",
        "0.05,0.1",
        "--check-samples",
        8,
    )
    flags = summary["flags"]
    assert flags["zero_or_nonfinite_gradients"]["flag"] is True
    assert flags["unbounded_attack_fails"]["flag"] is True
    assert summary["gradient_masking"] is True


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--attack", "pgdd", "--eps", "0.1"], "did you mean 'pgd'"),
        (["--eps", "-0.1"], ">= 0"),
        (["--attack", "ddn", "--eps", "0.1"], "minimization attack"),
        (["--minimal"], "needs minimization attacks"),
        (["--threat", "gray", "--eps", "0.1"], "add a --defense"),
        (["--threat", "black", "--eps", "0.1"], "--surrogate"),
        (["--threat", "purple", "--eps", "0.1"], "choose from white, gray, black"),
        (["--eps-mode", "l2", "--eps", "0.1"], "needs an l2 attack"),
        ([], "--eps"),
        (["--attack", "fgsm", "--eps", "0.1", "--targeted"], "cannot run targeted"),
    ],
)
def test_bad_attack_options(cli, tmp_path: Path, args: list[str], message: str) -> None:  # type: ignore[no-untyped-def]
    result = cli("attack", *DIGITS, "--limit", 8, "--out", tmp_path, *args)
    assert result.code == 2 and message in result.err, result.err
    assert not (tmp_path / "attack.parquet.partial").exists()


def test_surrogate_and_class_count_errors(cli, tiny_models: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    result = cli(
        "attack",
        *DIGITS,
        "--limit",
        8,
        "--eps",
        "0.1",
        "--threat",
        "black",
        "--surrogate",
        "cifar_resnet20",
        "--num-classes",
        10,
        "--out",
        tmp_path,
    )
    assert result.code == 0 or "classes" not in result.err
    result = cli(
        "attack",
        *DIGITS,
        "--limit",
        8,
        "--eps",
        "0.1",
        "--threat",
        "black",
        "--surrogate",
        "tv:resnet18",
        "--out",
        tmp_path / "x",
    )
    assert result.code == 2 and "surrogate has 1000 classes" in result.err
    np.savez(tmp_path / "one.npz", x=np.zeros((4, 32, 32, 3), np.uint8), y=np.zeros(4, int))
    result = cli(
        "attack",
        "--model",
        f"{tiny_models}:tiny",
        "--num-classes",
        1,
        "--data",
        f"npz:{tmp_path / 'one.npz'}",
        "--eps",
        "0.1",
        "--targeted",
        "--out",
        tmp_path / "y",
    )
    assert result.code == 2 and "at least 2 classes" in result.err
