"""The Python API: the documented walk-through runs, Python and the command line give the same report, and
any ``nn.Module`` (defined here, never registered) is attacked, corrupted and probed."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from conftest import CliResult
from torch import nn

import robaudit
from robaudit.errors import InputError

DOCS = Path(__file__).resolve().parents[1] / "docs" / "python.md"


class Tiny(nn.Module):
    """A small untrained network of this test file: pixels in [0, 1] -> 10 logits."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(128, 10)
        )

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.net(pixels - 0.5)


def tensors(n: int = 16, size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return torch.rand(n, 3, size, size, generator=generator), torch.arange(n) % 10


def test_the_walk_through_in_the_docs_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocks = re.findall(r"```python\n(.*?)```", DOCS.read_text(encoding="utf-8"), re.S)
    assert len(blocks) >= 5
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {}
    for i, block in enumerate(blocks):
        exec(compile(block, f"{DOCS.name} block {i + 1}", "exec"), namespace)


@pytest.mark.parametrize(
    ("audit", "options", "argv"),
    [
        ("eval", {}, []),
        (
            "attack",
            {"eps": "0.05,0.1", "attack": "pgd:steps=2", "check_samples": 2},
            ["--eps", "0.05,0.1", "--attack", "pgd:steps=2", "--check-samples", "2"],
        ),
        ("fourier-map", {"step": 8}, ["--step", "8"]),
    ],
)
def test_python_and_the_command_line_write_the_same_report(
    audit: str, options: dict[str, object], argv: list[str], cli, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    shared = {"limit": 24, "seed": 3}
    ran: CliResult = cli(
        audit,
        "-m",
        "digits_cnn",
        "--pretrained",
        "-d",
        "digits",
        "--limit",
        24,
        "--seed",
        3,
        "-o",
        tmp_path / "cli",
        *argv,
    )
    assert ran.code == 0, ran.err
    result = robaudit.audit(audit, robaudit.load_model("digits_cnn", pretrained=True), "digits", **shared, **options)
    from_cli = pq.read_table(tmp_path / "cli" / f"{audit}.parquet")
    assert result.table.equals(from_cli)  # rows and types (the metadata holds times and paths)
    from robaudit.reports.read import read_report, summarize

    rows, meta = read_report(tmp_path / "cli" / f"{audit}.parquet")
    assert summarize(rows, meta, "cli")[1] == result.summary
    assert meta["identity"] == result.metadata["identity"]
    saved = result.save(tmp_path / "py")
    assert pq.read_table(saved).equals(from_cli)


def test_a_module_of_this_file_is_attacked_corrupted_and_probed() -> None:
    model, data = Tiny(), tensors()
    attacked = robaudit.attack(model, data, eps=[2 / 255, 8 / 255], attack="pgd:steps=3", check_samples=2)
    curves = attacked.summary["curves"]
    assert [c["eps"] for c in curves] == pytest.approx([2 / 255, 8 / 255])
    assert curves[0]["accuracy"] >= curves[1]["accuracy"]
    assert attacked.metadata["model"]["model"] == f"python:{__name__}.Tiny"
    corrupted = robaudit.corruptions(model, data, corruptions="gaussian_noise,contrast", severities="1,5")
    assert {r["corruption"] for r in corrupted.summary["per_corruption"]} == {"gaussian_noise", "contrast"}
    probed = robaudit.hybrid(model, data, fmix=[0.2, 0.5])
    assert "f_rev" in probed.summary
    mapped = robaudit.fourier_map(model, data, step=8)
    assert "fourier-map" in mapped.figures() or mapped.figures()


def test_the_same_tensors_are_the_same_run_and_resume_continues(tmp_path: Path) -> None:
    model, data = Tiny(), tensors(40)
    first = robaudit.eval(model, data, out=tmp_path, chunk_size=8)
    assert first.path == tmp_path / "eval.parquet"
    # a second call on the same model and tensors finds the finished report; other tensors are another run
    again = robaudit.eval(model, data, out=tmp_path, chunk_size=8, resume=True)
    assert again.table.equals(first.table)
    images, labels = data
    with pytest.raises(InputError, match="different spec"):
        robaudit.eval(model, (images.flip(0), labels), out=tmp_path, chunk_size=8, resume=True)


def test_defend_composes_around_any_module_and_keeps_the_way_back() -> None:
    blurred = robaudit.defend(Tiny(), "blur:sigma=1.0", input_size=(3, 32, 32))
    assert [d.name for d in blurred.defenses] == ["blur"]
    twice = robaudit.defend(blurred, "blur:sigma=0.5")
    assert [repr(d) for d in twice.defenses] == [repr(blurred.defenses[0]), "blur(padding='circular', sigma=0.5)"]
    x = tensors(2)[0]
    assert twice(x).shape == (2, 10)
    result = robaudit.eval(twice, tensors(8))
    assert (
        result.rows["defense"].iloc[0] == "blur(padding='circular', sigma=1.0) -> blur(padding='circular', sigma=0.5)"
    )


class Flat(nn.Module):
    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return pixels.mean(dim=(1, 2, 3))


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: robaudit.eval(Tiny(), (torch.rand(4, 3, 8), torch.zeros(4))), "must be \\(N, C, H, W\\)"),
        (lambda: robaudit.eval(Tiny(), (torch.rand(4, 3, 8, 8) * 2, torch.zeros(4))), "in \\[0, 1\\]"),
        (lambda: robaudit.eval(Tiny(), (torch.full((4, 3, 8, 8), float("nan")), torch.zeros(4))), "NaN"),
        (lambda: robaudit.eval(Tiny(), (torch.rand(4, 3, 8, 8), torch.zeros(3))), "labels of shape"),
        (lambda: robaudit.eval(Tiny(), (torch.rand(0, 3, 8, 8), torch.zeros(0))), "no images"),
        (lambda: robaudit.eval(Tiny(), (torch.rand(4, 3, 8, 8), -torch.ones(4))), "labels must be integers"),
        (lambda: robaudit.eval(Flat(), tensors(4)), "logits of shape"),
        (lambda: robaudit.eval(42, tensors(4)), "must be a name or an nn.Module"),
        (lambda: robaudit.eval(Tiny(), 3.5), "data must be"),
        (lambda: robaudit.defend(Tiny(), "blur:sigma=1"), "input_size"),
        (lambda: robaudit.attack(Tiny(), tensors(4), epz=[0.1]), "epz"),
        (lambda: robaudit.audit("evl", Tiny(), tensors(4)), "did you mean 'eval'"),
    ],
)
def test_bad_input_from_python_is_one_clear_input_error(call, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InputError, match=message):
        call()


