"""Planning a suite into concrete command lines, and running them one after the other with a manifest.

The plan has one entry per (variant, step): the step's options merged over its variant's and the shared
ones (only those its command takes), the options forced from the command line on top, and an ``--out`` when
the step sets none: a command whose ``--out`` is required (``cache build``, ``pca fit``) writes into
``{out}/<step name>``, one with a default folder (every audit) writes into ``{out}``, and one whose default
depends on its input (``cache tune``, ``spectrum``) keeps it. Before anything runs, every planned argument
list is parsed by its command, with step references standing in as a placeholder.

Running a step builds its arguments (references filled from earlier results), adds ``--json`` (its printed
results are kept for later references and the summary), ``--overwrite`` when the suite is run with it, and
``--resume`` for the step an interrupted suite stopped in, then invokes the command in-process. The manifest
is rewritten before and after each step. A failing step stops the suite with that step's exit code.
"""

from __future__ import annotations

import contextlib
import io
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn, Protocol

from .. import distributed
from ..errors import EXIT_RUNTIME, InputError, RobauditError
from .commands import CommandInfo, CommandTree, format_value, usage_message
from .load import ARGS, StepDef, Suite, VariantDef
from .manifest import MANIFEST_NAME, Manifest, now
from .references import PLACEHOLDER, check_name, lookup_result, map_strings, names_in, strings_in, substitute

INTERRUPTED = 130
#: keys of a command's --json output that name the file or folder it wrote
#: the roles in a step's ``files`` that name what it produced (the first one present is the step's report)
REPORT_KEYS = ("report", "grid", "cache", "pca", "run", "reports")


class StepFailed(RobauditError):
    """A step ended with an error; the suite stops with the step's exit code."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True)
class PlannedStep:
    """One step of one variant: the command, the folder ``{out}`` and the merged, unresolved options."""

    id: str
    variant: str | None
    step: StepDef
    info: CommandInfo
    folder: Path
    options: Mapping[str, Any]

    def where(self) -> str:
        return (f"variant {self.variant}, " if self.variant else "") + self.step.where()


@dataclass
class StepRecord:
    """What a step left: status, arguments, exit code, report path and the results it printed as JSON."""

    id: str
    status: str
    argv: list[str] = field(default_factory=list)
    exit_code: int | None = None
    seconds: float | None = None
    report: str | None = None
    result: Any = None

    @property
    def summary(self) -> Any:
        """The ``result`` of the step's ``--json`` envelope (an audit's summary, ...)."""
        return self.result.get("result") if isinstance(self.result, dict) else None


class Reporter(Protocol):
    """Where a suite run tells people what it is doing (the CLI prints; tests may record)."""

    def start(self, planned: PlannedStep, number: int, total: int, argv: list[str]) -> None: ...

    def skip(self, planned: PlannedStep, number: int, total: int, record: StepRecord) -> None: ...

    def done(self, planned: PlannedStep, record: StepRecord, stdout: str) -> None: ...


class SilentReporter:
    def start(self, planned: PlannedStep, number: int, total: int, argv: list[str]) -> None:
        pass

    def skip(self, planned: PlannedStep, number: int, total: int, record: StepRecord) -> None:
        pass

    def done(self, planned: PlannedStep, record: StepRecord, stdout: str) -> None:
        pass


# -- the plan -----------------------------------------------------------------------------------------------


def merged_options(suite: Suite, step: StepDef, info: CommandInfo, variant: VariantDef | None) -> dict[str, Any]:
    """[run] < variant < step < forced, each limited to the options the step's command has."""
    shared = {**suite.run, **(variant.options if variant else {})}
    options = {k: v for k, v in shared.items() if info.has(k)}
    options.update(step.options)
    options.update({k: v for k, v in suite.force.items() if info.has(k)})
    if info.has("out") and "out" not in options:
        if info.required("out"):
            options["out"] = "{out}/" + step.name
        elif info.default("out") is not None:
            options["out"] = "{out}"
    return options


