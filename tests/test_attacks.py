"""Every registered attack against the contract, on the real digits model: budgets, success, determinism, targets."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch
from foolbox.attacks.base import MinimizationAttack
from torch import nn

from robaudit import plugins
from robaudit.attacks.base import NORMS, Attack, build_attack
from robaudit.attacks.foolbox_attacks import FoolboxAttack
from robaudit.data import DataSpec, load_dataset
from robaudit.errors import InputError, RunError
from robaudit.models import ModelSpec, load_model

# Few steps keep the file fast; the attacks only have to beat a clean model here.
PARAMS = {
    "boundary": "steps=200",
    "l2-bb": "steps=30",
    "linf-bb": "steps=30",
    "l2-cw": "steps=30,binary_search_steps=3",
    "l2-deepfool": "steps=20",
    "linf-deepfool": "steps=20",
    "ddn": "steps=20",
    "gaussian-blur": "steps=50",
    "salt-and-pepper": "steps=50",
    "linf-pgd": "steps=10",
    "l2-pgd": "steps=10",
    # AutoAttack's members with less work than the standard version (its fixed settings run in test_autoattack)
    "autoattack": "version=custom,attacks=apgd-ce+apgd-t+fab-t+square,n_iter=10,n_target_classes=2,n_queries=100",
    "apgd-ce": "n_iter=10",
    "apgd-dlr": "n_iter=10",
    "apgd-t": "n_iter=10,n_target_classes=2",
    "fab-t": "n_iter=10,n_target_classes=2",
    "square": "n_queries=100",
}
# Slow per image (a noise search for a starting point, numba optimizer): run on the first 8 images only.
FEW_IMAGES = {"boundary", "l2-bb", "linf-bb"}
EPS = {"linf": 0.1, "l2": 2.0}
NOISE_EPS = {"linf": 0.5, "l2": 8.0}  # random noise needs a large budget to fool anything


@dataclass
class Digits:
    model: nn.Module
    images: torch.Tensor
    labels: torch.Tensor


@pytest.fixture(scope="session")
def digits() -> Digits:
    model = load_model(ModelSpec("digits_cnn", pretrained=True), "cpu").module
    data = load_dataset(DataSpec("digits"))
    images = data.load(np.arange(64)).images
    return Digits(model, images, torch.from_numpy(data.labels[:64]))


def predict(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(images).argmax(dim=1)


def run(
    attack: Attack,
    d: Digits,
    n: int,
    eps: float | torch.Tensor | None,
    seed: int = 0,
    targets: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    budget = torch.full((n,), eps) if isinstance(eps, float) else eps
    generator = torch.Generator().manual_seed(seed)
    return attack.run(d.model, d.images[:n], d.labels[:n], targets=targets, eps=budget, generator=generator)


def sizes(adv: torch.Tensor, images: torch.Tensor, norm: str) -> torch.Tensor:
    delta = (adv - images).flatten(1)
    return delta.abs().amax(dim=1) if norm == "linf" else delta.norm(dim=1)


@pytest.mark.parametrize("name", plugins.attacks.names())
def test_attack_keeps_the_contract(name: str, digits: Digits) -> None:
    attack = build_attack(f"{name}:{PARAMS[name]}" if name in PARAMS else name)
    n = 8 if name in FEW_IMAGES else 24
    images, labels = digits.images[:n], digits.labels[:n]
    eps = None if attack.minimization else (EPS if attack.gradient else NOISE_EPS)[attack.norm]
    rng_state = torch.get_rng_state()
    adv, success = run(attack, digits, n, eps)
    assert torch.equal(torch.get_rng_state(), rng_state), "the global RNG must be left as it was"
    assert adv.shape == images.shape and adv.dtype == images.dtype
    assert success.shape == (n,) and success.dtype == torch.bool
    assert adv.min() >= 0 and adv.max() <= 1
    predictions = predict(digits.model, adv)
    assert torch.equal(success, predictions != labels)
    clean = (predict(digits.model, images) == labels).float().mean()
    assert (predictions == labels).float().mean() < clean
    if eps is not None:
        assert (sizes(adv, images, attack.norm) <= eps + 1e-5).all()
    again, again_success = run(attack, digits, n, eps)
    assert torch.equal(adv, again) and torch.equal(success, again_success)


def test_random_attacks_follow_the_seed(digits: Digits) -> None:
    attack = build_attack("linf-uniform-noise")
    first, _ = run(attack, digits, 8, 0.3, seed=1)
    second, _ = run(attack, digits, 8, 0.3, seed=2)
    assert not torch.equal(first, second)


@pytest.mark.parametrize("spec", ["ddn:steps=20", "gaussian-blur:steps=50"])
def test_minimization_attack_with_a_budget_is_clipped_to_it(spec: str, digits: Digits) -> None:
    attack = build_attack(spec)
    adv, success = run(attack, digits, 24, 1.0)
    assert (sizes(adv, digits.images[:24], "l2") <= 1.0 + 1e-5).all()
    assert torch.equal(success, predict(digits.model, adv) != digits.labels[:24])


@pytest.mark.parametrize("spec", ["pgd:steps=10", "linf-pgd:steps=10"])
def test_targeted_attacks_reach_the_target(spec: str, digits: Digits) -> None:
    targets = (digits.labels[:24] + 3) % 10
    adv, success = run(build_attack(spec), digits, 24, 0.2, targets=targets)
    assert torch.equal(success, predict(digits.model, adv) == targets)
    assert success.float().mean() > 0.8


def test_untargeted_only_attacks_refuse_targets(digits: Digits) -> None:
    with pytest.raises(InputError, match="cannot run targeted"):
        run(build_attack("fgsm"), digits, 4, 0.1, targets=digits.labels[:4])


def test_foolbox_attacks_group_images_by_budget(digits: Digits) -> None:
    budgets = torch.tensor([0.01, 0.05, 0.01, 0.05, 0.02, 0.01])
    adv, success = run(build_attack("linf-pgd:steps=5"), digits, 6, budgets)
    linf = (adv - digits.images[:6]).flatten(1).abs().amax(dim=1)
    assert (linf <= budgets + 1e-5).all() and (linf[budgets == 0.05] > 0.02).all()
    assert torch.equal(success, predict(digits.model, adv) != digits.labels[:6])
    with pytest.raises(InputError, match="needs --eps"):
        run(build_attack("linf-pgd"), digits, 4, None)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("linf-pgd:stepz=5", "no parameter 'stepz' .*did you mean 'steps'"),
        ("l2-cw:binary_search_step=3", "did you mean 'binary_search_steps'"),
        ("l2-gaussian-noise:repeats=5", "no parameter 'repeats'.*parameters: none"),
        ("boundary:init_attack=ddn", "no parameter 'init_attack'"),
        ("linf-pgd:steps=ten", "steps must be int"),
        ("fgsm:random_start=1", "random_start must be bool"),
    ],
)
def test_bad_parameters_are_input_errors(spec: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        build_attack(spec)


class Constant(nn.Module):
    """Predicts class 0 for everything: no noise blend ever changes its mind."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = torch.zeros(len(x), 10)
        logits[:, 0] = 1.0
        return logits


