"""AutoAttack through the reference implementation: the contract, fidelity to the reference, per-image
budgets, seeds and resumption, memory layouts, the reference's checks, members in the rows, bad input."""

from __future__ import annotations

import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from torch import nn

from robaudit.attacks.base import build_attack
from robaudit.cli.options import budget_list
from robaudit.data import DataSpec, load_dataset
from robaudit.errors import InputError, RunError
from robaudit.models import ModelSpec, load_model

DIGITS = ["--model", "digits_cnn", "--pretrained", "--data", "digits"]
# the standard ensemble's members with budgets of work small enough for a test
CHEAP = (
    "autoattack:version=custom,attacks=apgd-ce+apgd-t+fab-t+square,"
    "n_iter=5,n_restarts=1,n_target_classes=2,n_queries=100"
)


@dataclass
class Digits:
    model: nn.Module
    images: torch.Tensor
    labels: torch.Tensor


@pytest.fixture(scope="module")
def digits() -> Digits:
    model = load_model(ModelSpec("digits_cnn", pretrained=True), "cpu").module
    data = load_dataset(DataSpec("digits"))
    return Digits(model, data.load(np.arange(32)).images, torch.from_numpy(data.labels[:32]))


def predict(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(images).argmax(dim=1)


def linf(adv: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    return (adv - images).flatten(1).abs().amax(dim=1)


def test_the_wrapper_reproduces_the_reference_exactly(digits: Digits) -> None:
    """Same members, parameters and seed: the wrapper's examples are the reference's, bit for bit."""
    from pyautoattack import AutoAttack

    x, y, eps = digits.images[:8], digits.labels[:8], 0.01
    attack = build_attack(CHEAP)
    generator = torch.Generator().manual_seed(3)
    outcome = attack.run_detailed(digits.model, x, y, targets=None, eps=torch.full((8,), eps), generator=generator)
    seed = int(torch.randint(0, 2**62, (), generator=torch.Generator().manual_seed(3)))
    reference = AutoAttack(
        digits.model, version="custom", attacks=["apgd-ce", "apgd-t", "fab-t", "square"], eps=eps, seed=seed
    )
    for member in ("apgd", "apgd_targeted"):
        old = getattr(reference, member)
        kwargs = {"n_target_classes": 2} if member == "apgd_targeted" else {}
        setattr(reference, member, type(old)(digits.model, n_iter=5, n_restarts=1, eps=eps, seed=seed, **kwargs))
    reference.fab.n_iter, reference.fab.n_target_classes, reference.square.n_queries = 5, 2, 100
    reference.fab.n_restarts = reference.square.n_restarts = 1
    expected, _ = reference.run_standard_evaluation(x, y, batch_size=8)
    assert torch.equal(outcome.adversarials, expected)
    # every member had work here, and the per-member record adds up to the result
    attacked = {m.name: int(m.attacked.sum()) for m in outcome.members}
    assert attacked["apgd-ce"] > attacked["apgd-t"] > 0, attacked
    broken = torch.stack([m.success for m in outcome.members]).sum(dim=0)
    clean_wrong = predict(digits.model, x) != y
    assert torch.equal(outcome.success, (broken == 1) | clean_wrong) and int(broken.max()) <= 1


def test_images_are_grouped_by_budget(digits: Digits) -> None:
    budgets = torch.tensor([0.01, 0.05, 0.01, 0.05, 0.02, 0.01])
    x, y = digits.images[:6], digits.labels[:6]
    attack = build_attack("apgd-ce:n_iter=10")
    outcome = attack.run_detailed(digits.model, x, y, targets=None, eps=budgets, generator=torch.Generator())
    assert (linf(outcome.adversarials, x) <= budgets + 1e-6).all()
    assert torch.equal(outcome.success, predict(digits.model, outcome.adversarials) != y)
    # the first group (0.01, sorted) draws the first seed: alone, it gives the same examples
    group = budgets == 0.01
    alone = attack.run(digits.model, x[group], y[group], targets=None, eps=budgets[group], generator=torch.Generator())[
        0
    ]
    assert torch.equal(alone, outcome.adversarials[group])


def test_seeds_come_from_the_generator_and_the_global_state_is_kept(digits: Digits) -> None:
    x, y, eps = digits.images[:8], digits.labels[:8], torch.full((8,), 0.2)
    attack = build_attack("square:n_queries=10")
    state = torch.get_rng_state()
    first = attack.run(digits.model, x, y, targets=None, eps=eps, generator=torch.Generator().manual_seed(1))[0]
    again = attack.run(digits.model, x, y, targets=None, eps=eps, generator=torch.Generator().manual_seed(1))[0]
    other = attack.run(digits.model, x, y, targets=None, eps=eps, generator=torch.Generator().manual_seed(2))[0]
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(first, again) and not torch.equal(first, other)


class ChannelsLast(nn.Module):
    """Computes in channels-last memory layout: its input gradient comes back non-contiguous."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x.contiguous(memory_format=torch.channels_last))


LAYOUTS = {
    "contiguous": lambda x: x,
    "channels-last": lambda x: x.contiguous(memory_format=torch.channels_last),
    "strided": lambda x: torch.stack([x, x], dim=-1)[..., 0],
    "transposed-twice": lambda x: x.transpose(2, 3).contiguous().transpose(2, 3),
}


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("channels_last_model", [False, True])
def test_any_memory_layout_gives_the_contiguous_result(digits: Digits, layout: str, channels_last_model: bool) -> None:
    """The reference's zero-gradient check (APGD-T) crashes on non-contiguous tensors; the wrapper never lets
    one reach it, whatever the layout of the images or of the model's gradient."""
    x, y, eps = digits.images[:6], digits.labels[:6], torch.full((6,), 0.005)
    model = ChannelsLast(digits.model) if channels_last_model else digits.model
    attack = build_attack("apgd-t:n_iter=5,n_target_classes=2")
    expected = attack.run(digits.model, x, y, targets=None, eps=eps, generator=torch.Generator())[0]
    got = attack.run(model, LAYOUTS[layout](x.clone()), y, targets=None, eps=eps, generator=torch.Generator())[0]
    assert torch.allclose(got, expected, atol=1e-6)


class Noisy(nn.Module):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner((x + 0.05 * torch.randn_like(x)).clamp(0, 1))


class Softmax(Noisy):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x).softmax(dim=1)


class Dynamic(Noisy):
    """Refines its input by one gradient step on its own entropy at inference time."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.enable_grad():
            z = x.detach().requires_grad_(True)
            p = self.inner(z).softmax(dim=1)
            (g,) = torch.autograd.grad(-(p * p.clamp_min(1e-12).log()).sum(), z)
        return self.inner((x - 0.01 * g.sign()).clamp(0, 1))


@pytest.mark.parametrize(
    ("wrapper", "raised"),
    [
        (None, set()),
        (Noisy, {"randomized-outputs"}),
        (Softmax, {"probability-outputs"}),
        (Dynamic, {"dynamic-defense"}),
        (None, set()),  # after a dynamic model: the reference's counter would still say "dynamic"
    ],
)
def test_the_reference_model_checks(digits: Digits, wrapper: type[nn.Module] | None, raised: set[str]) -> None:
    model = wrapper(digits.model) if wrapper else digits.model
    tracer = sys.gettrace()
    found = build_attack("autoattack").diagnose(model, digits.images[:8], digits.labels[:8])
    assert sys.gettrace() is tracer, "the dynamic check must leave the trace function (coverage, debuggers) alone"
    assert {d.name for d in found} == {"randomized-outputs", "probability-outputs", "dynamic-defense"}
    assert {d.name for d in found if d.raised} == raised
    assert all((d.note is not None) == d.raised for d in found)
    # the rand version expects randomness: it does not check for it
    assert "randomized-outputs" not in {
        d.name for d in build_attack("autoattack:version=rand").diagnose(model, digits.images[:4], digits.labels[:4])
    }


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("autoattack:version=fast", "did you mean 'plus'|choose from standard"),
        ("autoattack:attacks=apgd-ce", "needs version=custom"),
        ("autoattack:version=custom", "needs attacks="),
        ("autoattack:version=custom,attacks=apgd-ce+sqare", "did you mean 'square'"),
        ("autoattack:version=custom,attacks=square+square", "twice"),
        ("autoattack:n_iter=5", "need version=custom"),
        ("autoattack:norm=l3", "norm must be one of"),
        ("apgd-ce:n_iter=0", "positive integer"),
        ("apgd-t:n_target_classes=two", "positive integer"),
        ("square:p_init=2", r"p_init must be in \(0, 1\]"),
        ("square:n_iter=5", "no parameter 'n_iter'"),
        ("autoattack:amp=maybe", "amp must be true or false"),
    ],
)
def test_bad_parameters(spec: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        build_attack(spec)


def test_targets_and_missing_budgets_are_refused(digits: Digits) -> None:
    attack = build_attack("apgd-ce")
    with pytest.raises(InputError, match="cannot run targeted"):
        attack.run(
            digits.model,
            digits.images[:2],
            digits.labels[:2],
            targets=digits.labels[:2],
            eps=torch.full((2,), 0.1),
            generator=torch.Generator(),
        )
    with pytest.raises(InputError, match="needs --eps"):
        attack.run(
            digits.model, digits.images[:2], digits.labels[:2], targets=None, eps=None, generator=torch.Generator()
        )


def test_a_missing_package_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch, cli) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setitem(sys.modules, "pyautoattack", None)  # import pyautoattack now raises ImportError
    with pytest.raises(RunError, match=r"pip install 'pyautoattack>=0\.2\.0,<0\.3'"):
        build_attack("autoattack")
    result = cli("attack", *DIGITS, "--limit", 4, "--attack", "autoattack", "--eps", "8/255", "--out", "/nonexistent/x")
    assert result.code == 3 and "pip install" in result.err and len(result.err.strip().splitlines()) == 1


def test_too_few_classes_are_refused_before_the_run(cli, tiny_models: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    np.savez(tmp_path / "three.npz", x=np.zeros((4, 32, 32, 3), np.uint8), y=np.arange(4) % 3)
    result = cli(
        "attack", "--model", f"{tiny_models}:tiny", "--num-classes", 3, "--data", f"npz:{tmp_path / 'three.npz'}",
        "--attack", "autoattack", "--eps", "8/255", "--out", tmp_path / "r",
    )  # fmt: skip
    assert result.code == 2 and "apgd-t needs at least 4 classes" in result.err
    assert not (tmp_path / "r" / "attack.parquet.partial").exists()


def attack(cli, out: Path, *args: object):  # type: ignore[no-untyped-def]
    result = cli("attack", *args, "--out", out, "--json")
    assert result.code == 0, result.err
    return result.result, pq.read_table(out / "attack.parquet").to_pandas()


def test_the_citable_figure(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    assert budget_list("8/255, 0.01") == [8 / 255, 0.01]
    summary, rows = attack(
        cli, tmp_path, *DIGITS, "--limit", 6, "--attack", "autoattack", "--eps", "8/255", "--no-checks"
    )
    (figure,) = summary["evaluation"]
    (curve,) = summary["curves"]
    assert figure["figure"].startswith("robust accuracy under AutoAttack (standard), white-box, L∞ ε = 8/255, n = 6: ")
    assert f"{curve['accuracy']:.1%} (95 % CI" in figure["figure"]
    assert (rows["linf"] <= 8 / 255 + 1e-6).all() and (rows["eps"] == 8 / 255).all()


QUANTIZED = '''
import torch
from robaudit.models.demo import digits_cnn
from robaudit.models import ModelBuild


class Quantized(torch.nn.Module):
    """Rounds its input to 4 levels before the network: zero gradients almost everywhere."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        pixels = (x * 0.5 + 0.5).clamp(0, 1)
        return self.inner((torch.round(pixels * 4) / 4 - 0.5) / 0.5)


def quantized(name, *, pretrained=False, num_classes=None):
    build = digits_cnn(pretrained=True)
    return ModelBuild(Quantized(build.backbone), build.preprocessing, build.num_classes)
'''


def test_gradient_masking_raises_the_references_flags_and_robaudits(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Input quantization: zero gradients (both checks), Square breaking what APGD cannot (the reference's
    check) and an unbounded attack that fails (robaudit's); the rows say which member broke which image."""
    path = tmp_path / "quantized.py"
    path.write_text(textwrap.dedent(QUANTIZED))
    spec = "autoattack:version=custom,attacks=apgd-ce+apgd-t+square,n_iter=20,n_target_classes=2,n_queries=300"
    summary, rows = attack(
        cli, tmp_path / "r", "--model", f"{path}:quantized", "--data", "digits", "--limit", 16,
        "--attack", spec, "--eps", "0.1", "--check-samples", 8,
    )  # fmt: skip
    flags = summary["flags"]
    assert flags["zero_or_nonfinite_gradients"]["flag"] is True
    assert flags["zero_or_nonfinite_gradients"]["sources"] == "robaudit, autoattack"
    assert "autoattack: zero input gradients" in flags["zero_or_nonfinite_gradients"]["evidence"]
    assert flags["gradient_free_beats_gradient"]["flag"] is True
    assert "autoattack" in flags["gradient_free_beats_gradient"]["sources"]
    assert flags["unbounded_attack_fails"]["flag"] is True
    assert {flags[n]["flag"] for n in ("randomized_outputs", "probability_outputs", "dynamic_defense")} == {False}
    assert summary["gradient_masking"] is True
    # members: each image broken by at most one member, Square's queries recorded, the counts summarized
    members = rows[rows["check_name"] == "member"]
    main = rows[rows["check_name"].isna()]
    assert set(members["attack"]) <= {"apgd-ce", "apgd-t", "square"}
    breakers = members[members["source_success"]].groupby("index")["attack"].nunique()
    assert (breakers == 1).all()
    square = members[members["attack"] == "square"]
    assert square["source_success"].any() and (square["queries"].between(1, 301)).all()
    assert members[members["attack"] != "square"]["queries"].isna().all()
    broken = set(members[members["source_success"]]["index"])
    clean_wrong = set(main[main["clean_prediction"] != main["label"]]["index"])
    assert set(main[main["success"]]["index"]) == broken | clean_wrong
    table = {m["member"]: m for m in summary["members"]}
    assert table["square"]["broken"] == int(square["source_success"].sum())
    assert table["square"]["accuracy_after"] == pytest.approx(main["correct"].mean())


def test_resume_mid_run_gives_the_uninterrupted_rows(tmp_path: Path) -> None:
    from robaudit.audits.attack import AttackAudit
    from robaudit.runner import RunSpec, run_audit

    def audit() -> AttackAudit:
        return AttackAudit(attack=CHEAP, eps=[0.02], check_samples=2)

    spec = RunSpec(
        model=ModelSpec("digits_cnn", pretrained=True), data=DataSpec("digits", limit=12), chunk_size=4, batch_size=4
    )

    def stop_after_two_chunks(done: int, total: int) -> None:
        if done > 8:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_audit(audit(), spec, tmp_path / "killed", progress=stop_after_two_chunks)
    resumed = run_audit(audit(), spec, tmp_path / "killed", resume=True)
    assert resumed.chunks_resumed == 2
    whole = run_audit(audit(), spec, tmp_path / "whole")
    a, b = (pq.read_table(r.path).to_pandas().drop(columns=["chunk"]) for r in (resumed, whole))
    assert len(a) and a.equals(b)


def test_amp_runs_the_forward_under_bf16_autocast(digits: Digits, cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """On the CPU here (bf16 autocast works on both devices); the budget and the verdicts still hold."""
    x, y, eps = digits.images[:6], digits.labels[:6], torch.full((6,), 0.03)
    apgd = build_attack("apgd-ce:n_iter=5,amp=true")
    adv, success = apgd.run(digits.model, x, y, targets=None, eps=eps, generator=torch.Generator())
    assert (linf(adv, x) <= eps + 1e-6).all() and adv.min() >= 0 and adv.max() <= 1
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.equal(success, digits.model(adv).float().argmax(dim=1) != y)
    _, rows = attack(cli, tmp_path, *DIGITS, "--limit", 4, "--attack", "apgd-ce:n_iter=5", "--amp", "--eps", "0.03")
    assert set(rows[rows["check_name"].isna()]["attack"]) == {"apgd-ce(amp=True, n_iter=5, norm='linf')"}
