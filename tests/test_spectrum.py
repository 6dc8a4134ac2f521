"""robaudit spectrum: f0.5 of known spectra, mean removal, and the command end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from robaudit.frequency.radius import frequency_radius
from robaudit.frequency.spectrum import f_half, radial_cumulative, radius_grid, spectrum_of
from robaudit.reports.writer import METADATA_KEY

N = 32


def _white(n_images: int = 64, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n_images, 3, N, N))


def test_white_noise_matches_analytic_f_half() -> None:
    grid = radius_grid(N)
    rho = frequency_radius(N).ravel()[1:]  # non-DC bins
    expected_curve = np.array([(rho <= r + 1e-12).mean() for r in grid])
    expected = f_half(expected_curve, grid)
    result = spectrum_of(_white(256))
    step = grid[1] - grid[0]
    assert abs(result["f_half_of_mean"] - expected) < 0.25 * step
    assert np.allclose(result["cumulative"], expected_curve, atol=0.02)
    assert abs(np.median(result["f_half"]) - expected) < step


def test_low_pass_noise_has_lower_f_half() -> None:
    white = _white()
    spectrum = np.fft.fft2(white) * (frequency_radius(N) <= 0.1)
    low = np.fft.ifft2(spectrum).real
    assert spectrum_of(low)["f_half_of_mean"] < 0.1 + 1e-9 < spectrum_of(white)["f_half_of_mean"]


@pytest.mark.parametrize(("kx", "ky"), [(3, 0), (5, 4), (10, 2)])
def test_sinusoid_f_half_near_its_frequency(kx: int, ky: int) -> None:
    y, x = np.mgrid[0:N, 0:N]
    rho0 = np.hypot(kx / N, ky / N)
    wave = np.cos(2 * np.pi * (kx * x + ky * y) / N)
    delta = np.broadcast_to(wave, (2, 3, N, N))
    grid = radius_grid(N)
    assert abs(spectrum_of(delta)["f_half_of_mean"] - rho0) <= grid[1] - grid[0]


def test_constant_offset_changes_nothing() -> None:
    delta = _white(8)
    a, b = spectrum_of(delta), spectrum_of(delta + 3.0)
    assert a["f_half_of_mean"] == pytest.approx(b["f_half_of_mean"])
    np.testing.assert_allclose(a["f_half"], b["f_half"])
    np.testing.assert_allclose(a["cumulative"], b["cumulative"])


def test_radial_cumulative_is_monotone_and_ends_at_one() -> None:
    grid = radius_grid(N, 40)
    curves = radial_cumulative(np.abs(np.fft.fft2(_white(4)[:, 0])) ** 2, grid)
    assert curves.shape == (4, 40)
    assert np.all(np.diff(curves, axis=1) >= 0)
    np.testing.assert_allclose(curves[:, -1], 1.0)


def _write_npz(path: Path, **overrides: object) -> Path:
    n = 6
    arrays: dict[str, object] = {
        "delta": (_white(n) * 0.01).astype(np.float16),
        "index": np.arange(n),
        "label": np.arange(n) % 3,
        "threat": np.array(["white"] * n),
        "made_by": np.array(["backbone"] * n),
        "eps": np.full(n, np.nan),
        "success": np.array([True] * 5 + [False]),
    }
    arrays.update(overrides)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})  # type: ignore[arg-type]
    return path


def _summary(result) -> dict:  # type: ignore[no-untyped-def]
    assert result.code == 0, result.err
    return result.result  # type: ignore[no-any-return]


def test_cli_end_to_end(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    npz = _write_npz(tmp_path / "p.npz")
    out = tmp_path / "spec"
    summary = _summary(cli("spectrum", "--perturbations", npz, "--out", out, "--json"))
    assert summary["images"] == 5
    assert "cycles/pixel" in summary["units"]
    for key in ("f_half_of_mean", "f_half_median", "f_half_q25", "f_half_q75"):
        assert 0 < summary[key] < 0.71
    assert (out / "spectrum.png").stat().st_size > 0
    # a regular report: one row per kept perturbation, the summary derived from the rows
    table = pq.read_table(out / "spectrum.parquet")
    assert table.num_rows == 5
    assert {"index", "data_index", "threat", "eps", "f_half", "radial_power"} <= set(table.column_names)
    meta = json.loads(table.schema.metadata[METADATA_KEY])
    assert meta["audit"] == "spectrum" and "summary" not in meta
    expected = spectrum_of(np.load(npz)["delta"][:5].astype(np.float32))["f_half_of_mean"]
    assert summary["f_half_of_mean"] == pytest.approx(expected)
    assert _summary(cli("spectrum", "-p", npz, "-o", tmp_path / "all", "--json", "--all"))["images"] == 6


def test_cli_filters_threat(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    npz = _write_npz(tmp_path / "p.npz", threat=np.array(["white", "gray"] * 3))
    assert cli("spectrum", "-p", npz, "-o", tmp_path / "s").code == 2
    summary = _summary(cli("spectrum", "-p", npz, "-o", tmp_path / "s", "--threat", "gray", "--json"))
    assert summary["images"] == 2  # rows 1, 3 (row 5 failed)


def test_cli_bad_input(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    assert cli("spectrum", "-p", tmp_path / "nope.npz").code == 2
    assert cli("spectrum", "-p", _write_npz(tmp_path / "a.npz", success=None)).code == 2
    corrupt = tmp_path / "c.npz"
    corrupt.write_bytes(b"not a zip")
    assert cli("spectrum", "-p", corrupt).code == 2
    wide = _write_npz(tmp_path / "w.npz", delta=np.zeros((6, 3, 8, 16), dtype=np.float16))
    result = cli("spectrum", "-p", wide)
    assert result.code == 2
    assert "square" in result.err
    # a perturbation file is no image data: other audits refuse it
    images = cli("eval", "-m", "digits_cnn", "-d", f"perturbations:{_write_npz(tmp_path / 'e.npz')}", "-o", tmp_path)
    assert images.code == 2 and "holds perturbations" in images.err


def test_cli_computes_minimal_perturbations_for_a_model(cli, tiny_models: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "s"
    model = ["-m", f"{tiny_models}:tiny", "-d", "digits", "--limit", "6"]
    summary = _summary(cli("spectrum", *model, "-a", "ddn:steps=20", "-o", out, "--json"))
    assert summary["threat"] == "white" and 0 < summary["images"] <= 6
    assert (out / "spectrum.png").stat().st_size > 0
    # the same perturbations, saved by the attack audit, give the same spectrum
    attack = cli("attack", *model, "--minimal", "-a", "ddn:steps=20", "--threat", "white", "--no-checks",
                 "--save-perturbations", tmp_path / "p.npz", "-o", tmp_path / "a")  # fmt: skip
    assert attack.code == 0, attack.err
    saved = _summary(cli("spectrum", "-p", tmp_path / "p.npz", "-o", tmp_path / "from-file", "--json"))
    assert saved["images"] == summary["images"]
    assert saved["f_half_of_mean"] == pytest.approx(summary["f_half_of_mean"], abs=1e-3)
    # a file of 32x32 perturbations does not fit a model of another input size
    wrong = cli(
        "spectrum", "-p", tmp_path / "p.npz", "-m", f"{tiny_models}:tiny", "--input-size", "3,64,64", "-o", out / "w"
    )
    assert wrong.code == 2 and "takes" in wrong.err
    # ... nor perturbations of other images than --data names; the data they came from is accepted
    other = cli(
        "spectrum", "-p", tmp_path / "p.npz", "-m", f"{tiny_models}:tiny", "-d", "digits", "--split", "train",
        "-o", out / "o",
    )  # fmt: skip
    assert other.code == 2 and "data fingerprint" in other.err
    same = cli("spectrum", "-p", tmp_path / "p.npz", "-m", f"{tiny_models}:tiny", "-d", "digits", "-o", out / "again")
    assert same.code == 0, same.err


def test_cli_spectra_of_corruptions_place_noise_above_fog(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "c"
    args = ["-d", "digits", "--limit", "16", "-c", "gaussian_noise,fog", "--severities", "3", "-o", out, "--json"]
    summary = _summary(cli("spectrum", "--of", "corruptions", *args))
    by_name = {r["corruption"]: r["f_half_of_mean"] for r in summary["corruptions"]}
    assert by_name["fog"] < 0.1 < by_name["gaussian_noise"]
    assert summary["by_band"]["low"] < summary["by_band"]["high"]
    table = pq.read_table(out / "corruption-spectrum.parquet")
    assert (
        table.num_rows == 2 * 16 and json.loads(table.schema.metadata[METADATA_KEY])["audit"] == "corruption-spectrum"
    )
    # the audit's own command computes the same
    again = _summary(cli("corruption-spectrum", *args[:-3], "-o", tmp_path / "again", "--json"))
    assert again["corruptions"] == summary["corruptions"]


def test_cli_spectrum_modes_bad_input(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    assert cli("spectrum", "--of", "colours", "-o", tmp_path).code == 2
    result = cli("spectrum", "-o", tmp_path)
    assert result.code == 2 and "--perturbations" in result.err
