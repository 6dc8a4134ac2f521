"""Precision (fp32 / bf16 / fp16 autocast) of a run, and the batch pipeline's pixel checks and device copies."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from robaudit.audits.eval import EvalAudit
from robaudit.data import DataSpec, LoadedBatch, iter_batches, load_dataset, pixel_range, plan_chunks
from robaudit.errors import InputError
from robaudit.models import ModelSpec, load_model
from robaudit.models.precision import PRECISIONS
from robaudit.reports.read import read_metadata
from robaudit.runner import RunSpec, run_audit


@pytest.mark.parametrize("precision", list(PRECISIONS))
def test_precision_autocasts_the_backbone_only_and_returns_fp32_logits(tiny_models: Path, precision: str) -> None:
    reference = load_model(ModelSpec(f"{tiny_models}:tiny"), "cpu")
    model = load_model(ModelSpec(f"{tiny_models}:tiny"), "cpu", precision=precision)
    seen: list[torch.dtype] = []
    model.backbone.fc.register_forward_hook(lambda module, inputs, output: seen.append(output.dtype))
    x = torch.rand(8, 3, 32, 32)
    with torch.no_grad():
        logits, expected = model.module(x), reference.module(x)
    assert logits.dtype == torch.float32
    assert seen == [PRECISIONS[precision] or torch.float32]
    # 8 (bf16) or 11 (fp16) significant bits: agreement to rounding, not to the last bit
    tolerance = {"fp32": 0.0, "bf16": 3e-2, "fp16": 4e-3}[precision]
    assert torch.allclose(logits, expected, atol=tolerance * expected.abs().max().item(), rtol=0)
    assert model.precision == precision and model.provenance["precision"] == precision
    assert model.provenance["memory_format"] == "contiguous"  # channels-last is for CUDA only
    assert model.fingerprint == reference.fingerprint  # the same weights whatever the precision
    pixels = x.clone().requires_grad_(True)
    model.module(pixels).logsumexp(1).sum().backward()
    assert pixels.grad is not None and torch.isfinite(pixels.grad).all() and pixels.grad.abs().sum() > 0


def test_unknown_precision_is_refused_before_anything_runs(tiny_models: Path) -> None:
    with pytest.raises(InputError, match="unknown precision 'bf61'.*did you mean 'bf16'"):
        RunSpec(ModelSpec(f"{tiny_models}:tiny"), DataSpec("digits"), precision="bf61")
    with pytest.raises(InputError, match="unknown precision 'float16'"):
        load_model(ModelSpec(f"{tiny_models}:tiny"), "cpu", precision="float16")


def test_precision_is_part_of_the_run_identity_and_metadata(tiny_models: Path, tmp_path: Path) -> None:
    def spec(precision: str) -> RunSpec:
        return RunSpec(ModelSpec(f"{tiny_models}:tiny"), DataSpec("digits", limit=40), precision=precision)

    fp32 = read_metadata(run_audit(EvalAudit(), spec("fp32"), tmp_path / "a").path)
    bf16 = read_metadata(run_audit(EvalAudit(), spec("bf16"), tmp_path / "b").path)
    assert "precision" not in fp32["identity"]  # fp32 runs keep the identity they always had
    assert bf16["identity"]["precision"] == "bf16"
    assert bf16["run_spec"]["precision"] == "bf16" and bf16["model"]["precision"] == "bf16"
    assert fp32["model"]["precision"] == "fp32"
    with pytest.raises(InputError, match="different spec"):
        run_audit(EvalAudit(), spec("fp32"), tmp_path / "b", resume=True)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (math.nan, "NaN or inf"),
        (math.inf, "NaN or inf"),
        (-math.inf, "NaN or inf"),
        (-0.01, r"\[0, 1\]"),
        (1.5, r"\[0, 1\]"),
    ],
)
def test_pixel_checks_catch_every_kind_of_bad_pixel(value: float, message: str) -> None:
    images = torch.rand(3, 3, 8, 8)
    images[1, 2, 3, 4] = value
    # the range measured by a worker, or measured on the spot
    measured = LoadedBatch(np.arange(3), images, pixel_range=pixel_range(images))
    for batch in (measured, LoadedBatch(np.arange(3), images)):
        with pytest.raises(InputError, match=message):
            batch.check_pixels()
    LoadedBatch(np.arange(3), torch.rand(3, 3, 8, 8)).check_pixels()
    LoadedBatch(np.arange(0), torch.empty(0, 3, 8, 8)).check_pixels()


@pytest.mark.parametrize("workers", [0, 2])
def test_batches_carry_their_pixel_range_measured_where_they_were_decoded(workers: int) -> None:
    dataset = load_dataset(DataSpec("digits"))
    for _, _, batch in iter_batches(dataset, plan_chunks(np.arange(20), 10), 4, workers, device=torch.device("cpu")):
        assert batch.pixel_range == (float(batch.images.min()), float(batch.images.max()))
        assert batch.images.device.type == "cpu" and not batch.images.is_pinned()
