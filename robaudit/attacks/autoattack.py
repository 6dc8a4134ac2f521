"""AutoAttack (Croce & Hein 2020) through its reference implementation, behind robaudit's attack contract.

AutoAttack is the ensemble the field reports robust accuracy with (RobustBench is built on it): APGD on the
cross-entropy (APGD-CE), targeted APGD on the DLR loss (APGD-T), targeted FAB (FAB-T) and the gradient-free
Square attack, run one after the other, each only on the images the ones before left standing. The attacks
are the reference code itself, the ``pyautoattack`` package (a packaged copy of fra31/auto-attack):
robaudit configures and drives its member objects and calls its checks; it does not reimplement them.

* ``autoattack``: ``version=standard`` (APGD-CE, APGD-T, FAB-T, Square with the paper's and RobustBench's
  fixed parameters), ``plus`` (also APGD-DLR and untargeted FAB, 5 restarts each), ``rand`` (APGD-CE and
  APGD-DLR with expectation over 20 transformations, for randomized defenses), or ``custom`` with
  ``attacks=apgd-ce+square`` (members joined by ``+``, with the reference's constructor defaults and the
  overrides below).
* every member on its own: ``apgd-ce``, ``apgd-dlr``, ``apgd-t``, ``fab-t``, ``square``, with the standard
  version's settings unless overridden (``n_iter``, ``n_restarts``, ``n_target_classes``, ``n_queries``...).

Norms: ``linf``, ``l2`` and ``l1`` (``norm=``), as the reference supports them. The ensemble runs in the
reference's order and by its rule: an image counts as broken by the first member whose example the attacked
model misclassifies, and later members skip it. :meth:`AutoAttackBase.run_detailed` reports, per call, what
each member did (its images, its results, Square's queries per image) and the verdict of the reference's
zero-gradient check; :meth:`AutoAttackBase.diagnose` runs the reference's model-level checks (randomized
outputs, probability outputs, dynamic defenses).

Where this differs from calling ``AutoAttack.run_standard_evaluation`` directly, deliberately:

* budgets per image (``rel-l2``): images are grouped by equal budget and each group is one ensemble run;
* seeds: each group gets a seed drawn from the audit's generator (the reference gives every member one
  fixed seed, or the clock); the members run inside ``torch.random.fork_rng``, so results follow
  ``--seed`` per batch and the global random state is left as it was;
* inputs are made contiguous, and so is the model's input gradient, because the reference's zero-gradient
  check (``grad.view``) crashes on other memory layouts (e.g. channels-last);
* with fewer than 10 classes the targeted members aim at every other class instead of 9 (the reference
  would index past the last class); the DLR losses need 3 classes (4 targeted), checked before a run;
* ``amp=true`` runs the model's forward under bf16 autocast (for GPUs) and hands float32 logits over;
* the reference's dynamic-defense check counts autograd calls in a module-level counter that it never resets
  (once one dynamic model is seen, every later model is flagged) and removes the process's trace function;
  the wrapper resets the counter and restores the trace function around every check;
* Square runs through its ``attack_single_run`` (restarts as its ``perturb`` does them), which returns the
  queries per image that ``perturb`` discards.

AutoAttack measures untargeted robustness (APGD-T and FAB-T choose their own target classes), so
``--targeted`` is refused; it is a fixed-budget attack (FAB's minimal-norm search is kept inside ε).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import ModuleType
from typing import Any, ClassVar

import torch
from torch import nn

from ..errors import InputError, RunError, suggest
from .base import NORMS, Attack, AttackOutcome, Diagnostic, MemberOutcome, is_success

#: the reference's members, in the order of its ``plus`` version
MEMBERS = ("apgd-ce", "apgd-dlr", "fab", "square", "apgd-t", "fab-t")
VERSIONS = ("standard", "plus", "rand", "custom")
#: robaudit's norm names -> the reference's
REFERENCE_NORMS = {"linf": "Linf", "l2": "L2", "l1": "L1"}
#: members that optimize the DLR loss: the reference checks their gradients for zeros
DLR_MEMBERS = ("apgd-dlr", "apgd-t")
#: fewest classes each member's loss can work with (DLR: 3 largest logits; targeted DLR: 4)
MIN_CLASSES = {"apgd-ce": 2, "apgd-dlr": 3, "apgd-t": 4, "fab": 2, "fab-t": 2, "square": 2}
#: the release the wrapper is written against (it drives member objects and checks, not just the front end)
SUPPORTED = "pyautoattack>=0.2.0,<0.3"
INSTALL_HINT = f"pip install '{SUPPORTED}' (a robaudit dependency; it is missing from this environment)"


def reference() -> ModuleType:
    """The reference package, or a :class:`RunError` that says how to install it."""
    try:
        import pyautoattack
        from pyautoattack import checks  # noqa: F401  (the checks module is used as pyautoattack.checks)
    except ImportError as exc:
        raise RunError(f"AutoAttack needs the package pyautoattack ({exc}); {INSTALL_HINT}") from exc
    return pyautoattack


class _ContiguousGradient(torch.autograd.Function):
    """Identity whose backward hands on a contiguous gradient, whatever layout the model produced it in."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        return grad.contiguous()


