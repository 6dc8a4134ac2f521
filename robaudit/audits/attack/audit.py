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

import numpy as np
import pyarrow as pa
import torch
import torch.nn.functional as F

from ...attacks.base import Attack, AttackOutcome, Diagnostic, build_attack, is_success
from ...attacks.pgd import PGD
from ...errors import InputError
from ..base import Audit, AuditBatch
from .masking import MEMBER_CHECK, VERDICT_PREFIX

if TYPE_CHECKING:
    import pandas as pd

    from ...models import LoadedModel

THREATS = ("white", "gray", "black")
EPS_MODES = {"linf": "linf", "range-linf": "linf", "l2": "l2", "rel-l2": "l2", "l1": "l1"}
PIXEL_RANGE = 1.0
#: the gradient-free check's random-noise attack per norm (none in L1: there AutoAttack's Square, when it is
#: in the ensemble, is the gradient-free evidence)
GRADIENT_FREE = {"linf": "linf-repeated-uniform-noise", "l2": "l2-repeated-gaussian-noise"}


def budgets(eps: float, mode: str, images: torch.Tensor) -> torch.Tensor:
    """Per-image absolute budget, in the norm of ``mode``, for nominal ``eps``."""
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


def draw_targets(indices: np.ndarray, labels: torch.Tensor, num_classes: int, seed: int) -> torch.Tensor:
    """A target != label per image, drawn from (seed, image index): independent of batching and resumption."""
    offsets = [int(np.random.default_rng([seed, int(i)]).integers(1, num_classes)) for i in indices]
    return (labels + torch.tensor(offsets, device=labels.device)) % num_classes


class AttackAudit(Audit):
    """Accuracy under attack: threat models, ε sweeps or minimal perturbations, gradient-masking evidence."""

    name = "attack"
    #: random starts are drawn per batch, so the batch size is part of what determines the rows
    batch_dependent = True
    columns: ClassVar[dict[str, pa.DataType]] = {
        "threat": pa.string(),
        "made_by": pa.string(),
        "judged_by": pa.string(),
        "attack": pa.string(),
        "check": pa.string(),
        "eps_mode": pa.string(),
        "eps": pa.float64(),
        "eps_abs": pa.float32(),
        "target": pa.int64(),
        "clean_prediction": pa.int64(),
        "adv_prediction": pa.int64(),
        "source_success": pa.bool_(),
        "success": pa.bool_(),
        "correct": pa.bool_(),
        "l2": pa.float32(),
        "linf": pa.float32(),
        "rel_l2": pa.float32(),
        "l1": pa.float32(),
        "grad_norm": pa.float32(),
        # model queries per image (Square, on its own or as an AutoAttack member)
        "queries": pa.int64(),
        # verdict and message of an attack's own reliability check (autoattack:* check rows)
        "check_raised": pa.bool_(),
        "note": pa.string(),
        # the judged perturbation x_adv - x as float16 (C, H, W), with keep_perturbations only
        "perturbation": pa.list_(pa.float16()),
        "perturbation_shape": pa.list_(pa.int32()),
    }

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
        if eps_mode not in EPS_MODES:
            raise InputError(f"--eps-mode {eps_mode!r}: choose from {', '.join(EPS_MODES)}")
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
        x, y = batch.images, batch.labels
        seed = int(self.params["seed"])
        generator = torch.Generator(device=x.device).manual_seed(seed * 1_000_003 + int(batch.indices[0]))
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
                    check=MEMBER_CHECK,
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
        """Per image the smallest successful perturbation (in the first attack's norm) over the ensemble."""
        norm = self.attacks[0].norm
        best = x.clone()
        best_size = torch.full((len(x),), math.inf, device=x.device)
        for attack in self.attacks:
            adv, ok = attack.run(source, x, y, targets=targets, eps=None, generator=generator)
            delta = (adv - x).flatten(1)
            size = delta.abs().amax(dim=1) if norm == "linf" else delta.norm(dim=1)
            better = ok & (size < best_size)
            best[better] = adv[better]
            best_size[better] = size[better]
        return best, torch.isfinite(best_size)

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
            check="unbounded",
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
            check="gradient-free",
            subset=n,
        )

    @classmethod
    def summarize(cls, rows: pd.DataFrame, metadata: dict[str, Any]) -> dict[str, Any]:
        from .masking import attack_summary

        return attack_summary(rows, metadata)


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
        check: str | None = None,
        subset: int | None = None,
        mask: torch.Tensor | None = None,
        queries: torch.Tensor | None = None,
    ) -> None:
        """Rows of the first ``subset`` images (all by default), of those ``mask`` selects, per judge."""
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
        if self.keep_perturbations and check is None:
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
                check=check,
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
            check=VERDICT_PREFIX + diagnostic.name,
            eps_mode=eps_mode,
            eps=eps,
            eps_abs=eps_abs[:n][keep].float().cpu().numpy() if eps_abs is not None else None,
            clean_prediction=self.clean[model][:n][keep].cpu().numpy(),
            check_raised=diagnostic.raised,
            note=diagnostic.note,
        )

    def add_check(self, check: str, judge: str, images: torch.Tensor, *, grad_norm: torch.Tensor) -> None:
        n = len(images)
        self._append(
            sample=np.arange(n),
            defense=self.describe[judge],
            threat="white",
            made_by=judge,
            judged_by=judge,
            check=check,
            clean_prediction=self.clean[judge][:n].cpu().numpy(),
            grad_norm=grad_norm.float().cpu().numpy(),
        )

    _OBJECT_COLUMNS = (
        "defense",
        "threat",
        "made_by",
        "judged_by",
        "attack",
        "check",
        "eps_mode",
        "note",
        "perturbation",
        "perturbation_shape",
    )

    def columns(self) -> dict[str, np.ndarray]:
        columns = {}
        for name, values in self.data.items():
            if name in self._OBJECT_COLUMNS:
                column = np.empty(len(values), dtype=object)
                column[:] = values  # element by element: a list of arrays must not become a 2-D array
                columns[name] = column
            else:
                columns[name] = np.array(values)
        return columns


def export_perturbations(report: Path, out: Path) -> int:
    """Write the perturbations kept in an attack report to ``out`` (.npz), one per image x threat x ε."""
    import os

    from ...reports.read import read_report

    rows, meta = read_report(report)
    rows = rows[rows["perturbation"].notna()] if "perturbation" in rows else rows.iloc[:0]
    if rows.empty:
        raise InputError(f"{report} holds no perturbations (run the attack with --save-perturbations)")
    # every judge of a threat sees the same perturbation: keep one row per image, threat and budget
    rows = rows.drop_duplicates(subset=["index", "threat", "eps"])
    shape = tuple(int(v) for v in rows["perturbation_shape"].iloc[0])
    deltas = np.stack([np.asarray(p, dtype=np.float16).reshape(shape) for p in rows["perturbation"]])
    tmp = out.with_name(out.name + ".tmp.npz")
    np.savez(
        tmp,
        delta=deltas,
        index=rows["index"].to_numpy(),
        label=rows["label"].to_numpy(),
        threat=rows["threat"].to_numpy(dtype=str),
        made_by=rows["made_by"].to_numpy(dtype=str),
        eps=rows["eps"].to_numpy(),
        success=rows["source_success"].to_numpy(dtype=bool),
        # which images these are: a spectrum run can check it is given the same data
        data=np.array(meta.get("data", {}).get("description", "")),
        data_fingerprint=np.array(meta.get("identity", {}).get("data_fingerprint", "")),
    )
    os.replace(tmp, out)
    return len(deltas)
