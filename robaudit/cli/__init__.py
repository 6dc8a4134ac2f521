"""The ``robaudit`` command line: thin commands over library calls.

Only typer and rich are imported at start-up; each command imports torch and friends when it runs, so
``robaudit --help`` stays fast. :func:`main` is the single place where errors become exit codes: a
:class:`~robaudit.errors.RobauditError` prints one line on stderr and exits 2 (input) or 3 (runtime).
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Annotated

import click
import typer

from .. import __version__
from ..errors import EXIT_INPUT, EXIT_RUNTIME, RobauditError
from . import audit_commands, demo, listing, report

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
app.command("demo")(demo.demo_command)
app.command("plugins")(listing.plugins_command)
app.command("models")(listing.models_command)
app.add_typer(report.app, name="report")


def main(argv: list[str] | None = None) -> None:
    """Entry point of the console script; never lets a traceback reach the user for a user error."""
    command = typer.main.get_command(app)
    try:
        command.main(args=argv, prog_name="robaudit", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        print("robaudit: aborted", file=sys.stderr)
        sys.exit(130)
    except KeyboardInterrupt:
        print("robaudit: interrupted; finished chunks are kept, continue with --resume", file=sys.stderr)
        sys.exit(130)
    except RobauditError as exc:
        print(f"robaudit: error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except Exception as exc:
        if os.environ.get("ROBAUDIT_DEBUG"):
            raise
        print(
            f"robaudit: internal error: {type(exc).__name__}: {exc} (set ROBAUDIT_DEBUG=1 for the traceback; "
            "please report it)",
            file=sys.stderr,
        )
        sys.exit(EXIT_RUNTIME)
    sys.exit(0)


__all__ = ["EXIT_INPUT", "app", "main"]
