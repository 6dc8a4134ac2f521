"""robaudit gate and the metric naming scheme, on real reports written by the audit commands.

The data is a small npz set whose images carry their label (channel 0) and a rank 0..63 (channel 1); the
"oracle" models read the label and answer wrongly from a rank on, so their accuracy is known exactly:
strong 58/64, close 54/64 (a few images worse: within noise), weak 20/64 (a real regression).
"""

from __future__ import annotations

import shutil
import textwrap
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from robaudit.audits.attack import AttackAudit
from robaudit.audits.corruptions import CorruptionsAudit
from robaudit.audits.fourier_map import FourierMapAudit
from robaudit.audits.hybrid import HybridAudit
from robaudit.audits.jacobian import JacobianAudit
from robaudit.audits.spectrum import SpectrumAudit
from robaudit.errors import InputError
from robaudit.gate import evaluate, judge_drop, newcombe_interval, parse_policy
from robaudit.reports.folder import Report
from robaudit.reports.metrics import Metric, collect_metrics, flatten_summary, report_metrics, scheme_markdown

attack_metrics = AttackAudit.metrics
corruptions_metrics = CorruptionsAudit.metrics
hybrid_metrics = HybridAudit.metrics
spectrum_metrics = SpectrumAudit.metrics
jacobian_metrics = JacobianAudit.metrics
fourier_map_metrics = FourierMapAudit.metrics

ROOT = Path(__file__).resolve().parents[1]

MODELS = """
import torch
from torch import nn

from robaudit.models import ModelBuild, Preprocessing


class Oracle(nn.Module):
    def __init__(self, cutoff):
        super().__init__()
        self.cutoff = cutoff
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x):
        label = (x[:, 0].mean((1, 2)) * 10).floor().clamp(0, 9).long()
        rank = (x[:, 1].mean((1, 2)) * 255 / 4).round().long()
        prediction = torch.where(rank < self.cutoff, label, (label + 1) % 10)
        # piecewise constant: zero input gradients, which the attack's masking checks must notice
        return nn.functional.one_hot(prediction, 10).float() * 5 * self.scale + 0 * x.sum((1, 2, 3))[:, None]


def _build(cutoff):
    return ModelBuild(Oracle(cutoff), Preprocessing(input_size=(3, 8, 8), crop_pct=1.0), 10)


def strong(name, *, pretrained=False, num_classes=None):
    return _build(58)


def close(name, *, pretrained=False, num_classes=None):
    return _build(54)


def weak(name, *, pretrained=False, num_classes=None):
    return _build(20)
"""


