"""The flip-consistency plugin: registered through its entry point, rows and summary on a model with a known
answer, and the command, HTML section and gate metric robaudit gives it without knowing its name."""

from __future__ import annotations

from importlib.metadata import entry_points
from pathlib import Path

import numpy as np
import pytest
import torch
from robaudit import plugins
from robaudit.audits.base import AuditBatch
from robaudit.errors import InputError
from robaudit.models import LoadedModel, ModelSpec, Normalized, Preprocessing

from robaudit_flip_consistency import FlipConsistencyAudit


class LeftHeavy(torch.nn.Module):
    """Class 1 when the left half is brighter than the right: a horizontal flip changes its mind."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = x.shape[-1] // 2
        score = x[..., :w].mean(dim=(1, 2, 3)) - x[..., w:].mean(dim=(1, 2, 3))
        return torch.stack([-score, score], dim=1)


def _loaded(module: torch.nn.Module) -> LoadedModel:
    base = Normalized(module, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    return LoadedModel(
        module=base,
        base=base,
        spec=ModelSpec(name="left-heavy"),
        preprocessing=Preprocessing(input_size=(3, 8, 8)),
        num_classes=2,
        provenance={},
        device=torch.device("cpu"),
    )


def test_registered_through_its_entry_point() -> None:
    assert "flip-consistency" in {ep.name for ep in entry_points(group="robaudit.audits")}
    assert plugins.audits.get("flip-consistency") is FlipConsistencyAudit


def test_a_left_right_model_is_consistent_under_vertical_flips_only() -> None:
    images = torch.zeros(4, 3, 8, 8)
    images[:2, :, :, :4] = 1.0  # left-bright: class 1
    images[2:, :, :, 4:] = 1.0  # right-bright: class 0
    labels = torch.tensor([1, 1, 0, 0])
    rows = FlipConsistencyAudit().run_batch(_loaded(LeftHeavy()), AuditBatch(np.arange(4), images, labels))
    flips = rows["flip"].tolist()
    horizontal = rows["consistent"][[f == "horizontal" for f in flips]]
    vertical = rows["consistent"][[f == "vertical" for f in flips]]
    assert not horizontal.any() and vertical.all()


def test_unknown_flip_is_an_input_error() -> None:
    with pytest.raises(InputError, match="unknown flip 'diagonal'"):
        FlipConsistencyAudit(flips=["diagonal"])


def test_command_page_and_gate_without_robaudit_naming_it(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from robaudit.presentation.html import write_html
    from robaudit.reports.metrics import collect_metrics

    result = cli("flip-consistency", "-m", "digits_cnn", "--limit", "16", "-o", tmp_path, "--json")
    assert result.code == 0, result.err
    summary = result.result
    assert [f["flip"] for f in summary["flips"]] == ["horizontal", "vertical"]
    assert (tmp_path / "flip-consistency.png").is_file()
    again = cli("audit", "flip-consistency", "-m", "digits_cnn", "--limit", "16", "-O", "flips=vertical",
                "-o", tmp_path / "generic", "--json")  # fmt: skip
    assert again.code == 0 and [f["flip"] for f in again.result["flips"]] == ["vertical"]
    assert 'data-section="flip-consistency"' in write_html(tmp_path).read_text(encoding="utf-8")
    metrics = collect_metrics(tmp_path)
    assert metrics["flip-consistency.horizontal.consistency"].samples == 16
    policy = tmp_path / "gate.toml"
    policy.write_text('[[rule]]\ncheck = "flip-consistency.vertical.consistency >= 0"\n')
    # the untrained demo model keeps the test fast; the gate judges it only when told to
    assert cli("gate", tmp_path, "--policy", policy).code == 2
    gate = cli("gate", tmp_path, "--policy", policy, "--allow-random-weights")
    assert gate.code == 0, gate.err
