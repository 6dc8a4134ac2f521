"""The foolbox 3 attacks behind robaudit's attack contract.

:class:`FoolboxAttack` runs one foolbox attack class on the pixel model (``fb.PyTorchModel`` with bounds
(0, 1)); each registered attack is a small subclass that names the foolbox class, the norm and the kind.
Keyword parameters go to the foolbox constructor unchanged, and only the foolbox constructor's own
parameters are accepted (``accepted_parameters``), except the two the wrapper sets itself: ``distance``
(the attack's norm) and ``init_attack`` (see below).

ε is absolute, in [0, 1] pixel units, in the attack's norm (``linf`` or ``l2``). foolbox takes one ε per
call, so a fixed-budget attack needs the same budget for every image of a batch; per-image budgets (e.g.
``rel-l2``) need robaudit's own ``pgd``. A minimization attack runs unbounded with ``eps=None``; given a
budget, foolbox stops early and clips the result to it.

Gradient-free attacks (``gradient = False``): ``boundary``, ``gaussian-blur``, ``salt-and-pepper`` and the
additive-noise attacks (``l2-gaussian-noise``, ``l2-uniform-noise``, ``linf-uniform-noise`` and the repeated
variants ``l2-repeated-gaussian-noise``, ``linf-repeated-uniform-noise``, which keep the first of many
random draws that succeeds). All others use gradients of the model.

``boundary``, ``l2-bb`` and ``linf-bb`` start from an adversarial image: like foolbox, the wrapper finds one
with ``LinearSearchBlendedUniformNoiseAttack(steps=50)`` (the image blended with uniform noise) and raises
:class:`~robaudit.errors.RunError` when that fails for any image. Brendel-Bethge needs numba and compiles
its optimizer on first use in a process (tens of seconds).

foolbox draws its randomness from torch's global RNG; the wrapper seeds it from ``generator`` inside
``torch.random.fork_rng``, so results are reproducible and the global state is left as it was.
"""

from __future__ import annotations

import inspect
import warnings
from typing import Any, ClassVar

import foolbox as fb
import torch
from torch import nn

from ..errors import InputError, RunError
from .base import Attack, is_success

#: constructor parameters the wrapper sets itself
MANAGED = ("distance", "init_attack")
DISTANCES = {"linf": fb.distances.linf, "l2": fb.distances.l2}


