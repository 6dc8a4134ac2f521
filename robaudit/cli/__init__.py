"""The ``robaudit`` command line: thin commands over library calls.

Only typer and rich are imported at start-up; each command imports torch and friends when it runs, so
``robaudit --help`` stays fast. :func:`main` is the single place where errors become exit codes: a
:class:`~robaudit.errors.RobauditError` prints one line on stderr and exits 2 (input) or 3 (runtime).
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
from pathlib import Path
from typing import Annotated

import click
import typer

from .. import __version__
from ..errors import EXIT_INPUT, EXIT_RUNTIME, RobauditError
from . import audit_commands, cache, corruptions, demo, listing, pca, report
from .fourier_map import fourier_map_command
from .gate import gate_command
from .hybrid import hybrid_command
from .jacobian import jacobian_command
from .rsa import rsa_command
from .run import run_command
from .spectrum import spectrum_command
from .train import train_command

app = typer.Typer(
    name="robaudit",
    no_args_is_help=True,
    add_completion=False,
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
        typer.Option("--plugins-dir", help="Load every *.py plugin file in this folder (repeatable)."),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log progress details on stderr.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Audit how robust an image classifier is, and make it more robust.

    Exit codes: 0 ok, 1 a gate failed, 2 a usage or input error, 3 a runtime failure.
    Set ROBAUDIT_DISABLE_PLUGINS=1 to load no third-party plugins.
    """
    from rich.logging import RichHandler

    from .output import stderr

    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(message)s",
        handlers=[RichHandler(console=stderr, show_path=False, show_time=False)],
    )
    for directory in plugins_dir or []:
        from ..plugins import load_plugin_dir

        load_plugin_dir(directory)


app.command("eval")(audit_commands.eval_command)
app.command("attack")(audit_commands.attack_command)
app.command("jacobian")(jacobian_command)
app.command("hybrid")(hybrid_command)
app.command("fourier-map")(fourier_map_command)
app.command("rsa")(rsa_command)
app.command("spectrum")(spectrum_command)
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


def main(argv: list[str] | None = None) -> None:
    """Entry point of the console script; never lets a traceback reach the user for a user error."""
    command = typer.main.get_command(app)
    try:
        code = command.main(args=argv, prog_name="robaudit", standalone_mode=False)
    except _EXIT as exc:
        sys.exit(exc.exit_code)
    except _USAGE as exc:
        exc.show()  # type: ignore[attr-defined]
        sys.exit(exc.exit_code)  # type: ignore[attr-defined]
    except (*_ABORT, KeyboardInterrupt):
        print(INTERRUPTED, file=sys.stderr)
        sys.exit(130)
    except RobauditError as exc:
        print(f"robaudit: error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except Exception as exc:
        if os.environ.get("ROBAUDIT_DEBUG"):
            traceback.print_exc()
        else:
            print(
                f"robaudit: internal error: {type(exc).__name__}: {exc} (set ROBAUDIT_DEBUG=1 for the traceback; "
                "please report it)",
                file=sys.stderr,
            )
        sys.exit(EXIT_RUNTIME)
    if isinstance(code, int) and code == 130:  # click turns Ctrl-C into a return value without standalone mode
        print(INTERRUPTED, file=sys.stderr)
    sys.exit(code if isinstance(code, int) else 0)


__all__ = ["EXIT_INPUT", "app", "main"]
