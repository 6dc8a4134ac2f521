"""Audits, suites and cache builds under torchrun (gloo on the CPU), and merging shards of separate jobs.

Every distributed report is compared with the one a single process writes: the same rows, in the same
order (``Table.equals``). The processes are real: ``python -m torch.distributed.run`` starts them.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

DIGITS = ["--model", "digits_cnn", "--pretrained", "--data", "digits"]
#: the digits CNN, made as slow as SLOW_FORWARD (seconds per forward pass) says: a run that a test can
#: interrupt in its middle, whatever the speed of the machine
SLOW_DIGITS = """
import os
import time

import torch

from robaudit.models import ModelBuild
from robaudit.models.demo import digits_cnn


class Slow(torch.nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        time.sleep(float(os.environ.get("SLOW_FORWARD", "0")))
        return self.inner(x)


def digits(name, *, pretrained=False, num_classes=None):
    build = digits_cnn(pretrained=True)
    return ModelBuild(Slow(build.backbone), build.preprocessing, build.num_classes)
"""


@pytest.fixture(scope="module", autouse=True)
def _trained_digits() -> None:
    """Train the digits model once, here, so that the ranks only read it from the cache."""
    from robaudit.models.demo import digits_cnn

    digits_cnn(pretrained=True)


@pytest.fixture(scope="module")
def attack_args(tmp_path_factory: pytest.TempPathFactory) -> list[object]:
    """A PGD audit of the digits CNN in 10 chunks (slowed down by SLOW_FORWARD where a test sets it)."""
    models = tmp_path_factory.mktemp("models") / "slow_digits.py"
    models.write_text(textwrap.dedent(SLOW_DIGITS))
    model = ["--model", f"{models}:digits", "--data", "digits"]
    return ["attack", *model, "--limit", 80, "--chunk-size", 8, "--eps", 0.03, "--attack", "pgd:steps=5", "--no-checks"]


def torchrun(processes: int, *args: object, wait: bool = True, slow: float = 0.0) -> Any:
    """``torchrun --nproc-per-node PROCESSES -m robaudit ARGS``: finished (CompletedProcess), or started (Popen)."""
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        str(processes),
        "-m",
        "robaudit",
        *map(str, args),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ROBAUDIT_DIST_TIMEOUT": "120", "SLOW_FORWARD": str(slow)}
    if not wait:
        return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)


def same_rows(a: Path, b: Path) -> bool:
    one, two = pq.read_table(a), pq.read_table(b)
    keys = [("chunk", "ascending"), ("index", "ascending")]
    return bool(one.equals(two) and one.sort_by(keys).equals(two.sort_by(keys)))


@pytest.fixture(scope="module")
def single_attack(tmp_path_factory: pytest.TempPathFactory, attack_args: list[object]) -> Path:
    """The attack report of one process, to compare the distributed runs with."""
    from robaudit.cli import main

    out = tmp_path_factory.mktemp("single-attack")
    with pytest.raises(SystemExit) as done:
        main([str(a) for a in [*attack_args, "--out", out, "--json"]])
    assert done.value.code == 0
    return out / "attack.parquet"


def test_two_ranks_write_the_report_of_one_process(
    single_attack: Path, attack_args: list[object], tmp_path: Path
) -> None:
    run = torchrun(2, *attack_args, "--out", tmp_path, "--json")
    assert isinstance(run, subprocess.CompletedProcess)
    assert run.returncode == 0, run.stderr[-3000:]
    assert same_rows(single_attack, tmp_path / "attack.parquet")
    # only rank 0 prints the summary; every rank shows progress on lines of its own, rank 0 the whole job's
    assert json.loads(run.stdout)["files"]["report"] == str(tmp_path / "attack.parquet")
    assert "attack (all 2 ranks): 80/80 (100 %)" in run.stderr and "attack [rank 1]:" in run.stderr
    meta = json.loads(pq.read_schema(tmp_path / "attack.parquet").metadata[b"robaudit"])
    assert meta["processes"] == 2 and meta["identity"]["shard"] == [0, 1]
    assert not (tmp_path / "attack.parquet.partial").exists()


def test_a_killed_rank_fails_the_job_and_resume_completes_with_any_number_of_processes(
    single_attack: Path, attack_args: list[object], tmp_path: Path, cli
) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "run"
    job = torchrun(2, *attack_args, "--out", out, wait=False, slow=0.1)
    assert isinstance(job, subprocess.Popen)
    partial = out / "attack.parquet.partial"
    deadline = time.monotonic() + 120
    while len(list(partial.glob("chunk-*.parquet"))) < 2 and job.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    rank1 = [pid for pid in _children(job.pid) if _environment(pid).get("RANK") == "1"]
    assert rank1 and job.poll() is None, "the run ended before a rank could be killed"
    os.kill(rank1[0], signal.SIGKILL)
    _, err = job.communicate(timeout=120)
    assert job.returncode != 0
    # torchrun names the rank that died; the rank it stopped says so, and how to go on
    assert "rank      : 1" in err and "SIGKILL" in err
    assert "rank 0 of 2: stopped by the launcher" in err and "--resume" in err
    assert not (out / "attack.parquet").exists()
    done = len(list(partial.glob("chunk-*.parquet")))
    assert 2 <= done < 10
    again = tmp_path / "again"
    shutil.copytree(out, again)
    # one process continues it ...
    resumed = cli(*attack_args, "--out", out, "--resume", "--json")
    assert resumed.code == 0, resumed.err
    assert f"resumed: {done} of 10 chunks were already done" in resumed.err
    assert same_rows(single_attack, out / "attack.parquet")
    # ... and so do three
    run = torchrun(3, *attack_args, "--out", again, "--resume", "--json")
    assert isinstance(run, subprocess.CompletedProcess)
    assert run.returncode == 0, run.stderr[-3000:]
    assert same_rows(single_attack, again / "attack.parquet")


BROKEN_ON_RANK_1 = """
import os

import torch

from robaudit.models import ModelBuild
from robaudit.models.demo import digits_cnn


class BrokenOnRank1(torch.nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        logits = self.inner(x)
        return logits * float("nan") if os.environ.get("RANK") == "1" else logits


def broken(name, *, pretrained=False, num_classes=None):
    build = digits_cnn(pretrained=True)
    return ModelBuild(BrokenOnRank1(build.backbone), build.preprocessing, build.num_classes)
"""


def test_a_failing_rank_stops_every_rank_with_its_message(tmp_path: Path) -> None:
    models = tmp_path / "models.py"
    models.write_text(textwrap.dedent(BROKEN_ON_RANK_1))
    run = torchrun(2, "eval", "--model", f"{models}:broken", "--data", "digits", "--chunk-size", 20, "--out", tmp_path)
    assert isinstance(run, subprocess.CompletedProcess)
    assert run.returncode != 0
    lines = [line for line in run.stderr.splitlines() if line.startswith("robaudit: error:")]
    # one message, from the rank that failed; torchrun shows it as the job's root cause
    assert lines == [lines[0]] and lines[0].startswith("robaudit: error: rank 1 of 2: the model produced NaN")
    assert "traceback : robaudit: error: rank 1 of 2: the model produced NaN" in run.stderr
    assert not (tmp_path / "eval.parquet").exists()


def test_an_error_of_every_rank_is_told_once(tmp_path: Path) -> None:
    run = torchrun(2, "eval", "--model", "digits_cn", "--data", "digits", "--out", tmp_path)
    assert isinstance(run, subprocess.CompletedProcess)
    lines = [line for line in run.stderr.splitlines() if line.startswith("robaudit: error:")]
    assert len(lines) == 1 and "rank 0 of 2" in lines[0] and "did you mean" in lines[0], run.stderr[-2000:]
    assert run.returncode != 0 and not (tmp_path / "eval.parquet.partial").exists()


SUITE = """
[run]
model = "digits_cnn"
pretrained = true
data = "digits"
limit = 40
chunk-size = 10

[[steps]]
audit = "eval"

[[steps]]
audit = "attack"
attack = "pgd:steps=5"
eps = [0.02, 0.05]

[[steps]]
audit = "corruptions"
corruptions = ["gaussian_noise", "contrast"]
severities = [1, 3]

[[steps]]
command = "cache build"
layers = "penultimate"
batch-size = 32

[[steps]]
command = "cache tune"
cache = "{out}/cache_build"
thetas = "10:50:3"
lams = "0.3,0.6"
"""


def test_a_suite_under_torchrun_equals_one_process(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    suite = tmp_path / "suite.toml"
    suite.write_text(SUITE)
    single = cli("run", suite, "--out", tmp_path / "single", "--json")
    assert single.code == 0, single.err
    run = torchrun(2, "run", suite, "--out", tmp_path / "dist", "--json")
    assert isinstance(run, subprocess.CompletedProcess)
    assert run.returncode == 0, run.stderr[-3000:]
    for name in ("eval", "attack", "corruptions"):
        assert same_rows(tmp_path / "single" / f"{name}.parquet", tmp_path / "dist" / f"{name}.parquet"), name
    # the keys that the ranks computed and rank 0 assembled are the single process's, byte for byte
    for name in ("keys.npy", "labels.npy"):
        assert (tmp_path / "single/cache_build" / name).read_bytes() == (
            tmp_path / "dist/cache_build" / name
        ).read_bytes()
    summaries = [json.loads(text)["result"] for text in (run.stdout, single.out)]
    for summary in summaries:
        summary["cache_build"].pop("seconds")
    assert summaries[0] == summaries[1]
    manifest = json.loads((tmp_path / "dist" / "manifest.json").read_text())
    assert manifest["status"] == "finished" and all(s["status"] == "finished" for s in manifest["steps"])


# -- merging the shards of separate jobs ---------------------------------------------------------------------------


EVAL = ["eval", *DIGITS, "--chunk-size", 40, "--json"]


@pytest.fixture
def shards(cli, tmp_path: Path) -> list[Path]:  # type: ignore[no-untyped-def]
    folders = []
    for i in range(3):
        folder = tmp_path / f"job{i}"
        assert cli(*EVAL, "--shard", f"{i}/3", "--out", folder).code == 0
        folders.append(folder)
    return folders


def test_merged_shards_equal_one_run_and_a_resume_finds_it_finished(cli, shards: list[Path], tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    single = tmp_path / "single"
    assert cli(*EVAL, "--out", single).code == 0
    merged = cli("report", "merge", tmp_path / "merged", *reversed(shards), "--json")
    assert merged.code == 0, merged.err
    assert merged.files["reports"] == [str(tmp_path / "merged" / "eval.parquet")]
    assert same_rows(single / "eval.parquet", tmp_path / "merged" / "eval.parquet")
    assert pq.ParquetFile(tmp_path / "merged" / "eval.parquet").num_row_groups == 9  # one per chunk, as one run
    meta = json.loads(pq.read_schema(tmp_path / "merged" / "eval.parquet").metadata[b"robaudit"])
    single_meta = json.loads(pq.read_schema(single / "eval.parquet").metadata[b"robaudit"])
    assert meta["identity"] == single_meta["identity"] and meta["data"] == single_meta["data"]
    assert [m["shard"] for m in meta["merged_from"]] == ["0/3", "1/3", "2/3"]
    resumed = cli(*EVAL, "--out", tmp_path / "merged", "--resume")
    assert resumed.code == 0 and "resumed: 9 of 9 chunks" in resumed.err
    again = cli("report", "merge", tmp_path / "merged", *shards)
    assert again.code == 2 and "--overwrite" in again.err


def test_merge_refuses_a_missing_duplicated_or_foreign_shard(cli, shards: list[Path], tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "merged"
    missing = cli("report", "merge", out, shards[0], shards[2])
    assert missing.code == 2 and "shard 1 of 3 missing" in missing.err
    copy = tmp_path / "copy"
    shutil.copytree(shards[1], copy)
    twice = cli("report", "merge", out, *shards, copy)
    assert twice.code == 2 and "shard 1 of 3 of eval is given 2 times" in twice.err
    other = tmp_path / "other-run"
    assert cli(*EVAL, "--shard", "1/3", "--limit", 300, "--out", other).code == 0
    foreign = cli("report", "merge", out, shards[0], other, shards[2])
    assert foreign.code == 2 and "not a shard of the same run" in foreign.err and "limit" in foreign.err
    four = tmp_path / "four"
    assert cli(*EVAL, "--shard", "3/4", "--out", four).code == 0
    mixed = cli("report", "merge", out, *shards, four)
    assert mixed.code == 2 and "split 3 and 4 ways" in mixed.err
    assert cli("report", "merge", out, tmp_path / "nowhere").code == 2
    assert not out.exists() or not list(out.iterdir())  # a refused merge writes nothing


def test_merge_refuses_a_shard_whose_rows_are_not_its_chunks(cli, shards: list[Path], tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = shards[1] / "eval.shard-1-of-3.parquet"
    table = pq.read_table(path)
    chunk = pa.array([c + 1 for c in table["chunk"].to_pylist()], type=table.schema.field("chunk").type)
    pq.write_table(table.set_column(table.schema.get_field_index("chunk"), "chunk", chunk), path)
    result = cli("report", "merge", tmp_path / "merged", *shards)
    assert result.code == 2 and "does not give it" in result.err


# -- what is refused under torchrun ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "allowed"),
    [
        (["pca", "fit", "--help"], False),
        (["report", "html", "x"], False),
        (["gate", "x"], False),
        (["cache", "tune", "--cache", "x"], False),
        (["corruptions", "preview", "--help"], False),
        (["-v", "report", "show", "x"], False),
        (["eval", "--help"], True),
        (["corruptions", "--help"], True),
        (["audit", "eval", "--help"], True),
        (["run", "--help"], True),
        (["cache", "build", "--help"], True),
    ],
)
def test_single_process_commands_are_refused_under_torchrun(
    cli, monkeypatch: pytest.MonkeyPatch, args: list[str], allowed: bool
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    result = cli(*args)
    if allowed:
        assert result.code == 0, result.err
    else:
        assert result.code == 2 and "runs as a single process; start it without torchrun" in result.err
        assert result.err.startswith("robaudit: error: rank 1 of 2: robaudit ")


def test_a_broken_launch_environment_is_an_input_error(cli, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("WORLD_SIZE", "two")
    result = cli("eval", "--help")
    assert result.code == 2 and "WORLD_SIZE='two' is not an integer" in result.err
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "5")
    result = cli("eval", "--help")
    assert result.code == 2 and "RANK is '5'" in result.err


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def _environment(pid: int) -> dict[str, str]:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    return dict(item.split("=", 1) for item in raw.decode(errors="replace").split("\0") if "=" in item)
