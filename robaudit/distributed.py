"""Running one robaudit command as several processes: torch.distributed, as ``torchrun`` launches it.

The commands that share their work among processes are the audits (:mod:`robaudit.runner`), suites
(:mod:`robaudit.suite.execute`) and ``cache build`` (:mod:`robaudit.defenses.cache_build`); this module is
what they share. ``torchrun --nproc-per-node N -m robaudit eval ...`` starts N copies of the command with ``RANK``,
``WORLD_SIZE`` and ``LOCAL_RANK`` (and the rendezvous address) in their environment. :func:`world` reads
them; without them, or with a world of one, robaudit runs as the single process it always was and nothing
here does anything.

The unit of work is the chunk (see :mod:`robaudit.data`): chunks do not depend on the number of processes,
so each rank takes its share of the chunks still to do, writes them into the report's shared
``.partial/`` folder, and rank 0 joins them. That is why ``--resume`` continues a run with any number of
ranks, and why a distributed report equals a single process's.

Ranks meet only at a few fixed points of a command, and every rank reaches every point even when its own
work failed: a *phase* (:func:`phase`) runs a piece of work on every rank (or on rank 0 only) and then
exchanges the outcomes, so that either every rank goes on or every rank stops, with the first failing
rank's message. Between those points ranks never wait for each other; a failed rank leaves a marker file
(:func:`mark_failed`) that the others look for after each chunk, so they stop early instead of finishing
their share for nothing. A rank that dies without a word (killed, out of memory) is noticed by the launcher
(torchrun stops the other ranks) or, at the next meeting point, by the barrier, which waits at most
``ROBAUDIT_DIST_TIMEOUT`` seconds and names the ranks that did not arrive.

The process group uses gloo whatever the device: ranks exchange only small control messages (outcomes,
chunk lists), never tensors, and gloo is the backend whose barrier can name a missing rank. Each rank
computes on its own GPU, ``cuda:LOCAL_RANK`` (:func:`cuda_device`).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

from .errors import EXIT_RUNTIME, InputError, RobauditError, RunError

T = TypeVar("T")

#: seconds a rank waits at a meeting point for the others (the slowest rank's last chunk must fit in it)
TIMEOUT_ENV = "ROBAUDIT_DIST_TIMEOUT"
DEFAULT_TIMEOUT = 1800.0
#: the file name of a failed rank's marker in a run's ``.partial/`` folder
FAILED_MARKER = "failed-rank-{rank}.json"


@dataclass(frozen=True)
class World:
    """This process's place among the processes of one command: rank ``rank`` of ``size``."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def active(self) -> bool:
        """More than one process: the command's work is shared out."""
        return self.size > 1

    @property
    def main(self) -> bool:
        """Rank 0: the one that writes the report and prints."""
        return self.rank == 0

    def label(self) -> str:
        return f"rank {self.rank} of {self.size}"