class _Forward(nn.Module):
    """The model as the reference sees it: contiguous input gradients, optional bf16 autocast, float32 logits."""

    def __init__(self, model: nn.Module, amp: bool) -> None:
        super().__init__()
        self.model, self.amp = model, amp

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = _ContiguousGradient.apply(x.contiguous())
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=self.amp):
            logits = self.model(x)
        return logits.float()


class _Recorder:
    """Stands in for the reference's logger and keeps what its checks warn about."""

    def __init__(self) -> None:
        self.messages: list[str] = []

    def warning(self, message: object, *args: object) -> None:
        self.messages.append(str(message) % args if args else str(message))

    def info(self, message: object, *args: object) -> None:
        pass

    debug = info

    @property
    def note(self) -> str | None:
        return self.messages[0] if self.messages else None


@contextmanager
def _dynamic_check_state(checks: ModuleType) -> Iterator[None]:
    """A zeroed autograd-call counter for the dynamic-defense check, and the caller's trace function kept."""
    for key in checks.funcs:
        checks.funcs[key] = 0
    previous = sys.gettrace()
    try:
        yield
    finally:
        sys.settrace(previous)


@dataclass
class _Group:
    """One ensemble run on images of equal budget."""

    adversarials: torch.Tensor
    members: list[MemberOutcome]
    diagnostics: list[Diagnostic]