class FoolboxAttack(Attack):
    """Runs ``foolbox_class`` on the pixel model; subclasses set the class attributes."""

    foolbox_class: ClassVar[type[fb.attacks.base.Attack]]
    #: False where foolbox refuses a TargetedMisclassification criterion
    targeted: ClassVar[bool] = True

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        accepted = self.accepted_parameters()
        for key, value in params.items():
            kind = accepted[key].annotation if key in accepted else None
            if kind in (bool, int, float, str) and value is not None and not _fits(value, kind):
                raise InputError(f"attack {self.name!r}: {key} must be {kind.__name__}, got {value!r}")
        extra: dict[str, Any] = {"distance": DISTANCES[self.norm]} if "distance" in self._signature() else {}
        try:
            self.foolbox_attack = self.foolbox_class(**params, **extra)
        except ImportError as exc:
            raise RunError(
                f"attack {self.name!r} needs a package that is not installed ({exc}); "
                f"install robaudit's optional extra: pip install 'robaudit[bb]'"
            ) from exc
        except (TypeError, ValueError) as exc:
            raise InputError(f"attack {self.name!r}: {exc}") from exc

    @classmethod
    def _signature(cls) -> dict[str, inspect.Parameter]:
        return dict(inspect.signature(cls.foolbox_class.__init__).parameters)

    @classmethod
    def accepted_parameters(cls) -> dict[str, inspect.Parameter]:
        """The foolbox constructor's keyword parameters, less the ones the wrapper sets (``MANAGED``)."""
        kinds = (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        return {n: p for n, p in cls._signature().items() if n != "self" and p.kind in kinds and n not in MANAGED}

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
        if eps is None and not self.minimization:
            raise InputError(f"{self.name} is a fixed-budget attack: it needs --eps")
        if eps is not None and len(eps) and not bool((eps == eps[0]).all()):
            # foolbox takes one budget per call: group the images by budget (per-image budgets such as rel-l2
            # cost one call per distinct value; robaudit's own pgd does them in one batch)
            adversarials, success = images.clone(), torch.zeros(len(images), dtype=torch.bool, device=images.device)
            for value in torch.unique(eps):
                group = eps == value
                adversarials[group], success[group] = self.run(
                    model,
                    images[group],
                    labels[group],
                    targets=targets[group] if targets is not None else None,
                    eps=eps[group],
                    generator=generator,
                )
            return adversarials, success
        epsilon = (float(eps[0]) if len(eps) else 0.0) if eps is not None else None
        if targets is not None and not self.targeted:
            raise InputError(f"attack {self.name!r} (foolbox {self.foolbox_class.__name__}) cannot run targeted")
        if len(images) == 0:
            return images.clone(), torch.zeros(0, dtype=torch.bool, device=images.device)
        fmodel = fb.PyTorchModel(model, bounds=(0, 1), device=images.device)
        criterion: fb.criteria.Criterion = (
            fb.criteria.TargetedMisclassification(targets.long())
            if targets is not None
            else fb.criteria.Misclassification(labels.long())
        )
        seed = int(torch.randint(0, 2**62, (), generator=generator, device=generator.device))
        cuda = [images.device] if images.device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda), torch.enable_grad():
            torch.random.default_generator.manual_seed(seed)
            for device in cuda:
                with torch.cuda.device(device):
                    torch.cuda.manual_seed(seed)
            kwargs = {"starting_points": self._start(fmodel, images, criterion)} if self._needs_start() else {}
            _, adversarials, _ = self.foolbox_attack(fmodel, images, criterion, epsilons=epsilon, **kwargs)
        adversarials = adversarials.detach().clamp(0, 1)
        with torch.no_grad():
            success = is_success(model(adversarials), labels, targets)
        return adversarials, success

    @classmethod
    def _needs_start(cls) -> bool:
        return "init_attack" in cls._signature()

    def _start(self, fmodel: fb.PyTorchModel, images: torch.Tensor, criterion: fb.criteria.Criterion) -> torch.Tensor:
        """An adversarial starting point per image, found as foolbox would (blending with uniform noise)."""
        with warnings.catch_warnings():  # it warns when pure noise fails, even if a blend then succeeds
            warnings.filterwarnings("ignore", message="LinearSearchBlendedUniformNoiseAttack failed")
            start = fb.attacks.LinearSearchBlendedUniformNoiseAttack(steps=50).run(fmodel, images, criterion)
        found = criterion(start, fmodel(start))
        if not bool(found.all()):
            goal = (
                "classified as the target"
                if isinstance(criterion, fb.criteria.TargetedMisclassification)
                else "misclassified"
            )
            raise RunError(
                f"attack {self.name!r} needs an adversarial starting point, but no blend with uniform noise was {goal} "
                f"for {int((~found).sum())} of {len(images)} images; use a gradient attack such as ddn, l2-cw or "
                "l2-deepfool instead"
            )
        return start


def _fits(value: Any, kind: type) -> bool:
    if kind is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


# -- fixed budget, gradient -----------------------------------------------------------------------------------
class FGSM(FoolboxAttack):
    """Fast gradient sign method: one L∞ step of size ε (foolbox LinfFastGradientAttack); untargeted only."""

    name, norm, targeted = "fgsm", "linf", False
    foolbox_class = fb.attacks.LinfFastGradientAttack


class FGM(FoolboxAttack):
    """Fast gradient method: one L2 step of size ε (foolbox L2FastGradientAttack); untargeted only."""

    name, norm, targeted = "fgm", "l2", False
    foolbox_class = fb.attacks.L2FastGradientAttack


class LinfPGD(FoolboxAttack):
    """Projected gradient descent in the L∞ ball, random start (foolbox LinfProjectedGradientDescentAttack)."""

    name, norm = "linf-pgd", "linf"
    foolbox_class = fb.attacks.LinfProjectedGradientDescentAttack


class L2PGD(FoolboxAttack):
    """Projected gradient descent in the L2 ball, random start (foolbox L2ProjectedGradientDescentAttack)."""

    name, norm = "l2-pgd", "l2"
    foolbox_class = fb.attacks.L2ProjectedGradientDescentAttack


class LinfBIM(FoolboxAttack):
    """Basic iterative method: PGD in the L∞ ball without random start (foolbox LinfBasicIterativeAttack)."""

    name, norm = "linf-bim", "linf"
    foolbox_class = fb.attacks.LinfBasicIterativeAttack


class L2BIM(FoolboxAttack):
    """Basic iterative method: PGD in the L2 ball without random start (foolbox L2BasicIterativeAttack)."""

    name, norm = "l2-bim", "l2"
    foolbox_class = fb.attacks.L2BasicIterativeAttack