class PeerFailed(RobauditError):
    """Another rank failed; this rank stops with that rank's exit code and says nothing more (the failed rank
    prints its own message)."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def _int_env(name: str) -> int | None:
    text = os.environ.get(name)
    if text is None or text == "":
        return None
    try:
        return int(text)
    except ValueError:
        raise InputError(f"the environment variable {name}={text!r} is not an integer; launch with torchrun") from None


#: set while rank 0 runs a command on its own (a suite step that does not share its work)
_alone = False


@contextlib.contextmanager
def alone() -> Iterator[None]:
    """Within this block the process acts as a single process (rank 0 running a step by itself)."""
    global _alone
    before, _alone = _alone, True
    try:
        yield
    finally:
        _alone = before


def world() -> World:
    """The world this process belongs to, read from the environment torchrun (or srun, or a PyTorchJob) sets."""
    if _alone:
        return World()
    size = _int_env("WORLD_SIZE")
    if size is None or size <= 1:
        return World()
    rank = _int_env("RANK")
    if rank is None or not 0 <= rank < size:
        raise InputError(f"WORLD_SIZE={size} but RANK is {os.environ.get('RANK')!r}; launch with torchrun")
    local = _int_env("LOCAL_RANK")
    return World(rank, size, local if local is not None else 0)


def timeout() -> float:
    text = os.environ.get(TIMEOUT_ENV)
    if not text:
        return DEFAULT_TIMEOUT
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not seconds > 0:
        raise InputError(f"{TIMEOUT_ENV} must be a number of seconds > 0, got {text!r}")
    return seconds


def init() -> World:
    """Join the process group (once per process) and return the world; a no-op for a single process."""
    here = world()
    if not here.active:
        return here
    import torch.distributed as dist

    if not dist.is_available():
        raise InputError("this torch has no torch.distributed; run robaudit as one process")
    if not dist.is_initialized():
        for name in ("MASTER_ADDR", "MASTER_PORT"):
            if not os.environ.get(name):
                raise InputError(f"WORLD_SIZE is {here.size} but {name} is not set; launch with torchrun")
        dist.init_process_group("gloo", timeout=timedelta(seconds=timeout()))
        # a process group still alive when the interpreter exits aborts the process (gloo's threads)
        atexit.register(_leave)
        signal.signal(signal.SIGTERM, _stopped)
    if (dist.get_rank(), dist.get_world_size()) != (here.rank, here.size):
        raise RunError(
            f"the process group has rank {dist.get_rank()} of {dist.get_world_size()}, the environment says "
            f"{here.label()}"
        )
    return here


def _stopped(signum: int, frame: Any) -> None:
    """SIGTERM from the launcher: torchrun stops every rank when one of them ends with an error."""
    print(
        f"robaudit: {world().label()}: stopped by the launcher (another rank failed or the job was cancelled); "
        "finished chunks are kept, continue with --resume",
        file=sys.stderr,
        flush=True,
    )
    os._exit(128 + signum)  # the report's lock is an OS lock: it goes with the process


def _leave() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


def cuda_device() -> str:
    """The CUDA device of this process: ``cuda:LOCAL_RANK`` among several processes, else ``cuda``."""
    here = world()
    return f"cuda:{here.local_rank}" if here.active else "cuda"


# -- meeting points ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Outcome:
    """What one rank's part of a phase came to: a value, or the error it raised (as text and exit code)."""

    ok: bool
    value: Any = None
    message: str = ""
    exit_code: int = EXIT_RUNTIME
    quiet: bool = False


def _describe(exc: BaseException) -> _Outcome:
    if isinstance(exc, PeerFailed):
        return _Outcome(False, message=str(exc), exit_code=exc.exit_code, quiet=True)
    if isinstance(exc, RobauditError):
        return _Outcome(False, message=str(exc), exit_code=exc.exit_code)
    if isinstance(exc, KeyboardInterrupt):
        return _Outcome(False, message="interrupted", exit_code=130)
    return _Outcome(False, message=f"{type(exc).__name__}: {exc}", exit_code=EXIT_RUNTIME)


def _lost(what: str, exc: Exception) -> RunError:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return RunError(
        f"{world().label()} lost contact with the other ranks while {what} ({first[:300]}); another rank died "
        "or stopped answering. Finished chunks are kept: run again with --resume (any number of processes)"
    )


def barrier(what: str) -> None:
    """Wait for every rank (at most :func:`timeout` seconds); names the ranks that did not arrive."""
    here = world()
    if not here.active:
        return
    import torch.distributed as dist

    try:
        dist.monitored_barrier(timeout=timedelta(seconds=timeout()), wait_all_ranks=True)
    except RuntimeError as exc:
        raise _lost(what, exc) from exc


def _exchange(outcome: Any, what: str, *, gather: bool) -> list[Any]:
    import torch.distributed as dist

    try:
        if gather:
            outcomes: list[Any] = [None] * world().size
            dist.all_gather_object(outcomes, outcome)
            return outcomes
        box = [outcome]
        dist.broadcast_object_list(box, src=0)
        return box
    except RuntimeError as exc:
        raise _lost(what, exc) from exc


#: seconds this process has spent in meeting points (:func:`phase`, :func:`same_everywhere`), work excluded
_met = 0.0


def meeting_seconds() -> float:
    """Seconds spent so far at meeting points, waiting for the other ranks included (the work of a phase
    run on rank 0 counts as waiting for the others)."""
    return _met


