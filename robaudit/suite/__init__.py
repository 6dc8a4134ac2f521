"""Suites: several robaudit commands described by one TOML file and run into one report folder.

A suite is a list of *steps*, each of which is an existing command (``eval``, ``attack``, ``cache tune``...)
with its options, plus a ``[run]`` table of options the steps share and, optionally, *variants* (the same
steps again with other shared options, each into a sub-folder). Keys are the commands' long option names,
so a suite can say everything a command line can; each step is turned into the very argument list a user
would type and run in-process by the command itself, which parses and checks it as usual.

The whole suite is checked before anything runs: TOML syntax, step and option names against the commands'
own parameters, references between steps, and every step's argument list through the command's parser.
While it runs, ``OUT/manifest.json`` records the resolved suite, its hash, and per step the argument list,
status, times, exit code, report path and printed results, rewritten atomically after every change, so an
interrupted suite can be resumed and a finished one audited.

Modules: :mod:`.load` (files, built-in suites, ``--set`` overrides, the suite model), :mod:`.commands` (what
the command tree accepts, TOML values → arguments), :mod:`.references` (``{out}``, ``{steps.NAME.KEY}``),
:mod:`.manifest` and :mod:`.execute` (the plan and the run).
"""

from __future__ import annotations

from .commands import CommandInfo, CommandTree
from .execute import PlannedStep, Reporter, StepRecord, SuiteRun, plan_suite, validate_plan
from .load import (
    DEFAULT_OUT,
    StepDef,
    Suite,
    VariantDef,
    builtin_names,
    example_text,
    load_suite,
    parse_suite,
)
from .manifest import MANIFEST_NAME, Manifest

__all__ = [
    "DEFAULT_OUT",
    "MANIFEST_NAME",
    "CommandInfo",
    "CommandTree",
    "Manifest",
    "PlannedStep",
    "Reporter",
    "StepDef",
    "StepRecord",
    "Suite",
    "SuiteRun",
    "VariantDef",
    "builtin_names",
    "example_text",
    "load_suite",
    "parse_suite",
    "plan_suite",
    "validate_plan",
]
