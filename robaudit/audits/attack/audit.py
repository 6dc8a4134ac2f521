"""The attack audit: accuracy under adversarial perturbation, under named threat models and budgets.

Threat models (``threats``):

* ``white``: the attack sees the model under audit (defenses included) and that model judges the result;
* ``gray``: the attack sees only the undefended backbone; the examples are judged by the defended model
  and, for reference, by the backbone itself;
* ``black``: the attack sees a different model (``surrogate``); both the defended model and the backbone
  judge the examples.

Budgets (``eps_mode``), always in [0, 1] pixel units: ``linf``, ``l2`` and ``l1`` are absolute radii; ``rel-l2``
is the per-image budget ‖δ‖₂ ≤ ε‖x‖₂ that the cache papers' text describes; ``range-linf`` is an L∞ radius
of ε × the pixel range, which is what their reference code ran (with pixels in [0, 1] the range is 1, so it
equals ``linf`` numerically; the name records the protocol). An attack that fails on the model it attacks
leaves the clean image in place (as the papers did), so transfer rows never judge a failed perturbation.

Targeted runs draw, per image, a target different from its label from (seed, image index); success means
the judge predicts the target. ``minimal`` runs minimization attacks once, unbounded, and keeps per image
the smallest successful perturbation over the attacks of ``ensemble`` (all measured in the first attack's
norm); the summary derives success-rate-vs-ε curves from those sizes.

Gradient masking makes a defense look robust when it only breaks gradients. Unless ``checks`` is off, a
few images of every batch also get evidence rows (``check`` column): the input-gradient norm of the loss
(``gradient``), an unbounded L∞ PGD that must reach ~0 % accuracy (``unbounded``), and a gradient-free
random-noise attack at the largest budget (``gradient-free``; not in L1, which has no noise attack),
and, for attacks with reliability checks of their own (AutoAttack), their verdicts on the model
(``autoattack:randomized-outputs``, ``autoattack:probability-outputs``, ``autoattack:dynamic-defense``:
``check_raised`` and the check's ``note``). An ensemble attack (AutoAttack) also leaves one row per member and
image it attacked (``check`` = ``member``, ``attack`` = the member, ``queries`` for Square) and the verdict of
its zero-gradient check (``autoattack:zero-gradients``). :mod:`.masking` turns all rows into flags.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from ...errors import InputError
from ..base import Audit, AuditBatch, Export
from ..options import Option, budget_list, names
from . import report
from .masking import MEMBER_CHECK, VERDICT_PREFIX

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    import torch

    from ...attacks.base import Attack, AttackOutcome, Diagnostic
    from ...models import LoadedModel
    from ...reports.content import ExamplePerturbation, FigureSpec, Table
    from ...reports.folder import Report
    from ...reports.metrics import Metric
    from ...runner import RunSpec

THREATS = ("white", "gray", "black")
EPS_MODES = {"linf": "linf", "range-linf": "linf", "l2": "l2", "rel-l2": "l2", "l1": "l1"}
PIXEL_RANGE = 1.0
#: the gradient-free check's random-noise attack per norm (none in L1: there AutoAttack's Square, when it is
#: in the ensemble, is the gradient-free evidence)
GRADIENT_FREE = {"linf": "linf-repeated-uniform-noise", "l2": "l2-repeated-gaussian-noise"}


def budgets(eps: float, mode: str, images: torch.Tensor) -> torch.Tensor:
    """Per-image absolute budget, in the norm of ``mode``, for nominal ``eps``."""
    import torch

    if mode == "rel-l2":
        return eps * images.flatten(1).norm(dim=1)
    scale = PIXEL_RANGE if mode == "range-linf" else 1.0
    return torch.full((len(images),), eps * scale, device=images.device)


def perturbation_sizes(adversarials: torch.Tensor, images: torch.Tensor) -> dict[str, np.ndarray]:
    delta = (adversarials - images).flatten(1)
    l2 = delta.norm(dim=1)
    return {
        "l2": l2.cpu().numpy(),
        "linf": delta.abs().amax(dim=1).cpu().numpy(),
        "l1": delta.abs().sum(dim=1).cpu().numpy(),
        "rel_l2": (l2 / images.flatten(1).norm(dim=1).clamp_min(1e-12)).cpu().numpy(),
    }


def smallest_perturbations(
    attacks: list[Attack],
    source: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    targets: torch.Tensor | None,
    generator: torch.Generator,
    norm: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image the smallest successful perturbation (measured in ``norm``) over the minimization
    ``attacks``, run unbounded on ``source``, and whether any attack succeeded (failed images stay clean)."""
    import torch

    best = x.clone()
    best_size = torch.full((len(x),), math.inf, device=x.device)
    for attack in attacks:
        adv, ok = attack.run(source, x, y, targets=targets, eps=None, generator=generator)
        delta = (adv - x).flatten(1)
        size = delta.abs().amax(dim=1) if norm == "linf" else delta.norm(dim=1)
        better = ok & (size < best_size)
        best[better] = adv[better]
        best_size[better] = size[better]
    return best, torch.isfinite(best_size)


