"""One writer per report: an exclusive lock on a report's output, naming its holder to anyone refused.

Two processes writing the same report (an ``--overwrite`` started while another run is going, two
``--resume`` at once) would delete or interleave each other's chunk files. Before a run touches
``REPORT.parquet`` or its ``.partial/`` folder it takes an OS file lock on ``.REPORT.parquet.lock`` beside
it (through :mod:`filelock`: ``flock`` where the file system has it, a marker file with the owner's pid
otherwise). The operating system drops an ``flock`` when its process ends in any way, ``kill -9``
included, so a dead run never blocks the next one; the marker fallback breaks a marker whose process is
gone on this host.

The holder also writes ``.REPORT.parquet.owner.json`` (pid, host, start time, command line), removed when
it releases the lock. A refused run names that process in its error; a run that takes the lock and still
finds an owner file knows the previous holder died without releasing it, and says so.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

from ..errors import InputError

log = logging.getLogger(__name__)


def lock_path(report: Path) -> Path:
    return report.with_name(f".{report.name}.lock")


def owner_path(report: Path) -> Path:
    return report.with_name(f".{report.name}.owner.json")


def describe_owner(owner: dict[str, Any] | None) -> str:
    if not owner:
        return "another process (it has not recorded its pid yet)"
    started = owner.get("started")
    since = f", running since {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(started))}" if started else ""
    return f"pid {owner.get('pid')} on host {owner.get('host')}{since}"


class ReportLock:
    """An exclusive, non-blocking lock on one report path; ``acquire`` raises InputError when it is held."""

    def __init__(self, report: Path) -> None:
        from filelock import FileLock

        self.report = report
        self.path = lock_path(report)
        self.owner_file = owner_path(report)
        self._lock = FileLock(str(self.path))

    @property
    def held(self) -> bool:
        return bool(self._lock.is_locked)

    def acquire(self) -> None:
        from filelock import Timeout

        try:
            self._lock.acquire(timeout=0)
        except Timeout:
            raise InputError(
                f"{self.report} is being written by {describe_owner(self._read_owner())}; wait for that run to "
                "finish (or stop it), or choose another --out"
            ) from None
        except OSError as exc:
            raise InputError(f"cannot lock {self.path} ({exc.strerror or exc}); is the folder writable?") from exc
        previous = self._read_owner()
        if previous is not None:
            log.warning(
                "%s: the run of %s ended without releasing it (killed?); taking over",
                self.report,
                describe_owner(previous),
            )
        owner = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.time(),
            "command": sys.argv[:40],
        }
        tmp = self.owner_file.with_name(self.owner_file.name + f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(owner))
        os.replace(tmp, self.owner_file)

    def release(self) -> None:
        if not self.held:
            return
        try:
            self.owner_file.unlink(missing_ok=True)
        finally:
            self._lock.release()

    def _read_owner(self) -> dict[str, Any] | None:
        try:
            owner = json.loads(self.owner_file.read_text())
        except (OSError, ValueError):
            return None
        return owner if isinstance(owner, dict) else None

    def __enter__(self) -> ReportLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
