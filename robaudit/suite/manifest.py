"""``OUT/manifest.json``: what a suite run did, step by step, rewritten atomically after every change.

It holds the resolved suite and its SHA-256 (``--resume`` refuses another suite), the library versions, the
run's status (``running``, ``finished``, ``failed``, ``interrupted``) and which step failed, and per step its
id, exact argument list, status (``pending``, ``running``, ``finished``, ``failed``, ``interrupted``),
start and finish times, duration, exit code, error message, report path and the results it printed (which
later steps' ``{steps.NAME.KEY}`` references read, also after a resume).
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..provenance import library_versions

MANIFEST_NAME = "manifest.json"
FORMAT = 1


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted paths at which two JSON values differ (to say what changed in a suite)."""
    if isinstance(old, dict) and isinstance(new, dict):
        return [d for key in sorted({*old, *new}) for d in differences(old.get(key), new.get(key), f"{prefix}{key}.")]
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        return [
            d for i, (a, b) in enumerate(zip(old, new, strict=True)) for d in differences(a, b, f"{prefix}{i + 1}.")
        ]
    return [] if old == new else [prefix.rstrip(".") or "(everything)"]


class Manifest:
    """The manifest of one suite folder; :meth:`save` writes it to a temporary file and renames it."""

    def __init__(self, path: Path, data: dict[str, Any]) -> None:
        self.path = path
        self.data = data

    @classmethod
    def new(
        cls, out: Path, source: str, resolved: dict[str, Any], digest: str, step_ids: list[dict[str, Any]]
    ) -> Manifest:
        data = {
            "format": FORMAT,
            "source": source,
            "out": str(out),
            "suite_sha256": digest,
            "suite": resolved,
            "versions": library_versions(),
            "status": "running",
            "started_at": now(),
            "resumed_at": [],
            "finished_at": None,
            "failed_step": None,
            "steps": [
                {
                    **ids,
                    "status": "pending",
                    "argv": None,
                    "started_at": None,
                    "finished_at": None,
                    "seconds": None,
                    "exit_code": None,
                    "error": None,
                    "report": None,
                    "result": None,
                }
                for ids in step_ids
            ],
        }
        return cls(out / MANIFEST_NAME, data)

    @classmethod
    def read(cls, out: Path) -> Manifest | None:
        path = out / MANIFEST_NAME
        if not path.exists():
            return None
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise InputError(f"{path} is unreadable ({exc}); pass --overwrite to start the suite again") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("steps"), list):
            raise InputError(f"{path} is not a robaudit suite manifest; choose another --out")
        return cls(path, data)

    def check_same_suite(self, digest: str, resolved: dict[str, Any]) -> None:
        """Refuse to resume a folder started by a different suite, naming what changed."""
        if self.data.get("suite_sha256") == digest:
            return
        changed = differences(self.data.get("suite"), resolved)
        raise InputError(
            f"cannot resume {self.path.parent}: the suite changed since it was started "
            f"({', '.join(changed[:4]) or 'its hash'}); run it with --overwrite or into another --out"
        )

    def step(self, step_id: str) -> dict[str, Any]:
        for entry in self.data["steps"]:
            if entry["id"] == step_id:
                return entry
        raise KeyError(step_id)

    def update(self, step_id: str, **fields: Any) -> None:
        self.step(step_id).update(fields)
        self.save()

    def finish(self, status: str, failed_step: str | None = None) -> None:
        self.data.update(status=status, failed_step=failed_step, finished_at=now())
        self.save()

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(self.data, indent=2, default=str))
        os.replace(tmp, self.path)