def plan_suite(suite: Suite, tree: CommandTree, root: Path) -> list[PlannedStep]:
    """Every (variant, step) of the suite, in the order they run."""
    variants: tuple[VariantDef | None, ...] = suite.variants or (None,)
    plan = []
    for variant in variants:
        folder = root / variant.name if variant else root
        for step in suite.steps:
            info = tree.commands[step.path]
            step_id = f"{variant.name}/{step.name}" if variant else step.name
            options = merged_options(suite, step, info, variant)
            plan.append(PlannedStep(step_id, variant.name if variant else None, step, info, folder, options))
    return plan


def place(name: str, planned: PlannedStep, suite: Suite, root: Path) -> str | None:
    """The value of ``{out}``, ``{root}``, ``{variant}`` or ``{suite_dir}``; None for other names."""
    places = {
        "out": str(planned.folder),
        "root": str(root),
        "variant": planned.variant or "",
        "suite_dir": str(suite.directory or Path.cwd()),
    }
    return places.get(name)


def arguments(planned: PlannedStep, options: Mapping[str, Any]) -> list[str]:
    """The command path, its option words in the suite's key order, then its positional arguments."""
    words = list(planned.info.path)
    for key, value in options.items():
        if key != ARGS:
            words += planned.info.arguments(key, value, planned.where())
    return words + [format_value(v) for v in options.get(ARGS, [])]


def check_references(planned: PlannedStep, suite: Suite) -> None:
    """Every reference in the step's options is a place or a result of an earlier step."""
    earlier = [s.name for s in suite.steps[: planned.step.index - 1]]
    for value in planned.options.values():
        for name in (n for text in strings_in(value) for n in names_in(text)):
            check_name(name, earlier, planned.where())


def validate_plan(plan: list[PlannedStep], suite: Suite, root: Path) -> None:
    """Check every step's references, then parse its argument list with its command (step references stand in
    as a placeholder)."""
    for planned in plan:
        check_references(planned, suite)

        def lookup(name: str, planned: PlannedStep = planned) -> str:
            value = place(name, planned, suite, root)
            return PLACEHOLDER if value is None else value

        options = {k: map_strings(v, lambda text: substitute(text, lookup)) for k, v in planned.options.items()}
        words = arguments(planned, options)
        planned.info.check_arguments(words[len(planned.info.path) :], planned.where())


# -- running ------------------------------------------------------------------------------------------------


def report_of(result: Any, options: Mapping[str, Any]) -> str | None:
    """The file or folder a step wrote: named in the ``files`` of its JSON envelope, else its --out."""
    files = result.get("files") if isinstance(result, dict) else None
    if isinstance(files, dict):
        for key in REPORT_KEYS:
            if isinstance(files.get(key), str):
                return str(files[key])
    out = options.get("out")
    return str(out) if isinstance(out, str) else None


def failure_of(exc: Exception) -> tuple[int, str]:
    """Exit code and one-line message of a step's exception."""
    if isinstance(exc, RobauditError):
        return exc.exit_code, str(exc)
    usage = usage_message(exc)
    if usage is not None:
        return int(getattr(exc, "exit_code", EXIT_RUNTIME)), usage
    return EXIT_RUNTIME, f"{type(exc).__name__}: {exc}"


def parse_output(text: str) -> Any:
    try:
        return json.loads(text) if text.strip() else None
    except ValueError:
        return None


