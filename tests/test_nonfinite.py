"""Non-finite logits or gradients stop every audit the same way: exit 3, one identical line, no report."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import QUICK_AUDIT_ARGS, TINY_MODELS, CliResult

from robaudit import plugins
from robaudit.errors import RunError
from robaudit.models.finite import NON_FINITE, FiniteMonitor
from robaudit.registry import BUILTIN_SOURCE

AUDIT_ARGS = QUICK_AUDIT_ARGS
#: audits that differentiate the model with respect to its input (and so meet a NaN gradient)
GRADIENT_AUDITS = {"attack", "jacobian", "spectrum"}
#: audits of the data alone: a model given to them is never run, so its NaN cannot stop them
MODEL_FREE = {"corruption-spectrum"}

Cli = Callable[..., CliResult]

BUILTIN_AUDITS = sorted(e.name for e in plugins.audits.entries() if e.source == BUILTIN_SOURCE)

NAN_GRADIENT = """

class NanGradient(Tiny):
    # finite logits, but d logits / d pixels is NaN: sqrt'(0) = inf, times 0
    def forward(self, x):
        return super().forward(x) + 0.0 * torch.sqrt(x - x).sum()

def nan_gradient(name, *, pretrained=False, num_classes=None):
    return _build(NanGradient(num_classes or 10), num_classes or 10)
"""


@pytest.fixture(scope="module")
def models_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("models") / "nonfinite_models.py"
    path.write_text(textwrap.dedent(TINY_MODELS) + textwrap.dedent(NAN_GRADIENT))
    return path


def shared(out: Path) -> list[object]:
    return ["--data", "digits", "--limit", 8, "--batch-size", 8, "--chunk-size", 8, "--device", "cpu", "--out", out]


def audit_line(cli: Cli, command: str, model: str, out: Path, *extra: object) -> tuple[int, str]:
    result = cli(command, "--model", model, *AUDIT_ARGS[command], *shared(out), *extra)
    lines = result.err.strip().splitlines()
    assert "Traceback" not in result.err and len(lines) == 1, result.err
    return result.code, lines[0]


def test_every_builtin_audit_has_a_command_line_here() -> None:
    assert set(BUILTIN_AUDITS) == set(AUDIT_ARGS), "add the new audit to AUDIT_ARGS"


@pytest.fixture(scope="module")
def expected(models_file: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The one line every audit prints for the NaN model (taken from eval, compared for all)."""
    from robaudit.data import DataSpec, select_samples
    from robaudit.data.sources import digits

    first = select_samples(digits().labels, DataSpec("digits", limit=8), 0)
    return (
        f"robaudit: error: {NON_FINITE} on a batch of 8 images (data indices {first[0]} to {first[-1]}); its "
        "weights, its defenses' artifacts or the inputs are broken, so no result is written"
    )


@pytest.mark.parametrize("audit", BUILTIN_AUDITS)
def test_nan_weights_stop_every_audit_the_same_way(
    cli: Cli, models_file: Path, tmp_path: Path, expected: str, audit: str
) -> None:
    if audit in MODEL_FREE:
        assert cli(audit, "--model", f"{models_file}:nan_logits", *AUDIT_ARGS[audit], *shared(tmp_path)).code == 0
        return
    code, line = audit_line(cli, audit, f"{models_file}:nan_logits", tmp_path)
    assert (code, line) == (3, expected)
    assert not list(tmp_path.glob("*.parquet")) and not list(tmp_path.glob("*.partial/chunk-*"))


@pytest.fixture(scope="module")
def nan_cache(models_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache built for the tiny model whose keys were then overwritten with NaN."""
    from robaudit.cli import main

    folder = tmp_path_factory.mktemp("cache") / "c"
    with pytest.raises(SystemExit) as exit_info:
        main(["cache", "build", "--model", f"{models_file}:tiny", "--layers", "penultimate", "--limit", "40",
              "--device", "cpu", "--out", str(folder)])  # fmt: skip
    assert exit_info.value.code == 0
    keys = np.load(folder / "keys.npy")
    np.save(folder / "keys.npy", np.full_like(keys, np.nan))
    return folder


@pytest.mark.parametrize("audit", BUILTIN_AUDITS)
def test_a_nan_cache_stops_every_audit_the_same_way(
    cli: Cli, models_file: Path, nan_cache: Path, tmp_path: Path, expected: str, audit: str
) -> None:
    defense = ["--defense", f"cache:path={nan_cache},theta=50,lam=0.5"]
    if audit in MODEL_FREE:
        pytest.skip("an audit of the data alone runs no model to defend")
    extra = ["--threat", "white"] if audit == "attack" else []
    code, line = audit_line(cli, audit, f"{models_file}:tiny", tmp_path, *defense, *extra)
    assert (code, line) == (3, expected)


@pytest.mark.parametrize("audit", sorted(GRADIENT_AUDITS))
def test_nan_gradients_with_finite_logits_stop_gradient_audits(
    cli: Cli, models_file: Path, tmp_path: Path, expected: str, audit: str
) -> None:
    code, line = audit_line(cli, audit, f"{models_file}:nan_gradient", tmp_path)
    assert (code, line) == (3, expected)
    # without gradients the same model is fine
    assert cli("eval", "--model", f"{models_file}:nan_gradient", *shared(tmp_path / "eval")).code == 0


def test_a_nan_cache_is_not_tuned(cli: Cli, nan_cache: Path, tmp_path: Path) -> None:
    result = cli("cache", "tune", "--cache", nan_cache, "--limit", 20, "--thetas", "50", "--lams", "0.5",
                 "--device", "cpu", "--out", tmp_path / "tune.parquet")  # fmt: skip
    assert result.code == 3 and NON_FINITE in result.err and not (tmp_path / "tune.parquet").exists()


def test_a_nan_model_builds_no_cache(cli: Cli, models_file: Path, tmp_path: Path) -> None:
    result = cli("cache", "build", "--model", f"{models_file}:nan_logits", "--layers", "penultimate",
                 "--limit", 20, "--device", "cpu", "--out", tmp_path / "c")  # fmt: skip
    assert result.code == 3 and NON_FINITE in result.err and not (tmp_path / "c").exists()


def test_the_monitor_records_without_reading_back_and_resets() -> None:
    monitor = FiniteMonitor()
    net = torch.nn.Linear(4, 2)
    monitor.watch(net)
    monitor.watch(net)  # idempotent: one hook
    assert len(net._forward_hooks) == 1
    x = torch.rand(3, 4, requires_grad=True)
    net(x).sum().backward()
    monitor.check()  # finite: nothing raised
    with torch.no_grad():
        net.weight[0, 0] = float("inf")
    with torch.inference_mode():
        net(torch.rand(3, 4))
    assert monitor.found()
    with pytest.raises(RunError, match="NaN or inf"):
        monitor.check("here")
    assert not monitor.found()  # check resets
    # a gradient alone: finite output, NaN gradient into the input
    gate = torch.nn.Identity()
    monitor.watch(gate)
    pixels = torch.zeros(2, 3, requires_grad=True)
    (gate(pixels).sqrt() * 0).sum().backward()
    assert monitor.found()
