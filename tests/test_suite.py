"""``robaudit run SUITE``: running, variants, overrides, references, resume, validation, the manifest."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from robaudit.reports.read import read_report
from robaudit.suite.load import tomllib
from robaudit.suite.references import substitute


def write_suite(tmp_path: Path, body: str, name: str = "suite.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return path


def basic_suite(tmp_path: Path, tiny_models: Path, extra: str = "") -> Path:
    """eval + attack on 32 digits images with the tiny model: a couple of seconds."""
    return write_suite(
        tmp_path,
        f"""
        [run]
        model = "{tiny_models}:tiny"
        data = "digits"
        limit = 32
        batch_size = 16
        chunk-size = 16

        [[steps]]
        audit = "eval"

        [[steps]]
        audit = "attack"
        attack = "pgd:steps=2"
        eps = [0.01, 0.03]
        checks = false
        {extra}
        """,
    )


def manifest(out: Path) -> dict[str, Any]:
    return json.loads((out / "manifest.json").read_text())  # type: ignore[no-any-return]


def dry_run(cli: Callable[..., Any], *args: object) -> dict[str, list[str]]:
    result = cli("run", *args, "--dry-run", "--json")
    assert result.code == 0, result.err
    return {step["id"]: step["argv"] for step in result.result["steps"]}


def test_suite_runs_steps_writes_reports_and_manifest(cli, tiny_models: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "out"
    result = cli("run", basic_suite(tmp_path, tiny_models), "-o", out, "--json")
    assert result.code == 0, result.err
    assert result.files["manifest"] == str(out / "manifest.json")
    assert result.result["eval"]["samples"] == 32
    assert {c["eps"] for c in result.result["attack"]["curves"]} == {0.01, 0.03}
    rows, meta = read_report(out / "attack.parquet")
    assert meta["audit"] == "attack" and rows["index"].nunique() == 32
    data = manifest(out)
    assert data["status"] == "finished" and data["failed_step"] is None
    assert {"robaudit", "torch", "python"} <= set(data["versions"])
    assert len(data["suite_sha256"]) == 64 and data["suite"]["steps"][1]["eps"] == [0.01, 0.03]
    eval_step, attack_step = data["steps"]
    assert [eval_step["status"], attack_step["status"]] == ["finished", "finished"]
    assert eval_step["exit_code"] == 0 and eval_step["seconds"] >= 0 and eval_step["started_at"]
    assert eval_step["report"] == str(out / "eval.parquet")
    argv = attack_step["argv"]
    assert argv[:2] == ["robaudit", "attack"]
    # lists become a comma-joined value, false flags their --no- form, shared keys apply, _ and - alike
    assert argv[argv.index("--eps") + 1] == "0.01,0.03" and "--no-checks" in argv
    assert argv[argv.index("--limit") + 1] == "32" and argv[argv.index("--batch-size") + 1] == "16"
    assert argv[argv.index("--out") + 1] == str(out)
    assert attack_step["result"]["result"]["images"] == 32
    # a second run into the same folder must say how to continue, not clobber it
    again = cli("run", basic_suite(tmp_path, tiny_models), "-o", out)
    assert again.code == 2 and "--resume" in again.err and "--overwrite" in again.err


def test_variants_write_sub_folders(cli, tiny_models: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    suite = write_suite(
        tmp_path,
        f"""
        out = "{tmp_path / "from-file"}"
        [run]
        model = "{tiny_models}:tiny"
        limit = 16
        [[variants]]
        name = "plain"
        [[variants]]
        name = "blurred"
        defense = ["blur:sigma=1.0"]
        [[steps]]
        audit = "eval"
        """,
    )
    result = cli("run", suite, "--json")  # the folder comes from the suite's out key
    assert result.code == 0, result.err
    out = tmp_path / "from-file"
    assert set(result.result) == {"plain", "blurred"}
    assert [s["id"] for s in manifest(out)["steps"]] == ["plain/eval", "blurred/eval"]
    plain, _ = read_report(out / "plain" / "eval.parquet")
    blurred, _ = read_report(out / "blurred" / "eval.parquet")
    assert set(plain["defense"]) == {"none"} and "blur" in blurred["defense"].iloc[0]
    assert not (out / "eval.parquet").exists()


def test_set_and_command_line_overrides(cli, tiny_models: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    suite = basic_suite(tmp_path, tiny_models, extra="limit = 24")
    plain = dry_run(cli, suite, "-o", tmp_path / "o")
    assert plain["eval"][plain["eval"].index("--limit") + 1] == "32"
    assert plain["attack"][plain["attack"].index("--limit") + 1] == "24"  # the step's own value wins over [run]
    changed = dry_run(cli, suite, "-o", tmp_path / "o", "--set", "run.limit=100", "--set", "steps.2.eps=0.05")
    assert changed["eval"][changed["eval"].index("--limit") + 1] == "100"
    assert changed["attack"][changed["attack"].index("--limit") + 1] == "24"
    assert changed["attack"][changed["attack"].index("--eps") + 1] == "0.05"
    by_name = dry_run(cli, suite, "-o", tmp_path / "o", "--set", "steps.attack.attack=fgsm", "--limit", "8")
    assert by_name["attack"][by_name["attack"].index("--attack") + 1] == "fgsm"
    assert all(argv[argv.index("--limit") + 1] == "8" for argv in by_name.values())  # --limit: every step
    out = tmp_path / "run"
    result = cli("run", suite, "-o", out, "--set", "run.limit=16", "--set", "steps.attack.limit=16")
    assert result.code == 0, result.err
    assert len(read_report(out / "eval.parquet")[0]) == 16
    bad = cli("run", suite, "--set", "steps.7.eps=1", "--dry-run")
    assert bad.code == 2 and "no step 7" in bad.err
    assert cli("run", suite, "--set", "steps.atack.eps=1", "--dry-run").err.count("'attack'") == 1


def test_references_to_earlier_results(cli, tiny_models: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    suite = basic_suite(tmp_path, tiny_models, extra='check-samples = "{steps.eval.samples}"')
    shown = dry_run(cli, suite, "-o", tmp_path / "o")["attack"]
    assert shown[shown.index("--check-samples") + 1] == "{steps.eval.samples}"
    out = tmp_path / "out"
    result = cli("run", suite, "-o", out)
    assert result.code == 0, result.err
    argv = manifest(out)["steps"][1]["argv"]
    assert argv[argv.index("--check-samples") + 1] == "32"
    assert substitute("{{literal}} {out}", {"out": "OUT"}.__getitem__) == "{literal} OUT"

    summarize = write_suite(
        tmp_path,
        suite.read_text() + '\n[[steps]]\ncommand = "report summarize"\nargs = ["{steps.eval.report}"]\n',
        "summarize.toml",
    )
    result = cli("run", summarize, "-o", tmp_path / "s", "--json")
    assert result.code == 0, result.err
    assert manifest(tmp_path / "s")["steps"][2]["argv"] == [
        "robaudit",
        "report",
        "summarize",
        str(tmp_path / "s" / "eval.parquet"),
        "--json",
    ]
    assert result.result["report_summarize"]["samples"] == 32

    shared = write_suite(
        tmp_path, suite.read_text().replace("[run]", '[run]\ncheck-samples = "{steps.eval.samples}"'), "shared.toml"
    )
    assert "--check-samples" in dry_run(cli, shared, "-o", tmp_path / "o")["attack"]  # eval does not take it
    later = basic_suite(tmp_path, tiny_models, extra='check-samples = "{steps.attack.samples}"')
    refused = cli("run", later, "-o", tmp_path / "x")
    assert refused.code == 2 and "not an earlier step" in refused.err and not (tmp_path / "x").exists()
    missing = basic_suite(tmp_path, tiny_models, extra='check-samples = "{steps.eval.sampels}"')
    failed = cli("run", missing, "-o", tmp_path / "y")
    assert failed.code == 2 and "did you mean 'samples'" in failed.err
    assert manifest(tmp_path / "y")["failed_step"] == "attack"


def _interrupt_attack(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C in the attack step after its first chunk is written (progress reports the next batch)."""
    import robaudit.runner as runner

    real = runner.run_audit

    def run_audit(audit: Any, spec: Any, out_dir: Path, **kwargs: Any) -> Any:
        if audit.name != "attack":
            return real(audit, spec, out_dir, **kwargs)

        def hook(done: int, total: int) -> None:
            if done > 16:
                raise KeyboardInterrupt

        return real(audit, spec, out_dir, **{**kwargs, "progress": hook})

    monkeypatch.setattr(runner, "run_audit", run_audit)


