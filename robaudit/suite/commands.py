"""What each robaudit command accepts, read from its click command object, and TOML values turned into arguments.

Nothing here knows a particular command: the keys a step may use are the long option names of the command's
parameters (``--batch-size`` → ``batch-size``), and how a value is written follows from the parameter
itself: a boolean flag becomes ``--flag`` or its ``--no-flag`` form, a list becomes the option repeated when
the option is repeatable and one comma-joined value otherwise. Checking an argument list goes through the
command's own parser (``make_context``), so a suite is validated exactly like a command line.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..cli.audit_commands import AUDIT as GROUP_AUDIT
from ..errors import InputError, suggest

#: options the suite runner sets itself: its own --json, --resume and --overwrite decide them for every step
MANAGED = frozenset({"json", "resume", "overwrite", "help"})
#: commands that cannot be steps: they run suites themselves
NOT_STEPS = frozenset({"run", "demo"})
#: commands besides the audits that share their work among the ranks of a torchrun job
DISTRIBUTED = frozenset({("cache", "build"), ("run",)})


def runs_distributed(path: Sequence[str], command: Any) -> bool:
    """Whether a command shares its work among the ranks of a torchrun job: every audit (the commands with
    ``--shard``), ``cache build`` and ``run``. Under torchrun any other command runs on rank 0 only (in a
    suite) or is refused (on its own)."""
    return tuple(path) in DISTRIBUTED or any(getattr(p, "name", None) == "shard" for p in command.params)


def key_of(option: str) -> str:
    """``--batch-size`` → ``batch-size``: the name a suite uses for an option."""
    return option.lstrip("-")


def normalize_key(key: str) -> str:
    """Suites accept ``batch_size`` and ``batch-size`` alike; the dashed form is the canonical one."""
    return key.replace("_", "-")


def format_value(value: Any) -> str:
    """A TOML scalar as a command-line word: booleans in lower case, floats in their shortest exact form."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float, str)):
        return str(value)
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    return json.dumps(value, separators=(",", ":"), default=str)


def usage_message(exc: BaseException) -> str | None:
    """The message of a click usage error (plain or vendored click), or None for any other exception."""
    formatter = getattr(exc, "format_message", None)
    if callable(formatter) and isinstance(getattr(exc, "exit_code", None), int):
        return str(formatter())
    return None


