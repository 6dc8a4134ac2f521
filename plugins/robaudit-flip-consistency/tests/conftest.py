"""Run robaudit's command line in-process for the plugin's tests."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def result(self) -> Any:
        """The ``result`` of the command's ``--json`` envelope."""
        import json

        return json.loads(self.out)["result"]


@pytest.fixture
def cli(
    capsys: pytest.CaptureFixture[str], tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., Result]:
    from robaudit.cli import main

    monkeypatch.setenv("ROBAUDIT_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))

    def run(*args: Any) -> Result:
        capsys.readouterr()
        try:
            main([str(a) for a in args])
            code = 0
        except SystemExit as exit_:
            code = int(exit_.code or 0)
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run
