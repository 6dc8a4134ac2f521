"""The Fourier heat-map audit: basis images, validation, a blurred model's outer band, the CLI end to end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from robaudit.audits.base import AuditBatch
from robaudit.audits.fourier_map import FourierMapAudit, fourier_basis, frequency_grid, signed
from robaudit.errors import InputError


def test_the_grid_covers_the_half_plane() -> None:
    assert len(frequency_grid(32, 32)) == 32 * 17
    assert len(frequency_grid(32, 32, 4)) == 8 * 5
    assert signed(np.arange(8), 8).tolist() == [0, 1, 2, 3, -4, -3, -2, -1]


@pytest.mark.parametrize("n", [8, 9])
def test_basis_images_are_real_unit_plane_waves_at_plus_minus_uv(n: int) -> None:
    freqs = frequency_grid(n, n)
    basis = fourier_basis(n, n, freqs).double()
    assert basis.dtype == torch.float64 and basis.shape == (len(freqs), n, n)
    assert torch.allclose(basis.flatten(1).norm(dim=1), torch.ones(len(freqs), dtype=torch.float64), atol=1e-6)
    power = torch.fft.fft2(basis).abs() ** 2
    for k, (u, v) in enumerate(freqs):
        support = torch.zeros(n, n, dtype=torch.bool)
        support[u, v] = support[(-u) % n, (-v) % n] = True
        assert power[k][support].sum() / power[k].sum() > 1 - 1e-9
        assert float(power[k][support].min()) > 0


def test_bad_parameters_and_images_are_input_errors() -> None:
    for params in ({"norm": 0.0}, {"norm": -1.0}, {"step": 0}):
        with pytest.raises(InputError):
            FourierMapAudit(**params)  # type: ignore[arg-type]
    oblong = AuditBatch(np.arange(2), torch.rand(2, 3, 8, 6), torch.arange(2))
    with pytest.raises(InputError, match="square"):
        FourierMapAudit().run_batch(None, oblong)  # type: ignore[arg-type]


def test_rows_per_image_and_frequency_with_a_fixed_sign_per_image() -> None:
    def model(x: torch.Tensor) -> torch.Tensor:  # class 1 when the image is brighter than 0.5 on average
        mean = x.mean(dim=(1, 2, 3))
        return torch.stack([0.5 - mean, mean - 0.5], dim=1)

    x = torch.full((3, 3, 8, 8), 0.5)
    batch = AuditBatch(np.array([5, 6, 7]), x, torch.ones(3, dtype=torch.long))
    rows = FourierMapAudit(norm=2.0, step=2).run_batch(model, batch)  # type: ignore[arg-type]
    f = len(frequency_grid(8, 8, 2))
    assert all(len(c) == 3 * f for c in rows.values())
    assert rows["sample"].tolist() == np.repeat(np.arange(3), f).tolist()
    signs = rows["sign"].reshape(3, f)
    assert (signs == signs[:, :1]).all() and set(np.unique(signs)) <= {-1, 1}
    # only the DC basis (a constant) changes the mean brightness: positive sign → correct, negative → wrong
    dc = (rows["u"] == 0) & (rows["v"] == 0)
    assert (rows["correct"][dc] == (rows["sign"][dc] > 0)).all()
    again = FourierMapAudit(norm=2.0, step=2).run_batch(model, AuditBatch(batch.indices[1:], x[1:], batch.labels[1:]))  # type: ignore[arg-type]
    assert (again["sign"] == rows["sign"][f:]).all()  # the sign depends on the data index, not the batch


def outer_error(cli, out: Path, *extra: object) -> float:  # type: ignore[no-untyped-def]
    result = cli("fourier-map", "--model", "digits_cnn", "--pretrained", "--data", "digits", "--limit", 12,
                 "--step", 4, "--out", out, "--json", "--device", "cpu", *extra)  # fmt: skip
    assert result.code == 0, result.err
    bands = result.result["bands"]
    assert [b["band"] for b in bands] == ["low", "mid", "high"]
    return float(bands[-1]["error"])


def test_a_blurred_model_errs_less_at_high_frequencies(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    plain = outer_error(cli, tmp_path / "plain")
    blurred = outer_error(cli, tmp_path / "blur", "--defense", "blur:sigma=2")
    assert blurred < plain - 0.2


def test_fourier_map_cli_on_digits(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    result = cli("fourier-map", "--model", "digits_cnn", "--pretrained", "--data", "digits", "--limit", 8,
                 "--step", 4, "--out", tmp_path, "--json")  # fmt: skip
    assert result.code == 0, result.err
    summary = result.result
    rows = pq.read_table(tmp_path / "fourier-map.parquet").to_pandas()
    n_freq = 8 * 5
    assert len(rows) == 8 * n_freq and rows["index"].nunique() == 8
    assert (rows.groupby(["index", "u", "v"]).size() == 1).all()
    assert rows["u"].between(-16, 15).all() and rows["radius"].between(0, 0.5**0.5 + 1e-9).all()
    assert summary["samples"] == 8 and len(summary["map"]) == n_freq
    assert summary["worst"]["error"] == max(c["error"] for c in summary["map"])
    assert (tmp_path / "fourier-map.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "fourier-map.png" in result.err


def test_fourier_map_cli_rejects_zero_norm(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    result = cli("fourier-map", "--model", "digits_cnn", "--norm", 0, "--out", tmp_path)
    assert result.code == 2
    assert "--norm" in result.err and not (tmp_path / "fourier-map.parquet").exists()