@dataclass
class CommandInfo:
    """One command of the tree: its path (``("cache", "tune")``), click object and options by suite key."""

    path: tuple[str, ...]
    command: Any
    options: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, path: tuple[str, ...], command: Any) -> CommandInfo:
        options = {}
        for param in command.params:
            if getattr(param, "param_type_name", None) != "option":
                continue
            for opt in param.opts:
                if opt.startswith("--"):
                    options[key_of(opt)] = param
        return cls(path, command, options)

    @property
    def label(self) -> str:
        return " ".join(self.path)

    def has(self, key: str) -> bool:
        return key in self.options

    @property
    def distributed(self) -> bool:
        """Every rank of a torchrun job runs this command (see :func:`runs_distributed`)."""
        return runs_distributed(self.path, self.command)

    def settable(self) -> list[str]:
        """The keys a suite may set for this command (the runner's own options excluded)."""
        return sorted(k for k in self.options if k not in MANAGED)

    def check_key(self, key: str, where: str) -> None:
        if key in MANAGED:
            raise InputError(
                f"{where}: {key!r} is set by robaudit run itself (use robaudit run --json/--resume/--overwrite)"
            )
        if key not in self.options:
            raise InputError(
                f"{where}: {self.label} has no option --{key}{suggest(key, self.settable())} "
                f"(robaudit {self.label} --help lists them)"
            )

    def default(self, key: str) -> Any:
        return self.options[key].default

    def required(self, key: str) -> bool:
        return bool(self.options[key].required)

    def arguments(self, key: str, value: Any, where: str) -> list[str]:
        """The command-line words for ``key = value``, as this option expects them."""
        param = self.options[key]
        name = "--" + key
        if isinstance(value, dict):
            raise InputError(f"{where}: --{key} takes a value, not a table")
        if getattr(param, "is_flag", False) and not getattr(param, "count", False):
            return self._flag(param, name, value, where)
        if isinstance(value, list):
            words = [format_value(v) for v in value]
            if param.multiple:
                return [w for word in words for w in (name, word)]
            if (param.nargs or 1) > 1:
                return [name, *words]
            return [name, ",".join(words)]
        return [name, format_value(value)]

    @staticmethod
    def _flag(param: Any, name: str, value: Any, where: str) -> list[str]:
        if not isinstance(value, bool):
            raise InputError(f"{where}: {name} is a flag: write true or false, got {value!r}")
        if value:
            return [name]
        if param.secondary_opts:
            return [param.secondary_opts[0]]
        if param.default in (False, None):
            return []  # off is the default; nothing to say
        raise InputError(f"{where}: {name} is on by default and cannot be turned off")

    def check_arguments(self, args: Sequence[str], where: str) -> None:
        """Parse ``args`` with the command's own parser, without running it."""
        try:
            context = self.command.make_context("robaudit " + self.label, list(args))
        except Exception as exc:
            message = usage_message(exc)
            if message is None:
                raise
            raise InputError(f"{where}: {message}") from None
        context.close()

    def invoke(self, args: Sequence[str]) -> Any:
        """Run the command in-process on ``args``; returns what click returns (an exit code or None)."""
        return self.command.main(args=list(args), prog_name="robaudit " + self.label, standalone_mode=False)


class CommandTree:
    """The robaudit command tree (the root click group), searchable by command path."""

    def __init__(self, root: Any) -> None:
        self.root = root
        self.commands = {path: CommandInfo.of(path, cmd) for path, cmd in self._walk(root, ())}

    @classmethod
    def _walk(cls, group: Any, prefix: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], Any]]:
        # through the group's own listing: audit commands are made on demand, they are not in ``commands`` yet
        context = group.context_class(group)
        for name in sorted(group.list_commands(context)):
            command = group.get_command(context, name)
            path = (*prefix, name)
            if path[0] in NOT_STEPS:
                continue
            if hasattr(command, "list_commands"):
                yield from cls._walk(command, path)
            else:
                yield path, command

    def audit_paths(self) -> dict[str, tuple[str, ...]]:
        """What ``audit = NAME`` may name: top-level commands that write into a report folder, and groups whose
        ``audit`` subcommand does (``robaudit corruptions`` runs ``corruptions audit``)."""
        found: dict[str, tuple[str, ...]] = {}
        for path, info in self.commands.items():
            named = any(getattr(p, "param_type_name", None) == "argument" for p in info.command.params)
            if named:  # ``robaudit audit NAME`` runs audits named by an argument: a command, not an audit
                continue
            if info.has("out") and (len(path) == 1 or (len(path) == 2 and path[1] == GROUP_AUDIT)):
                found[path[0]] = path
        return found

    def audits(self) -> list[str]:
        return sorted(self.audit_paths())

    def paths(self) -> list[str]:
        return sorted(" ".join(p) for p in self.commands)

    def find(self, name: str, kind: str, where: str) -> CommandInfo:
        """The command that ``audit = name`` or ``command = name`` designates."""
        words = tuple(name.split())
        if kind == "audit":
            paths = self.audit_paths()
            if len(words) == 1 and words[0] in paths:
                return self.commands[paths[words[0]]]
            raise InputError(f"{where}: unknown audit {name!r}{suggest(name, self.audits())}")
        if words in self.commands:
            return self.commands[words]
        if words and words[0] in NOT_STEPS:
            raise InputError(f"{where}: {words[0]!r} runs suites itself and cannot be a step")
        raise InputError(f"{where}: unknown command {name!r}{suggest(name, self.paths())}")
