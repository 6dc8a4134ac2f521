"""What robaudit knows, and cannot know, about a loaded model's weights and normalization.

A report is only as meaningful as the model it measured. Three things go wrong silently unless they are
said: a model audited with **random weights** (a timm name without ``--pretrained`` or ``--weights``, or a
factory that ignores ``pretrained=True``), a model whose **normalization is unknown** (a bare module from a
file or factory, fed pixels in [0, 1] as they are), and **weights loaded inside a factory**, which no
checkpoint file identifies.

Each model therefore carries, in its provenance (``model`` in every report's metadata):

* ``weights_origin``: ``checkpoint`` (``--weights``), ``pretrained`` (the factory loaded weights and said
  from where), ``factory`` (the factory's weights are the same whatever the random seed: it loaded or
  computed them), ``random`` (they change with the seed: an untrained network), ``none`` (the model has
  no parameters or buffers) or ``object`` (an ``nn.Module`` given from Python: its weights are the caller's);
* ``parameters_sha256``: a fingerprint of the backbone's state (names, shapes, dtypes, bytes), so any
  weights are identified, however they were loaded;
* ``caveats``: a list of :class:`Caveat` (``code``, ``message``), each also logged as one warning line.

Whether a factory's weights are random is decided by building the model a second time under another
random seed and comparing the two states (:func:`weights_differ`). That is sound for any factory, whatever
its signature: a factory that loads weights (or ignores ``pretrained`` but seeds its own initialization)
gives the same state twice; one that initializes randomly from torch's generator does not. A signature
check could not tell, because ``pretrained`` may be accepted (or swallowed by ``**kwargs``) and ignored.
Factories that say what they did (``ModelBuild.random_weights`` or ``pretrained_from``) are not built twice.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

log = logging.getLogger(__name__)

#: the values of ``weights_origin``
ORIGINS = ("checkpoint", "pretrained", "factory", "random", "none", "object")
RANDOM_WEIGHTS = "random-weights"
UNKNOWN_NORMALIZATION = "unknown-normalization"


@dataclass(frozen=True)
class Caveat:
    """Something about a model that a reader of its reports must know (``code`` is stable, for tools)."""

    code: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def state_sha256(module: nn.Module) -> str:
    """sha256 over a module's state dict: every key, shape, dtype and the tensor bytes, in order (raw bytes,
    so dtypes numpy lacks, such as bfloat16, are hashed too)."""
    digest = hashlib.sha256()
    for key, tensor in module.state_dict().items():
        digest.update(f"{key}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def has_state(module: nn.Module) -> bool:
    return any(True for _ in module.state_dict())


def weights_differ(first: nn.Module, second: nn.Module) -> bool:
    """Whether two constructions of one model (under different random seeds) hold different states."""
    return state_sha256(first) != state_sha256(second)


def report_caveats(name: str, caveats: list[Caveat]) -> None:
    """One warning line per caveat, through robaudit's logging (shown on stderr by the CLI)."""
    for caveat in caveats:
        log.warning("model %s: %s", name, caveat.message)


def caveats_of(meta: dict[str, Any] | None) -> list[Caveat]:
    """The caveats recorded in a report's ``model`` metadata (none for reports written before they were)."""
    found = (meta or {}).get("caveats") or []
    return [Caveat(str(c.get("code", "")), str(c.get("message", ""))) for c in found if isinstance(c, dict)]
