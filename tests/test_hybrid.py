"""The hybrid-image audit: the mixing function, pairing, f_rev, and ``robaudit hybrid`` end to end."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from robaudit.audits.base import AuditBatch
from robaudit.audits.hybrid import DEFAULT_FMIX, HybridAudit, draw_partners, hybrid_images, reversal_frequency
from robaudit.errors import InputError
from robaudit.frequency.radius import frequency_radius, low_pass_mask


def images(seed: int, n: int = 4, size: int = 16) -> torch.Tensor:
    """Smooth-ish random images in [0.3, 0.7], so mixing two of them never needs clipping much."""
    generator = torch.Generator().manual_seed(seed)
    return 0.3 + 0.4 * torch.rand((n, 3, size, size), generator=generator)


def test_hybrid_of_an_image_with_itself_is_the_image() -> None:
    x = images(0)
    for fmix in (0.0, 0.1, 0.5, 1.0):
        assert torch.allclose(hybrid_images(x, x, fmix), x, atol=1e-5)


def test_fmix_zero_keeps_only_the_low_images_mean() -> None:
    low, high = images(0), images(1)
    expected = (high - high.mean(dim=(2, 3), keepdim=True) + low.mean(dim=(2, 3), keepdim=True)).clamp(0, 1)
    assert torch.allclose(hybrid_images(low, high, 0.0), expected, atol=1e-5)
    assert not torch.allclose(hybrid_images(low, high, 0.0), high, atol=1e-3)


@pytest.mark.parametrize("fmix", [math.sqrt(2), 1.5])
def test_fmix_past_the_corners_gives_the_low_image(fmix: float) -> None:
    low, high = images(0), images(1)
    assert torch.allclose(hybrid_images(low, high, fmix), low, atol=1e-5)
    assert not torch.allclose(hybrid_images(low, high, 1.0), low, atol=1e-3)  # f_mix = 1 misses the corners


def test_the_mask_is_a_centred_disc() -> None:
    n = 16
    assert low_pass_mask(n, 0.0).sum() == 1 and low_pass_mask(n, 0.0)[0, 0]
    full = low_pass_mask(n, 1.0)
    assert full[n // 2, 0] and full[0, n // 2] and not full[n // 2, n // 2]  # axis Nyquist in, corner out
    shifted = np.fft.fftshift(low_pass_mask(n, 0.5))
    yy, xx = np.mgrid[:n, :n] - n // 2
    assert np.array_equal(shifted, np.hypot(yy, xx) / n <= 0.25)
    assert frequency_radius(n).max() == pytest.approx(math.sqrt(0.5))


def test_partners_always_have_another_class() -> None:
    rng = np.random.default_rng(0)
    balanced = np.repeat(np.arange(5), 4)
    partner = draw_partners(balanced, rng)
    assert sorted(partner.tolist()) == list(range(20)) and (balanced[partner] != balanced).all()
    skewed = np.array([0] * 9 + [1, 2])  # no permutation can avoid every image's own class
    assert (skewed[draw_partners(skewed, rng)] != skewed).all()


def test_reversal_frequency_interpolates_the_first_crossing() -> None:
    f = np.array([0.0, 0.1, 0.2, 0.4])
    assert reversal_frequency(f, np.array([-1.0, -0.5, 0.5, 1.0]))[0] == pytest.approx(0.15)
    assert reversal_frequency(f, np.array([-1.0, -0.5, -0.2, -0.1])) == (None, "D stays negative up to f_mix=0.4")
    value, note = reversal_frequency(f, np.array([0.1, 0.5, 0.5, 1.0]))
    assert value is None and note is not None and "already >= 0" in note


def test_bad_parameters_and_batches_are_input_errors() -> None:
    for params in ({"fmix": [-0.1]}, {"fmix": [2.0]}, {"fmix": [math.nan]}, {"repeats": 0}):
        with pytest.raises(InputError):
            HybridAudit(**params)  # type: ignore[arg-type]
    audit = HybridAudit()
    assert audit.params["fmix"] == sorted(DEFAULT_FMIX) and len(DEFAULT_FMIX) == 18
    one_class = AuditBatch(np.arange(3), torch.rand(3, 3, 8, 8), torch.zeros(3, dtype=torch.long))
    with pytest.raises(InputError, match="one class"):
        audit.run_batch(None, one_class)  # type: ignore[arg-type]
    oblong = AuditBatch(np.arange(2), torch.rand(2, 3, 8, 6), torch.arange(2))
    with pytest.raises(InputError, match="square"):
        audit.run_batch(None, oblong)  # type: ignore[arg-type]


FILTERED_MODELS = """
import numpy as np
import torch
from torch import nn

from robaudit.frequency.radius import low_pass_mask
from robaudit.models import ModelBuild, Preprocessing

TEMPLATES = torch.from_numpy(np.load({templates!r})["templates"])


class Filtered(nn.Module):
    \"\"\"Nearest class template, judged only on the frequencies ``keep`` lets through.\"\"\"

    def __init__(self, keep):
        super().__init__()
        self.register_buffer("keep", torch.from_numpy(keep))
        self.register_buffer("prototypes", self.filter(TEMPLATES).flatten(1))

    def filter(self, x):
        return torch.fft.ifft2(torch.fft.fft2(x) * self.keep).real

    def forward(self, x):
        return -torch.cdist(self.filter(x).flatten(1), self.prototypes)