# -- minimization, gradient -----------------------------------------------------------------------------------
class LinfDeepFool(FoolboxAttack):
    """DeepFool, minimal L∞ perturbation by linearizing the model (foolbox LinfDeepFoolAttack); untargeted."""

    name, norm, minimization, targeted = "linf-deepfool", "linf", True, False
    foolbox_class = fb.attacks.LinfDeepFoolAttack


class L2DeepFool(FoolboxAttack):
    """DeepFool, minimal L2 perturbation by linearizing the model (foolbox L2DeepFoolAttack); untargeted."""

    name, norm, minimization, targeted = "l2-deepfool", "l2", True, False
    foolbox_class = fb.attacks.L2DeepFoolAttack


class L2CW(FoolboxAttack):
    """Carlini-Wagner L2: minimal perturbation by optimization and binary search (foolbox L2CarliniWagnerAttack)."""

    name, norm, minimization = "l2-cw", "l2", True
    foolbox_class = fb.attacks.L2CarliniWagnerAttack


class DDN(FoolboxAttack):
    """Decoupled direction and norm: minimal L2 perturbation (foolbox DDNAttack)."""

    name, norm, minimization = "ddn", "l2", True
    foolbox_class = fb.attacks.DDNAttack


class L2BB(FoolboxAttack):
    """Brendel-Bethge L2: walks the decision boundary from a noise start (foolbox L2BrendelBethgeAttack; numba)."""

    name, norm, minimization = "l2-bb", "l2", True
    foolbox_class = fb.attacks.L2BrendelBethgeAttack


class LinfBB(FoolboxAttack):
    """Brendel-Bethge L∞: walks the decision boundary from a noise start (foolbox LinfinityBrendelBethgeAttack)."""

    name, norm, minimization = "linf-bb", "linf", True
    foolbox_class = fb.attacks.LinfinityBrendelBethgeAttack


# -- gradient-free ---------------------------------------------------------------------------------------------
class Boundary(FoolboxAttack):
    """Boundary attack: decision-based L2 minimization from a noise start (foolbox BoundaryAttack); gradient-free."""

    name, norm, minimization, gradient = "boundary", "l2", True, False
    foolbox_class = fb.attacks.BoundaryAttack


class GaussianBlur(FoolboxAttack):
    """Smallest Gaussian blur that changes the prediction (foolbox GaussianBlurAttack); gradient-free."""

    name, norm, minimization, gradient = "gaussian-blur", "l2", True, False
    foolbox_class = fb.attacks.GaussianBlurAttack


class SaltAndPepper(FoolboxAttack):
    """Fewest salt-and-pepper pixels that change the prediction (foolbox SaltAndPepperNoiseAttack); gradient-free."""

    name, norm, minimization, gradient = "salt-and-pepper", "l2", True, False
    foolbox_class = fb.attacks.SaltAndPepperNoiseAttack


class L2GaussianNoise(FoolboxAttack):
    """Noise baseline: one Gaussian noise draw of L2 norm ε (foolbox L2AdditiveGaussianNoiseAttack)."""

    name, norm, gradient = "l2-gaussian-noise", "l2", False
    foolbox_class = fb.attacks.L2AdditiveGaussianNoiseAttack


class L2UniformNoise(FoolboxAttack):
    """Noise baseline: one uniform noise draw of L2 norm ε (foolbox L2AdditiveUniformNoiseAttack)."""

    name, norm, gradient = "l2-uniform-noise", "l2", False
    foolbox_class = fb.attacks.L2AdditiveUniformNoiseAttack


class LinfUniformNoise(FoolboxAttack):
    """Noise baseline: one uniform noise draw in the L∞ ball of radius ε (foolbox LinfAdditiveUniformNoiseAttack)."""

    name, norm, gradient = "linf-uniform-noise", "linf", False
    foolbox_class = fb.attacks.LinfAdditiveUniformNoiseAttack


class L2RepeatedGaussianNoise(FoolboxAttack):
    """Noise baseline: the first of `repeats` Gaussian draws of L2 norm ε that succeeds (foolbox L2Repeated...)."""

    name, norm, gradient = "l2-repeated-gaussian-noise", "l2", False
    foolbox_class = fb.attacks.L2RepeatedAdditiveGaussianNoiseAttack


class LinfRepeatedUniformNoise(FoolboxAttack):
    """Noise baseline: the first of `repeats` uniform draws in the L∞ ε-ball that succeeds (foolbox LinfRepeated...)."""

    name, norm, gradient = "linf-repeated-uniform-noise", "linf", False
    foolbox_class = fb.attacks.LinfRepeatedAdditiveUniformNoiseAttack
