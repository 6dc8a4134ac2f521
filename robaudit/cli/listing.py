"""``robaudit plugins`` and ``robaudit models``: what is registered, and where each entry came from."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from . import options as o


def plugins_command(
    as_json: o.Json = False,
    load: Annotated[
        bool,
        typer.Option(
            "--load", help="Import every entry to show its help (slower; reports entries that fail to import)."
        ),
    ] = False,
) -> None:
    """List every plugin group with its entries and the package or file each came from."""
    from rich.table import Table

    from ..errors import RobauditError
    from ..plugins import REGISTRIES
    from .output import print_json, stdout

    listing: dict[str, list[dict[str, str]]] = {}
    for group, registry in REGISTRIES.items():
        rows = []
        for entry in registry.entries():
            help_text = entry.help
            if load:
                try:
                    entry.load()
                    help_text = entry.help
                except RobauditError as exc:
                    help_text = f"FAILS TO LOAD: {exc}"
            rows.append({"name": entry.name, "source": entry.source, "target": entry.target, "help": help_text})
        listing[group] = rows
    if as_json:
        print_json(listing)
        return
    for group, rows in listing.items():
        table = Table(title=f"{group} ({REGISTRIES[group].group})", title_justify="left")
        for col in ("name", "source", "target") + (("help",) if load else ()):
            table.add_column(col)
        for row in rows:
            table.add_row(*(row[c] for c in ("name", "source", "target") + (("help",) if load else ())))
        if not rows:
            table.add_row("(none)", "", "")
        stdout.print(table)


def models_command(
    pattern: Annotated[str, typer.Argument(help="Shell-style filter, e.g. 'resnet*'.")] = "*",
    pretrained_only: Annotated[
        bool, typer.Option("--pretrained", help="Only timm names with pretrained weights (with their tags).")
    ] = False,
    as_json: o.Json = False,
) -> None:
    """List model names: plugin and built-in models, torchvision (tv:) and timm names."""
    import fnmatch

    import timm
    import torchvision

    from ..plugins import models
    from .output import print_json, stdout

    found = {
        "registered": [n for n in models.names() if not n.endswith(":") and fnmatch.fnmatch(n, pattern)],
        "torchvision": [
            f"tv:{n}" for n in torchvision.models.list_models(module=torchvision.models) if fnmatch.fnmatch(n, pattern)
        ],
        "timm": timm.list_pretrained(pattern) if pretrained_only else timm.list_models(pattern),
    }
    if as_json:
        print_json(found)
        return
    for group, names in found.items():
        stdout.print(f"[bold]{group}[/bold] ({len(names)})")
        stdout.print("  " + ("  ".join(names) if names else "(none)"))


def defenses_command(as_json: o.Json = False) -> None:
    """List the defenses with their kind, parameters (and defaults), differentiability and help."""
    import inspect

    from rich.table import Table

    from ..params import parameters_of
    from ..plugins import defenses
    from .output import print_json, stdout

    rows: list[dict[str, Any]] = []
    for entry in defenses.entries():
        factory = entry.load()
        params = {
            name: (None if p.default is inspect.Parameter.empty else p.default)
            for name, p in parameters_of(factory).items()
        }
        required = [n for n, p in parameters_of(factory).items() if p.default is inspect.Parameter.empty]
        rows.append(
            {
                "name": entry.name,
                "kind": getattr(factory, "kind", "?"),
                "differentiable": getattr(factory, "differentiable", None),
                "parameters": params,
                "required": required,
                "help": entry.help,
                "source": entry.source,
            }
        )
    if as_json:
        print_json(rows)
        return
    table = Table(title="defenses (use --defense NAME:key=value,...)", title_justify="left")
    for col in ("name", "kind", "parameters", "help"):
        table.add_column(col, overflow="fold")
    for row in rows:
        shown = ", ".join(k if k in row["required"] else f"{k}={v!r}" for k, v in row["parameters"].items())
        table.add_row(row["name"], row["kind"], shown, row["help"])
    stdout.print(table)


def attacks_command(as_json: o.Json = False) -> None:
    """List the attacks with their norm, kind (fixed budget or minimization), parameters and help."""
    import inspect

    from rich.table import Table

    from ..params import parameters_of
    from ..plugins import attacks
    from .output import print_json, stdout

    rows: list[dict[str, Any]] = []
    for entry in attacks.entries():
        factory = entry.load()
        params = {
            n: None if p.default is inspect.Parameter.empty else p.default for n, p in parameters_of(factory).items()
        }
        rows.append(
            {
                "name": entry.name,
                "norm": getattr(factory, "norm", "?"),
                "kind": "minimization" if getattr(factory, "minimization", False) else "fixed budget",
                "gradient": getattr(factory, "gradient", None),
                "parameters": params,
                "help": entry.help,
                "source": entry.source,
            }
        )
    if as_json:
        print_json(rows)
        return
    table = Table(title="attacks (use --attack NAME:key=value,...)", title_justify="left")
    for col in ("name", "norm", "kind", "gradient", "parameters", "help"):
        table.add_column(col, overflow="fold")
    for row in rows:
        shown = ", ".join(f"{k}={v!r}" for k, v in row["parameters"].items())
        table.add_row(row["name"], row["norm"], row["kind"], "yes" if row["gradient"] else "no", shown, row["help"])
    stdout.print(table)