class AutoAttackBase(Attack):
    """The reference's members run as one ensemble on the pixel model; subclasses fix the members."""

    norm = "linf"
    #: APGD-T and FAB-T choose their own targets: a robaudit target cannot be imposed
    targeted: ClassVar[bool] = False
    #: the reference's version whose member settings apply before overrides
    version: str = "standard"
    members: tuple[str, ...] = ()

    def _setup(self, *, norm: str, amp: bool, overrides: dict[str, Any], **shown: Any) -> None:
        reference()  # a missing package is reported when the attack is chosen, before anything runs
        if norm not in NORMS:
            raise InputError(f"{self.name} norm must be one of {', '.join(NORMS)}, got {norm!r}")
        for key, value in overrides.items():
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise InputError(f"{self.name} {key} must be a positive integer, got {value!r}")
        if not isinstance(amp, bool):
            raise InputError(f"{self.name} amp must be true or false, got {amp!r}")
        super().__init__(norm=norm, amp=amp, **shown, **{k: v for k, v in overrides.items() if v is not None})
        self.norm = norm  # type: ignore[misc]
        self.amp = amp
        self.overrides = {k: v for k, v in overrides.items() if v is not None}

    # -- what the audit asks before a run ----------------------------------------------------------------------
    def check_classes(self, num_classes: int) -> None:
        for member in self.members:
            if num_classes < MIN_CLASSES[member]:
                raise InputError(
                    f"{self.name}: {member} needs at least {MIN_CLASSES[member]} classes "
                    f"(its loss compares the largest logits), the model has {num_classes}"
                )

    # -- the contract --------------------------------------------------------------------------------------------
    def run(
        self,
        model: nn.Module,
        images: torch.Tensor,
        labels: torch.Tensor,
        *,
        targets: torch.Tensor | None,
        eps: torch.Tensor | None,
        generator: torch.Generator,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        outcome = self.run_detailed(model, images, labels, targets=targets, eps=eps, generator=generator)
        return outcome.adversarials, outcome.success

    def run_detailed(
        self,
        model: nn.Module,
        images: torch.Tensor,
        labels: torch.Tensor,
        *,
        targets: torch.Tensor | None,
        eps: torch.Tensor | None,
        generator: torch.Generator,
    ) -> AttackOutcome:
        if eps is None:
            raise InputError(f"{self.name} is a fixed-budget attack: it needs --eps")
        if targets is not None:
            raise InputError(
                f"{self.name} measures untargeted robustness (APGD-T and FAB-T choose their own targets); "
                "it cannot run targeted"
            )
        ref = reference()
        x = images.contiguous()
        n = len(x)
        forward = _Forward(model, self.amp)
        adversarials = x.clone()
        members = [
            MemberOutcome(
                name,
                torch.zeros(n, dtype=torch.bool, device=x.device),
                x.clone(),
                torch.zeros(n, dtype=torch.bool, device=x.device),
                torch.zeros(n, dtype=torch.int64, device=x.device) if name == "square" else None,
            )
            for name in self.members
        ]
        diagnostics: dict[str, Diagnostic] = {}
        eps = eps.to(x.device)
        # one ensemble per distinct budget (per-image budgets such as rel-l2 cost one run per value)
        for value in torch.unique(eps):
            where = (eps == value).nonzero().squeeze(1)
            seed = int(torch.randint(0, 2**62, (), generator=generator, device=generator.device))
            group = self._ensemble(ref, forward, x[where], labels[where], float(value), seed)
            adversarials[where] = group.adversarials
            for total, part in zip(members, group.members, strict=True):
                total.attacked[where], total.adversarials[where] = part.attacked, part.adversarials
                total.success[where] = part.success
                if total.queries is not None and part.queries is not None:
                    total.queries[where] = part.queries
            for found in group.diagnostics:
                scope = torch.zeros(n, dtype=torch.bool, device=x.device)
                scope[where] = found.scope
                seen = diagnostics.get(found.name)
                if seen is None:
                    diagnostics[found.name] = Diagnostic(found.name, found.raised, scope, found.note)
                else:
                    seen.raised, seen.scope = seen.raised or found.raised, seen.scope | scope
                    seen.note = seen.note or found.note
        with torch.no_grad():
            success = is_success(forward(adversarials), labels, None)
        square = next((m for m in members if m.name == "square"), None)
        queries = square.queries if square is not None else None
        return AttackOutcome(adversarials, success, queries, members, list(diagnostics.values()))

    def diagnose(self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> list[Diagnostic]:
        """The reference's checks of the model itself: randomized outputs (not for ``rand``, which expects them),
        outputs that are already probabilities, and a forward pass that calls autograd (a dynamic defense)."""
        if len(images) == 0:
            return []
        checks = reference().checks
        x = images.contiguous()
        forward = _Forward(model, self.amp)
        scope = torch.ones(len(x), dtype=torch.bool, device=x.device)
        found = []
        if self.version != "rand":
            recorder = _Recorder()
            checks.check_randomized(forward, x, labels, bs=len(x), logger=recorder)
            found.append(Diagnostic("randomized-outputs", bool(recorder.messages), scope, recorder.note))
        recorder = _Recorder()
        checks.check_range_output(forward, x, logger=recorder)
        found.append(Diagnostic("probability-outputs", bool(recorder.messages), scope, recorder.note))
        recorder = _Recorder()
        with _dynamic_check_state(checks):
            checks.check_dynamic(model, x, False, logger=recorder)
        found.append(Diagnostic("dynamic-defense", bool(recorder.messages), scope, recorder.note))
        return found

    # -- one ensemble run ----------------------------------------------------------------------------------------
    def _ensemble(
        self, ref: ModuleType, forward: _Forward, x: torch.Tensor, y: torch.Tensor, eps: float, seed: int
    ) -> _Group:
        n = len(x)
        none = torch.zeros(n, dtype=torch.bool, device=x.device)
        adversarials = x.clone()
        with torch.no_grad():
            logits = forward(x)
        standing = logits.argmax(dim=1) == y
        outcomes: list[MemberOutcome] = []
        diagnostics: list[Diagnostic] = []
        if eps == 0:  # nothing can move: the clean images are the result (the reference divides by ε)
            for name in self.members:
                queries = torch.zeros(n, dtype=torch.int64, device=x.device) if name == "square" else None
                outcomes.append(MemberOutcome(name, none.clone(), x.clone(), none.clone(), queries))
            return _Group(adversarials, outcomes, diagnostics)
        recorder = _Recorder()
        aa = self._configured(ref, forward, x.device, eps, seed, int(logits.shape[1]), recorder)
        dlr_scope = none.clone()
        cuda = [x.device] if x.device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda), torch.enable_grad():
            for name in self.members:
                attacked = standing.clone()
                member_adv, broken = x.clone(), none.clone()
                queries = torch.zeros(n, dtype=torch.int64, device=x.device) if name == "square" else None
                where = attacked.nonzero().squeeze(1)
                if len(where):
                    result, spent = self._perturb(aa, name, x[where], y[where], seed)
                    result = self._checked(name, result.detach().to(x.dtype), x[where], eps)
                    with torch.no_grad():
                        hit = forward(result).argmax(dim=1) != y[where]
                    member_adv[where] = result
                    broken[where[hit]] = True
                    adversarials[where[hit]] = result[hit]
                    standing[where[hit]] = False
                    if queries is not None and spent is not None:
                        queries[where] = spent.round().long()
                    if name in DLR_MEMBERS:
                        dlr_scope |= attacked
                outcomes.append(MemberOutcome(name, attacked, member_adv, broken, queries))
        if bool(dlr_scope.any()):
            diagnostics.append(Diagnostic("zero-gradients", bool(recorder.messages), dlr_scope, recorder.note))
        return _Group(adversarials, outcomes, diagnostics)

    def _configured(
        self,
        ref: ModuleType,
        forward: _Forward,
        device: torch.device,
        eps: float,
        seed: int,
        num_classes: int,
        recorder: _Recorder,
    ) -> Any:
        """The reference's ``AutoAttack`` object with its version's member settings, then the overrides."""
        aa = ref.AutoAttack(
            forward,
            attacks=list(self.members) if self.version == "custom" else None,
            device=device,
            eps=eps,
            norm=REFERENCE_NORMS[self.norm],
            seed=seed,
            version=self.version,
        )
        o = self.overrides
        if "n_iter" in o or "eot_iter" in o:
            # APGD derives its step-size checkpoints from n_iter in its constructor: build new ones
            aa.apgd = _apgd_like(aa.apgd, n_iter=o.get("n_iter"), eot_iter=o.get("eot_iter"))
            aa.apgd_targeted = _apgd_like(aa.apgd_targeted, n_iter=o.get("n_iter"), eot_iter=o.get("eot_iter"))
            aa.fab.n_iter = o.get("n_iter", aa.fab.n_iter)
        if "n_restarts" in o:
            for member in (aa.apgd, aa.apgd_targeted, aa.fab, aa.square):
                member.n_restarts = o["n_restarts"]
        if "n_target_classes" in o:
            aa.apgd_targeted.n_target_classes = aa.fab.n_target_classes = o["n_target_classes"]
        if "n_queries" in o:
            aa.square.n_queries = o["n_queries"]
        if "p_init" in o:
            aa.square.p_init = o["p_init"]
        # the targeted members aim at the k-th most likely classes: there are only num_classes - 1 others
        aa.apgd_targeted.n_target_classes = min(aa.apgd_targeted.n_target_classes, num_classes - 1)
        aa.fab.n_target_classes = min(aa.fab.n_target_classes, num_classes - 1)
        aa.apgd.logger = aa.apgd_targeted.logger = recorder  # the zero-gradient check reports here
        return aa

    def _perturb(
        self, aa: Any, name: str, x: torch.Tensor, y: torch.Tensor, seed: int
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One member on the standing images, called as the reference's ``run_standard_evaluation`` calls it."""
        if name in ("apgd-ce", "apgd-dlr"):
            aa.apgd.loss = name.removeprefix("apgd-")
            aa.apgd.seed = seed
            return aa.apgd.perturb(x, y), None
        if name == "apgd-t":
            aa.apgd_targeted.seed = seed
            return aa.apgd_targeted.perturb(x, y), None
        if name in ("fab", "fab-t"):
            aa.fab.targeted = name == "fab-t"
            if name == "fab-t":  # the reference runs FAB-T with one restart per target class
                aa.fab.n_restarts = self.overrides.get("n_restarts", 1)
            aa.fab.seed = seed
            return aa.fab.perturb(x, y), None
        return _square(aa.square, x, y, seed)

    def _checked(self, name: str, result: torch.Tensor, x: torch.Tensor, eps: float) -> torch.Tensor:
        """A member's examples, which must lie in the ε-ball and in [0, 1] up to float rounding (the reference's
        L1 projection ends a few ulps outside the box); clipped to [0, 1], which only moves them closer to the
        clean images. Anything further out stops the run."""
        delta = (result - x).flatten(1)
        size = {"linf": delta.abs().amax(dim=1), "l2": delta.norm(dim=1), "l1": delta.abs().sum(dim=1)}[self.norm]
        worst = float(size.max()) if len(size) else 0.0
        outside = float(torch.maximum(-result, result - 1).max()) if result.numel() else 0.0
        if worst > eps * (1 + 1e-4) + 1e-6 or outside > 1e-5:
            raise RunError(
                f"{self.name}: the reference's {name} returned an example outside the {self.norm} ball of "
                f"radius {eps:g} (size {worst:g}) or outside [0, 1] (by {max(outside, 0):g}); its results cannot "
                "be trusted here"
            )
        return result.clamp(0, 1)


def _apgd_like(old: Any, *, n_iter: int | None, eot_iter: int | None) -> Any:
    """A new APGD object of ``old``'s class and settings, with another iteration count or EOT count."""
    kwargs: dict[str, Any] = {
        "n_iter": n_iter or old.n_iter_orig,
        "norm": old.norm,
        "n_restarts": old.n_restarts,
        "eps": old.eps_orig,
        "seed": old.seed,
        "eot_iter": eot_iter or old.eot_iter,
        "rho": old.thr_decr,
        "device": old.device,
        "use_largereps": old.use_largereps,
        "logger": old.logger,
    }
    if hasattr(old, "n_target_classes"):
        kwargs["n_target_classes"] = old.n_target_classes
    else:
        kwargs["loss"] = old.loss
    return type(old)(old.model, **kwargs)


def _square(square: Any, x: torch.Tensor, y: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Square's restarts as its ``perturb`` runs them, keeping the queries per image that ``perturb`` drops."""
    square.seed = seed
    square.init_hyperparam(x)
    torch.random.manual_seed(seed)
    torch.cuda.random.manual_seed(seed)
    adversarials = x.clone()
    queries = torch.zeros(len(x), device=x.device)
    standing = torch.ones(len(x), dtype=torch.bool, device=x.device)
    for _ in range(square.n_restarts):
        where = standing.nonzero().squeeze(1)
        if not len(where):
            break
        spent, found = square.attack_single_run(x[where], y[where])
        queries[where] += spent.to(queries.device)
        with torch.no_grad():
            hit = square.predict(found).argmax(dim=1) != y[where]
        adversarials[where[hit]] = found[hit]
        standing[where[hit]] = False
    return adversarials, queries


def parse_members(text: Any, version: str) -> tuple[str, ...]:
    """``attacks=apgd-ce+square`` for ``version=custom``; every other version fixes its members."""
    if version != "custom":
        if text is not None:
            raise InputError(f"autoattack version={version} fixes its members; attacks= needs version=custom")
        return ()
    if not isinstance(text, str) or not text.strip():
        raise InputError(
            f"autoattack version=custom needs attacks=NAME+NAME... from {', '.join(MEMBERS)} (e.g. apgd-ce+square)"
        )
    names = tuple(p.strip() for p in text.split("+"))
    for name in names:
        if name not in MEMBERS:
            raise InputError(
                f"autoattack has no member {name!r}{suggest(name, MEMBERS)}; members: {', '.join(MEMBERS)}"
            )
    if len(set(names)) != len(names):
        raise InputError(f"autoattack attacks={text!r} names a member twice")
    return names


#: the members each version runs, in the reference's order (``_set_version``)
VERSION_MEMBERS = {
    "standard": ("apgd-ce", "apgd-t", "fab-t", "square"),
    "plus": ("apgd-ce", "apgd-dlr", "fab", "square", "apgd-t", "fab-t"),
    "rand": ("apgd-ce", "apgd-dlr"),
}


class AutoAttack(AutoAttackBase):
    """AutoAttack, the reference ensemble (APGD-CE, APGD-T, FAB-T, Square); version=standard|plus|rand|custom."""

    name = "autoattack"

    def __init__(
        self,
        *,
        version: str = "standard",
        attacks: str | None = None,
        norm: str = "linf",
        n_iter: int | None = None,
        n_restarts: int | None = None,
        n_target_classes: int | None = None,
        n_queries: int | None = None,
        eot_iter: int | None = None,
        amp: bool = False,
    ) -> None:
        if version not in VERSIONS:
            raise InputError(
                f"autoattack version {version!r}{suggest(str(version), VERSIONS)}; choose from {', '.join(VERSIONS)}"
            )
        members = parse_members(attacks, version)
        overrides = {
            "n_iter": n_iter,
            "n_restarts": n_restarts,
            "n_target_classes": n_target_classes,
            "n_queries": n_queries,
            "eot_iter": eot_iter,
        }
        given = [k for k, v in overrides.items() if v is not None]
        if given and version != "custom":
            raise InputError(
                f"autoattack version={version} fixes its parameters (that is what makes it comparable); "
                f"{', '.join(given)} need version=custom"
            )
        shown = {"version": version, **({"attacks": attacks} if attacks is not None else {})}
        self._setup(norm=norm, amp=amp, overrides=overrides, **shown)
        self.version = version
        self.members = members or VERSION_MEMBERS[version]


class _Member(AutoAttackBase):
    """One member of AutoAttack on its own, with the standard version's settings unless overridden."""

    member: ClassVar[str]

    def _member_setup(self, norm: str, amp: bool, **overrides: Any) -> None:
        self._setup(norm=norm, amp=amp, overrides=overrides)
        self.members = (self.member,)
        self.version = "standard"


class APGDCE(_Member):
    """APGD on the cross-entropy (AutoAttack's first member): 100 steps, step size adapted, 1 restart."""

    name = member = "apgd-ce"

    def __init__(
        self,
        *,
        norm: str = "linf",
        n_iter: int | None = None,
        n_restarts: int | None = None,
        eot_iter: int | None = None,
        amp: bool = False,
    ) -> None:
        self._member_setup(norm, amp, n_iter=n_iter, n_restarts=n_restarts, eot_iter=eot_iter)


class APGDDLR(_Member):
    """APGD on the DLR loss (scale-invariant margin; in AutoAttack plus and rand)."""

    name = member = "apgd-dlr"

    def __init__(
        self,
        *,
        norm: str = "linf",
        n_iter: int | None = None,
        n_restarts: int | None = None,
        eot_iter: int | None = None,
        amp: bool = False,
    ) -> None:
        self._member_setup(norm, amp, n_iter=n_iter, n_restarts=n_restarts, eot_iter=eot_iter)


class APGDT(_Member):
    """Targeted APGD on the DLR loss toward the 9 most likely other classes in turn (AutoAttack's APGD-T)."""

    name = member = "apgd-t"

    def __init__(
        self,
        *,
        norm: str = "linf",
        n_iter: int | None = None,
        n_restarts: int | None = None,
        n_target_classes: int | None = None,
        eot_iter: int | None = None,
        amp: bool = False,
    ) -> None:
        self._member_setup(
            norm, amp, n_iter=n_iter, n_restarts=n_restarts, n_target_classes=n_target_classes, eot_iter=eot_iter
        )


class FABT(_Member):
    """Targeted FAB: minimal-norm boundary search toward the 9 most likely other classes, kept inside ε."""

    name = member = "fab-t"

    def __init__(
        self,
        *,
        norm: str = "linf",
        n_iter: int | None = None,
        n_restarts: int | None = None,
        n_target_classes: int | None = None,
        amp: bool = False,
    ) -> None:
        self._member_setup(norm, amp, n_iter=n_iter, n_restarts=n_restarts, n_target_classes=n_target_classes)


class Square(_Member):
    """Square attack: gradient-free random search with square patches, 5000 queries (AutoAttack's last member)."""

    name = member = "square"
    gradient = False

    def __init__(
        self,
        *,
        norm: str = "linf",
        n_queries: int | None = None,
        n_restarts: int | None = None,
        p_init: float | None = None,
        amp: bool = False,
    ) -> None:
        number = isinstance(p_init, int | float) and not isinstance(p_init, bool)
        if p_init is not None and not (number and 0 < p_init <= 1):
            raise InputError(f"square p_init must be in (0, 1], got {p_init!r}")
        self._member_setup(norm, amp, n_queries=n_queries, n_restarts=n_restarts)
        if p_init is not None:
            self.params["p_init"] = p_init
            self.overrides["p_init"] = float(p_init)
