"""``--json``: one envelope for every command, for its results and for its errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import QUICK_AUDIT_ARGS
from test_broken_inputs import leaf_commands

from robaudit import plugins

KEYS = ["robaudit", "command", "exit_code", "files", "result", "error"]


@pytest.mark.parametrize("words", leaf_commands(), ids=lambda words: " ".join(words) or "robaudit")
def test_every_command_reports_a_usage_error_as_json(words: list[str], cli) -> None:  # type: ignore[no-untyped-def]
    result = cli(*words, "--json", "--no-such-option")
    assert result.code == 2
    document = json.loads(result.out)
    assert [k for k in document if k in KEYS] == KEYS and document["exit_code"] == 2
    assert document["command"] == " ".join(words)
    assert document["error"]["kind"] == "usage" and "No such option" in document["error"]["message"]
    assert document["result"] is None and result.err.count("\n") == 1  # the same error, one line, on stderr


def test_input_and_runtime_errors_are_json_with_their_exit_code(cli, tiny_models: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    missing = cli("report", "summarize", tmp_path / "nothing.parquet", "--json")
    assert missing.code == 2 and missing.envelope["error"]["kind"] == "input"
    assert (
        missing.envelope["command"] == "report summarize" and "nothing.parquet" in missing.envelope["error"]["message"]
    )
    nan = cli(
        "eval", "--model", f"{tiny_models}:nan_logits", "--data", "digits", "--limit", 8, "-o", tmp_path, "--json"
    )
    assert nan.code == 3 and nan.envelope["exit_code"] == 3 and nan.envelope["error"]["kind"] == "runtime"
    # global options before the command do not hide it
    hoisted = cli("-v", "--plugins-dir", tmp_path, "eval", "--json", "--limit", "-1")
    assert hoisted.envelope["command"] == "eval"


@pytest.mark.parametrize("name", plugins.audits.names())
def test_every_audit_prints_the_envelope(name: str, cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ran = cli(
        name,
        "-m",
        "digits_cnn",
        "-d",
        "digits",
        "--limit",
        8,
        "-o",
        tmp_path,
        "--json",
        *QUICK_AUDIT_ARGS.get(name, []),
    )
    assert ran.code == 0, ran.err
    document = ran.envelope
    assert [k for k in document if k in KEYS] == KEYS
    assert document["command"] == name and document["audit"] == name and document["error"] is None
    assert document["files"]["report"] == str(tmp_path / f"{name}.parquet")
    assert all(Path(p).is_file() for p in document["files"]["figures"])
    summarized = cli("report", "summarize", document["files"]["report"], "--json")
    assert summarized.result == document["result"] and summarized.envelope["audit"] == name


def test_listings_and_the_gate_share_it(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    for words in (["models"], ["defenses"], ["attacks"], ["plugins"]):
        listed = cli(*words, "--json")
        assert listed.code == 0 and listed.envelope["command"] == words[0] and listed.result
