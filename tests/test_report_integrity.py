"""One writer per report (an OS lock naming its holder), and finished chunks verified before a resume trusts them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import TINY_MODELS, CliResult

from robaudit.errors import InputError
from robaudit.reports.lock import owner_path
from robaudit.reports.read import read_metadata
from robaudit.reports.writer import ReportWriter

Cli = Callable[..., CliResult]

GATED = """

class Gated(Tiny):
    # every forward pass waits until the file named by GATE exists: the test decides when a run may go on
    def forward(self, x):
        deadline = time.time() + 120
        while os.environ.get("GATE") and not os.path.exists(os.environ["GATE"]) and time.time() < deadline:
            time.sleep(0.02)
        return super().forward(x)


def gated(name, *, pretrained=False, num_classes=None):
    return _build(Gated(num_classes or 10), num_classes or 10)
"""


@pytest.fixture
def gated_model(tmp_path: Path) -> str:
    path = tmp_path / "gated_models.py"
    path.write_text(textwrap.dedent(TINY_MODELS) + textwrap.dedent(GATED))
    return f"{path}:gated"


def eval_args(model: str, out: Path, *extra: object) -> list[str]:
    args = ["eval", "--model", model, "--data", "digits", "--out", out, "--chunk-size", 40, "--batch-size", 16]
    return [str(a) for a in [*args, *extra]]


def start(args: list[str], gate: Path | None = None) -> subprocess.Popen[str]:
    """A real robaudit process; the gated model's forward passes wait until ``gate`` exists."""
    return subprocess.Popen(
        [sys.executable, "-m", "robaudit", *args],
        env={**os.environ, "GATE": str(gate or "")},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_lock(report: Path, proc: subprocess.Popen[str]) -> None:
    """Until ``proc`` holds the report's lock (its owner file names it)."""
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        try:
            if json.loads(owner_path(report).read_text())["pid"] == proc.pid:
                return
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.05)
    raise AssertionError(f"the first run never took the lock: {proc.poll()}")


def assert_intact(report: Path) -> None:
    table = pq.read_table(report)
    indices = table["index"].to_numpy()
    assert len(set(indices.tolist())) == table.num_rows == read_metadata(report)["data"]["selected"]


def test_two_concurrent_runs_on_one_out_one_refuses_the_other_is_intact(gated_model: str, tmp_path: Path) -> None:
    args = eval_args(gated_model, tmp_path)
    gate = tmp_path / "go"
    first = start(args, gate)
    wait_for_lock(tmp_path / "eval.parquet", first)
    second = start(args, gate)
    _, err = second.communicate(timeout=120)
    gate.touch()
    assert second.returncode == 2, err
    assert err.strip().count("\n") == 0 and "Traceback" not in err
    assert f"pid {first.pid} on host" in err and "is being written by" in err
    _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    assert_intact(tmp_path / "eval.parquet")
    assert not owner_path(tmp_path / "eval.parquet").exists()  # released


@pytest.mark.parametrize(("first_flags", "second_flags"), [(["--resume"], ["--resume"]), ([], ["--overwrite"])])
def test_resume_or_overwrite_during_a_run_is_refused(
    cli, gated_model: str, tmp_path: Path, first_flags: list[str], second_flags: list[str]
) -> None:
    gate = tmp_path / "go"
    first = start(eval_args(gated_model, tmp_path, *first_flags), gate)
    wait_for_lock(tmp_path / "eval.parquet", first)
    result = cli(*eval_args(gated_model, tmp_path, *second_flags))
    gate.touch()
    assert result.code == 2 and f"pid {first.pid}" in result.err, result.err
    assert (tmp_path / "eval.parquet.partial").is_dir()  # --overwrite deleted nothing
    _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    assert_intact(tmp_path / "eval.parquet")


def test_a_killed_runs_lock_is_stale_and_resume_takes_over(gated_model: str, tmp_path: Path) -> None:
    model = gated_model
    first = start(eval_args(model, tmp_path), tmp_path / "never")
    wait_for_lock(tmp_path / "eval.parquet", first)
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    assert owner_path(tmp_path / "eval.parquet").exists()  # the dead run could not clean up
    resumed = subprocess.run(
        [sys.executable, "-m", "robaudit", *eval_args(model, tmp_path, "--resume")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert f"pid {first.pid}" in resumed.stderr and "ended without releasing" in resumed.stderr
    assert_intact(tmp_path / "eval.parquet")


def test_the_writer_holds_the_lock_until_closed(tmp_path: Path) -> None:
    schema = pa.schema([pa.field("index", pa.int64())])
    path = tmp_path / "x.parquet"
    with ReportWriter(path, schema, {"a": 1}), pytest.raises(InputError, match=f"pid {os.getpid()}"):
        ReportWriter(path, schema, {"a": 1}, resume=True)
    with ReportWriter(path, schema, {"a": 1}, resume=True) as writer:
        writer.write_chunk(0, pa.table({"index": [1, 2]}))
        writer.finish({})
    with pytest.raises(InputError, match="not both"):
        ReportWriter(path, schema, {"a": 1}, resume=True, overwrite=True)


def _partial_from_report(report: Path) -> Path:
    """The ``.partial/`` folder a run leaves when it stops after its last chunk: one chunk file per row group."""
    meta = read_metadata(report)
    file = pq.ParquetFile(report)
    partial = report.with_name(report.name + ".partial")
    partial.mkdir()
    (partial / "identity.json").write_text(json.dumps(meta["identity"]))
    for i in range(file.num_row_groups):
        pq.write_table(file.read_row_group(i).replace_schema_metadata(None), partial / f"chunk-{i:06d}.parquet")
    report.unlink()
    return partial


def test_damaged_chunks_are_recomputed_on_resume(
    cli: Cli, tiny_models: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    model = f"{tiny_models}:tiny"
    assert cli(*eval_args(model, tmp_path / "clean", "--limit", 240)).code == 0
    assert cli(*eval_args(model, tmp_path / "r", "--limit", 240)).code == 0
    partial = _partial_from_report(tmp_path / "r" / "eval.parquet")
    chunk = [partial / f"chunk-{i:06d}.parquet" for i in range(6)]
    truncated = chunk[1].read_bytes()
    chunk[1].write_bytes(truncated[: len(truncated) // 2])  # a crash while writing
    chunk[2].write_bytes(chunk[3].read_bytes())  # whole, but the wrong images
    pq.write_table(pq.read_table(chunk[4]).drop_columns(["confidence"]), chunk[4])  # other columns
    chunk[5].write_bytes(b"")  # empty
    result = cli(*eval_args(model, tmp_path / "r", "--limit", 240, "--resume"))
    assert result.code == 0, result.err
    assert "2 of 6 chunks were already done" in result.err
    for i, why in ((1, "truncated"), (2, "other images"), (4, "columns differ"), (5, "truncated")):
        assert f"{why}" in caplog.text.split(f"chunk-00000{i}.parquet: ")[1].split("\n")[0]
        assert f"computing chunk {i} again" in caplog.text
    clean = pq.read_table(tmp_path / "clean" / "eval.parquet")
    assert pq.read_table(tmp_path / "r" / "eval.parquet").equals(clean)
