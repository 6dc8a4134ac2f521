"""benchmarks/gpu.py, the one script of the GPU figures, checked end to end at tiny sizes on the CPU."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def test_gpu_benchmark_quick_runs_every_section_and_judges_every_target(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location("gpu_benchmark", BENCHMARKS / "gpu.py")
    assert spec is not None and spec.loader is not None
    gpu = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "gpu_benchmark", gpu)  # dataclasses look their module up there
    spec.loader.exec_module(gpu)
    out = tmp_path / "rows.json"
    # one thread: on a busy machine, tiny operators otherwise wait for their second thread
    assert gpu.main(["--quick", "--device", "cpu", "--workers", "0", "--threads", "1", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    rows = result["rows"]
    assert {r["section"] for r in rows} == set(gpu.SECTIONS)
    assert set(result["seconds"]) >= {*gpu.SECTIONS, "total"}
    for row in rows:
        # every figure is measured, or says why not (an optional library that is not installed)
        assert row["value"] is not None or row["note"] == "not installed", row
        if row["target"]:
            assert row["passed"] in (True, False), row
    targets = [r["name"] for r in rows if r["target"]]
    for expected in (
        "PGD-2 / bare loop",
        "L∞ img/s",
        "corruption generation",
        "corruptions audit end to end",
        "eval img/s",
        "eval start-up",
        "hybrid probe",
        "continuous cache",
        "jpeg tensor codec",
    ):
        assert any(expected in name for name in targets), expected
    # the tensor JPEG codec agrees with libjpeg on the script's own photographs too
    assert all(r["passed"] for r in rows if r["name"].startswith("jpeg tensor codec"))
    with pytest.raises(SystemExit):
        gpu.main(["--quick", "--device", "cpu", "--only", "pgd,nosuch"])