def batch_generator(seed: int, images: torch.Tensor, indices: np.ndarray) -> torch.Generator:
    """The generator of one batch's attacks: seeded from (seed, first data index of the batch)."""
    import torch

    return torch.Generator(device=images.device).manual_seed(seed * 1_000_003 + int(indices[0]))


def draw_targets(indices: np.ndarray, labels: torch.Tensor, num_classes: int, seed: int) -> torch.Tensor:
    """A target != label per image, drawn from (seed, image index): independent of batching and resumption."""
    import numpy as np
    import torch

    offsets = [int(np.random.default_rng([seed, int(i)]).integers(1, num_classes)) for i in indices]
    return (labels + torch.tensor(offsets, device=labels.device)) % num_classes


class AttackAudit(Audit):
    """Accuracy under attack: threat models, ε sweeps or minimal perturbations, gradient-masking evidence."""

    name = "attack"
    #: random starts are drawn per batch, so the batch size is part of what determines the rows
    batch_dependent = True
    columns: ClassVar[dict[str, Any]] = {
        "threat": "string",
        "made_by": "string",
        "judged_by": "string",
        "attack": "string",
        "check_name": "string",
        "eps_mode": "string",
        "eps": "float64",
        "eps_abs": "float32",
        "target": "int64",
        "clean_prediction": "int64",
        "adv_prediction": "int64",
        "source_success": "bool",
        "success": "bool",
        "correct": "bool",
        "l2": "float32",
        "linf": "float32",
        "rel_l2": "float32",
        "l1": "float32",
        "grad_norm": "float32",
        # model queries per image (Square, on its own or as an AutoAttack member)
        "queries": "int64",
        # verdict and message of an attack's own reliability check (autoattack:* check rows)
        "check_raised": "bool",
        "note": "string",
        # the judged perturbation x_adv - x as float16 (C, H, W), with keep_perturbations only
        "perturbation": "list<float16>",
        "perturbation_shape": "list<int32>",
    }
    options = (
        Option(
            "eps",
            "Budgets to sweep, e.g. 0.01,0.02,0.04 or 2/255,8/255 (in --eps-mode units).",
            parse=budget_list,
        ),
        Option(
            "attack",
            "NAME[:key=value,...] (robaudit attacks lists them), e.g. pgd:steps=20 or ddn.",
            default="pgd",
            flags=("--attack", "-a"),
        ),
        Option(
            "eps_mode",
            "linf | l2 | l1 (absolute radii in [0,1] pixels) | rel-l2 (||d||2 <= eps ||x||2 per image) | "
            "range-linf (eps x pixel range).",
            default="linf",
        ),
        Option(
            "threats",
            "white, gray (attack the backbone, judge the defended model) or black (attack --surrogate); "
            "repeatable. Default: white, plus gray with a defense.",
            flags=("--threat",),
            multiple=True,
            parse=names,
        ),
        Option("surrogate", "Model the black-box attack sees (any --model name)."),
        Option("surrogate_weights", "Checkpoint of the surrogate.", type=Path),
        Option("targeted", "Aim at a random other class per image (seeded).", default=False, type=bool),
        Option(
            "minimal", "Smallest perturbation per image with minimization attacks (no --eps).", default=False, type=bool
        ),
        Option(
            "ensemble",
            "More minimization attacks for --minimal; the smallest success per image is kept (repeatable).",
            multiple=True,
            parse=list,
        ),
        Option(
            "checks",
            "Gradient-masking evidence rows (on --check-samples images per batch).",
            default=True,
            type=bool,
            negatable=True,
        ),
        Option("check_samples", "Images per batch for the masking checks.", default=8, type=int),
        Option(
            "amp",
            "bf16 autocast inside the attack (pgd, autoattack and its members; for GPUs).",
            default=False,
            type=bool,
        ),
        Option(
            "save_perturbations",
            "Keep every perturbation (float16) in the report and export them to this .npz (for spectra).",
            type=Path,
        ),
    )
    batch_size = 64
    chunk_size = 128
    title = "Adversarial attack"
    order = 10
    raises_flags = True
    metric_patterns = report.PATTERNS

    def __init__(
        self,
        *,
        attack: str = "pgd",
        threats: list[str] | None = None,
        eps: list[float] | None = None,
        eps_mode: str = "linf",
        targeted: bool = False,
        minimal: bool = False,
        ensemble: list[str] | None = None,
        checks: bool = True,
        check_samples: int = 8,
        seed: int = 0,
        surrogate: dict[str, Any] | None = None,
        keep_perturbations: bool = False,
    ) -> None:
        threats = list(threats or ["white"])
        super().__init__(
            attack=attack,
            threats=threats,
            eps=eps,
            eps_mode=eps_mode,
            targeted=targeted,
            minimal=minimal,
            ensemble=list(ensemble or []),
            checks=checks,
            check_samples=check_samples,
            seed=seed,
            surrogate=surrogate,
            keep_perturbations=keep_perturbations,
        )
        for threat in threats:
            if threat not in THREATS:
                raise InputError(f"--threat {threat!r}: choose from {', '.join(THREATS)}")
        if isinstance(check_samples, bool) or not isinstance(check_samples, int) or check_samples < 1:
            raise InputError(f"--check-samples must be an integer >= 1 (images per batch), got {check_samples!r}")
        if eps_mode not in EPS_MODES:
            raise InputError(f"--eps-mode {eps_mode!r}: choose from {', '.join(EPS_MODES)}")
        from ...attacks.base import build_attack

        self.attacks: list[Attack] = [build_attack(spec) for spec in [attack, *(ensemble or [])]]
        primary = self.attacks[0]
        if minimal:
            if eps:
                raise InputError("--minimal finds the smallest perturbation per image; it takes no --eps")
            fixed = [repr(a) for a in self.attacks if not a.minimization]
            if fixed:
                raise InputError(
                    f"--minimal needs minimization attacks (ddn, l2-cw, l2-deepfool, l2-bb, boundary...); "
                    f"{', '.join(fixed)} has a fixed budget"
                )
        else:
            if ensemble:
                raise InputError("--ensemble combines minimization attacks; use it with --minimal")
            if primary.minimization:
                raise InputError(
                    f"{primary!r} is a minimization attack: run it with --minimal (no --eps), or "
                    "choose a fixed-budget attack such as pgd"
                )
            if not eps:
                raise InputError("give the budgets to sweep with --eps, e.g. --eps 0.01,0.02,0.04")
            if any(not math.isfinite(e) or e < 0 for e in eps):
                raise InputError(f"--eps values must be finite and >= 0, got {eps}")
            if EPS_MODES[eps_mode] != primary.norm:
                wanted = EPS_MODES[eps_mode]
                example = "autoattack:norm=l1" if wanted == "l1" else f"pgd:norm={wanted}"
                raise InputError(
                    f"{primary!r} measures {primary.norm}; --eps-mode {eps_mode} needs an "
                    f"{wanted} attack (e.g. {example})"
                )
        untargetable = [repr(a) for a in self.attacks if not getattr(a, "targeted", True)]
        if targeted and untargetable:
            raise InputError(f"{', '.join(untargetable)} cannot run targeted; choose e.g. pgd or linf-pgd")
        self.eps = sorted(eps or [])
        self.surrogate: LoadedModel | None = None
        #: where to export the kept perturbations once the report is finished
        self.save_to: Path | None = None

    @classmethod
    def from_options(
        cls,
        spec: RunSpec,
        *,
        threats: list[str] | None = None,
        surrogate: str | None = None,
        surrogate_weights: Path | None = None,
        amp: bool = False,
        save_perturbations: Path | None = None,
        attack: str = "pgd",
        **values: Any,
    ) -> AttackAudit:
        """Threats default to white (plus gray with a defense); a surrogate model is loaded for black-box runs."""
        from dataclasses import asdict

        from ...models import ModelSpec, load_model

        loaded = None
        surrogate_params = None
        if surrogate is not None:
            surrogate_spec = ModelSpec(name=surrogate, weights=str(surrogate_weights) if surrogate_weights else None)
            loaded = load_model(surrogate_spec, spec.device)
            surrogate_params = {**asdict(surrogate_spec), "fingerprint": loaded.fingerprint}
        audit = cls(
            attack=with_amp(attack) if amp else attack,
            threats=threats or (["white", "gray"] if spec.defenses else ["white"]),
            seed=spec.seed,
            surrogate=surrogate_params,
            keep_perturbations=save_perturbations is not None,
            **values,
        )
        audit.attach_surrogate(loaded)
        audit.save_to = save_perturbations
        return audit

    def exports(self) -> list[Export]:
        from ...reports.perturbations import export_perturbations

        if self.save_to is None:
            return []
        return [Export(Path(self.save_to), export_perturbations, "--save-perturbations")]

    # -- set-up by the command (models are not parameters) ------------------------------------------------------
    def attach_surrogate(self, surrogate: LoadedModel | None) -> None:
        self.surrogate = surrogate

    def prepare(self, model: LoadedModel) -> None:
        threats = self.params["threats"]
        if "gray" in threats and not model.defenses:
            raise InputError("gray-box attacks the undefended backbone and judges the defended model: add a --defense")
        if "black" in threats:
            if self.surrogate is None:
                raise InputError("black-box needs --surrogate MODEL (the model the attack sees)")
            if self.surrogate.num_classes != model.num_classes:
                raise InputError(
                    f"the surrogate has {self.surrogate.num_classes} classes, the model {model.num_classes}"
                )
        if self.params["targeted"] and model.num_classes < 2:
            raise InputError("--targeted needs at least 2 classes")
        for attack in self.attacks:
            attack.check_classes(model.num_classes)

    # -- rows --------------------------------------------------------------------------------------------------
    def run_batch(self, model: LoadedModel, batch: AuditBatch) -> dict[str, np.ndarray]:
        import torch

        x, y = batch.images, batch.labels
        seed = int(self.params["seed"])
        generator = batch_generator(seed, x, batch.indices)
        targets = draw_targets(batch.indices, y, model.num_classes, seed) if self.params["targeted"] else None
        defended = "defended" if model.defenses else "backbone"
        models = {"defended": model.module, "backbone": model.base}
        if self.surrogate is not None:
            models["surrogate"] = self.surrogate.module
        with torch.no_grad():
            clean = {name: m(x).argmax(dim=1) for name, m in models.items()}
        out = _Rows(batch.indices, y, targets, clean, _describer(model), bool(self.params["keep_perturbations"]))
        for threat in self.params["threats"]:
            source = {"white": defended, "gray": "backbone", "black": "surrogate"}[threat]
            judges = [defended] if threat == "white" else ["defended", "backbone"]
            if self.params["minimal"]:
                adv, ok = self._minimal(models[source], x, y, targets, generator)
                out.add(
                    threat,
                    source,
                    judges,
                    models,
                    x,
                    adv,
                    ok,
                    attack=self._ensemble_repr(),
                    eps_mode=self.attacks[0].norm,
                    eps=math.nan,
                    eps_abs=None,
                )
                continue
            for eps in self.eps:
                eps_abs = budgets(eps, self.params["eps_mode"], x)
                outcome = self.attacks[0].run_detailed(
                    models[source], x, y, targets=targets, eps=eps_abs, generator=generator
                )
                self._add_outcome(out, outcome, threat, source, judges, models, x, eps, eps_abs)
        if self.params["checks"] and not self.params["minimal"]:
            self._checks(out, models, defended, x, y, targets, generator)
        return out.columns()

    def _add_outcome(
        self,
        out: _Rows,
        outcome: AttackOutcome,
        threat: str,
        source: str,
        judges: list[str],
        models: dict[str, torch.nn.Module],
        x: torch.Tensor,
        eps: float,
        eps_abs: torch.Tensor,
    ) -> None:
        """The attack's rows; for an ensemble, a row per member and image it attacked; its checks' verdicts."""
        budget = {"eps_mode": self.params["eps_mode"], "eps": eps, "eps_abs": eps_abs}
        out.add(
            threat,
            source,
            judges,
            models,
            x,
            outcome.adversarials,
            outcome.success,
            attack=repr(self.attacks[0]),
            queries=outcome.queries,
            **budget,
        )
        if len(outcome.members) > 1:  # a single member's rows are the attack's own
            for member in outcome.members:
                out.add(
                    threat,
                    source,
                    judges,
                    models,
                    x,
                    member.adversarials,
                    member.success,
                    attack=member.name,
                    check_name=MEMBER_CHECK,
                    mask=member.attacked,
                    queries=member.queries,
                    **budget,
                )
        for diagnostic in outcome.diagnostics:
            out.add_verdict(diagnostic, threat, source, attack=repr(self.attacks[0]), **budget)

    def _ensemble_repr(self) -> str:
        return " | ".join(repr(a) for a in self.attacks)

    def _minimal(
        self,
        source: torch.nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        targets: torch.Tensor | None,
        generator: torch.Generator,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return smallest_perturbations(self.attacks, source, x, y, targets, generator, self.attacks[0].norm)

    def _checks(
        self,
        out: _Rows,
        models: dict[str, torch.nn.Module],
        white: str,
        x: torch.Tensor,
        y: torch.Tensor,
        targets: torch.Tensor | None,
        generator: torch.Generator,
    ) -> None:
        import torch
        import torch.nn.functional as F

        n = min(int(self.params["check_samples"]), len(x))
        if n == 0:
            return
        xs, ys = x[:n], y[:n]
        ts = targets[:n] if targets is not None else None
        model = models[white]
        pixels = xs.clone().requires_grad_(True)
        loss = F.cross_entropy(model(pixels).float(), ys, reduction="sum")
        (grad,) = torch.autograd.grad(loss, pixels)
        out.add_check("gradient", white, xs, grad_norm=grad.flatten(1).norm(dim=1))
        norm = self.attacks[0].norm
        steps = max(50, int(getattr(self.attacks[0], "steps", 0)))
        from ...attacks.base import build_attack
        from ...attacks.pgd import PGD

        unbounded = PGD(norm="linf", steps=steps, rel_stepsize=2.5 / steps, restarts=1)
        full = torch.full((n,), PIXEL_RANGE, device=x.device)
        adv, ok = unbounded.run(model, xs, ys, targets=ts, eps=full, generator=generator)
        out.add(
            "white",
            white,
            [white],
            models,
            xs,
            adv,
            ok,
            attack=repr(unbounded),
            eps_mode="linf",
            eps=PIXEL_RANGE,
            eps_abs=full,
            check_name="unbounded",
            subset=n,
        )
        for diagnostic in self.attacks[0].diagnose(model, xs, ys):
            out.add_verdict(diagnostic, "white", white, attack=repr(self.attacks[0]), subset=n)
        if norm not in GRADIENT_FREE:
            return
        largest = budgets(self.eps[-1], self.params["eps_mode"], xs)
        noise = build_attack(f"{GRADIENT_FREE[norm]}")
        adv, ok = noise.run(model, xs, ys, targets=ts, eps=largest, generator=generator)
        out.add(
            "white",
            white,
            [white],
            models,
            xs,
            adv,
            ok,
            attack=repr(noise),
            eps_mode=self.params["eps_mode"],
            eps=self.eps[-1],
            eps_abs=largest,
            check_name="gradient-free",
            subset=n,
        )

    @classmethod
    def summarize(cls, rows: pd.DataFrame, metadata: dict[str, Any]) -> dict[str, Any]:
        from .masking import attack_summary

        return attack_summary(rows, metadata)

    # -- what the report means (see .report) ---------------------------------------------------------------------
    @classmethod
    def metrics(cls, summary: dict[str, Any], metadata: dict[str, Any]) -> list[Metric]:
        return report.metrics(summary, metadata)

    @classmethod
    def tables(cls, summary: dict[str, Any], metadata: dict[str, Any]) -> list[Table]:
        return report.tables(summary, metadata)

    @classmethod
    def key_numbers(cls, summary: dict[str, Any], metadata: dict[str, Any]) -> dict[str, str]:
        return report.key_numbers(summary, metadata)

    @classmethod
    def figures(cls, report_: Report) -> list[FigureSpec]:
        return report.figures(report_)

    @classmethod
    def example_perturbations(cls, report_: Report, limit: int) -> list[ExamplePerturbation]:
        return report.example_perturbations(report_, limit)


def _describer(model: LoadedModel) -> dict[str, str]:
    from ...defenses.base import describe

    return {"defended": describe(model.defenses), "backbone": "none", "surrogate": "none"}


class _Rows:
    """Accumulates the audit's columns; one row per image x condition x judge."""

    def __init__(
        self,
        indices: np.ndarray,
        labels: torch.Tensor,
        targets: torch.Tensor | None,
        clean: dict[str, torch.Tensor],
        describe_defense: dict[str, str],
        keep_perturbations: bool,
    ) -> None:
        self.labels, self.targets, self.clean, self.describe = labels, targets, clean, describe_defense
        self.keep_perturbations = keep_perturbations
        self.data: dict[str, list[Any]] = {name: [] for name in ["sample", "defense", *AttackAudit.columns]}
        self.n = len(indices)

    def _append(self, **values: Any) -> None:
        import numpy as np

        count = len(values["sample"])
        for name, column in self.data.items():
            value = values.get(name)
            if isinstance(value, (np.ndarray, list)):
                column.extend(list(value))
            else:
                column.extend([value] * count)

    def add(
        self,
        threat: str,
        source: str,
        judges: list[str],
        models: dict[str, torch.nn.Module],
        images: torch.Tensor,
        adversarials: torch.Tensor,
        source_success: torch.Tensor,
        *,
        attack: str,
        eps_mode: str,
        eps: float,
        eps_abs: torch.Tensor | None,
        check_name: str | None = None,
        subset: int | None = None,
        mask: torch.Tensor | None = None,
        queries: torch.Tensor | None = None,
    ) -> None:
        """Rows of the first ``subset`` images (all by default), of those ``mask`` selects, per judge."""
        import torch

        from ...attacks.base import is_success

        n = subset or self.n
        keep = mask.nonzero().squeeze(1) if mask is not None else torch.arange(n, device=images.device)
        if len(keep) == 0:
            return
        labels, images, adversarials = self.labels[:n][keep], images[keep], adversarials[keep]
        source_success = source_success[keep]
        targets = self.targets[:n][keep] if self.targets is not None else None
        sample = keep.cpu().numpy()
        # A failed attack keeps the clean image: transfer rows never judge a failed perturbation.
        kept = torch.where(source_success.view(-1, 1, 1, 1), adversarials, images)
        sizes = perturbation_sizes(kept, images)
        stored: dict[str, Any] = {}
        if self.keep_perturbations and check_name is None:
            delta = (kept - images).detach().half().cpu().numpy()
            stored = {
                "perturbation": [d.ravel() for d in delta],
                "perturbation_shape": [list(delta.shape[1:])] * len(keep),
            }
        for judge in judges:
            with torch.no_grad():
                logits = models[judge](kept)
            predictions = logits.argmax(dim=1)
            self._append(
                sample=sample,
                defense=self.describe[judge],
                threat=threat,
                made_by=source,
                judged_by=judge,
                attack=attack,
                check_name=check_name,
                eps_mode=eps_mode,
                eps=eps,
                eps_abs=eps_abs[keep].float().cpu().numpy() if eps_abs is not None else None,
                target=targets.cpu().numpy() if targets is not None else None,
                clean_prediction=self.clean[judge][:n][keep].cpu().numpy(),
                adv_prediction=predictions.cpu().numpy(),
                source_success=source_success.cpu().numpy(),
                success=is_success(logits, labels, targets).cpu().numpy(),
                correct=(predictions == labels).cpu().numpy(),
                queries=queries[keep].cpu().numpy() if queries is not None else None,
                **sizes,
                **stored,
            )

    def add_verdict(
        self,
        diagnostic: Diagnostic,
        threat: str,
        model: str,
        *,
        attack: str,
        subset: int | None = None,
        eps_mode: str | None = None,
        eps: float | None = None,
        eps_abs: torch.Tensor | None = None,
    ) -> None:
        """One row per image the check looked at, with the check's verdict (``check_raised``) and message."""
        n = subset or self.n
        keep = diagnostic.scope[:n].nonzero().squeeze(1)
        if len(keep) == 0:
            return
        self._append(
            sample=keep.cpu().numpy(),
            defense=self.describe[model],
            threat=threat,
            made_by=model,
            judged_by=model,
            attack=attack,
            check_name=VERDICT_PREFIX + diagnostic.name,
            eps_mode=eps_mode,
            eps=eps,
            eps_abs=eps_abs[:n][keep].float().cpu().numpy() if eps_abs is not None else None,
            clean_prediction=self.clean[model][:n][keep].cpu().numpy(),
            check_raised=diagnostic.raised,
            note=diagnostic.note,
        )

    def add_check(self, check: str, judge: str, images: torch.Tensor, *, grad_norm: torch.Tensor) -> None:
        import numpy as np

        n = len(images)
        self._append(
            sample=np.arange(n),
            defense=self.describe[judge],
            threat="white",
            made_by=judge,
            judged_by=judge,
            check_name=check,
            clean_prediction=self.clean[judge][:n].cpu().numpy(),
            grad_norm=grad_norm.float().cpu().numpy(),
        )

    _OBJECT_COLUMNS = (
        "defense",
        "threat",
        "made_by",
        "judged_by",
        "attack",
        "check_name",
        "eps_mode",
        "note",
        "perturbation",
        "perturbation_shape",
    )

    def columns(self) -> dict[str, np.ndarray]:
        import numpy as np

        columns = {}
        for name, values in self.data.items():
            if name in self._OBJECT_COLUMNS:
                column = np.empty(len(values), dtype=object)
                column[:] = values  # element by element: a list of arrays must not become a 2-D array
                columns[name] = column
            else:
                columns[name] = np.array(values)
        return columns


def with_amp(attack: str) -> str:
    """``attack`` with ``amp=true`` added, for attacks that support bf16 autocast."""
    from ... import plugins
    from ...params import parameters_of, parse_spec

    name, params = parse_spec(attack, "--attack")
    if "amp" not in parameters_of(plugins.attacks.get(name)):
        raise InputError(f"--amp needs an attack with bf16 autocast (pgd, autoattack, apgd-ce...); {name!r} has none")
    return f"{name}:" + ",".join(f"{k}={v}" for k, v in {**params, "amp": "true"}.items())
