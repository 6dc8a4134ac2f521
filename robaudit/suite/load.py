"""Reading a suite: the TOML file or built-in suite, ``--set`` overrides, and the checked :class:`Suite`.

The file has four parts, all but ``steps`` optional::

    out = "robaudit-suite"          # report folder (robaudit run -o wins)
    description = "..."
    [run]                           # options shared by every step whose command has them
    [[variants]]                    # name + shared options: all steps again, into OUT/<name>/
    [[steps]]                       # audit = "eval" (or command = "cache tune"), name = ..., options

Keys are long option names without dashes; ``_`` and ``-`` are interchangeable. A step's own options win
over its variant's, which win over ``[run]``; the options forced from the command line (``--model``,
``--device``, ``--limit``) win over all of them. ``--set PATH=VALUE`` edits the file's values before that:
``run.limit=100``, ``steps.2.eps=0.03`` (steps and variants by 1-based position or by name), ``out=DIR``;
VALUE is read as TOML (``100``, ``0.5``, ``true``, ``["a", "b"]``) and as a plain string when it is not.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import InputError, suggest
from .commands import MANAGED, CommandTree, normalize_key
from .references import PLACES, names_in, strings_in

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 reads TOML with the tomli backport
    import tomli as tomllib

DEFAULT_OUT = "robaudit-suite"
TOP_KEYS = ("out", "description", "run", "variants", "steps")
ARGS = "args"  # a step's positional arguments (e.g. the folder of robaudit gate)
STEP_KEYS = ("audit", "command", "name", ARGS)  # reserved in a step table; every other key is an option
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")
_LINE = re.compile(r"at line (\d+)")


@dataclass(frozen=True)
class StepDef:
    """One step: 1-based position, unique name, ``audit`` or ``command``, the command path, its own options."""

    index: int
    name: str
    kind: str
    path: tuple[str, ...]
    options: Mapping[str, Any]

    def where(self) -> str:
        return f"step {self.index} ({self.name})"


@dataclass(frozen=True)
class VariantDef:
    name: str
    options: Mapping[str, Any]


@dataclass(frozen=True)
class Suite:
    """A checked suite: every step names a command, every key names one of its options."""

    source: str
    steps: tuple[StepDef, ...]
    run: Mapping[str, Any] = field(default_factory=dict)
    variants: tuple[VariantDef, ...] = ()
    force: Mapping[str, Any] = field(default_factory=dict)
    out: str | None = None
    description: str | None = None
    directory: Path | None = None

    def resolved(self) -> dict[str, Any]:
        """The suite after overrides, as plain data: what the manifest records and the hash covers."""
        return {
            "description": self.description,
            "run": dict(self.run),
            "variants": [{"name": v.name, **v.options} for v in self.variants],
            "steps": [{"name": s.name, s.kind: " ".join(s.path), **s.options} for s in self.steps],
            "force": dict(self.force),
        }

    def digest(self) -> str:
        """SHA-256 of the resolved suite; ``--resume`` refuses a suite whose digest changed."""
        text = json.dumps(self.resolved(), sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(text.encode()).hexdigest()


# -- files and built-in suites --------------------------------------------------------------------------------


def _builtin_folder() -> Any:
    return resources.files("robaudit") / "suites"


def builtin_names() -> list[str]:
    """The suites shipped with robaudit (``robaudit run NAME``)."""
    folder = _builtin_folder()
    return sorted(p.name[: -len(".toml")] for p in folder.iterdir() if p.name.endswith(".toml"))


def example_text(name: str = "example") -> str:
    """The commented text of a built-in suite: ``robaudit run --example [NAME]`` prints it (default ``example``)."""
    if name not in builtin_names():
        raise InputError(
            f"no built-in suite {name!r}{suggest(name, builtin_names())} (built-in: {', '.join(builtin_names())})"
        )
    return str((_builtin_folder() / f"{name}.toml").read_text(encoding="utf-8"))


def read_source(name: str) -> tuple[str, str, Path | None]:
    """(text, source label, folder) of a suite file path or a built-in suite name."""
    path = Path(name)
    if path.is_file():
        try:
            return path.read_text(encoding="utf-8"), str(path), path.resolve().parent
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"cannot read suite {path}: {exc}") from None
    if path.suffix == "" and name in builtin_names():
        entry = _builtin_folder() / f"{name}.toml"
        return str(entry.read_text(encoding="utf-8")), f"builtin:{name}", Path(str(_builtin_folder()))
    if path.exists():
        raise InputError(f"suite {path} is not a file")
    raise InputError(
        f"no suite file {name!r} and no built-in suite of that name{suggest(name, builtin_names())} "
        f"(built-in: {', '.join(builtin_names())})"
    )


def parse_toml(text: str, source: str) -> dict[str, Any]:
    """The TOML document, or an InputError naming the line and quoting it."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        match = _LINE.search(message)
        quoted = ""
        if match:
            lines = text.splitlines()
            number = int(match.group(1))
            if 0 < number <= len(lines) and lines[number - 1].strip():
                quoted = f": {lines[number - 1].strip()!r}"
        raise InputError(f"{source}: invalid TOML: {message}{quoted}") from None


