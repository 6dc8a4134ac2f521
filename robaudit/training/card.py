"""The run card: ``OUT/card.json``, the human- and machine-readable record of a training run.

The card says what was trained (model, initial weights, input defenses, data and their fingerprints, every
option, the regularizers and their fingerprints), how far the run got (``status``, one record per finished
epoch with its losses and accuracies, the checkpoint to resume from) and where the result is
(``weights``: ``model.safetensors``). It is rewritten atomically (temporary file, then rename) after each
epoch's checkpoint, so it never names a checkpoint that is not complete.

Audits read it too: given ``--weights RUN/model.safetensors`` (or an epoch's checkpoint under
``RUN/checkpoints/``) and no ``--defense``, the defenses the model was trained behind are put in front
again (:func:`defenses_for_weights`), and ``--num-classes`` is taken from the card when not given.
``--defense none`` audits such a model without them. This module imports nothing heavy: the audit commands
call it while building their specs.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from ..errors import InputError

CARD_NAME = "card.json"
FORMAT = "robaudit-train/1"
WEIGHTS_NAME = "model.safetensors"
CHECKPOINTS = "checkpoints"
NO_DEFENSE = "none"

log = logging.getLogger(__name__)


def temporary_name(path: Path) -> Path:
    """A name beside ``path`` for writing it before the rename (per process, so runs never share one)."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` as indented JSON to a temporary file beside ``path``, then rename it into place."""
    tmp = temporary_name(path)
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2, sort_keys=False, default=str)
            fh.write("\n")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def read_card(path: Path) -> dict[str, Any]:
    """A card file, checked to be one; InputError otherwise."""
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read training card {path}: {exc}") from None
    if not isinstance(card, dict) or card.get("format") != FORMAT:
        raise InputError(f"{path} is not a robaudit training card (format {FORMAT})")
    return card


def card_for_weights(weights: Path) -> tuple[Path, dict[str, Any]] | None:
    """The card of the run that wrote ``weights`` (its final weights or an epoch's checkpoint), if any."""
    weights = Path(weights)
    folder = weights.parent
    if folder.name == CHECKPOINTS:
        folder = folder.parent
    path = folder / CARD_NAME
    if not path.is_file():
        return None
    try:
        card = read_card(path)
    except InputError:
        return None
    belongs = weights.parent == folder and weights.name == card.get("weights")
    belongs |= weights.parent.name == CHECKPOINTS and weights.name.startswith("epoch-")
    return (path, card) if belongs else None


def defenses_for_weights(weights: Path | None, given: tuple[str, ...]) -> tuple[str, ...]:
    """The defenses to audit ``weights`` behind: ``given`` when there are any (``none``: no defense at all),
    else those of the training card beside the weights, else none."""
    if given == (NO_DEFENSE,):
        return ()
    if NO_DEFENSE in given:
        raise InputError("--defense none stands alone: it audits a trained model without the defenses on its card")
    if given or weights is None:
        return given
    found = card_for_weights(Path(weights))
    if found is None:
        return ()
    path, card = found
    defenses = tuple(str(d) for d in card.get("defenses", []))
    if defenses:
        log.info("defenses from %s: %s (pass --defense to choose others, --defense none for none)", path, defenses)
    return defenses


def num_classes_for_weights(weights: Path | None, given: int | None) -> int | None:
    """``--num-classes`` as given, else the number of classes the card's run trained, else None."""
    if given is not None or weights is None:
        return given
    found = card_for_weights(Path(weights))
    value = found[1].get("num_classes") if found else None
    return int(value) if isinstance(value, int) else None
