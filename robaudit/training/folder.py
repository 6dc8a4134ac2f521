"""The run folder: a new run, ``--resume`` of the same run, or ``--overwrite``; never a silent mix.

A folder that holds a card belongs to that run. Without ``--resume`` or ``--overwrite`` it is left alone
(an error says which to pass). ``--resume`` compares the card's identity with the new run's and names every
difference; a finished run is returned as it is. ``--overwrite`` deletes the run's own files (card,
weights, checkpoints) and nothing else in the folder.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import InputError
from .card import CARD_NAME, CHECKPOINTS, WEIGHTS_NAME, read_card


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted paths at which two JSON-like values differ, with both values."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in sorted(set(old) | set(new)):
            out += differences(old.get(key), new.get(key), f"{prefix}{key}.")
        return out
    if _canonical(old) != _canonical(new):
        return [f"{prefix.rstrip('.')} ({old!r} -> {new!r})"]
    return []


def check_folder(out: Path, *, resume: bool, overwrite: bool) -> None:
    """The checks that need no model or data, made before anything is loaded: a folder holding a run needs
    ``--resume`` or ``--overwrite``, and not both."""
    if resume and overwrite:
        raise InputError("choose one of --resume and --overwrite")
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file, not a folder")
    path = out / CARD_NAME
    if path.is_file() and not (resume or overwrite):
        card = read_card(path)
        raise InputError(
            f"{out} already holds a training run ({card.get('status')}, {len(card.get('epochs', []))} of "
            f"{card.get('options', {}).get('epochs')} epochs); pass --resume to continue it "
            "or --overwrite to start over"
        )


def open_run(out: Path, identity: dict[str, Any], *, resume: bool, overwrite: bool) -> dict[str, Any] | None:
    """The existing card to continue from (``resume`` of the same run), or None for a fresh start."""
    check_folder(out, resume=resume, overwrite=overwrite)
    path = out / CARD_NAME
    if not path.is_file():
        return None
    if resume or overwrite:
        # files a killed run was writing (renamed into place only when complete) are of no use to anyone
        for stale in [*out.glob(".*.tmp"), *(out / CHECKPOINTS).glob(".*.tmp")]:
            stale.unlink()
    if overwrite:
        path.unlink()
        (out / WEIGHTS_NAME).unlink(missing_ok=True)
        for old in (out / CHECKPOINTS).glob("epoch-*.safetensors"):
            old.unlink()
        return None
    card = read_card(path)
    changed = differences(json.loads(_canonical(card.get("identity"))), json.loads(_canonical(identity)))
    if changed:
        raise InputError(
            f"cannot resume {out}: the run differs from the one started there in {'; '.join(changed[:6])}"
            + (f" and {len(changed) - 6} more" if len(changed) > 6 else "")
            + "; pass --overwrite to start over"
        )
    return card