# -- shape of the document --------------------------------------------------------------------------------------


def _options_table(table: Any, where: str, reserved: tuple[str, ...] = ()) -> dict[str, Any]:
    """A table's keys in canonical form; reserved keys keep their own spelling."""
    if not isinstance(table, dict):
        raise InputError(f"{where} must be a table of options, got {type(table).__name__}")
    out: dict[str, Any] = {}
    for key, value in table.items():
        canonical = key if key in reserved else normalize_key(key)
        if canonical in out:
            raise InputError(f"{where}: {key!r} is given twice (as - and _ spellings)")
        out[canonical] = value
    return out


def _array_of_tables(value: Any, where: str) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise InputError(f"{where} must be an array of tables ([[{where}]])")
    return value


def normalize_document(raw: Mapping[str, Any], source: str) -> dict[str, Any]:
    """The document with known top-level keys only and option keys in canonical form."""
    unknown = [k for k in raw if k not in TOP_KEYS]
    if unknown:
        raise InputError(f"{source}: unknown key {unknown[0]!r}{suggest(unknown[0], TOP_KEYS)} (keys: {TOP_KEYS})")
    for key in ("out", "description"):
        if key in raw and not isinstance(raw[key], str):
            raise InputError(f"{source}: {key} must be a string")
    if not raw.get("steps"):
        raise InputError(f"{source}: a suite needs at least one [[steps]] table")
    return {
        "out": raw.get("out"),
        "description": raw.get("description"),
        "run": _options_table(raw.get("run", {}), "[run]"),
        "variants": [
            _options_table(v, f"variant {i}", ("name",))
            for i, v in enumerate(_array_of_tables(raw.get("variants", []), "variants"), 1)
        ],
        "steps": [
            _options_table(s, f"step {i}", STEP_KEYS) for i, s in enumerate(_array_of_tables(raw["steps"], "steps"), 1)
        ],
    }


def default_step_names(steps: list[dict[str, Any]]) -> list[str]:
    """Explicit names, else the command's name with ``_`` for spaces and dashes, numbered when repeated."""
    names: list[str] = []
    for step in steps:
        explicit = step.get("name")
        if isinstance(explicit, str):
            names.append(explicit)
            continue
        base = re.sub(r"[^A-Za-z0-9]+", "_", str(step.get("audit") or step.get("command") or "step")).strip("_")
        name, n = base or "step", 2
        while name in names or any(s.get("name") == name for s in steps):
            name, n = f"{base}_{n}", n + 1
        names.append(name)
    return names


# -- --set overrides ----------------------------------------------------------------------------------------


def parse_value(text: str) -> Any:
    """A ``--set`` value read as TOML, else the text itself (so ``run.model=resnet50`` needs no quotes)."""
    try:
        return tomllib.loads(f"value = {text}")["value"]
    except tomllib.TOMLDecodeError:
        return text


def _select(entries: list[dict[str, Any]], names: list[str], selector: str, kind: str, assignment: str) -> int:
    if not entries:
        raise InputError(f"--set {assignment}: the suite has no {kind}s")
    if selector.isdigit():
        position = int(selector)
        if not 1 <= position <= len(entries):
            raise InputError(f"--set {assignment}: there is no {kind} {position} (1 to {len(entries)})")
        return position - 1
    if selector in names:
        return names.index(selector)
    raise InputError(f"--set {assignment}: no {kind} named {selector!r}{suggest(selector, names)}")


def apply_sets(document: dict[str, Any], assignments: list[str]) -> dict[str, Any]:
    """``document`` (normalized) with each ``PATH=VALUE`` assignment applied, in order."""
    document = copy.deepcopy(document)
    for assignment in assignments:
        path, sep, text = assignment.partition("=")
        parts = [p.strip() for p in path.strip().split(".")]
        if not sep or not all(parts):
            raise InputError(f"--set takes PATH=VALUE (e.g. run.limit=100 or steps.2.eps=0.03), got {assignment!r}")
        value = parse_value(text.strip())
        if parts[0] in ("out", "description") and len(parts) == 1:
            document[parts[0]] = str(value)
        elif parts[0] == "run" and len(parts) == 2:
            document["run"][normalize_key(parts[1])] = value
        elif parts[0] in ("steps", "variants") and len(parts) == 3:
            entries = document[parts[0]]
            names = default_step_names(entries) if parts[0] == "steps" else [str(v.get("name")) for v in entries]
            target = entries[_select(entries, names, parts[1], parts[0][:-1], assignment)]
            key = parts[2] if parts[2] in STEP_KEYS else normalize_key(parts[2])
            target[key] = value
        else:
            raise InputError(
                f"--set {assignment}: PATH is out, description, run.KEY, steps.N.KEY or variants.N.KEY "
                "(N: 1-based position or name)"
            )
    return document


