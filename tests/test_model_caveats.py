"""What robaudit records about a model's weights and normalization: origin, fingerprint, caveats; the
warnings on stderr, the report metadata, the HTML and Markdown pages and the gate's refusal."""

from __future__ import annotations

import logging
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from robaudit.models import ModelSpec, load_model
from robaudit.models.caveats import RANDOM_WEIGHTS, UNKNOWN_NORMALIZATION, state_sha256

FACTORIES = """
import torch
from torch import nn

from robaudit.models import ModelBuild, Preprocessing

PRE = Preprocessing(mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), input_size=(3, 32, 32), crop_pct=1.0)
SAVED = __file__.replace(".py", "_weights.pt")


def _net():
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 10))


def honours(name, *, pretrained=False, num_classes=None):
    # loads weights when asked, without saying from where
    net = _net()
    if pretrained:
        net.load_state_dict(torch.load(SAVED, weights_only=True))
    return ModelBuild(net, PRE, 10)


def ignores(name, *, pretrained=False, num_classes=None):
    return ModelBuild(_net(), PRE, 10)


def swallows(name, **kwargs):
    return ModelBuild(_net(), PRE, 10)


def always_loads(name, *, pretrained=False, num_classes=None):
    # weights loaded inside the factory, whatever it is asked
    net = _net()
    net.load_state_dict(torch.load(SAVED, weights_only=True))
    return ModelBuild(net, PRE, 10)


def says_random(name, *, pretrained=False, num_classes=None):
    return ModelBuild(_net(), PRE, 10, random_weights=True)


def bare_random(name, *, pretrained=False, num_classes=None):
    return _net()


def bare_fixed(name, *, pretrained=False, num_classes=None):
    net = _net()
    net.load_state_dict(torch.load(SAVED, weights_only=True))
    return net


class Brightness(nn.Module):
    def forward(self, x):
        return torch.stack([x.mean((1, 2, 3)) * k for k in range(10)], 1)


def parameterless(name, *, pretrained=False, num_classes=None):
    return Brightness()
"""


@pytest.fixture
def factories(tmp_path: Path) -> Path:
    path = tmp_path / "factories.py"
    path.write_text(textwrap.dedent(FACTORIES))
    torch.manual_seed(7)
    state = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 10)).state_dict()
    torch.save(state, tmp_path / "factories_weights.pt")
    return path


# (factory, pretrained, --mean/--std given, expected origin, expected caveat codes)
CASES = [
    ("honours", True, False, "factory", []),
    ("honours", False, False, "random", [RANDOM_WEIGHTS]),
    ("ignores", True, False, "random", [RANDOM_WEIGHTS]),
    ("swallows", True, False, "random", [RANDOM_WEIGHTS]),
    ("always_loads", False, False, "factory", []),
    ("always_loads", True, False, "factory", []),
    ("says_random", False, False, "random", [RANDOM_WEIGHTS]),
    ("bare_random", False, False, "random", [RANDOM_WEIGHTS, UNKNOWN_NORMALIZATION]),
    ("bare_random", False, True, "random", [RANDOM_WEIGHTS]),
    ("bare_fixed", False, False, "factory", [UNKNOWN_NORMALIZATION]),
    ("bare_fixed", True, True, "factory", []),
    ("parameterless", False, False, "none", [UNKNOWN_NORMALIZATION]),
]