@pytest.mark.parametrize("name", ["boundary", "l2-bb"])
def test_failed_initialisation_is_a_run_error(name: str, digits: Digits) -> None:
    images = digits.images[:4]
    with pytest.raises(RunError, match="starting point.*4 of 4 images"):
        build_attack(name).run(
            Constant().eval(),
            images,
            torch.zeros(4, dtype=torch.long),
            targets=None,
            eps=None,
            generator=torch.Generator(),
        )


def test_every_attack_declares_norm_kind_and_help() -> None:
    for name in plugins.attacks.names():
        entry = plugins.attacks.entry(name)
        factory = entry.load()
        assert issubclass(factory, Attack) and factory.name == name
        assert factory.norm in NORMS and isinstance(factory.minimization, bool) and isinstance(factory.gradient, bool)
        assert entry.help, f"{name} has no help line"
        if issubclass(factory, FoolboxAttack):
            fb_attack = factory().foolbox_attack
            assert getattr(fb_attack.distance, "p", None) == (2 if factory.norm == "l2" else np.inf), name
            assert isinstance(fb_attack, MinimizationAttack) == factory.minimization, name


def test_attacks_command_lists_them_all(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("attacks", "--json")
    assert result.code == 0, result.err
    rows = {row["name"]: row for row in result.result}
    assert set(rows) == set(plugins.attacks.names())
    assert {cls.name for cls in FoolboxAttack.__subclasses__()} <= set(rows), "an attack lacks its entry point"
    assert len(FoolboxAttack.__subclasses__()) == 20
    assert rows["fgsm"]["norm"] == "linf" and rows["fgsm"]["kind"] == "fixed budget"
    assert rows["l2-bb"]["kind"] == "minimization" and rows["l2-bb"]["gradient"] is True
    assert rows["boundary"]["gradient"] is False and "init_attack" not in rows["boundary"]["parameters"]
    assert rows["linf-pgd"]["parameters"]["steps"] == 40


# At 0.05 both attacks leave this model at 0 % accuracy; at 0.01 both leave about 40 %, which tells more.
@pytest.mark.parametrize("eps", [0.01, 0.05])
def test_own_pgd_and_foolbox_pgd_agree(eps: float, digits: Digits) -> None:
    accuracy = {}
    for spec in ("pgd:norm=linf,steps=20,rel_stepsize=0.1,random_start=true", "linf-pgd:steps=20,rel_stepsize=0.1"):
        adv, _ = run(build_attack(spec), digits, 64, eps)
        accuracy[spec] = (predict(digits.model, adv) == digits.labels).float().mean().item()
    own, foolbox = accuracy.values()
    assert abs(own - foolbox) <= 0.1, accuracy


def _textbook_pgd_step(
    model: nn.Module, images: torch.Tensor, goal: torch.Tensor, sign: float, eps: torch.Tensor, norm: str
) -> torch.Tensor:
    """One step of Madry et al.'s PGD written out plainly: gradient, step, projection onto ball and [0, 1]."""
    x = images.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(sign * nn.functional.cross_entropy(model(x), goal, reduction="sum"), x)
    step = 2.5 * eps  # rel_stepsize 2.5 / steps with one step
    if norm == "linf":
        moved = x.detach() + step * grad.sign()
        delta = torch.maximum(torch.minimum(moved - images, eps), -eps)
    else:
        moved = x.detach() + step * grad / grad.flatten(1).norm(dim=1).view(-1, 1, 1, 1).clamp_min(1e-12)
        delta = moved - images
        delta = delta * (eps / delta.flatten(1).norm(dim=1).view(-1, 1, 1, 1).clamp_min(1e-12)).clamp(max=1)
    return (images + delta).clamp(0, 1)


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("targeted", [False, True])
def test_fused_pgd_step_is_the_textbook_step(norm: str, targeted: bool, digits: Digits) -> None:
    """The in-place step and box projection equal the plain formulas, for budgets from 0 to beyond the
    pixel range (where [0, 1] binds instead of the ball)."""
    n = 24
    images, labels = digits.images[:n], digits.labels[:n]
    scale = 1.0 if norm == "linf" else 20.0
    eps = torch.linspace(0, 1.2, n) * scale
    targets = (labels + 3) % 10 if targeted else None
    attack = build_attack(f"pgd:norm={norm},steps=1,random_start=false")
    adv, _ = attack.run(digits.model, images, labels, targets=targets, eps=eps, generator=torch.Generator())
    goal, sign = (targets, -1.0) if targets is not None else (labels, 1.0)
    expected = _textbook_pgd_step(digits.model, images, goal, sign, eps.view(-1, 1, 1, 1), norm)
    assert torch.allclose(adv, expected, atol=1e-6, rtol=0)
    assert torch.equal(adv[0], images[0])  # a zero budget leaves the image alone


@pytest.mark.parametrize("restarts", [1, 3])
def test_pgd_restarts_keep_each_images_first_success(restarts: int, digits: Digits) -> None:
    n = 32
    eps = torch.full((n,), 0.03)
    attack = build_attack(f"pgd:steps=5,restarts={restarts}")
    adv, success = run(attack, digits, n, eps, seed=3)
    assert torch.equal(success, predict(digits.model, adv) != digits.labels[:n])
    assert (sizes(adv, digits.images[:n], "linf") <= 0.03 + 1e-6).all() and adv.min() >= 0 and adv.max() <= 1
    if restarts > 1:
        single, single_success = run(build_attack("pgd:steps=5"), digits, n, eps, seed=3)
        # the first restart is the single run; later restarts only add successes
        assert (success >= single_success).all()
        assert torch.equal(adv[single_success], single[single_success])


def test_pgd_step_adds_few_kernels_to_the_models_passes(digits: Digits) -> None:
    """Operators per step beyond the forward and backward of the bare loop (views and detaches excluded):
    an L∞ step is sign, multiply-add and clamp."""
    from torch.utils._python_dispatch import TorchDispatchMode

    free = {"detach", "view", "alias", "expand", "_unsafe_view", "t", "unsqueeze", "squeeze", "lift_fresh"}

    class Count(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.ops = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
            if func.overloadpacket.__name__ not in free:
                self.ops += 1
            return func(*args, **(kwargs or {}))

    images, labels = digits.images[:4], digits.labels[:4]
    eps = torch.full((4,), 0.05)

    def attack_ops(steps: int) -> int:
        with Count() as count:
            build_attack(f"pgd:steps={steps},random_start=false").run(
                digits.model, images, labels, targets=None, eps=eps, generator=torch.Generator()
            )
        return count.ops

    def bare_ops(steps: int) -> int:
        with Count() as count:
            for _ in range(steps):
                x = images.clone().requires_grad_(True)
                torch.autograd.grad(nn.functional.cross_entropy(digits.model(x), labels, reduction="sum"), x)
        return count.ops

    per_step = (attack_ops(6) - attack_ops(2)) / 4 - (bare_ops(6) - bare_ops(2)) / 4
    assert per_step <= 3, per_step


def test_pgd_compile_compiles_each_model_once_with_graphs_on_cuda(
    digits: Digits, monkeypatch: pytest.MonkeyPatch
) -> None:
    """compile=true: one torch.compile per model (kept across batches), CUDA graphs ("reduce-overhead") on
    CUDA only, and the compiled callable runs every step. (The compiled arithmetic itself is torch's;
    benchmarks/gpu.py checks its results against the eager attack.)"""
    calls: list[tuple[nn.Module, str]] = []
    forwards = []

    def fake_compile(model: nn.Module, *, mode: str, dynamic: bool) -> object:
        calls.append((model, mode))

        def compiled(x: torch.Tensor) -> torch.Tensor:
            forwards.append(len(x))
            return model(x)

        return compiled

    monkeypatch.setattr(torch, "compile", fake_compile)
    attack = build_attack("pgd:steps=4,compile=true")
    first, first_success = run(attack, digits, 8, 0.05)
    run(attack, digits, 8, 0.05)
    assert [mode for _, mode in calls] == ["default"] and calls[0][0] is digits.model
    assert len(forwards) == 2 * 4  # every step of both batches; the success check runs the model itself
    eager, eager_success = run(build_attack("pgd:steps=4"), digits, 8, 0.05)
    assert torch.equal(first, eager) and torch.equal(first_success, eager_success)
    attack._forward(nn.Identity(), torch.device("cuda"))
    assert calls[-1][1] == "reduce-overhead"
    assert "compile=True" in repr(attack)


@pytest.mark.parametrize("name", ["l2-bb", "linf-bb"])
def test_a_missing_optional_extra_names_it(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without numba (the ``bb`` extra), the Brendel-Bethge attacks stop with the install hint."""
    from robaudit import plugins
    from robaudit.attacks.base import build_attack
    from robaudit.errors import RunError

    def without_numba(*args: object, **kwargs: object) -> None:
        raise ImportError("No module named 'numba'")  # what foolbox's Brendel-Bethge raises without numba

    monkeypatch.setattr(plugins.attacks.get(name).foolbox_class, "__init__", without_numba)
    with pytest.raises(RunError, match=r"pip install 'robaudit\[bb\]'"):
        build_attack(name)
