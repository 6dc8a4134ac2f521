"""``robaudit eval`` end to end: reports, determinism, resume after kill -9, and every bad input."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from robaudit.reports.read import read_metadata


def eval_args(model: str, out: Path, *extra: object) -> list[object]:
    return ["eval", "--model", model, "--data", "digits", "--out", out, "--chunk-size", 40, "--batch-size", 16, *extra]


def test_eval_writes_a_self_describing_report(cli, tiny_models: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    result = cli(*eval_args(f"{tiny_models}:tiny", tmp_path, "--json"))
    assert result.code == 0, result.err
    summary = result.result
    report = tmp_path / "eval.parquet"
    table = pq.read_table(report)
    assert table.num_rows == 359 and summary["samples"] == 359 and summary["skipped"] == 0
    assert table.column_names == [
        "chunk",
        "index",
        "label",
        "skipped",
        "skip_reason",
        "defense",
        "prediction",
        "confidence",
        "correct",
        "correct_top5",
    ]
    rows = table.to_pandas()
    assert rows["index"].tolist() == list(range(359))
    assert (rows["defense"] == "none").all()
    assert (rows["correct"] == (rows["prediction"] == rows["label"])).all()
    assert summary["top1"] == pytest.approx(rows["correct"].mean())
    assert summary["top1_ci95"][0] <= summary["top1"] <= summary["top1_ci95"][1]
    assert pq.ParquetFile(report).num_row_groups == 9  # one per chunk of 40
    meta = read_metadata(report)
    assert meta["audit"] == "eval" and meta["seed"] == 0
    assert meta["versions"]["torch"] and meta["versions"]["robaudit"]
    assert meta["identity"]["data"]["source"] == "digits" and len(meta["identity"]["data_fingerprint"]) == 64
    assert meta["data"]["selected"] == 359 and meta["model"]["preprocessing"]["input_size"] == [3, 32, 32]
    assert not (tmp_path / "eval.parquet.partial").exists()


def test_same_seed_gives_identical_reports(cli, tiny_models: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    for name in ("a", "b"):
        assert cli(*eval_args(f"{tiny_models}:tiny", tmp_path / name, "--limit", 100, "--seed", 5)).code == 0
    a, b = (pq.read_table(tmp_path / n / "eval.parquet") for n in ("a", "b"))
    assert a.num_rows == 100 and a.equals(b)
    assert cli(*eval_args(f"{tiny_models}:tiny", tmp_path / "c", "--limit", 100, "--seed", 6)).code == 0
    c = pq.read_table(tmp_path / "c" / "eval.parquet")
    assert c["index"].to_pylist() != a["index"].to_pylist()


def test_shards_together_equal_the_whole(cli, tiny_models: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    assert cli(*eval_args(f"{tiny_models}:tiny", tmp_path / "whole")).code == 0
    for i in range(3):
        assert cli(*eval_args(f"{tiny_models}:tiny", tmp_path / "parts", "--shard", f"{i}/3")).code == 0
    parts = sorted((tmp_path / "parts").glob("eval.shard-*-of-3.parquet"))
    assert len(parts) == 3
    joined = np.sort(np.concatenate([pq.read_table(p)["index"].to_numpy() for p in parts]))
    assert joined.tolist() == pq.read_table(tmp_path / "whole" / "eval.parquet")["index"].to_pylist()


def test_kill_9_then_resume_equals_an_uninterrupted_run(cli, tiny_models: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    model = f"{tiny_models}:tiny"
    args = [str(a) for a in eval_args(model, tmp_path / "killed")]
    env = {**os.environ, "TINY_SLOW": "0.05"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "robaudit", *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    partial = tmp_path / "killed" / "eval.parquet.partial"
    deadline = time.time() + 120
    while time.time() < deadline and len(list(partial.glob("chunk-*.parquet"))) < 2:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = len(list(partial.glob("chunk-*.parquet")))
    assert 2 <= finished < 9, "the run must have been killed midway"
    assert not (tmp_path / "killed" / "eval.parquet").exists()

    again = cli(*eval_args(model, tmp_path / "killed"))
    assert again.code == 2 and "--resume" in again.err  # never silently restarts
    resumed = cli(*eval_args(model, tmp_path / "killed", "--resume"))
    assert resumed.code == 0, resumed.err
    assert f"{finished} of 9 chunks were already done" in resumed.err
    assert cli(*eval_args(model, tmp_path / "clean")).code == 0
    a = pq.read_table(tmp_path / "killed" / "eval.parquet")
    b = pq.read_table(tmp_path / "clean" / "eval.parquet")
    assert a.equals(b)
    assert pq.ParquetFile(tmp_path / "killed" / "eval.parquet").num_row_groups == 9


def test_ctrl_c_keeps_chunks_and_says_how_to_resume(tiny_models: Path, tmp_path: Path) -> None:
    args = [str(a) for a in eval_args(f"{tiny_models}:tiny", tmp_path)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "robaudit", *args],
        env={**os.environ, "TINY_SLOW": "0.1"},
        # a shell's background job ignores SIGINT, and Python then keeps ignoring it: restore the default
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    partial = tmp_path / "eval.parquet.partial"
    deadline = time.time() + 120
    while time.time() < deadline and not list(partial.glob("chunk-*.parquet")):
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "continue with --resume" in err and "Traceback" not in err
    assert list(partial.glob("chunk-*.parquet"))


def test_resume_with_a_different_spec_is_refused_and_keeps_results(cli, tiny_models: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from robaudit.reports.writer import ReportWriter

    model = f"{tiny_models}:tiny"
    assert cli(*eval_args(model, tmp_path, "--limit", 80)).code == 0
    report = tmp_path / "eval.parquet"
    before = report.read_bytes()
    # an unfinished run: move the report back into a partial folder state
    partial = tmp_path / "eval.parquet.partial"
    meta = read_metadata(report)
    writer = ReportWriter(tmp_path / "other.parquet", pq.read_schema(report).remove_metadata(), meta["identity"])
    writer.write_chunk(0, pq.read_table(report).slice(0, 40))
    writer.partial.rename(partial)
    report.rename(tmp_path / "finished.parquet")
    result = cli(*eval_args(model, tmp_path, "--limit", 80, "--seed", 1, "--resume"))
    assert result.code == 2 and "different run spec" in result.err and "seed (0 -> 1)" in result.err
    assert (partial / "chunk-000000.parquet").exists()
    result = cli(*eval_args(model, tmp_path, "--limit", 80, "--resume"))
    assert result.code == 0 and "1 of 2 chunks were already done" in result.err
    assert pq.read_table(report).equals(pq.read_table(tmp_path / "finished.parquet"))
    assert before == (tmp_path / "finished.parquet").read_bytes()


def test_existing_report_is_protected_and_resume_of_finished_run_is_a_no_op(
    cli, tiny_models: Path, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    model = f"{tiny_models}:tiny"
    assert cli(*eval_args(model, tmp_path, "--limit", 50)).code == 0
    report = tmp_path / "eval.parquet"
    before = report.read_bytes()
    result = cli(*eval_args(model, tmp_path, "--limit", 50))
    assert result.code == 2 and "--overwrite" in result.err
    assert cli(*eval_args(model, tmp_path, "--limit", 50, "--resume")).code == 0
    assert report.read_bytes() == before
    result = cli(*eval_args(model, tmp_path, "--limit", 60, "--resume"))
    assert result.code == 2 and "different spec" in result.err and report.read_bytes() == before
    assert cli(*eval_args(model, tmp_path, "--limit", 60, "--overwrite")).code == 0
    assert pq.read_table(report).num_rows == 60


def _failing(cli, *args: object) -> str:  # type: ignore[no-untyped-def]
    result = cli(*args)
    assert result.code in (2, 3), (result.code, result.err)
    lines = result.err.strip().splitlines()
    assert "Traceback" not in result.err, result.err
    assert [line for line in lines if line.startswith("robaudit:")] == lines[-1:], result.err  # one error line, last
    return f"{result.code}: {lines[-1]}"


def test_bad_inputs_give_one_line_and_the_right_exit_code(cli, tiny_models: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "out"
    assert _failing(cli, "eval", "--model", "resnet5", "--out", out).startswith("2: ")
    assert "did you mean" in _failing(cli, "eval", "--model", "resnet5", "--out", out)
    assert "unknown data source" in _failing(
        cli, "eval", "--model", f"{tiny_models}:tiny", "--data", "mnist", "--out", out
    )
    assert "does not exist" in _failing(
        cli, "eval", "--model", f"{tiny_models}:tiny", "--data", f"imagefolder:{tmp_path / 'nope'}", "--out", out
    )
    message = _failing(cli, "eval", "--model", f"{tiny_models}:tiny", "--num-classes", 5, "--out", out)
    assert message.startswith("2: ") and "labels up to 9" in message
    assert "weights file" in _failing(
        cli, "eval", "--model", f"{tiny_models}:tiny", "--weights", tmp_path / "none.pt", "--out", out
    )
    assert "--shard" in _failing(cli, "eval", "--model", f"{tiny_models}:tiny", "--shard", "3/2", "--out", out)
    assert "--batch-size" in _failing(cli, "eval", "--model", f"{tiny_models}:tiny", "-b", 0, "--out", out)
    assert "--input-size takes 3 numbers" in _failing(
        cli, "eval", "--model", f"{tiny_models}:tiny", "--input-size", "32,32", "--out", out
    )
    assert not out.exists() or not list(out.iterdir())  # nothing was started
    message = _failing(cli, "eval", "--model", f"{tiny_models}:nan_logits", "--out", out)
    assert message.startswith("3: ") and "NaN or inf logits" in message


def test_bad_images_fail_or_are_skipped_and_counted(cli, tiny_models: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        for i in range(4):
            Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(
                tmp_path / "imgs" / cls / f"{i}.png"
            )
    (tmp_path / "imgs" / "b" / "2.png").write_bytes(b"\x89PNG broken")
    args = [
        "eval",
        "--model",
        f"{tiny_models}:tiny",
        "--data",
        f"imagefolder:{tmp_path / 'imgs'}",
        "--chunk-size",
        3,
        "--out",
        tmp_path / "r",
    ]
    message = _failing(cli, *args)
    assert message.startswith("2: ") and "2.png" in message and "--on-bad-image skip" in message
    assert len(list((tmp_path / "r" / "eval.parquet.partial").glob("chunk-*"))) == 2  # earlier chunks kept
    result = cli(*args, "--on-bad-image", "skip", "--resume", "--json")
    assert result.code == 0, result.err
    summary = result.result
    assert summary["skipped"] == 1 and summary["samples"] == 7
    rows = pq.read_table(tmp_path / "r" / "eval.parquet").to_pandas()
    bad = rows[rows["skipped"]]
    assert bad["index"].tolist() == [6] and bad["prediction"].isna().all() and "2.png" in bad["skip_reason"].iloc[0]
    assert (rows["defense"] == "none").all()
    assert read_metadata(tmp_path / "r" / "eval.parquet")["data"]["skipped"] == 1


def test_report_show_and_summarize(cli, tiny_models: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    assert cli(*eval_args(f"{tiny_models}:tiny", tmp_path, "--limit", 30)).code == 0
    report = tmp_path / "eval.parquet"
    shown = cli("report", "show", report, "--json")
    assert shown.code == 0 and shown.result["rows"] == 30
    assert cli("report", "show", report).code == 0
    summary = cli("report", "summarize", report, "--json")
    assert summary.code == 0 and summary.result["samples"] == 30
    table = cli("report", "summarize", report)
    assert table.code == 0 and "top1" in table.out
    assert "does not exist" in _failing(cli, "report", "show", tmp_path / "none.parquet")
    assert "is a folder" in _failing(cli, "report", "show", tmp_path)
    pq.write_table(pq.read_table(report).replace_schema_metadata({}), tmp_path / "plain.parquet")
    assert "not a robaudit report" in _failing(cli, "report", "summarize", tmp_path / "plain.parquet")
    (tmp_path / "junk.parquet").write_bytes(b"junk")
    assert "not a readable Parquet" in _failing(cli, "report", "show", tmp_path / "junk.parquet")


def test_reports_are_readable_by_duckdb(cli, tiny_models: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    duckdb = pytest.importorskip("duckdb")
    assert cli(*eval_args(f"{tiny_models}:tiny", tmp_path, "--limit", 30)).code == 0
    count, acc = duckdb.sql(f"SELECT count(*), avg(correct::INT) FROM '{tmp_path / 'eval.parquet'}'").fetchall()[0]
    rows = pq.read_table(tmp_path / "eval.parquet").to_pandas()
    assert count == 30 and acc == pytest.approx(rows["correct"].mean())


def test_demo_trains_offline_and_reports(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    result = cli("demo", "--out", tmp_path / "demo", "--json")
    assert result.code == 0, result.err
    summaries = result.result
    assert summaries["eval"]["top1"] >= 0.95
    assert summaries["cache"]["samples"] == 180 and 0 < summaries["cache"]["best_lam"] < 1
    assert {c["threat"] for c in summaries["attack"]["curves"]} == {"white", "gray"}
    assert summaries["attack"]["gradient_masking"] is False
    for name in ("eval.parquet", "attack.parquet", "cache-penultimate/meta.json"):
        assert (tmp_path / "demo" / name).exists()
    # the demo's model is trained here: real weights, nothing to warn about
    from robaudit.reports.read import read_metadata

    for name in ("eval.parquet", "attack.parquet"):
        model = read_metadata(tmp_path / "demo" / name)["model"]
        assert model["weights_origin"] == "pretrained" and model["caveats"] == []
    assert "random weights" not in result.err
    cached = Path(os.environ["ROBAUDIT_CACHE"]) / "models" / "digits_cnn.pt"
    assert cached.exists()
    stamp = cached.stat().st_mtime_ns
    assert cli("demo", "--out", tmp_path / "demo").code == 0  # second run reuses the model, overwrites its folder
    assert cached.stat().st_mtime_ns == stamp


# -- real checkpoints and data (skipped without ROBAUDIT_VALIDATION_DATA) -----------------------------------------


def resnet20_eval(cli, data_dir: Path, data: str, out: Path, *extra: object) -> dict:  # type: ignore[no-untyped-def,type-arg]
    weights = data_dir / "weights" / "cifar10_resnet20.th"
    result = cli(
        "eval", "--model", "cifar_resnet20", "--weights", weights, "--data", data, "--out", out, "--json", *extra
    )
    assert result.code == 0, result.err
    return result.result  # type: ignore[no-any-return]


def test_published_resnet20_on_exact_cifar10_test_images(cli, validation_data: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    summary = resnet20_eval(cli, validation_data, f"npz:{validation_data / 'cifar10/test_exact_1017.npz'}", tmp_path)
    assert summary["samples"] == 1017
    assert 0.91 <= summary["top1"] <= 0.92  # 91.6 % expected for these 1,017 images


def test_published_resnet20_on_jpeg_imagefolder(cli, validation_data: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import tarfile

    with tarfile.open(validation_data / "cifar10/cifar10-jpeg-q75.tar.gz") as tar:
        members = [m for m in tar.getmembers() if m.name.startswith("CIFAR-10-images/test/")]
        tar.extractall(tmp_path, members=members, filter="data")
    folder = f"imagefolder:{tmp_path / 'CIFAR-10-images'}"
    summary = resnet20_eval(cli, validation_data, folder, tmp_path / "r", "--split", "test", "--batch-size", 500)
    assert summary["samples"] == 10_000
    assert 0.79 <= summary["top1"] <= 0.83  # JPEG artefacts cost ~10 points (81 % expected)
