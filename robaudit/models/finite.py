"""Non-finite logits and gradients: recorded on the device as they happen, checked once per batch.

A model with NaN weights (or a defense with a NaN artifact) does not fail by itself: its logits are NaN,
``argmax`` picks some class, attacks follow NaN gradients, and an audit would report accuracies computed
from garbage. Rather than every audit checking every forward pass, every loaded model reports to one
:data:`MONITOR`: a forward hook on the pixel model (and on the defended model around it) records whether
its logits are finite, and a hook on its input records whether the gradient that flows back into the
pixels is. Recording stays on the device (a reduction and a logical or, no synchronization), so an attack
of many steps pays no host round trip per step; the runner reads the flag once per batch
(:meth:`FiniteMonitor.check`) and stops the run with the same :class:`~robaudit.errors.RunError` whatever
the audit.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..errors import RunError

NON_FINITE = "the model produced NaN or inf logits or gradients"


class FiniteMonitor:
    """Per device, a 0-d bool tensor: whether any recorded tensor held a NaN or an inf since :meth:`reset`."""

    def __init__(self) -> None:
        self._flags: dict[torch.device, torch.Tensor] = {}

    def record(self, tensor: torch.Tensor) -> None:
        """Fold ``tensor``'s finiteness into the flag of its device, without waiting for the device."""
        bad = ~torch.isfinite(tensor.detach()).all()
        flag = self._flags.get(tensor.device)
        # out of place: the flag may have been made under inference_mode and be read outside it
        self._flags[tensor.device] = bad if flag is None else flag | bad

    def reset(self) -> None:
        self._flags.clear()

    def found(self) -> bool:
        """Whether anything non-finite was recorded (one synchronization per device used)."""
        return any(bool(flag) for flag in self._flags.values())

    def check(self, where: str = "") -> None:
        """Raise the run's error if anything non-finite was recorded since the last :meth:`reset`."""
        if self.found():
            self.reset()
            raise RunError(
                f"{NON_FINITE}{' ' + where if where else ''}; its weights, its defenses' artifacts or the "
                "inputs are broken, so no result is written"
            )

    # -- hooks ------------------------------------------------------------------------------------------------
    def _forward_hook(self, module: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
        if isinstance(output, torch.Tensor) and output.is_floating_point():
            self.record(output)
        pixels = inputs[0] if inputs else None
        if isinstance(pixels, torch.Tensor) and pixels.requires_grad:
            pixels.register_hook(self._gradient_hook)

    def _gradient_hook(self, grad: torch.Tensor) -> None:
        self.record(grad)

    def watch(self, module: nn.Module) -> None:
        """Record ``module``'s outputs and the gradients flowing into its first input (once per module)."""
        if not getattr(module, "_robaudit_watched", False):
            module.register_forward_hook(self._forward_hook)
            module._robaudit_watched = True  # type: ignore[assignment]


def on_batch(indices: Any) -> str:
    """Where a batch's problem happened, for :meth:`FiniteMonitor.check`."""
    return f"on a batch of {len(indices)} images (data indices {indices[0]} to {indices[-1]})"


#: the monitor every model loaded by robaudit reports to
MONITOR = FiniteMonitor()
