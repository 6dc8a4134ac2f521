"""The numeric precision of a model's forward pass: fp32, or bf16 / fp16 autocast, and its memory format.

``fp32`` (the default) runs the network as built. ``bf16`` and ``fp16`` run the backbone's forward under
``torch.autocast``: convolutions and matrix products compute in the 16-bit type (on tensor cores on a GPU;
with AVX-512 BF16 or AMX on a CPU), while the operations autocast keeps in fp32 (reductions, softmax,
normalization statistics) stay there. Only the backbone is autocast: the normalization in front of it,
the input defenses and the readout defenses (the cache's similarity sums) keep fp32, and the logits are
returned as fp32, so every audit sees the same interface at every precision. On CUDA the backbone also
runs channels-last (NHWC), the layout tensor-core convolutions read without a transpose.

bf16 keeps fp32's exponent range with an 8-bit mantissa (about 3 significant digits); fp16 has a 10-bit
mantissa but overflows above 65,504 and flushes gradients below about 6e-8 to zero. What this does to
audits (docs/usage.md, "Precision"): predictions and accuracies agree with fp32 up to the images that lie
within rounding of a decision boundary; gradients are those of the rounded network, which a sign-gradient
attack (PGD L∞) hardly notices, but attacks that measure small distances to the boundary (DeepFool, C&W,
minimal-perturbation modes) see a boundary blurred by the rounding, and fp16 gradients that underflow
look like gradient masking.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import torch

from ..errors import InputError, suggest

if TYPE_CHECKING:
    from . import LoadedModel

#: precision name -> autocast dtype (None: no autocast)
PRECISIONS: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def check_precision(precision: str) -> str:
    """``precision`` if it names a precision, else an InputError with the closest name."""
    if precision not in PRECISIONS:
        raise InputError(
            f"unknown precision {precision!r}{suggest(precision, PRECISIONS)}; choose {', '.join(PRECISIONS)}"
        )
    return precision


def apply_precision(model: LoadedModel, precision: str) -> LoadedModel:
    """``model`` with its backbone run at ``precision`` (and channels-last on CUDA), recorded in its
    provenance. The base module is changed in place: call this on a freshly loaded model."""
    dtype = PRECISIONS[check_precision(precision)]
    if dtype is not None and not torch.amp.is_autocast_available(model.device.type):
        raise InputError(f"precision {precision} needs autocast, which torch does not offer on {model.device.type}")
    base = model.base
    base.autocast_dtype = dtype
    base.channels_last = model.device.type == "cuda"
    if base.channels_last:
        base.to(memory_format=torch.channels_last)
    memory_format = "channels_last" if base.channels_last else "contiguous"
    provenance = {**model.provenance, "precision": precision, "memory_format": memory_format}
    return replace(model, precision=precision, provenance=provenance)