def test_every_audit_is_a_function_and_importing_stays_light() -> None:
    from robaudit import plugins

    for name in plugins.audits.names():
        function = getattr(robaudit, name.replace("-", "_"))
        assert function.__name__ == name.replace("-", "_") and "Options" in (function.__doc__ or "")
    assert "fourier_map" in dir(robaudit)
    with pytest.raises(AttributeError):
        robaudit.no_such_audit  # noqa: B018
    code = "import sys, robaudit; print([m for m in ('torch', 'numpy', 'pandas') if m in sys.modules])"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "[]"


def test_a_torch_dataset_and_dataloader_are_read_once(tmp_path: Path) -> None:
    images, labels = tensors(12)
    dataset = torch.utils.data.TensorDataset(images, labels)
    by_dataset = robaudit.eval(Tiny(), dataset)
    by_loader = robaudit.eval(Tiny(), torch.utils.data.DataLoader(dataset, batch_size=5))
    by_pair = robaudit.eval(Tiny(), (images, labels))
    assert by_dataset.table.equals(by_loader.table) and by_loader.table.equals(by_pair.table)
    uint8 = robaudit.eval(Tiny(), ((images * 255).round().to(torch.uint8).numpy(), labels.numpy()))
    assert np.array_equal(uint8.rows["label"], by_pair.rows["label"])


def test_a_module_of_this_file_on_a_named_data_source() -> None:
    result = robaudit.eval(Tiny(), "digits", limit=20)
    assert result.summary["samples"] == 20 and result.metadata["data"]["description"].startswith("digits")