def phase(what: str, work: Callable[[], T], *, on: str = "all", own_error: BaseException | None = None) -> T:
    """Run ``work`` on every rank (``on="all"``) or on rank 0 (``on="main"``), then agree on the outcome.

    Every rank returns its own value (with ``on="main"``, rank 0's value), or every rank raises: a rank
    whose work failed raises its own exception, the others :class:`PeerFailed` with the first failing
    rank's message. A single process just runs ``work``. ``what`` names the phase in messages.
    """
    here = world()
    if not here.active:
        return work()
    global _met
    error: BaseException | None = own_error
    value: Any = None
    start = time.perf_counter()
    if error is None and (on == "all" or here.main):
        try:
            value = work()
        except BaseException as exc:  # every rank must reach the exchange, whatever went wrong here
            error = exc
    worked = time.perf_counter() - start if on == "all" else 0.0
    mine = _describe(error) if error is not None else _Outcome(True, value if on == "main" else None)
    if on == "all":
        barrier(what)
    outcomes = _exchange(mine, what, gather=on == "all")
    _met += time.perf_counter() - start - worked
    ranks = range(here.size) if on == "all" else [0]
    failed = [(rank, o) for rank, o in zip(ranks, outcomes, strict=True) if not o.ok]
    if failed:
        # One rank speaks: the lowest that failed by itself (not because another did). When every rank
        # failed alike (a misspelt --model), the message is printed once, not once per rank.
        rank, outcome = next(((r, o) for r, o in failed if not o.quiet), failed[0])
        if error is not None and (rank == here.rank or isinstance(error, PeerFailed)):
            raise error
        raise PeerFailed(f"rank {rank} failed: {outcome.message}", outcome.exit_code)
    return value if on == "all" else outcomes[0].value


def broadcast(value: Any, what: str) -> Any:
    """Rank 0's ``value``, on every rank (the others pass anything); a single process gets ``value`` back."""
    if not world().active:
        return value
    return _exchange(value, what, gather=False)[0]


def gather(value: Any, what: str) -> list[Any]:
    """Every rank's ``value``, in rank order, on every rank."""
    if not world().active:
        return [value]
    return _exchange(value, what, gather=True)


def error_of(exc: BaseException) -> tuple[str, int]:
    """An exception as (message, exit code), to be sent to the other ranks."""
    outcome = _describe(exc)
    return outcome.message, outcome.exit_code


def same_everywhere(value: str, what: str) -> None:
    """Refuse to go on unless every rank has the same ``value`` (e.g. machines that see different files)."""
    here = world()
    if not here.active:
        return
    import torch.distributed as dist

    global _met
    values: list[Any] = [None] * here.size
    start = time.perf_counter()
    try:
        dist.all_gather_object(values, value)
    except RuntimeError as exc:
        raise _lost(f"comparing {what}", exc) from exc
    _met += time.perf_counter() - start
    differ = [rank for rank, v in enumerate(values) if v != values[0]]
    if differ:
        raise InputError(
            f"rank {differ[0]} sees a different {what} than rank 0 (different files or options on its machine?); "
            "every rank must see the same model, data and options"
        )


# -- early stop ----------------------------------------------------------------------------------------------


def mark_failed(folder: Path, error: BaseException) -> None:
    """Leave a marker saying this rank failed, so that ranks busy with their chunks stop at the next one."""
    here = world()
    if not here.active or isinstance(error, PeerFailed):
        return
    outcome = _describe(error)
    try:
        marker = folder / FAILED_MARKER.format(rank=here.rank)
        tmp = marker.with_name(marker.name + ".tmp")
        tmp.write_text(json.dumps({"rank": here.rank, "message": outcome.message, "exit_code": outcome.exit_code}))
        os.replace(tmp, marker)
    except OSError:  # the folder went away: the meeting point still tells every rank
        pass


def check_peers(folder: Path) -> None:
    """Raise :class:`PeerFailed` if another rank left a failure marker in ``folder``."""
    if not world().active:
        return
    for marker in sorted(folder.glob(FAILED_MARKER.format(rank="*"))):
        try:
            info = json.loads(marker.read_text())
        except (OSError, ValueError):
            continue
        raise PeerFailed(f"rank {info.get('rank')} failed: {info.get('message')}", int(info.get("exit_code", 3)))


def clear_markers(folder: Path) -> None:
    """Remove failure markers that an earlier, failed run of the same report left (rank 0, at the start)."""
    for marker in folder.glob(FAILED_MARKER.format(rank="*")):
        marker.unlink(missing_ok=True)


# -- messages ------------------------------------------------------------------------------------------------


def _known_world() -> World:
    """:func:`world`, or a single process when the environment is broken (that error is being reported)."""
    try:
        return world()
    except InputError:
        return World()


def error_line(message: str) -> str:
    """``message`` prefixed with this rank when there are several."""
    here = _known_world()
    return f"{here.label()}: {message}" if here.active else message


def record_error(message: str) -> None:
    """Hand the error to torchrun, which shows it as the job's root cause (``TORCHELASTIC_ERROR_FILE``)."""
    path = os.environ.get("TORCHELASTIC_ERROR_FILE")
    if not path or not _known_world().active:
        return
    data = {"message": {"message": message, "extraInfo": {"py_callstack": message, "timestamp": str(int(time.time()))}}}
    with contextlib.suppress(OSError):  # torchrun then shows the process's exit code only
        Path(path).write_text(json.dumps(data))
