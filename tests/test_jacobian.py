"""``robaudit jacobian``: exact and randomized Jacobians against the analytic linear case, defended rows, plot."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from robaudit.audits.base import AuditBatch
from robaudit.audits.jacobian import JacobianAudit
from robaudit.models import ModelSpec, load_model

LINEAR_MODELS = """
import torch
from torch import nn

from robaudit.models import ModelBuild, Preprocessing


class Linear(nn.Module):
    def __init__(self, num_classes=10):
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.fc = nn.Linear(3 * 8 * 8, num_classes)
        with torch.no_grad():
            self.fc.weight.copy_(torch.randn(self.fc.weight.shape, generator=generator) * 0.1)
            self.fc.bias.copy_(torch.randn(num_classes, generator=generator))

    def forward(self, x):
        return self.fc(x.flatten(1))


def linear(name, *, pretrained=False, num_classes=None):
    preprocessing = Preprocessing(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), input_size=(3, 8, 8), crop_pct=1.0)
    return ModelBuild(Linear(num_classes or 10), preprocessing, num_classes or 10)
"""


@pytest.fixture
def linear_model(tmp_path: Path):  # type: ignore[no-untyped-def]
    path = tmp_path / "linear_models.py"
    path.write_text(textwrap.dedent(LINEAR_MODELS))
    return load_model(ModelSpec(name=f"{path}:linear"), "cpu")


def analytic(model, images: torch.Tensor) -> list[np.ndarray]:  # type: ignore[no-untyped-def]
    """(diag(p) - p pᵀ) W per image, in float64."""
    weight = model.base.backbone.fc.weight.double().numpy()
    with torch.no_grad():
        probs = model.base(images).double().softmax(dim=1).numpy()
    return [(np.diag(p) - np.outer(p, p)) @ weight for p in probs]


def run_rows(model, images: torch.Tensor, **params: object) -> pd.DataFrame:  # type: ignore[no-untyped-def]
    audit = JacobianAudit(**params)  # type: ignore[arg-type]
    indices = np.arange(100, 100 + len(images))
    batch = AuditBatch(indices, images, torch.zeros(len(images), dtype=torch.long))
    return pd.DataFrame(audit.run_batch(model, batch))


def images(n: int = 6) -> torch.Tensor:
    return torch.rand(n, 3, 8, 8, generator=torch.Generator().manual_seed(1))


def test_exact_jacobian_of_a_linear_model_is_analytic(linear_model) -> None:  # type: ignore[no-untyped-def]
    x = images()
    rows = run_rows(linear_model, x, method="exact", top_k=3)
    assert (rows["model_role"] == "backbone").all() and (rows["defense"] == "none").all()
    assert rows["sample"].tolist() == list(range(len(x))) and (rows["method"] == "exact").all()
    for row, jacobian in zip(rows.itertuples(), analytic(linear_model, x), strict=True):
        singular = np.linalg.svd(jacobian, compute_uv=False)
        assert row.frobenius == pytest.approx(np.linalg.norm(jacobian), rel=1e-4)
        assert np.asarray(row.top_singular) == pytest.approx(singular[:3], rel=1e-3)
        assert row.predicted_row_norm == pytest.approx(np.linalg.norm(jacobian[row.prediction]), rel=1e-4)


def test_randomized_estimates_agree_with_exact(linear_model) -> None:  # type: ignore[no-untyped-def]
    x = images()
    exact = run_rows(linear_model, x, method="exact", top_k=3)
    estimate = run_rows(linear_model, x, method="randomized", top_k=3, probes=64, power_iters=20)
    assert (estimate["method"] == "randomized").all()
    assert (estimate["prediction"] == exact["prediction"]).all()
    assert estimate["frobenius"].to_numpy() == pytest.approx(exact["frobenius"].to_numpy(), rel=0.1)
    top = np.stack(estimate["top_singular"].to_numpy())[:, 0]
    assert top == pytest.approx(np.stack(exact["top_singular"].to_numpy())[:, 0], rel=0.03)
    assert estimate["predicted_row_norm"].to_numpy() == pytest.approx(exact["predicted_row_norm"].to_numpy(), rel=1e-4)
    again = run_rows(linear_model, x, method="randomized", top_k=3, probes=64, power_iters=20)
    assert again["frobenius"].tolist() == estimate["frobenius"].tolist()  # draws come from (seed, index)


def test_blur_defense_has_a_smaller_jacobian(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    args = ["jacobian", "--model", "digits_cnn", "--pretrained", "--data", "digits", "--limit", 16]
    result = cli(*args, "--defense", "blur:sigma=1", "--out", tmp_path, "--json")
    assert result.code == 0, result.err
    summary = result.result
    rows = pd.read_parquet(tmp_path / "jacobian.parquet")
    assert len(rows) == 32 and sorted(rows["model_role"].unique()) == ["backbone", "defended"]
    assert set(rows.loc[rows["model_role"] == "defended", "defense"]) == {"blur(padding='circular', sigma=1.0)"}
    assert (rows.groupby("model_role")["index"].apply(sorted).apply(len) == 16).all()
    assert rows["top_singular"].apply(len).eq(5).all()
    models = summary["models"]
    assert models["defended"]["median_frobenius"] < models["backbone"]["median_frobenius"]
    assert summary["median_frobenius_ratio"] == pytest.approx(
        models["defended"]["median_frobenius"] / models["backbone"]["median_frobenius"]
    )
    png = tmp_path / "jacobian.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and "jacobian.png" in result.err


@pytest.mark.parametrize("option", [["--method", "svd"], ["--top-k", "0"], ["--probes", "0"]])
def test_bad_options_exit_2(cli, tmp_path: Path, option: list[str]) -> None:  # type: ignore[no-untyped-def]
    result = cli("jacobian", "--model", "digits_cnn", "--limit", 4, "--out", tmp_path, *option)
    assert result.code == 2, result.err
    assert option[0] in result.err
    assert not (tmp_path / "jacobian.parquet").exists()
