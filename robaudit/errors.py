"""Errors that reach the user as one line and a documented exit code.

Exit codes: 0 success, 1 a gate failed, 2 a usage or input error (the user can fix the command or the
files), 3 a runtime failure (the inputs were valid but the computation could not be completed, e.g. a
model that produced NaN logits). Library code raises these; the CLI turns them into a message on stderr
and the exit code, without a traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

EXIT_OK = 0
EXIT_GATE_FAILED = 1
EXIT_INPUT = 2
EXIT_RUNTIME = 3


class RobauditError(Exception):
    """Base class of every error meant for the user; ``exit_code`` says how the process ends."""

    exit_code = EXIT_RUNTIME


class InputError(RobauditError, ValueError):
    """The command line, a file or a name given by the user is wrong; the message says how to fix it."""

    exit_code = EXIT_INPUT


class RunError(RobauditError, RuntimeError):
    """Valid inputs, but the computation failed (non-finite outputs, a download that cannot happen...)."""

    exit_code = EXIT_RUNTIME


def suggest(name: str, candidates: Iterable[str], n: int = 3) -> str:
    """A ``did you mean ...?`` suffix naming the closest candidates, or an empty string."""
    pool = sorted(set(candidates))
    close = difflib.get_close_matches(name, pool, n=n, cutoff=0.6)
    if not close:
        lowered = name.lower()
        close = [c for c in pool if lowered in c.lower()][:n]
    return f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