@pytest.mark.parametrize(("factory", "pretrained", "normalized", "origin", "codes"), CASES)
def test_weights_origin_and_caveats_of_factories(
    factories: Path,
    factory: str,
    pretrained: bool,
    normalized: bool,
    origin: str,
    codes: list[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    norm: dict[str, Any] = {"mean": (0.5,), "std": (0.5,)} if normalized else {}
    spec = ModelSpec(f"{factories}:{factory}", pretrained=pretrained, input_size=(3, 32, 32), **norm)
    with caplog.at_level(logging.WARNING, logger="robaudit"):
        model = load_model(spec, "cpu")
    assert model.provenance["weights_origin"] == origin
    assert [c.code for c in model.caveats] == codes
    assert model.provenance["caveats"] == [c.as_dict() for c in model.caveats]
    # one warning line per caveat, naming the model
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == len(codes)
    assert all(w.startswith(f"model {spec.name}: ") and "\n" not in w for w in warnings)
    if pretrained and origin == "random":
        assert "ignored pretrained=True" in warnings[0]


def test_the_probe_leaves_the_model_and_the_global_generator_alone(factories: Path) -> None:
    torch.manual_seed(3)
    before = torch.random.get_rng_state()
    first = load_model(ModelSpec(f"{factories}:ignores"), "cpu")
    assert torch.equal(torch.random.get_rng_state(), before)
    second = load_model(ModelSpec(f"{factories}:ignores"), "cpu")
    assert first.fingerprint == second.fingerprint  # the audited model is the seed-0 construction, always


def test_parameters_sha256_identifies_any_weights(factories: Path, tmp_path: Path) -> None:
    """Weights loaded inside a factory have no file to hash; the parameters' fingerprint names them."""
    loaded = load_model(ModelSpec(f"{factories}:always_loads"), "cpu")
    assert loaded.provenance["weights_sha256"] is None if "weights_sha256" in loaded.provenance else True
    fingerprint = loaded.provenance["parameters_sha256"]
    assert fingerprint == state_sha256(loaded.backbone) and len(fingerprint) == 64
    # other weights in the same file: another fingerprint; the same weights by another route: the same one
    state = {k: v * 2 for k, v in loaded.backbone.state_dict().items()}
    torch.save(state, tmp_path / "factories_weights.pt")
    assert load_model(ModelSpec(f"{factories}:always_loads"), "cpu").provenance["parameters_sha256"] != fingerprint
    torch.save(state, tmp_path / "doubled.pt")
    by_file = load_model(ModelSpec(f"{factories}:ignores", weights=str(tmp_path / "doubled.pt")), "cpu")
    reloaded = load_model(ModelSpec(f"{factories}:always_loads"), "cpu")
    assert by_file.provenance["parameters_sha256"] == reloaded.provenance["parameters_sha256"]
    assert by_file.provenance["weights_origin"] == "checkpoint" and not by_file.caveats


def test_fingerprint_covers_dtypes_numpy_lacks() -> None:
    a = torch.nn.Linear(2, 2).to(torch.bfloat16)
    b = torch.nn.Linear(2, 2).to(torch.bfloat16)
    assert state_sha256(a) != state_sha256(b)
    b.load_state_dict(a.state_dict())
    assert state_sha256(a) == state_sha256(b)


@pytest.mark.parametrize("name", ["resnet18", "tv:resnet18"])
def test_library_models_without_weights_are_random(name: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="robaudit"):
        model = load_model(ModelSpec(name, num_classes=10), "cpu")
    assert model.provenance["weights_origin"] == "random"
    assert [c.code for c in model.caveats] == [RANDOM_WEIGHTS]
    assert "neither --pretrained nor --weights" in caplog.text


def test_plugin_model_with_and_without_weights(validation_data: Path) -> None:
    random = load_model(ModelSpec("cifar_resnet20"), "cpu")
    assert random.provenance["weights_origin"] == "random"  # found by the probe: the plugin does not say
    trained = load_model(ModelSpec("cifar_resnet20", weights=str(validation_data / "weights/cifar10_resnet20.th")))
    assert trained.provenance["weights_origin"] == "checkpoint" and not trained.caveats


# -- the command line, the reports, the pages and the gate ------------------------------------------------

CliRun = Callable[..., Any]


def _eval(cli: CliRun, model: str, out: Path, *extra: object) -> Any:
    return cli("eval", "-m", model, "-d", "digits", "--limit", 20, "--input-size", "3,32,32", "-o", out, *extra)


def test_cli_warns_once_and_records_the_origin(factories: Path, tmp_path: Path, cli: CliRun) -> None:
    from robaudit.reports.read import read_metadata

    result = _eval(cli, f"{factories}:ignores", tmp_path / "r", "--pretrained")
    assert result.code == 0, result.err
    lines = [line for line in result.err.splitlines() if "random weights" in line]
    assert len(lines) == 1 and "ignored pretrained=True" in result.err
    meta = read_metadata(tmp_path / "r" / "eval.parquet")
    assert meta["model"]["weights_origin"] == "random"
    assert [c["code"] for c in meta["model"]["caveats"]] == [RANDOM_WEIGHTS]
    assert meta["model"]["parameters_sha256"]
    shown = cli("report", "show", tmp_path / "r" / "eval.parquet")
    assert "random" in shown.out and "caveat: random-weights" in shown.out

    quiet = _eval(cli, f"{factories}:always_loads", tmp_path / "q")
    assert quiet.code == 0 and "random weights" not in quiet.err


def test_pages_show_caveats(factories: Path, tmp_path: Path, cli: CliRun) -> None:
    from robaudit.presentation.html import write_html
    from robaudit.presentation.markdown import write_markdown

    root = tmp_path / "variants"
    assert _eval(cli, f"{factories}:bare_random", root / "untrained").code == 0
    assert _eval(cli, f"{factories}:always_loads", root / "trained").code == 0
    page = write_html(root).read_text()
    assert page.count('data-section="caveats"') == 1  # the untrained variant only
    assert "model caveat: random-weights" in page and "model caveat: unknown-normalization" in page
    markdown = write_markdown(root)
    assert "Model caveats" in markdown and "model caveat: random-weights" in markdown
    assert "Model caveats" not in write_markdown(root / "trained")


def test_gate_refuses_random_weights_unless_allowed(factories: Path, tmp_path: Path, cli: CliRun) -> None:
    policy = tmp_path / "gate.toml"
    policy.write_text('[[rule]]\nmetric = "eval.top1"\nmin = 0.0\nvariant = "*"\n')
    root = tmp_path / "variants"
    assert _eval(cli, f"{factories}:always_loads", root / "trained").code == 0
    assert cli("gate", root, "--policy", policy).code == 0
    assert _eval(cli, f"{factories}:ignores", root / "untrained", "--pretrained").code == 0
    refused = cli("gate", root, "--policy", policy)
    assert refused.code == 2
    assert "untrained" in refused.err and "random weights" in refused.err and "--allow-random-weights" in refused.err
    assert "trained/eval" not in refused.err.replace("untrained/eval", "")
    allowed = cli("gate", root, "--policy", policy, "--allow-random-weights", "--json")
    assert allowed.code == 0, allowed.err
    assert "judged anyway" in allowed.err
    assert allowed.result["counts"]["pass"] == 2