# -- the checked suite -------------------------------------------------------------------------------------------


def _steps(document: dict[str, Any], tree: CommandTree) -> tuple[StepDef, ...]:
    names = default_step_names(document["steps"])
    steps = []
    for index, (raw, name) in enumerate(zip(document["steps"], names, strict=True), 1):
        where = f"step {index}"
        kinds = [k for k in ("audit", "command") if k in raw]
        if len(kinds) != 1:
            raise InputError(f"{where}: give exactly one of audit = NAME or command = NAME")
        kind = kinds[0]
        if not isinstance(raw[kind], str):
            raise InputError(f'{where}: {kind} must be a string, e.g. {kind} = "eval"')
        if not isinstance(raw.get("name", name), str) or not _NAME.match(name):
            raise InputError(f"{where}: name must be a word that starts with a letter (letters, digits, _ or -)")
        if name in names[: index - 1]:
            raise InputError(f"{where}: another step is already named {name!r}; give it its own name")
        info = tree.find(raw[kind], kind, f"{where} ({name})")
        options = {k: v for k, v in raw.items() if k not in STEP_KEYS}
        for key in options:
            info.check_key(key, f"{where} ({name})")
        if ARGS in raw:
            options[ARGS] = _positional(raw[ARGS], f"{where} ({name})")
        steps.append(StepDef(index, name, kind, info.path, options))
    return tuple(steps)


def _positional(value: Any, where: str) -> list[Any]:
    values = value if isinstance(value, list) else [value]
    if not all(isinstance(v, (str, int, float)) for v in values):
        raise InputError(f"{where}: args takes a string or a list of strings (the command's positional arguments)")
    return values


def _variants(document: dict[str, Any]) -> tuple[VariantDef, ...]:
    variants: list[VariantDef] = []
    for index, raw in enumerate(document["variants"], 1):
        name = raw.get("name")
        if not isinstance(name, str) or not _NAME.match(name):
            raise InputError(f"variant {index}: needs name = WORD (letters, digits, _ or -; it names its folder)")
        if any(v.name == name for v in variants):
            raise InputError(f"variant {index}: the name {name!r} is used twice")
        variants.append(VariantDef(name, {k: v for k, v in raw.items() if k != "name"}))
    return tuple(variants)


def _check_shared(table: Mapping[str, Any], where: str, steps: tuple[StepDef, ...], tree: CommandTree) -> None:
    """Each shared key must be an option of at least one step's command (others would silently do nothing)."""
    commands = [tree.commands[s.path] for s in steps]
    known = sorted({k for info in commands for k in info.settable()})
    for key in table:
        if key == "out":
            raise InputError(f"{where}: set the report folder with the top-level out key or robaudit run -o")
        if key in MANAGED:
            raise InputError(f"{where}: {key!r} is set by robaudit run itself (use robaudit run --{key})")
        if not any(info.has(key) for info in commands):
            raise InputError(f"{where}: no step takes an option --{key}{suggest(key, known)}")


def _check_forced(suite: Suite, tree: CommandTree) -> None:
    """Forced options must apply to some step, and may use places but not step results."""
    for key, value in suite.force.items():
        if not any(tree.commands[s.path].has(key) for s in suite.steps):
            raise InputError(f"--{key}: no step of this suite takes it")
        for name in (n for text in strings_in(value) for n in names_in(text)):
            if name not in PLACES:
                raise InputError(f"--{key} {value!r}: only the references {PLACES} are allowed on the command line")


def parse_suite(
    document: Mapping[str, Any],
    tree: CommandTree,
    *,
    source: str,
    sets: list[str] | None = None,
    force: Mapping[str, Any] | None = None,
    directory: Path | None = None,
) -> Suite:
    """The checked suite of a TOML document, after ``--set`` assignments and forced options."""
    normalized = apply_sets(normalize_document(document, source), list(sets or []))
    steps = _steps(normalized, tree)
    suite = Suite(
        source=source,
        steps=steps,
        run=normalized["run"],
        variants=_variants(normalized),
        force={normalize_key(k): v for k, v in (force or {}).items() if v is not None},
        out=normalized["out"],
        description=normalized["description"],
        directory=directory,
    )
    _check_shared(suite.run, "[run]", steps, tree)
    for variant in suite.variants:
        _check_shared(variant.options, f"variant {variant.name}", steps, tree)
    _check_forced(suite, tree)
    return suite


def load_suite(
    name: str, tree: CommandTree, *, sets: list[str] | None = None, force: Mapping[str, Any] | None = None
) -> Suite:
    """Read, override and check the suite file or built-in suite ``name``."""
    text, source, directory = read_source(name)
    return parse_suite(parse_toml(text, source), tree, source=source, sets=sets, force=force, directory=directory)
