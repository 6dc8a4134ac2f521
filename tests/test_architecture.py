"""The shape of the package: imports point downward, and every registered audit keeps the audit contract.

Layers, bottom to top (a module may import its own layer and the layers below, never above; imports made
only for type checking do not count):

0. shared: errors, params, registry, plugins, provenance, distributed, frequency, and reports (the I/O layer: writer,
   readers, folder loader, statistics, metric and table types, plotting helpers)
1. building blocks: data, models, corruptions, attacks, defenses
2. audits
3. runner
4. presentation, gate
5. cli, suite (a suite runs commands), api (Python functions over the same code as the commands)
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from conftest import QUICK_AUDIT_ARGS

from robaudit import plugins
from robaudit.reports.metrics import Metric

PACKAGE = Path(__file__).resolve().parents[1] / "robaudit"
LAYERS = {
    "__init__": 5,  # the package's face: the Python API's names, loaded lazily (only __version__ below it)
    "__main__": 5,
    "errors": 0,
    "params": 0,
    "registry": 0,
    "plugins": 0,
    "provenance": 0,
    "distributed": 0,
    "frequency": 0,
    "reports": 0,
    "data": 1,
    "models": 1,
    "corruption": 1,
    "attacks": 1,
    "defenses": 1,
    "similarity": 1,
    "training": 1,
    "audits": 2,
    "runner": 3,
    "presentation": 4,
    "gate": 4,
    "cli": 5,
    "suite": 5,
    "api": 5,
}


def _top(module: str) -> str:
    """``robaudit.audits.attack.audit`` → ``audits``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _runtime_imports(path: Path, root: Path = PACKAGE) -> list[tuple[int, str]]:
    """Absolute names of the robaudit modules ``path`` imports at run time (not under TYPE_CHECKING)."""
    module = "robaudit." + ".".join(path.relative_to(root).with_suffix("").parts)
    module = module.removesuffix(".__init__")
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    typing_only = {
        id(node)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
        for stmt in block.body
        for node in ast.walk(stmt)
    }
    found = []
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            names = [target] if node.module else [f"{target}.{a.name}" for a in node.names]
            found += [(node.lineno, n) for n in names if n.startswith("robaudit")]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("robaudit")]
    return found


def test_imports_point_downward() -> None:
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        source = "robaudit." + ".".join(path.relative_to(PACKAGE).with_suffix("").parts)
        here = LAYERS[_top(source)]
        for line, target in _runtime_imports(path):
            if _top(target) in LAYERS and LAYERS[_top(target)] > here:
                upward.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {target}")
    assert not upward, "upward imports:\n" + "\n".join(upward)


def test_the_import_check_sees_an_upward_import(tmp_path: Path) -> None:
    fake = tmp_path / "robaudit" / "reports"
    fake.mkdir(parents=True)
    (fake / "bad.py").write_text("from ..cli import main\nif TYPE_CHECKING:\n    from ..audits import base\n")
    assert [t for _, t in _runtime_imports(fake / "bad.py", tmp_path / "robaudit")] == ["robaudit.cli"]


def test_every_module_belongs_to_a_layer() -> None:
    tops = {_top("robaudit." + ".".join(p.relative_to(PACKAGE).with_suffix("").parts)) for p in PACKAGE.rglob("*.py")}
    assert tops <= set(LAYERS), f"modules without a layer: {sorted(tops - set(LAYERS))}"


# -- the audit contract, over every registered audit -------------------------------------------------------


def _pattern(text: str) -> re.Pattern[str]:
    return re.compile("^" + ".+".join(re.escape(part) for part in re.split(r"<[^>]*>", text)) + "$")


@pytest.mark.parametrize("name", plugins.audits.names())
def test_every_audit_keeps_the_contract(name: str, cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from robaudit.presentation.html import write_html
    from robaudit.reports.folder import load_reports
    from robaudit.reports.metrics import collect_metrics
    from robaudit.reports.plots import png_bytes

    audit = plugins.audits.get(name)
    out = tmp_path / name
    result = cli(
        name, "-m", "digits_cnn", "-d", "digits", "--limit", "12", "-o", out, "--json", *QUICK_AUDIT_ARGS.get(name, [])
    )
    assert result.code == 0, result.err
    assert result.result
    (report,) = load_reports(out)
    assert report.kind == name and len(report.rows) > 0
    assert {"chunk", "index", "label", "skipped", "defense", *audit.columns} <= set(report.rows.columns)
    # metrics follow the audit's naming scheme, and the gate reads them from the folder
    metrics = audit.metrics(report.summary, report.meta)
    assert all(isinstance(m, Metric) for m in metrics)
    patterns = [_pattern(p.pattern) for p in audit.metric_patterns]
    assert all(any(p.match(m.name) for p in patterns) for m in metrics), [m.name for m in metrics]
    assert set(collect_metrics(out)) == {m.name for m in metrics}
    # tables of text, figures that render, a section of the HTML page
    for table in audit.tables(report.summary, report.meta):
        assert all(isinstance(cell, str) for row in table.rows for cell in row)
        assert all(len(row) == len(table.header) for row in table.rows)
    for figure in audit.figures(report):
        assert png_bytes(figure.figure)[:4] == b"\x89PNG"
    assert f'data-section="{name}"' in write_html(out).read_text(encoding="utf-8")
    assert all(isinstance(v, str) for v in audit.key_numbers(report.summary, report.meta).values())


def test_every_audit_module_is_light_to_import() -> None:
    """``robaudit --help`` lists every audit: importing one must not import torch, numpy, pandas or pyarrow."""
    import subprocess
    import sys

    code = (
        "import sys\nfrom robaudit import plugins\n"
        "for entry in plugins.audits.entries():\n    entry.load()\n"
        "print('HEAVY', [m for m in ('torch', 'numpy', 'pandas', 'pyarrow') if m in sys.modules])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "HEAVY []" in out


def test_generic_audit_command_runs_any_audit(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    listing = cli("audit")
    assert listing.code == 0 and all(name in listing.out for name in plugins.audits.names())
    result = cli("audit", "hybrid", "-m", "digits_cnn", "--limit", "12", "-O", "fmix=0,0.5,1", "-o", tmp_path, "--json")
    assert result.code == 0, result.err
    assert [c["fmix"] for c in result.result["curve"]] == [0.0, 0.5, 1.0]
    wrong = cli("audit", "hybrid", "-m", "digits_cnn", "-O", "fmx=0.5", "-o", tmp_path / "x")
    assert wrong.code == 2 and "did you mean 'fmix'" in wrong.err
    assert cli("audit", "hybird", "-m", "digits_cnn").code == 2
