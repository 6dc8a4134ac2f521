"""The ``robaudit`` command line: thin commands over library calls.

Only typer and rich are imported at start-up; each command imports torch and friends when it runs, so
``robaudit --help`` stays fast. Audit commands come from the audit registry (:class:`CommandGroup`): every
registered audit, a plugin's included, is a command, made when it is first asked for. :func:`main` is the
single place where errors become exit codes: a :class:`~robaudit.errors.RobauditError` prints one line on
stderr and exits 2 (input) or 3 (runtime).
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
from pathlib import Path
from typing import Annotated, Any, NoReturn

import click
import typer
from typer.core import TyperGroup

from .. import __version__, distributed
from ..errors import EXIT_INPUT, EXIT_RUNTIME, InputError, RobauditError
from . import audit_commands, cache, corruptions, demo, listing, pca, report
from .gate import gate_command
from .run import run_command
from .train import train_command


class CommandGroup(TyperGroup):
    """The root group: the commands declared below, plus one command per registered audit.

    An audit whose name a declared command group already uses (``corruptions``, whose group holds
    ``preview``) becomes that group's default subcommand; an audit whose name a plain command uses stays
    reachable through ``robaudit audit NAME``.
    """

    def list_commands(self, ctx: Any) -> list[str]:
        from .. import plugins

        declared = super().list_commands(ctx)
        return [*[n for n in plugins.audits.names() if n not in declared], *declared]

    def get_command(self, ctx: Any, name: str) -> Any:
        from .. import plugins

        declared = super().get_command(ctx, name)
        if (declared is not None and not isinstance(declared, TyperGroup)) or name not in plugins.audits:
            return declared
        try:
            made = audit_commands.click_command(plugins.audits.get(name), name)
        except RobauditError as exc:  # a broken plugin is shown in the listing and explained when run
            return _broken(name, exc)
        if declared is None:
            return made
        if audit_commands.AUDIT not in declared.commands:
            declared.add_command(made, audit_commands.AUDIT)
            declared.__class__ = AuditByDefault
        return declared


class AuditByDefault(TyperGroup):
    """A group that runs its ``audit`` subcommand unless the first argument names another subcommand."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if not args or args[0] not in self.commands:
            args = [audit_commands.AUDIT, *args]
        return super().parse_args(ctx, args)


def _broken(name: str, error: RobauditError) -> Any:
    """A stand-in command for an audit that cannot be loaded: listed with the reason, failing when run."""
    sub = typer.Typer(add_completion=False)

    @sub.command(name, help=f"(cannot be loaded: {error})", context_settings={"ignore_unknown_options": True})
    def fail(args: Annotated[list[str] | None, typer.Argument(hidden=True)] = None) -> None:
        raise error

    return typer.main.get_command(sub)


def _load_plugins(ctx: Any, param: Any, directories: list[Path] | None) -> list[Path] | None:
    """Import plugin files while the command line is read, so their audits are commands already."""
    for directory in directories or []:
        from ..plugins import load_plugin_dir

        load_plugin_dir(directory)
    return directories