def test_resume_skips_finished_steps(cli, tiny_models: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    suite, out = basic_suite(tmp_path, tiny_models), tmp_path / "out"
    _interrupt_attack(monkeypatch)
    interrupted = cli("run", suite, "-o", out)
    assert interrupted.code == 130 and "--resume" in interrupted.err
    data = manifest(out)
    assert data["status"] == "interrupted" and data["failed_step"] == "attack"
    assert [s["status"] for s in data["steps"]] == ["finished", "interrupted"]
    assert (out / "attack.parquet.partial").is_dir() and not (out / "attack.parquet").exists()
    monkeypatch.undo()

    stamp = (out / "eval.parquet").stat().st_mtime_ns
    resumed = cli("run", suite, "-o", out, "--resume")
    assert resumed.code == 0, resumed.err
    assert "eval: finished before, skipped" in resumed.err and "resumed: 1 of 2 chunks" in resumed.err
    assert (out / "eval.parquet").stat().st_mtime_ns == stamp
    data = manifest(out)
    assert data["status"] == "finished" and len(data["resumed_at"]) == 1
    assert "--resume" in data["steps"][1]["argv"] and "--resume" not in data["steps"][0]["argv"]
    assert read_report(out / "attack.parquet")[0]["index"].nunique() == 32


def test_changed_suite_refused_on_resume(cli, tiny_models: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    suite = write_suite(
        tmp_path, f'[run]\nmodel = "{tiny_models}:tiny"\nlimit = 16\n[[steps]]\naudit = "eval"\n', "one.toml"
    )
    out = tmp_path / "out"
    assert cli("run", suite, "-o", out).code == 0
    same = cli("run", suite, "-o", out, "--resume")
    assert same.code == 0 and "skipped" in same.err
    changed = cli("run", suite, "-o", out, "--resume", "--set", "run.seed=1")
    assert changed.code == 2 and "suite changed" in changed.err and "run.seed" in changed.err
    assert cli("run", suite, "-o", out, "--overwrite", "--set", "run.seed=1").code == 0
    assert manifest(out)["suite"]["run"]["seed"] == 1


def test_failing_step_stops_the_suite(cli, tiny_models: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    suite = write_suite(
        tmp_path,
        f"""
        [run]
        model = "{tiny_models}:tiny"
        limit = 16
        [[steps]]
        audit = "eval"
        [[steps]]
        name = "checkpoint"
        audit = "eval"
        weights = "{{out}}/missing.pt"
        [[steps]]
        audit = "hybrid"
        """,
    )
    out = tmp_path / "out"
    result = cli("run", suite, "-o", out)
    assert result.code == 2 and "step 2 (checkpoint) failed" in result.err and "missing.pt" in result.err
    data = manifest(out)
    assert data["status"] == "failed" and data["failed_step"] == "checkpoint"
    assert [s["status"] for s in data["steps"]] == ["finished", "failed", "pending"]
    assert data["steps"][1]["exit_code"] == 2 and "does not exist" in data["steps"][1]["error"]
    assert not (out / "hybrid.parquet").exists()


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ('[[steps]]\naudit = "evl"', "unknown audit 'evl' (did you mean 'eval'?)"),
        ('[[steps]]\ncommand = "cache tun"', "did you mean 'cache tune'"),
        ('[[steps]]\ncommand = "demo"', "cannot be a step"),
        ('[[steps]]\naudit = "attack"\nepss = "0.1"', "attack has no option --epss (did you mean 'eps'?)"),
        ('[run]\nmodel = "x"\nlimt = 3\n[[steps]]\naudit = "eval"', "no step takes an option --limt (did you mean"),
        ('[[steps]]\naudit = "eval"\njson = true', "set by robaudit run itself"),
        ('[[steps]]\naudit = "eval"\nlimit = "many"', "'--limit'"),
        ('[[steps]]\naudit = "eval"\npretrained = 1', "--pretrained is a flag"),
        ('[[stepz]]\naudit = "eval"', "did you mean 'steps'?"),
        ('[[steps]]\naudit = "eval"\nname = "a"\n[[steps]]\naudit = "eval"\nname = "a"', "already named 'a'"),
        ('[[steps]]\naudit = "eval"\nout = "{outt}"', "unknown reference {outt} (did you mean 'out'?)"),
        ('[[steps]]\ncommand = "cache build"\nmodel = "x"', "Missing option '--layers'"),
        ('[[steps]]\naudit = "eval"\nname = 3', "name must be a word"),
        ('[[steps]]\naudit = "eval"\nname = "2nd"', "name must be a word"),
        ('[run]\nmodel = "x"\n[[variants]]\nname = "a/b"\n[[steps]]\naudit = "eval"', "variant 1: needs name"),
    ],
)
def test_invalid_suites_exit_2_before_running(cli, tmp_path: Path, body: str, expected: str) -> None:  # type: ignore[no-untyped-def]
    suite = write_suite(tmp_path, body if body.startswith("[run]") else '[run]\nmodel = "x"\n' + body)
    result = cli("run", suite, "-o", tmp_path / "out")
    assert result.code == 2, result.err
    assert expected in result.err and "Traceback" not in result.err
    assert not (tmp_path / "out").exists()


def test_malformed_toml_names_the_line(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    suite = write_suite(tmp_path, '[run]\nmodel = "x"\nlimit = = 3\n[[steps]]\naudit = "eval"\n')
    result = cli("run", suite)
    assert result.code == 2 and "invalid TOML" in result.err
    assert "line 3" in result.err and "'limit = = 3'" in result.err


def test_unknown_suite_name_suggests_builtin(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    result = cli("run", "dem")
    assert result.code == 2 and "did you mean 'demo'" in result.err


def test_example_parses_and_validates(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    result = cli("run", "--example")
    assert result.code == 0 and "[[steps]]" in result.out
    document = tomllib.loads(result.out)
    assert [v["name"] for v in document["variants"]] == ["plain", "blur"]
    path = write_suite(tmp_path, result.out, "example.toml")
    steps = dry_run(cli, path, "-o", tmp_path / "o")
    assert list(steps)[:2] == ["plain/eval", "plain/attack"] and "blur/fourier" in steps
    spectrum = steps["blur/spectrum"]
    assert spectrum[spectrum.index("--perturbations") + 1] == str(tmp_path / "o" / "blur" / "perturbations.npz")
    assert "--defense" in steps["blur/eval"] and "--defense" not in steps["plain/eval"]


def test_demo_suite_is_built_in(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    steps = dry_run(cli, "demo", "-o", tmp_path / "d", "--device", "cpu")
    assert list(steps) == [
        "eval",
        "cache_build",
        "cache",
        "attack",
        "hybrid",
        "jacobian",
        "spectrum",
        "fourier_map",
        "corruptions",
        "corruption_spectrum",
        "html",
    ]
    attack = steps["attack"]
    defense = attack[attack.index("--defense") + 1]
    folder = tmp_path / "d" / "cache-penultimate"
    assert defense == f"cache:path={folder},theta={{steps.cache.best_theta}},lam={{steps.cache.best_lam}}"
    assert all(argv[argv.index("--device") + 1] == "cpu" for argv in steps.values() if "--device" in argv)
    assert steps["html"][-1] == str(tmp_path / "d")
    assert attack.count("--threat") == 2 and "--model" not in steps["cache"]  # tune takes the cache's model