def _robaudit(*args: object) -> None:
    from robaudit.cli import main

    with pytest.raises(SystemExit) as info:
        main([str(a) for a in args])
    assert info.value.code == 0, f"robaudit {' '.join(map(str, args))} failed"


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Report folders written by robaudit eval / attack on the oracle models."""
    root = tmp_path_factory.mktemp("gate")
    ranks = np.arange(64)
    labels = ranks % 10
    x = np.zeros((64, 8, 8, 3), dtype=np.uint8)
    x[..., 0] = (labels * 25 + 12)[:, None, None]
    x[..., 1] = (ranks * 4)[:, None, None]
    np.savez(root / "data.npz", x=x, y=labels)
    (root / "models.py").write_text(textwrap.dedent(MODELS))
    data = f"npz:{root / 'data.npz'}"
    folders = {}
    for folder, model, extra in [
        ("base", "strong", []),
        ("close", "close", []),
        ("bad", "weak", []),
        ("other", "strong", ["--limit", "48"]),
    ]:
        _robaudit("eval", "-m", f"{root / 'models.py'}:{model}", "-d", data, "-o", root / folder, *extra)
        folders[folder] = root / folder
    _robaudit(
        "attack", "-m", f"{root / 'models.py'}:strong", "-d", data, "--limit", 16, "--eps", 0.01,
        "-a", "pgd:steps=2", "--check-samples", 4, "-o", root / "base",
    )  # fmt: skip
    for shard in ("0/2", "1/2"):
        _robaudit(
            "eval", "-m", f"{root / 'models.py'}:strong", "-d", data, "--chunk-size", 16, "--shard", shard,
            "-o", root / "sharded",
        )  # fmt: skip
    folders["sharded"] = root / "sharded"
    return folders


def _policy(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gate.toml"
    path.write_text(textwrap.dedent(text))
    return path


# ---------------------------------------------------------------------------------------------------------
# metric names


def test_metrics_of_real_eval_and_attack_reports(runs: dict[str, Path]) -> None:
    metrics = collect_metrics(runs["base"])
    top1 = metrics["eval.top1"]
    assert (top1.kind, top1.samples, top1.higher_is_better) == ("proportion", 64, True)
    assert top1.value == pytest.approx(58 / 64)
    assert top1.report == "eval.parquet"
    assert metrics["eval.mean_confidence"].kind == "number"
    accuracy = metrics["attack.white.linf.eps=0.01.accuracy"]
    from robaudit.data import stratified_subset

    chosen = stratified_subset(np.arange(64) % 10, 16, 0)  # the images --limit 16 --seed 0 picks; rank = index
    assert accuracy.samples == 16 and accuracy.value == pytest.approx(np.mean(chosen < 58))
    assert metrics["attack.white.linf.eps=0.01.success_rate"].higher_is_better is False
    # the piecewise-constant oracle has zero gradients: the masking checks must flag it
    assert metrics["flags.zero_or_nonfinite_gradients"].value is True
    assert metrics["flags.gradient_masking"].value is True
    assert "flags.white_weaker_than_transfer" not in metrics  # not evaluated (None) -> absent


def test_shards_of_one_run_are_read_together(runs: dict[str, Path], tmp_path: Path) -> None:
    metrics = collect_metrics(runs["sharded"])
    assert metrics["eval.top1"].samples == 64
    assert metrics["eval.top1"].value == pytest.approx(collect_metrics(runs["base"])["eval.top1"].value)
    partial = tmp_path / "partial"
    partial.mkdir()
    shutil.copy(next(runs["sharded"].glob("eval.shard-0-of-2.parquet")), partial)
    with pytest.raises(InputError, match="shards of eval are incomplete"):
        collect_metrics(partial)


def test_attack_names_judges_and_minimal_runs() -> None:
    curve = {"threat": "gray", "eps_mode": "linf", "eps": 0.03, "samples": 50, "accuracy": 0.4, "success_rate": 0.6}
    summary = {
        "curves": [{**curve, "judged_by": "defended"}, {**curve, "judged_by": "backbone", "accuracy": 0.1}],
        "minimal": [
            {"threat": "white", "judged_by": "defended", "norm": "l2", "samples": 20, "success_rate": 0.9,
             "median_l2": 0.5, "eps_at_50pct_success": 0.5},
        ],
        "flags": {"unbounded_attack_fails": {"flag": False, "evidence": ""}, "other": {"flag": None}},
        "gradient_masking": False,
    }  # fmt: skip
    defended = {"identity": {"defenses": [{"repr": "blur(sigma=1.0)"}]}}
    names = {m.name: m for m in attack_metrics(summary, defended)}
    assert names["attack.gray.linf.eps=0.03.accuracy"].value == 0.4
    assert names["attack.gray.linf.eps=0.03.backbone.accuracy"].value == pytest.approx(0.1)
    assert names["attack.white.l2.minimal.median"].value == 0.5
    assert names["attack.white.l2.minimal.success_rate"].samples == 20
    assert names["flags.unbounded_attack_fails"].value is False and "flags.other" not in names
    # without defenses the backbone is the model under audit: no judge segment
    plain = {"curves": [{**curve, "threat": "white", "judged_by": "backbone", "eps": 8 / 255}]}
    assert [m.name for m in attack_metrics(plain, {"identity": {"defenses": []}})] == [
        "attack.white.linf.eps=0.0313725.accuracy",
        "attack.white.linf.eps=0.0313725.success_rate",
    ]


def test_corruption_metrics_follow_the_summary_contract() -> None:
    summary = {
        "samples": 100, "skipped": 0, "param_set": "imagenet", "clean_accuracy": 0.76, "corruption_accuracy": 0.39,
        "mean_error": 0.61, "mCE": 76.4, "mCE_stderr": 1.2, "relative_mCE": None, "reference": "AlexNet",
        "per_corruption": [
            {"corruption": "fog", "group": "weather", "band": "low", "error": 0.4, "accuracy": 0.6, "CE": 66.5,
             "relative_CE": None, "samples": 500},
            {"corruption": "snow", "group": "weather", "band": "mid", "error": 0.5, "accuracy": 0.5, "CE": None,
             "relative_CE": None, "samples": 500},
        ],
        "per_cell": [],
        "per_band": [{"band": "low", "accuracy": 0.6, "error": 0.4, "samples": 500}],
        "noise_curve": [{"sigma": 0.05, "accuracy": 0.7, "samples": 100}],
    }  # fmt: skip
    metrics = {m.name: m for m in corruptions_metrics(summary, {})}
    assert metrics["corruptions.mCE"].stderr == 1.2 and metrics["corruptions.mCE"].higher_is_better is False
    assert "corruptions.relative_mCE" not in metrics and "corruptions.snow.CE" not in metrics
    assert metrics["corruptions.accuracy"].value == 0.39 and metrics["corruptions.accuracy"].kind == "proportion"
    assert metrics["corruptions.fog.error"].samples == 100  # images, not image x severity rows
    assert metrics["corruptions.fog.CE"].value == 66.5
    assert metrics["corruptions.band.low.accuracy"].value == 0.6
    assert metrics["corruptions.noise.sigma=0.05.accuracy"].samples == 100
    assert metrics["corruptions.clean_accuracy"].value == 0.76 and metrics["corruptions.mean_error"].value == 0.61


def test_frequency_audits_and_plugin_summaries(monkeypatch: pytest.MonkeyPatch) -> None:
    hybrid = {m.name: m for m in hybrid_metrics({"repeats": 4, "f_rev": 0.3, "f_rev_std": 0.02}, {})}
    assert hybrid["hybrid.f_rev"].stderr == pytest.approx(0.01)
    assert not hybrid_metrics({"repeats": 1, "f_rev": None, "f_rev_std": None}, {})
    spectrum = {m.name: m.value for m in spectrum_metrics({"f_half_of_mean": 0.11, "f_half_median": 0.12}, {})}
    assert spectrum == {"spectrum.f0.5": 0.11, "spectrum.f0.5_median": 0.12}
    jacobian = {"models": {"backbone": {"median_frobenius": 2.0}, "defended": {"median_frobenius": 1.0}},
                "median_frobenius_ratio": 0.5}  # fmt: skip
    assert [m.name for m in jacobian_metrics(jacobian, {})] == [
        "jacobian.backbone.median_frobenius",
        "jacobian.defended.median_frobenius",
        "jacobian.frobenius_ratio",
    ]
    fourier = {"samples": 8, "error": 0.3, "bands": [{"band": "high", "error": 0.5}]}
    assert {m.name for m in fourier_map_metrics(fourier, {})} == {"fourier-map.error", "fourier-map.band.high.error"}
    flat = {m.name: m for m in flatten_summary("mine", {"score": 3, "ok": True, "note": "x", "by": {"a": 1.5}})}
    assert set(flat) == {"mine.score", "mine.ok", "mine.by.a"} and flat["mine.ok"].kind == "flag"

    class Own:
        @classmethod
        def metrics(cls, summary: dict[str, Any], metadata: dict[str, Any]) -> list[Metric]:
            return [Metric("mine.special", summary["score"] * 2, "number", higher_is_better=True)]

    from robaudit import plugins

    monkeypatch.setattr(plugins.audits, "get", lambda name: Own)
    report = Report("mine", [Path("mine.parquet")], pd.DataFrame(), {"audit": "mine"}, {"score": 3})
    assert report_metrics(report)["mine.special"].value == 6
    assert report_metrics(report)["mine.special"].report == "mine.parquet"


def test_docs_table_is_the_generated_scheme() -> None:
    docs = (ROOT / "docs" / "ci.md").read_text(encoding="utf-8")
    assert scheme_markdown() in docs, "regenerate with: python -m robaudit.reports.metrics --markdown"


# ---------------------------------------------------------------------------------------------------------
# statistics


def test_newcombe_interval_matches_the_published_example() -> None:
    # Newcombe (1998), Stat. Med. 17:873, example (a): 56/70 vs 48/80, method 10 gives 0.0524 to 0.3339
    low, high = newcombe_interval(56 / 70, 70, 48 / 80, 80, 0.95)
    assert (round(low, 4), round(high, 4)) == (0.0524, 0.3339)


def test_drop_decision_by_kind() -> None:
    def metric(value: float, kind: Any = "proportion", samples: int | None = 64, stderr: float | None = None) -> Metric:
        return Metric("m", value, kind, samples=samples, stderr=stderr, higher_is_better=True)

    noise = judge_drop(metric(54 / 64), metric(58 / 64), 0.0, True)
    assert noise.method == "newcombe" and noise.drop > 0 and not noise.significant and not noise.failed
    real = judge_drop(metric(20 / 64), metric(58 / 64), 0.0, True)
    assert real.significant and real.failed
    tolerated = judge_drop(metric(20 / 64), metric(58 / 64), 0.7, True)
    assert tolerated.significant and not tolerated.failed
    lower_better = judge_drop(metric(58 / 64), metric(20 / 64), 0.0, False)  # error rate went up
    assert lower_better.failed and lower_better.low > 0
    exact = judge_drop(metric(0.5, "number", None), metric(0.51, "number", None), 0.0, True)
    assert exact.method == "exact" and exact.failed
    normal = judge_drop(metric(0.5, "number", None, 0.02), metric(0.51, "number", None, 0.02), 0.0, True)
    assert normal.method == "normal" and not normal.failed


def test_policy_forms_and_errors() -> None:
    policy = parse_policy(
        'confidence = 0.9\n[[rule]]\ncheck = "corruptions.mCE <= 80"\n[[rule]]\nmetric = "flags.x"\nequals = false\n'
    )
    assert policy.confidence == 0.9
    first, second = policy.rules
    assert first.metric == "corruptions.mCE" and str(first.thresholds[0]) == "<= 80"
    assert first.thresholds[0].holds(79.5) and not first.thresholds[0].holds(80.5)
    assert second.thresholds[0].holds(False) and not second.thresholds[0].holds(True)
    with pytest.raises(InputError, match=r"line 3: rule 1, key 'mni': unknown key \(did you mean 'min'\?\)"):
        parse_policy('[[rule]]\nmetric = "eval.top1"\nmni = 0.5\n', "g.toml")
    with pytest.raises(InputError, match="nothing to check"):
        parse_policy('[[rule]]\nmetric = "eval.top1"\n')
    with pytest.raises(InputError, match="key 'check'"):
        parse_policy('[[rule]]\ncheck = "eval.top1 =< 3"\n')
    with pytest.raises(InputError, match="key 'level'.*did you mean 'warn'"):
        parse_policy('[[rule]]\nmetric = "eval.top1"\nmin = 0.1\nlevel = "warning"\n')


# ---------------------------------------------------------------------------------------------------------
# the command

CliRun = Callable[..., Any]


def test_pass_case(runs: dict[str, Path], tmp_path: Path, cli: CliRun) -> None:
    policy = _policy(tmp_path, '[[rule]]\nmetric = "eval.top1"\nmin = 0.8\n[[rule]]\ncheck = "eval.top5 >= 0.5"\n')
    result = cli("gate", runs["base"], "--policy", policy)
    assert result.code == 0, result.err
    assert "eval.top1" in result.out and "pass" in result.out and "FAILED" not in result.out


def test_fail_case_exits_1_with_a_readable_reason(runs: dict[str, Path], tmp_path: Path, cli: CliRun) -> None:
    policy = _policy(tmp_path, '[[rule]]\nname = "clean floor"\nmetric = "eval.top1"\nmin = 0.5\n')
    result = cli("gate", runs["bad"], "--policy", policy, "--json")
    assert result.code == 1
    payload = result.result
    (check,) = payload["checks"]
    assert check["verdict"] == "fail" and check["rule"] == "clean floor"
    assert check["reason"] == "0.3125 is not >= 0.5"
    assert payload["passed"] is False and payload["exit_code"] == 1 and result.envelope["exit_code"] == 1


def test_flag_rule_fails_on_gradient_masking(runs: dict[str, Path], tmp_path: Path, cli: CliRun) -> None:
    policy = _policy(tmp_path, '[[rule]]\nmetric = "flags.gradient_masking"\nequals = false\n')
    result = cli("gate", runs["base"], "--policy", policy, "--json")
    assert result.code == 1 and result.result["checks"][0]["reason"] == "true is not == false"


def test_warn_level_does_not_fail_the_build(runs: dict[str, Path], tmp_path: Path, cli: CliRun) -> None:
    policy = _policy(tmp_path, '[[rule]]\nmetric = "eval.top1"\nmin = 0.5\nlevel = "warn"\n')
    result = cli("gate", runs["bad"], "--policy", policy, "--json")
    assert result.code == 0
    assert result.result["checks"][0]["verdict"] == "warn"


def test_noise_does_not_fail_but_a_real_drop_does(runs: dict[str, Path], tmp_path: Path, cli: CliRun) -> None:
    policy = _policy(tmp_path, '[[rule]]\nmetric = "eval.top1"\nmax_drop = 0\n')
    within = cli("gate", runs["close"], "--policy", policy, "--baseline", runs["base"], "--json")
    assert within.code == 0, within.err
    check = within.result["checks"][0]
    assert check["value"] == pytest.approx(54 / 64) and check["baseline"] == pytest.approx(58 / 64)
    assert check["verdict"] == "pass" and "within noise" in check["reason"]
    assert check["drop"]["method"] == "newcombe" and check["drop"]["interval"][0] < 0
    real = cli("gate", runs["bad"], "--policy", policy, "--baseline", runs["base"], "--json")
    assert real.code == 1
    check = real.result["checks"][0]
    assert check["verdict"] == "fail"
    assert check["reason"].startswith("regressed by 0.5938 > max_drop 0, beyond noise: 95% CI of the drop [0.4389,")
    table = cli("gate", runs["bad"], "--policy", policy, "--baseline", runs["base"])
    assert table.code == 1 and "robaudit gate FAILED: 1 check(s): 1 fail" in table.out


def test_max_drop_without_baseline_is_skipped(runs: dict[str, Path], tmp_path: Path, cli: CliRun) -> None:
    policy = _policy(tmp_path, '[[rule]]\nmetric = "eval.top1"\nmax_drop = 0.01\n')
    result = cli("gate", runs["bad"], "--policy", policy, "--json")
    assert result.code == 0
    assert result.result["checks"][0]["verdict"] == "skip"


def test_missing_metric_exits_2_with_suggestion(runs: dict[str, Path], tmp_path: Path, cli: CliRun) -> None:
    policy = _policy(tmp_path, '[[rule]]\nmetric = "eval.top_1"\nmin = 0.5\n')
    result = cli("gate", runs["base"], "--policy", policy)
    assert result.code == 2
    assert "no metric 'eval.top_1'" in result.err and "did you mean 'eval.top1'" in result.err
    missing_in_baseline = _policy(tmp_path, '[[rule]]\nmetric = "attack.white.linf.eps=0.01.accuracy"\nmax_drop = 0\n')
    result = cli("gate", runs["base"], "--policy", missing_in_baseline, "--baseline", runs["close"])
    assert result.code == 2 and "baseline" in result.err and "has no metric" in result.err


def test_malformed_toml_exits_2_with_line(runs: dict[str, Path], tmp_path: Path, cli: CliRun) -> None:
    policy = _policy(tmp_path, '[[rule]]\nmetric = "eval.top1"\nmin = 0.5.1\n')
    result = cli("gate", runs["base"], "--policy", policy)
    assert result.code == 2
    assert "line 3, key 'min': malformed TOML" in result.err


def test_bad_input_exits_2(runs: dict[str, Path], tmp_path: Path, cli: CliRun) -> None:
    policy = _policy(tmp_path, '[[rule]]\nmetric = "eval.top1"\nmin = 0.5\n')
    empty = tmp_path / "empty"
    empty.mkdir()
    result = cli("gate", empty, "--policy", policy)
    assert result.code == 2 and "holds no reports" in result.err
    assert cli("gate", runs["base"]).code == 2  # no --policy
    no_direction = _policy(tmp_path, '[[rule]]\nmetric = "eval.mean_confidence"\nmax_drop = 0.1\n')
    result = cli("gate", runs["close"], "--policy", no_direction, "--baseline", runs["base"])
    assert result.code == 2 and 'direction = "higher"' in result.err


def test_mismatched_baseline_is_refused_unless_allowed(runs: dict[str, Path], tmp_path: Path, cli: CliRun) -> None:
    policy = _policy(tmp_path, '[[rule]]\nmetric = "eval.top1"\nmax_drop = 0.05\n')
    refused = cli("gate", runs["close"], "--policy", policy, "--baseline", runs["other"])
    assert refused.code == 2
    assert "other data or images" in refused.err and "images 48 -> 64" in refused.err
    allowed = cli("gate", runs["close"], "--policy", policy, "--baseline", runs["other"], "--allow-mismatch")
    assert allowed.code == 0, allowed.err
    assert "compared anyway" in allowed.err


def test_junit_xml_parses(runs: dict[str, Path], tmp_path: Path, cli: CliRun) -> None:
    policy = _policy(
        tmp_path,
        """
        [[rule]]
        metric = "eval.top1"
        min = 0.5
        [[rule]]
        metric = "eval.top5"
        max = 0.1
        level = "warn"
        [[rule]]
        metric = "eval.top1"
        max_drop = 0
        """,
    )
    junit = tmp_path / "out" / "gate.xml"
    result = cli("gate", runs["bad"], "--policy", policy, "--baseline", runs["base"], "--junit", junit)
    assert result.code == 1
    root = ET.parse(junit).getroot()
    suite = root.find("testsuite")
    assert suite is not None and suite.get("tests") == "3" and suite.get("failures") == "2"
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases] == ["rule 1: eval.top1", "rule 2: eval.top5", "rule 3: eval.top1"]
    failure = cases[0].find("failure")
    assert failure is not None and failure.get("message") == "0.3125 is not >= 0.5"
    warning = cases[1].find("system-out")
    assert warning is not None and (warning.text or "").startswith("WARNING:")


def test_step_summary_gets_markdown(
    runs: dict[str, Path], tmp_path: Path, cli: CliRun, monkeypatch: pytest.MonkeyPatch
) -> None:
    summary = tmp_path / "summary.md"
    summary.write_text("# earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    policy = _policy(tmp_path, '[[rule]]\nmetric = "eval.top1"\nmin = 0.8\n')
    assert cli("gate", runs["base"], "--policy", policy).code == 0
    text = summary.read_text()
    assert text.startswith("# earlier step\n")
    assert "### robaudit gate passed" in text
    assert "| rule | metric | value | baseline | limit | verdict | reason |" in text
    assert "| rule 1 | `eval.top1` | 0.9062 | - | >= 0.8 | ✅ pass |" in text


def test_variants_in_sub_folders(runs: dict[str, Path], tmp_path: Path, cli: CliRun) -> None:
    suite = tmp_path / "suite"
    for variant, source in (("a", "base"), ("b", "bad")):
        shutil.copytree(runs[source], suite / variant, ignore=shutil.ignore_patterns("attack*"))
    every = _policy(tmp_path, '[[rule]]\nmetric = "eval.top1"\nmin = 0.5\nvariant = "*"\n')
    result = cli("gate", suite, "--policy", every, "--json")
    assert result.code == 1
    checks = result.result["checks"]
    assert [(c["variant"], c["verdict"]) for c in checks] == [("a", "pass"), ("b", "fail")]
    plain = _policy(tmp_path, '[[rule]]\nmetric = "eval.top1"\nmin = 0.5\n')
    result = cli("gate", suite, "--policy", plain)
    assert result.code == 2 and 'add variant = "NAME"' in result.err
    misspelt = _policy(tmp_path, '[[rule]]\nmetric = "eval.top1"\nmin = 0.5\nvariant = "c"\n')
    result = cli("gate", suite, "--policy", misspelt)
    assert result.code == 2 and "has no variant 'c'" in result.err


def test_list_metrics(runs: dict[str, Path], cli: CliRun) -> None:
    result = cli("gate", runs["base"], "--list-metrics", "--json")
    assert result.code == 0
    names = {m["name"] for m in result.result}
    assert {"eval.top1", "attack.white.linf.eps=0.01.accuracy", "flags.gradient_masking"} <= names


def test_evaluate_as_a_library(runs: dict[str, Path]) -> None:
    policy = parse_policy('[[rule]]\nmetric = "eval.*"\nmin = 0.35\n')
    result = evaluate(policy, runs["bad"])
    verdicts = {o.metric: o.verdict for o in result.outcomes}
    assert verdicts == {"eval.top1": "fail", "eval.top5": "pass", "eval.mean_confidence": "pass"}
    assert result.failed and result.exit_code == 1
    assert result.headline() == "robaudit gate FAILED: 3 check(s): 2 pass, 1 fail"