def _build(keep):
    return ModelBuild(Filtered(keep), Preprocessing(input_size=(3, 32, 32), crop_pct=1.0), 10)


def low(name, *, pretrained=False, num_classes=None):
    return _build(low_pass_mask(32, 0.15))


def high(name, *, pretrained=False, num_classes=None):
    return _build(~low_pass_mask(32, 0.4))
"""


def test_a_low_frequency_model_reverses_before_a_high_frequency_one(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Class templates of white noise: one model sees only f <= 0.15, the other only f > 0.4 (normalized)."""
    rng = np.random.default_rng(0)
    templates = rng.uniform(0.2, 0.8, (10, 3, 32, 32)).astype(np.float32)
    labels = np.arange(200) % 10
    x = np.clip(templates[labels] + rng.normal(0, 0.05, (200, 3, 32, 32)), 0, 1).astype(np.float32)
    np.savez(tmp_path / "data.npz", x=x.transpose(0, 2, 3, 1), y=labels, templates=templates)
    models = tmp_path / "filtered.py"
    models.write_text(textwrap.dedent(FILTERED_MODELS.format(templates=str(tmp_path / "data.npz"))))
    f_rev = {}
    for name in ("low", "high"):
        result = cli("hybrid", "--model", f"{models}:{name}", "--data", f"npz:{tmp_path / 'data.npz'}",
                     "--out", tmp_path / name, "--json", "--device", "cpu")  # fmt: skip
        assert result.code == 0, result.err
        summary = result.result
        assert summary["curve"][0]["acc_high"] > 0.9 and summary["curve"][-1]["acc_low"] > 0.9
        f_rev[name] = summary["f_rev"]
    assert f_rev["low"] is not None and f_rev["high"] is not None
    assert f_rev["low"] <= 0.15 < 0.4 <= f_rev["high"]


def test_hybrid_cli_on_digits(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    result = cli("hybrid", "--model", "digits_cnn", "--pretrained", "--data", "digits", "--limit", 40,
                 "--repeats", 2, "--out", tmp_path, "--json")  # fmt: skip
    assert result.code == 0, result.err
    summary = result.result
    rows = pq.read_table(tmp_path / "hybrid.parquet").to_pandas()
    assert len(rows) == 40 * 2 * len(DEFAULT_FMIX) and rows["index"].nunique() == 40
    assert (rows["high_label"] != rows["label"]).all() and (rows["low_label"] == rows["label"]).all()
    label_of = rows.drop_duplicates("index").set_index("index")["label"]
    assert (label_of[rows["high_index"]].to_numpy() == rows["high_label"].to_numpy()).all()
    # each image is the low image once per repeat and f_mix
    assert (rows.groupby(["index", "repeat", "fmix"]).size() == 1).all()
    assert summary["samples"] == 40 and summary["repeats"] == 2 and len(summary["f_rev_per_repeat"]) == 2
    assert summary["f_rev"] is not None and 0 < summary["f_rev"] < 1
    curve = summary["curve"]
    assert curve[0]["D"] < 0 < curve[-1]["D"]
    assert all(c["D_ci95"][0] <= c["D"] <= c["D_ci95"][1] for c in curve)
    assert (tmp_path / "hybrid.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "hybrid.png" in result.err


def test_hybrid_cli_rejects_negative_fmix(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    result = cli("hybrid", "--model", "digits_cnn", "--fmix=-0.1,0.5", "--out", tmp_path)
    assert result.code == 2
    assert "--fmix" in result.err and not (tmp_path / "hybrid.parquet").exists()


@pytest.mark.parametrize("bad_call", [0, 3, 4])
def test_rows_fetched_once_per_batch_and_nan_logits_recorded(tiny_models: Path, bad_call: int) -> None:
    """The probe keeps its results on the device until the end of the batch; a non-finite forward at any
    (repeat, f_mix) is still recorded for the runner's check."""
    from robaudit.models import ModelSpec, load_model
    from robaudit.models.finite import MONITOR

    model = load_model(ModelSpec(f"{tiny_models}:tiny"), "cpu")
    x = images(3, n=6, size=32)
    batch = AuditBatch(np.arange(6), x, torch.tensor([0, 1, 2, 0, 1, 2]))
    audit = HybridAudit(fmix=[0.2, 0.5], repeats=2, seed=0)
    rows = audit.run_batch(model, batch)
    assert len(rows["prediction"]) == 6 * 2 * 2 and rows["prediction"].dtype == np.int64
    assert (rows["pred_low"] == (rows["prediction"] == rows["low_label"])).all()
    assert (rows["pred_high"] == (rows["prediction"] == rows["high_label"])).all()
    calls = iter(range(100))
    forward = model.module.forward
    model.module.forward = lambda pixels: forward(pixels) * (math.nan if next(calls) == bad_call else 1.0)  # type: ignore[method-assign]
    MONITOR.reset()
    assert len(audit.run_batch(model, batch)["prediction"]) == 24
    assert MONITOR.found() == (bad_call < 4)
    MONITOR.reset()