app = typer.Typer(
    cls=CommandGroup,
    name="robaudit",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        print(f"robaudit {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    plugins_dir: Annotated[
        list[Path] | None,
        typer.Option(
            "--plugins-dir",
            help="Load every *.py plugin file in this folder (repeatable).",
            callback=_load_plugins,
            is_eager=True,
        ),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log progress details on stderr.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Audit how robust an image classifier is, and make it more robust.

    Exit codes: 0 ok, 1 a gate failed, 2 a usage or input error, 3 a runtime failure.
    Set ROBAUDIT_DISABLE_PLUGINS=1 to load no third-party plugins. --plugins-dir and -v may also follow
    the command.
    """
    configure_logging(verbose)


def configure_logging(verbose: bool) -> None:
    """robaudit's own warnings are for the user; the libraries' (torch, PIL, faiss, pyarrow... through
    ``warnings`` or their loggers) are details shown with -v only, never mixed into an error line."""
    from rich.logging import RichHandler

    from .output import stderr

    root = logging.getLogger()
    # Replace only robaudit's own handler: a host (pytest's log capture, an embedding application) keeps its own.
    for handler in [h for h in root.handlers if getattr(h, "robaudit", False)]:
        root.removeHandler(handler)
    handler = RichHandler(console=stderr, show_path=False, show_time=False)
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler.robaudit = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(logging.INFO if verbose else logging.ERROR)
    logging.getLogger("robaudit").setLevel(logging.INFO if verbose else logging.WARNING)
    logging.captureWarnings(True)


#: the root's options, which are accepted anywhere on the command line (they are moved to the front)
GLOBAL_FLAGS = ("-v", "--verbose")
GLOBAL_VALUES = ("--plugins-dir",)


def hoist_global_options(argv: list[str]) -> list[str]:
    """``robaudit eval --plugins-dir DIR ...`` as ``robaudit --plugins-dir DIR eval ...``: the root's options
    may follow the command, where users naturally put them."""
    front: list[str] = []
    rest: list[str] = []
    words = iter(argv)
    for word in words:
        if word == "--":
            rest += [word, *words]
            break
        if word in GLOBAL_FLAGS:
            front.append(word)
        elif word in GLOBAL_VALUES:
            front += [word, next(words, "")]
        elif any(word.startswith(f"{flag}=") for flag in GLOBAL_VALUES):
            front.append(word)
        else:
            rest.append(word)
    return [*front, *rest]


app.command("audit")(audit_commands.generic_command)
app.add_typer(corruptions.app, name="corruptions")
app.command("gate")(gate_command)
app.command("demo")(demo.demo_command)
app.command("run")(run_command)
app.command("train")(train_command)
app.command("plugins")(listing.plugins_command)
app.command("models")(listing.models_command)
app.command("defenses")(listing.defenses_command)
app.command("attacks")(listing.attacks_command)
app.add_typer(cache.app, name="cache")
app.add_typer(report.app, name="report")
app.add_typer(pca.app, name="pca")


def _usage_errors() -> tuple[type[Exception], ...]:
    """click's usage errors, and those of the copy of click that recent typer versions vendor."""
    errors: list[type[Exception]] = [click.ClickException]
    try:
        from typer._click.exceptions import ClickException as VendoredClickException

        errors.append(VendoredClickException)
    except ImportError:
        pass
    return tuple(errors)


_EXIT = (click.exceptions.Exit, typer.Exit)
_USAGE = _usage_errors()
_ABORT = (click.exceptions.Abort, typer.Abort)
INTERRUPTED = "robaudit: interrupted; finished chunks are kept, continue with --resume"


def out_of_memory(exc: BaseException) -> bool:
    """Host or device memory ran out (``MemoryError``, torch's ``OutOfMemoryError`` or allocator errors)."""
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and ("can't allocate memory" in text or "out of memory" in text)


def usage_message(exc: Exception) -> str:
    """click's usage error (usage, hint and message on several lines) as one line naming the command's help."""
    message = " ".join(exc.format_message().split())  # type: ignore[attr-defined]
    context = getattr(exc, "ctx", None)
    return f"{message} (see {context.command_path} --help)" if context is not None else message


def command_path(command: Any, argv: list[str]) -> tuple[tuple[str, ...], Any]:
    """The subcommand that ``argv`` names (its path and click command), following groups' defaults."""
    context = command.context_class(command)
    words = [w for i, w in enumerate(argv) if not w.startswith("-") and (i == 0 or argv[i - 1] not in GLOBAL_VALUES)]
    path: list[str] = []
    current = command
    for word in words:
        found = current.get_command(context, word) if hasattr(current, "get_command") else None
        if found is None:
            break
        path.append(word)
        current = found
        if not hasattr(current, "get_command"):
            break
        following = words[len(path)] if len(words) > len(path) else None
        if isinstance(current, AuditByDefault) and following not in current.commands:
            path.append(audit_commands.AUDIT)
            current = current.commands[audit_commands.AUDIT]
            break
    return tuple(path), current


def check_launch(command: Any, argv: list[str]) -> None:
    """Under torchrun only the commands that share their work among ranks may run (see robaudit.distributed)."""
    if not distributed.world().active:
        return
    from ..suite.commands import runs_distributed

    path, leaf = command_path(command, argv)
    if path and not hasattr(leaf, "get_command") and not runs_distributed(path, leaf):
        raise InputError(
            f"robaudit {' '.join(path)} runs as a single process; start it without torchrun (under torchrun: "
            "the audits, run and cache build)"
        )


def main(argv: list[str] | None = None) -> None:
    """Entry point of the console script; never lets a traceback reach the user for a user error."""
    command = typer.main.get_command(app)
    argv = hoist_global_options(list(sys.argv[1:] if argv is None else argv))
    configure_logging(any(word in GLOBAL_FLAGS for word in argv))  # before plugin files load, as -v says
    from .output import envelope, write_json

    as_json = "--json" in argv[: argv.index("--")] if "--" in argv else "--json" in argv

    def fail(code: int, message: str, kind: str) -> NoReturn:
        """The one line on stderr (and the envelope with ``--json``), then the exit code."""
        prefix = {"internal": "robaudit: internal error: ", "interrupted": ""}.get(kind, "robaudit: error: ")
        line = f"{prefix}{distributed.error_line(message)}" if kind != "interrupted" else message
        print(line, file=sys.stderr)
        distributed.record_error(line)  # under torchrun, the launcher names this rank's error as the root cause
        if as_json:
            write_json(envelope(command_name(command, argv), code, error={"kind": kind, "message": message}))
        sys.exit(code)

    try:
        check_launch(command, argv)
        code = command.main(args=argv, prog_name="robaudit", standalone_mode=False)
    except _EXIT as exc:
        sys.exit(exc.exit_code)
    except _USAGE as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # a bare group: its help is the answer
            exc.show()  # type: ignore[attr-defined]
            sys.exit(EXIT_INPUT)
        fail(EXIT_INPUT, usage_message(exc), "usage")
    except (*_ABORT, KeyboardInterrupt):
        fail(130, INTERRUPTED, "interrupted")
    except distributed.PeerFailed as exc:  # the rank that failed says why; this one only stops
        sys.exit(exc.exit_code)
    except RobauditError as exc:
        fail(exc.exit_code, str(exc), "input" if exc.exit_code == EXIT_INPUT else "runtime")
    except Exception as exc:
        if out_of_memory(exc):
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            fail(
                EXIT_RUNTIME,
                f"out of memory ({first[:200]}); use a smaller --batch-size or another --device",
                "runtime",
            )
        if os.environ.get("ROBAUDIT_DEBUG"):
            traceback.print_exc()
        fail(
            EXIT_RUNTIME,
            f"{type(exc).__name__}: {exc} (set ROBAUDIT_DEBUG=1 for the traceback; please report it)",
            "internal",
        )
    if isinstance(code, int) and code == 130:  # click turns Ctrl-C into a return value without standalone mode
        fail(130, INTERRUPTED, "interrupted")
    sys.exit(code if isinstance(code, int) else 0)


def command_name(root: Any, argv: list[str]) -> str:
    """The command ``argv`` names, as typed (``cache tune``; a group's default audit is not named)."""
    path, _ = command_path(root, argv)
    if len(path) > 1 and path[-1] == audit_commands.AUDIT and audit_commands.AUDIT not in argv:
        path = path[:-1]
    return " ".join(path)


__all__ = ["EXIT_INPUT", "app", "main"]
