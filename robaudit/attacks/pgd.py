"""robaudit's own projected gradient descent, batched, with a budget per image.

Madry et al. (2018): start at a random point of the ε-ball (optional), then repeat: step along the sign of
the loss gradient (L∞) or along the normalized gradient (L2), and project back onto the ε-ball and [0, 1].
Beyond the model's forward and backward, an L∞ step costs three small kernels (sign, multiply-add, clamp
to per-pixel bounds), all in place, and the attack never waits on the device except to stop restarts
early. Unlike foolbox, ε is a tensor with one value per image, which is what a relative budget ‖δ‖₂ ≤ ε‖x‖₂
needs. With ``restarts`` > 1 the first successful restart is kept per image.

The loss is the cross-entropy of the true label (ascended) or of the target (descended). Every image's
gradient comes from its own loss (the batch loss is a sum), so batching never changes a result. Only the
input requires gradients (loaded models have frozen parameters), and bf16 autocast is available (``amp``)
for GPUs. ``compile`` runs the model through ``torch.compile`` (with CUDA graphs on a GPU); it can pay where
launching kernels rather than computing them limits a step (small models at small batches), and it costs a
compilation per model and input shape; benchmarks/gpu.py measures it against the eager attack.
"""

from __future__ import annotations

from collections.abc import Callable
from weakref import WeakKeyDictionary

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError
from .base import Attack, is_success

#: robaudit's PGD steps and projects in these norms (L1 needs a sparse step; AutoAttack's APGD has one)
PGD_NORMS = ("linf", "l2")


