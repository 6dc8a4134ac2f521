"""Cache keys at any intermediate value: graph nodes (functional ReLUs, residual sums) next to module names."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from robaudit.defenses.features import FeatureReader, graph_nodes
from robaudit.errors import InputError
from robaudit.models import LoadedModel, ModelSpec, load_model

# (model spec, input side, a residual-sum node, the graph node of the activation after it, the block module)
MODELS = [
    ("cifar_resnet20", 32, "layer3.2.add", "layer3.2.relu_1", "layer3.2"),  # F.relu inside the block
    ("tv:resnet18", 64, "layer2.1.add", "layer2.1.relu_1", "layer2.1"),  # one ReLU module called twice
    ("resnet18", 64, "layer2.1.add", "layer2.1.act2", "layer2.1"),  # timm: act2 is a module
]


@pytest.fixture(scope="module", params=MODELS, ids=[m[0] for m in MODELS])
def case(request: pytest.FixtureRequest) -> tuple[LoadedModel, int, str, str, str]:
    name, side, add, act, block = request.param
    return load_model(ModelSpec(name, num_classes=10), "cpu"), side, add, act, block


def test_graph_nodes_equal_what_the_network_computes(case: tuple[LoadedModel, int, str, str, str]) -> None:
    model, side, add, act, block = case
    torch.manual_seed(0)
    x = torch.rand(3, 3, side, side)
    assert add in graph_nodes(model.backbone) and add not in dict(model.backbone.named_modules())
    by_node = FeatureReader(model.base, [add], pool="flatten")
    features, logits = by_node(model.base, x)
    with torch.no_grad():
        assert torch.allclose(logits, model(x), atol=1e-5)  # one forward pass gives the logits too
    # the residual sum, after its ReLU, is what the block returns (hooked on the block module)
    summed = by_node._extractor(model.base.normalize(x))[add]  # type: ignore[misc]
    block_out, _ = FeatureReader(model.base, [block], pool="flatten")(model.base, x)
    assert torch.allclose(F.normalize(F.relu(summed).flatten(1), dim=1), block_out, atol=1e-5)
    assert torch.allclose(features, F.normalize(summed.flatten(1), dim=1), atol=1e-6)
    after, _ = FeatureReader(model.base, [act], pool="flatten")(model.base, x)
    assert torch.allclose(after, block_out, atol=1e-5)


def test_nodes_mix_with_modules_and_aliases_and_gradients_reach_pixels(
    case: tuple[LoadedModel, int, str, str, str],
) -> None:
    model, side, add, _, block = case
    x = torch.rand(2, 3, side, side, requires_grad=True)
    mixed = FeatureReader(model.base, [add, block, "penultimate", "probs"])
    features, _ = mixed(model.base, x)
    parts = [FeatureReader(model.base, [layer])(model.base, x)[0] for layer in (add, block, "penultimate", "probs")]
    widths = [p.shape[1] for p in parts]
    assert features.shape[1] == sum(widths)
    # each part, normalized alone, is the direction of its slice of the joint key
    for part, piece in zip(parts, features.split(widths, dim=1), strict=True):
        assert torch.allclose(F.normalize(piece, dim=1), part, atol=1e-5)
    features.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_module_names_keep_the_hook_path(case: tuple[LoadedModel, int, str, str, str]) -> None:
    model, _, _, _, block = case
    assert FeatureReader(model.base, [block, "penultimate"])._extractor is None
    assert FeatureReader(model.base, ["logits"])._extractor is None


@pytest.mark.parametrize(
    ("typo", "meant"), [("layer3.2.relu1", "layer3.2.relu_1"), ("layer3.2.ad", "layer3.2.add"), ("layr3.2", "layer3.2")]
)
def test_unknown_layers_suggest_modules_and_nodes(typo: str, meant: str) -> None:
    model = load_model(ModelSpec("cifar_resnet20"), "cpu")
    with pytest.raises(InputError, match=f"did you mean [^)]*'{meant}'") as error:
        FeatureReader(model.base, [typo])
    assert "robaudit cache layers" in str(error.value)


def test_untraceable_models_say_so(tmp_path: Path) -> None:
    path = tmp_path / "branchy.py"
    path.write_text(
        textwrap.dedent("""
        import torch
        from torch import nn

        class Branchy(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = nn.Linear(3, 10)

            def forward(self, x):
                m = x.mean((2, 3))
                if m.sum() > 0:  # data-dependent control flow: torch.fx cannot trace it
                    m = torch.relu(m)
                return self.fc(m)

        def branchy(name, *, pretrained=False, num_classes=None):
            return Branchy()
        """)
    )
    model = load_model(ModelSpec(f"{path}:branchy", input_size=(3, 8, 8)), "cpu")
    with pytest.raises(InputError, match="cannot trace the model's graph.*use module names"):
        FeatureReader(model.base, ["relu"])
    assert FeatureReader(model.base, ["fc"])._extractor is None  # modules still work


def test_cache_build_on_graph_nodes_and_layer_listing(cli: Any, tmp_path: Path) -> None:
    listed = cli("cache", "layers", "-m", "cifar_resnet20", "relu_1", "--json")
    assert listed.code == 0, listed.err
    names = {row["name"]: row["kind"] for row in listed.result["layers"]}
    assert names["layer3.2.relu_1"] == "graph node" and len(names) == 9
    every = cli("cache", "layers", "-m", "cifar_resnet20", "--json").result["layers"]
    assert {"module", "graph node", "alias"} == {row["kind"] for row in every}
    out = tmp_path / "cache"
    built = cli("cache", "build", "-m", "cifar_resnet20", "--layers", "layer3.1.relu_1+layer3.2.relu_1", "-d",
                "digits", "--split", "train", "--limit", 40, "-o", out, "--json")  # fmt: skip
    assert built.code == 0, built.err
    assert built.result["dim"] == 128
    audited = cli("eval", "-m", "cifar_resnet20", "-d", "digits", "--limit", 12, "--defense",
                  f"cache:path={out},theta=50,lam=0.5", "-o", tmp_path / "r", "--json")  # fmt: skip
    assert audited.code == 0, audited.err
    wrong = cli("cache", "build", "-m", "cifar_resnet20", "--layers", "layer3.2.relu2", "-o", tmp_path / "x")
    assert wrong.code == 2 and "did you mean 'layer3.2.relu', 'layer3.2.relu_1'" in wrong.err
