"""The registry, entry-point discovery, loose plugin files and the disable switch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from robaudit import plugins
from robaudit.errors import InputError, RobauditError
from robaudit.registry import BUILTIN_SOURCE, Registry


def test_register_get_and_unregister() -> None:
    reg: Registry[object] = Registry("test.group", "thing")

    @reg.register("double", help="doubles")
    def double(x: int) -> int:
        return 2 * x

    assert reg.get("double")(4) == 8
    assert reg.entry("double").help == "doubles"
    assert reg.entry("double").source == "runtime"
    reg.unregister("double")
    assert "double" not in reg


def test_lazy_entry_is_imported_only_on_use() -> None:
    reg: Registry[object] = Registry("test.group", "thing")
    reg.add_lazy("dumps", "json:dumps", source="somewhere 1.0")
    entry = reg.entry("dumps")
    assert not entry.loaded
    assert reg.get("dumps") is json.dumps
    assert entry.loaded


def test_broken_lazy_target_names_source() -> None:
    reg: Registry[object] = Registry("test.group", "thing")
    reg.add_lazy("ghost", "no_such_module_xyz:thing", source="ghost-plugin 0.1")
    with pytest.raises(RobauditError, match="ghost-plugin 0.1"):
        reg.get("ghost")


def test_collision_names_both_sources() -> None:
    reg: Registry[object] = Registry("test.group", "thing")
    reg.add_lazy("net", "json:dumps", source="first-plugin 1.0")
    with pytest.raises(InputError, match=r"first-plugin 1\.0.*second-plugin 2\.0"):
        reg.add_lazy("net", "json:loads", source="second-plugin 2.0")


def test_unknown_name_suggests_close_matches() -> None:
    reg: Registry[object] = Registry("test.group", "thing")
    reg.add_lazy("resnet20", "json:dumps", source="x")
    with pytest.raises(InputError, match="did you mean 'resnet20'"):
        reg.get("resnet02")


def test_builtins_come_through_entry_points() -> None:
    assert plugins.models.entry("tv:").source == BUILTIN_SOURCE
    assert plugins.datasets.entry("digits").source == BUILTIN_SOURCE
    assert plugins.audits.entry("eval").source == BUILTIN_SOURCE
    assert set(plugins.REGISTRIES) == {"models", "defenses", "attacks", "audits", "datasets", "regularizers"}
    assert plugins.regularizers.entry("similarity").source == BUILTIN_SOURCE


def test_installed_plugin_is_discovered_and_can_be_disabled(monkeypatch: pytest.MonkeyPatch) -> None:
    fresh = Registry(plugins.GROUPS["models"], "model", plugins._discover)
    assert fresh.entry("cifar_resnet20").source.startswith("robaudit-cifar-resnets")
    for value in ("1", "robaudit-cifar-resnets", "robaudit_cifar_resnets"):
        monkeypatch.setenv(plugins.DISABLE_ENV, value)
        disabled = Registry(plugins.GROUPS["models"], "model", plugins._discover)
        assert "cifar_resnet20" not in disabled
        assert "tv:" in disabled  # built-ins stay
    monkeypatch.setenv(plugins.DISABLE_ENV, "some-other-dist")
    assert "cifar_resnet20" in Registry(plugins.GROUPS["models"], "model", plugins._discover)


PLUGIN_FILE = '''
from robaudit.plugins import models, datasets

@models.register("loose_net")
def loose_net(name, *, pretrained=False, num_classes=None):
    """A model from a loose plugin file."""
    import torch
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, num_classes or 4))
'''


def test_plugins_dir_registers_with_file_source(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "myplugin.py").write_text(PLUGIN_FILE)
    try:
        result = cli("--plugins-dir", tmp_path, "plugins", "--json")
        assert result.code == 0, result.err
        listing = result.result
        loose = next(e for e in listing["models"] if e["name"] == "loose_net")
        assert loose["source"] == f"file {tmp_path / 'myplugin.py'}"
        assert {e["name"] for e in listing["datasets"]} >= {"digits", "cifar10", "imagefolder", "npz"}
        assert any(e["name"] == "cifar_resnet20" and "robaudit-cifar-resnets" in e["source"] for e in listing["models"])
    finally:
        plugins.models.unregister("loose_net")


def test_plugins_dir_errors(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("--plugins-dir", tmp_path / "missing", "plugins")
    assert result.code == 2 and "not a directory" in result.err
    (tmp_path / "bad.py").write_text("raise ValueError('boom')\n")
    result = cli("--plugins-dir", tmp_path, "plugins")
    assert result.code == 2 and "bad.py failed: ValueError: boom" in result.err
    assert "Traceback" not in result.err


def test_help_does_not_import_torch() -> None:
    code = (
        "import sys\n"
        "from robaudit.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('torch', 'timm', 'torchvision', 'pandas', 'pyarrow', 'numpy') if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "HEAVY []" in out


@pytest.mark.parametrize(
    "command",
    [[], ["eval"], ["demo"], ["plugins"], ["models"], ["report"], ["report", "show"], ["report", "summarize"]],
)
def test_every_command_has_help(cli, command: list[str]) -> None:  # type: ignore[no-untyped-def]
    result = cli(*command, "--help")
    assert result.code == 0
    assert "Usage" in result.out and len(result.out) > 200


def test_usage_errors_exit_2_without_traceback(cli) -> None:  # type: ignore[no-untyped-def]
    for args in (["eval"], ["eval", "-m", "x", "--limit", "abc"], ["eval", "-m", "x", "--bogus"], ["nonsense"]):
        result = cli(*args)
        assert result.code == 2, (args, result.err)
        assert "Traceback" not in result.err and "internal error" not in result.err


def test_version(cli) -> None:  # type: ignore[no-untyped-def]
    from robaudit import __version__

    result = cli("--version")
    assert result.code == 0 and __version__ in result.out