class SuiteRun:
    """One execution of a suite into ``root``: fresh, ``resume`` (skip finished steps) or ``overwrite``."""

    def __init__(
        self,
        suite: Suite,
        tree: CommandTree,
        root: Path,
        *,
        resume: bool = False,
        overwrite: bool = False,
        reporter: Reporter | None = None,
    ) -> None:
        if resume and overwrite:
            raise InputError("choose one of --resume and --overwrite")
        self.suite = suite
        self.root = root
        self.resume = resume
        self.overwrite = overwrite
        self.reporter: Reporter = reporter or SilentReporter()
        self.plan = plan_suite(suite, tree, root)
        validate_plan(self.plan, suite, root)
        self.records: dict[str, StepRecord] = {}

    def open_manifest(self) -> Manifest:
        """A new manifest, or the existing one when resuming the same suite; refuses to clobber silently."""
        existing = Manifest.read(self.root)
        digest, resolved = self.suite.digest(), self.suite.resolved()
        if existing is not None and not (self.resume or self.overwrite):
            raise InputError(
                f"{self.root} already holds a suite run ({existing.path.name}); "
                "pass --resume to continue it or --overwrite to run it again"
            )
        if existing is not None and self.resume:
            existing.check_same_suite(digest, resolved)
            existing.data["resumed_at"].append(now())
            existing.data.update(status="running", finished_at=None, failed_step=None)
            existing.save()
            return existing
        ids = [{"id": p.id, "index": p.step.index, "variant": p.variant, "name": p.step.name} for p in self.plan]
        for p, entry in zip(self.plan, ids, strict=True):
            entry["command"] = p.info.label
        manifest = Manifest.new(self.root, self.suite.source, resolved, digest, ids)
        manifest.data["overwrite"] = self.overwrite
        manifest.save()
        return manifest

    def run(self) -> dict[str, StepRecord]:
        """Run every step not finished yet; returns the records by step id (under torchrun: on rank 0; the
        other ranks return no records)."""
        from ..reports.lock import ReportLock
        from ..reports.writer import prepare_folder

        here = distributed.init()
        if not here.main:
            return self._follow()
        try:
            prepare_folder(self.root)
            # one suite run per folder: a second one would rewrite the manifest under the first
            with ReportLock(self.root / MANIFEST_NAME):
                records = self._run()
        except BaseException as exc:
            if here.active:
                with contextlib.suppress(RobauditError):  # contact with the other ranks may be what failed
                    distributed.broadcast(("stop", distributed.error_of(exc), None), "stopping the suite")
            raise
        distributed.broadcast(("stop", None, None), "finishing the suite")
        return records

    # -- under torchrun ---------------------------------------------------------------------------------------
    # Rank 0 runs the suite (manifest, lock, references, printing) and runs the steps whose command shares its
    # work among ranks (the audits, cache build) together with the others: it sends them the step's argument
    # list, every rank invokes the command, and rank 0 gathers how it went everywhere. Other steps run on rank
    # 0 alone while the others wait.

    def _follow(self) -> dict[str, StepRecord]:
        """The loop of a rank other than 0: run the steps rank 0 sends, until it says stop."""
        steps = {p.id: p for p in self.plan}
        while True:
            kind, payload, step_id = distributed.broadcast(None, "waiting for the next step")
            if kind == "stop":
                if payload is None:
                    return {}
                message, code = payload
                raise distributed.PeerFailed(f"rank 0 failed: {message}", code)
            status, code, error, _, _ = self._invoke(steps[step_id], payload)
            distributed.gather((status, code, error), f"finishing step {step_id}")

    def _invoke_step(
        self, planned: PlannedStep, words: list[str]
    ) -> tuple[str, int, str | None, Exception | None, str]:
        """:meth:`_invoke`, on every rank for a command that shares its work among ranks (see above)."""
        if not distributed.world().active:
            return self._invoke(planned, words)
        if not planned.info.distributed:  # the others wait for the next step meanwhile
            with distributed.alone():
                return self._invoke(planned, words)
        distributed.broadcast(("invoke", words, planned.id), f"starting step {planned.id}")
        status, code, error, failure, text = self._invoke(planned, words)
        outcomes = distributed.gather((status, code, error), f"finishing step {planned.id}")
        if status == "finished":
            for rank, (other, other_code, other_error) in enumerate(outcomes):
                if other != "finished":
                    return "failed", other_code, f"rank {rank}: {other_error}", None, text
        return status, code, error, failure, text

    def _run(self) -> dict[str, StepRecord]:
        manifest = self.open_manifest()
        total = len(self.plan)
        for number, planned in enumerate(self.plan, 1):
            entry = manifest.step(planned.id)
            if self.resume and entry["status"] == "finished":
                record = self._record_of(entry)
                self.records[planned.id] = record
                self.reporter.skip(planned, number, total, record)
                continue
            continuing = self.resume and entry["status"] in ("running", "interrupted", "failed")
            self.records[planned.id] = self._run_step(manifest, planned, number, total, continuing)
        manifest.finish("finished")
        return self.records

    @staticmethod
    def _record_of(entry: dict[str, Any]) -> StepRecord:
        return StepRecord(
            entry["id"],
            entry["status"],
            entry.get("argv") or [],
            entry.get("exit_code"),
            entry.get("seconds"),
            entry.get("report"),
            entry.get("result"),
        )

    def _lookup(self, planned: PlannedStep) -> Any:
        def lookup(name: str) -> str:
            value = place(name, planned, self.suite, self.root)
            if value is not None:
                return value
            step_name = name.split(".")[1]
            record = self.records[f"{planned.variant}/{step_name}" if planned.variant else step_name]
            return format_value(lookup_result(name, record.result, record.report, planned.where()))

        return lookup

    def _managed(self, planned: PlannedStep, continuing: bool, manifest: Manifest) -> list[str]:
        info, flags = planned.info, []
        if info.has("json"):
            flags.append("--json")
        if continuing:
            # an unfinished step continues where it stopped, or starts over when it cannot resume
            flags += ["--resume"] if info.has("resume") else ["--overwrite"] if info.has("overwrite") else []
        elif (self.overwrite or manifest.data.get("overwrite")) and info.has("overwrite"):
            flags.append("--overwrite")
        return flags

    def _run_step(
        self, manifest: Manifest, planned: PlannedStep, number: int, total: int, continuing: bool
    ) -> StepRecord:
        started, clock = now(), time.perf_counter()
        try:
            lookup = self._lookup(planned)
            options = {k: map_strings(v, lambda text: substitute(text, lookup)) for k, v in planned.options.items()}
            words = arguments(planned, options) + self._managed(planned, continuing, manifest)
        except InputError as exc:
            manifest.update(planned.id, status="failed", started_at=started, exit_code=exc.exit_code, error=str(exc))
            manifest.finish("failed", planned.id)
            raise
        argv = ["robaudit", *words]
        manifest.update(
            planned.id, status="running", argv=argv, started_at=started, finished_at=None, exit_code=None, error=None
        )
        self.reporter.start(planned, number, total, argv)
        status, code, error, failure, text = self._invoke_step(planned, words)
        result = parse_output(text)
        record = StepRecord(
            planned.id,
            status,
            argv,
            code,
            round(time.perf_counter() - clock, 3),
            report_of(result, options),
            result,
        )
        manifest.update(
            planned.id,
            status=status,
            finished_at=now(),
            seconds=record.seconds,
            exit_code=code,
            error=error,
            report=record.report,
            result=result,
        )
        if status == "finished":
            self.reporter.done(planned, record, text)
            return record
        manifest.finish(status, planned.id)
        if status == "interrupted":
            raise KeyboardInterrupt
        self._raise_failure(planned, failure, error, code, manifest)

    @staticmethod
    def _invoke(planned: PlannedStep, words: list[str]) -> tuple[str, int, str | None, Exception | None, str]:
        """Run the command with its stdout captured: (status, exit code, error, exception, stdout)."""
        buffer = io.StringIO()
        status, code, error, failure = "finished", 0, None, None
        try:
            with contextlib.redirect_stdout(buffer):
                returned = planned.info.invoke(words[len(planned.info.path) :])
            code = returned if isinstance(returned, int) else 0
            if code == INTERRUPTED:
                status = "interrupted"
            elif code != 0:
                status, error = "failed", f"exit code {code}"
        except KeyboardInterrupt:
            status, code = "interrupted", INTERRUPTED
        except Exception as exc:
            if type(exc).__name__ == "Abort":  # click's form of Ctrl-C
                status, code = "interrupted", INTERRUPTED
            else:
                status, failure = "failed", exc
                code, error = failure_of(exc)
        return status, code, error, failure, buffer.getvalue()

    @staticmethod
    def _raise_failure(
        planned: PlannedStep, failure: Exception | None, error: str | None, code: int, manifest: Manifest
    ) -> NoReturn:
        where = f"{planned.where()} failed (see {manifest.path})"
        if failure is not None and not isinstance(failure, RobauditError) and usage_message(failure) is None:
            raise failure  # an internal error keeps its traceback for ROBAUDIT_DEBUG
        raise StepFailed(f"{where}: {error}", code) from failure
