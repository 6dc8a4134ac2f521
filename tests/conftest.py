"""Shared fixtures: an isolated robaudit cache, an in-process CLI runner, tiny model files, real data."""

from __future__ import annotations

import os
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

#: what each built-in audit command needs besides the shared options to run on a few images quickly (the
#: tests that run every audit take them from here; a plugin's audit runs with its defaults)
QUICK_AUDIT_ARGS: dict[str, list[str]] = {
    "eval": [],
    "attack": ["--eps", "0.05,0.1", "--attack", "pgd:steps=2", "--check-samples", "2"],
    "jacobian": ["--top-k", "2"],
    "hybrid": ["--fmix", "0.25,0.5"],
    "fourier-map": ["--step", "8"],
    "corruptions": ["--corruptions", "gaussian_noise", "--severities", "1"],
    "spectrum": ["--attack", "ddn:steps=2"],
    "corruption-spectrum": ["--corruptions", "gaussian_noise"],
    "rsa": ["--target-model", "digits_cnn", "--target-pretrained", "--target-layer", "features.4", "--bootstrap", "5"],
}


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Keep tests away from the user's cache; the demo model is trained once per session here."""
    path = tmp_path_factory.mktemp("robaudit-cache")
    old = os.environ.get("ROBAUDIT_CACHE")
    os.environ["ROBAUDIT_CACHE"] = str(path)
    yield path
    if old is None:
        os.environ.pop("ROBAUDIT_CACHE", None)
    else:
        os.environ["ROBAUDIT_CACHE"] = old


@pytest.fixture
def validation_data() -> Path:
    """The real data folder named by ROBAUDIT_VALIDATION_DATA; the test is skipped without it."""
    value = os.environ.get("ROBAUDIT_VALIDATION_DATA")
    if not value or not Path(value).is_dir():
        pytest.skip("real validation data not available (set ROBAUDIT_VALIDATION_DATA)")
    return Path(value)


@dataclass
class CliResult:
    code: int
    out: str
    err: str

    @property
    def envelope(self) -> dict[str, Any]:
        """What the command printed with ``--json``: the envelope every command shares."""
        import json

        document = json.loads(self.out)
        assert set(document) >= {"command", "exit_code", "files", "result", "error"}, document
        return dict(document)

    @property
    def result(self) -> Any:
        """The ``result`` of the ``--json`` envelope (an audit's summary, a listing...)."""
        return self.envelope["result"]

    @property
    def files(self) -> dict[str, Any]:
        return dict(self.envelope["files"])


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., CliResult]:
    """Run ``robaudit ARGS...`` in-process; returns exit code, stdout and stderr."""
    from robaudit.cli import main

    def run(*args: object) -> CliResult:
        capsys.readouterr()
        with pytest.raises(SystemExit) as exit_info:
            main([str(a) for a in args])
        out, err = capsys.readouterr()
        code = exit_info.value.code
        return CliResult(code if isinstance(code, int) else 1, out, err)

    return run


TINY_MODELS = """
import os
import time

import torch
from torch import nn

from robaudit.models import ModelBuild, Preprocessing


class Tiny(nn.Module):
    def __init__(self, num_classes=10, poison=None):
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.fc = nn.Linear(8, num_classes)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=generator) * 0.5)
        self.poison = poison

    def forward(self, x):
        if os.environ.get("TINY_SLOW"):
            time.sleep(float(os.environ["TINY_SLOW"]))
        logits = self.fc(self.conv(x).relu().mean((2, 3)))
        if self.poison is not None:
            logits = logits + self.poison
        return logits


def _build(net, num_classes):
    return ModelBuild(net, Preprocessing(input_size=(3, 32, 32), crop_pct=1.0), num_classes)


def tiny(name, *, pretrained=False, num_classes=None):
    return _build(Tiny(num_classes or 10), num_classes or 10)


def nan_logits(name, *, pretrained=False, num_classes=None):
    return _build(Tiny(num_classes or 10, poison=float("nan")), num_classes or 10)


def bare(name, *, pretrained=False, num_classes=None):
    return Tiny(num_classes or 10)


def broken(name, *, pretrained=False, num_classes=None):
    return "not a model"
"""


@pytest.fixture
def tiny_models(tmp_path: Path) -> Path:
    """A Python file with model factories: tiny, nan_logits, bare (a plain nn.Module), broken."""
    path = tmp_path / "tiny_models.py"
    path.write_text(textwrap.dedent(TINY_MODELS))
    return path