def _flat_norm(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(1).norm(dim=1).view(-1, *([1] * (x.ndim - 1)))


class PGD(Attack):
    """Projected gradient descent with one budget per image (L∞ or L2), random start, restarts."""

    name = "pgd"
    norm = "linf"

    def __init__(
        self,
        *,
        norm: str = "linf",
        steps: int = 10,
        rel_stepsize: float | None = None,
        abs_stepsize: float | None = None,
        random_start: bool = True,
        restarts: int = 1,
        amp: bool = False,
        compile: bool = False,
    ) -> None:
        if norm not in PGD_NORMS:
            raise InputError(f"pgd norm must be one of {', '.join(PGD_NORMS)}, got {norm!r}")
        if not isinstance(steps, int) or steps < 1:
            raise InputError(f"pgd steps must be a positive integer, got {steps!r}")
        if not isinstance(restarts, int) or restarts < 1:
            raise InputError(f"pgd restarts must be a positive integer, got {restarts!r}")
        if rel_stepsize is not None and abs_stepsize is not None:
            raise InputError("pgd takes rel_stepsize or abs_stepsize, not both")
        for label, value in (("rel_stepsize", rel_stepsize), ("abs_stepsize", abs_stepsize)):
            if value is not None and not value > 0:
                raise InputError(f"pgd {label} must be positive, got {value!r}")
        # 2.5 ε / steps lets the iterate cross the ball's diameter and still refine (Madry et al. 2018).
        rel = 2.5 / steps if rel_stepsize is None and abs_stepsize is None else rel_stepsize
        super().__init__(
            norm=norm,
            steps=steps,
            rel_stepsize=rel,
            abs_stepsize=abs_stepsize,
            random_start=random_start,
            restarts=restarts,
            amp=amp,
            compile=compile,
        )
        self.norm = norm  # type: ignore[misc]
        self.steps, self.rel_stepsize, self.abs_stepsize = steps, rel, abs_stepsize
        self.random_start, self.restarts, self.amp, self.compile = random_start, restarts, amp, compile
        self._compiled: WeakKeyDictionary[nn.Module, Callable[..., torch.Tensor]] = WeakKeyDictionary()

    def _forward(self, model: nn.Module, device: torch.device) -> Callable[..., torch.Tensor]:
        """The model, or with ``compile`` its torch.compile'd version (compiled once per model and kept):
        on CUDA in "reduce-overhead" mode, which replays each step's forward and backward as CUDA graphs
        (one launch instead of one per kernel: what small models at small batches are limited by)."""
        if not self.compile:
            return model
        compiled = self._compiled.get(model)
        if compiled is None:
            mode = "reduce-overhead" if device.type == "cuda" else "default"
            compiled = torch.compile(model, mode=mode, dynamic=False)
            self._compiled[model] = compiled
        return compiled

    def _start(self, images: torch.Tensor, eps: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if not self.random_start:
            return images.clone()
        noise = torch.empty_like(images)
        if self.norm == "linf":
            noise.uniform_(-1, 1, generator=generator)
            delta = noise * eps
        else:  # uniform in the L2 ball: Gaussian direction, radius ε·U^(1/d)
            noise.normal_(generator=generator)
            d = images[0].numel()
            radius = torch.rand(len(images), generator=generator, device=images.device) ** (1 / d)
            delta = noise / _flat_norm(noise).clamp_min(1e-12) * radius.view(-1, 1, 1, 1) * eps
        return (images + delta).clamp(0, 1)

    def _project(self, x: torch.Tensor, images: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        delta = x - images
        if self.norm == "linf":
            delta = torch.maximum(torch.minimum(delta, eps), -eps)
        else:
            delta = delta * (eps / _flat_norm(delta).clamp_min(1e-12)).clamp(max=1)
        return (images + delta).clamp(0, 1)

    def _step(
        self,
        x: torch.Tensor,
        grad: torch.Tensor,
        step: torch.Tensor,
        images: torch.Tensor,
        eps: torch.Tensor,
        box: tuple[torch.Tensor, torch.Tensor],
    ) -> torch.Tensor:
        """One update of ``x`` (in place, with ``grad`` used up) and its projection.

        L∞: the ε-box intersected with [0, 1] is the box [max(x₀ − ε, 0), min(x₀ + ε, 1)], so the step and the
        projection are three kernels: sign, a fused multiply-add and one clamp to per-pixel bounds (the
        bounds are computed once per attack). L2: the normalized step, then the projection onto the ball.
        """
        if self.norm == "linf":
            return x.addcmul_(step, grad.sign_()).clamp_(*box)
        x.add_(grad.mul_(step / _flat_norm(grad).clamp_min(1e-12)))
        return self._project(x, images, eps)

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
        if eps is None:
            raise InputError("pgd is a fixed-budget attack: it needs --eps")
        eps = eps.to(images.device, images.dtype).view(-1, 1, 1, 1)
        step = (
            torch.full_like(eps, self.abs_stepsize)
            if self.abs_stepsize is not None
            else eps * float(self.rel_stepsize or 0)
        )
        # Untargeted: ascend the label's loss; targeted: descend the target's. The direction goes into the
        # step, so that the loss itself needs no extra kernel.
        goal, step = (targets, -step) if targets is not None else (labels, step)
        box = ((images - eps).clamp_(min=0), (images + eps).clamp_(max=1))
        best = images.clone()
        found = torch.zeros(len(images), dtype=torch.bool, device=images.device)
        autocast = torch.autocast(images.device.type, dtype=torch.bfloat16, enabled=self.amp)
        forward = self._forward(model, images.device)
        graphs = self.compile and images.device.type == "cuda"
        for _ in range(self.restarts):
            x = self._start(images, eps, generator)
            for _ in range(self.steps):
                x.requires_grad_(True)
                if graphs:  # the previous step's graph outputs are used up: their memory may be reused
                    torch.compiler.cudagraph_mark_step_begin()
                with autocast:
                    logits = forward(x)
                loss = F.cross_entropy(logits.float(), goal, reduction="sum")
                (grad,) = torch.autograd.grad(loss, x)
                # the graph is freed: x's storage and the fresh gradient can be updated in place
                x = self._step(x.detach(), grad, step, images, eps, box)
            with torch.no_grad(), autocast:
                success = is_success(model(x), labels, targets)
            if self.restarts == 1:
                return x, success
            # the first successful restart is kept per image; selecting with where() needs no host sync
            take = success & ~found
            best = torch.where(take.view(-1, 1, 1, 1), x, best)
            found |= success
            if bool(found.all()):
                break
        return best, found
