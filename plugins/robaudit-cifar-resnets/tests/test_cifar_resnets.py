"""The CIFAR ResNets: architecture, published weights against real CIFAR-10 images, offline failure, entry points."""

from __future__ import annotations

import hashlib
import os
import time
from importlib.metadata import entry_points
from pathlib import Path

import numpy as np
import pytest
import torch
from robaudit.errors import InputError, RunError
from robaudit.models import IMAGENET_MEAN, IMAGENET_STD, ModelBuild, ModelSpec, load_model

import robaudit_cifar_resnets as cr

FACTORIES = {
    "cifar_resnet20": (cr.cifar_resnet20, 3, 269_722),
    "cifar_resnet32": (cr.cifar_resnet32, 5, 464_154),
    "cifar_resnet44": (cr.cifar_resnet44, 7, 658_586),
    "cifar_resnet56": (cr.cifar_resnet56, 9, 853_018),
    "cifar_resnet110": (cr.cifar_resnet110, 18, 1_727_962),
}


def _count(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters() if p.requires_grad)


@pytest.mark.parametrize("name", FACTORIES)
def test_parameter_count_and_keys(name: str) -> None:
    factory, n, params = FACTORIES[name]
    build = factory()
    assert isinstance(build, ModelBuild)
    assert build.num_classes == 10 and build.pretrained_from is None
    assert _count(build.backbone) == params
    bn = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
    expected = ["conv1.weight", *(f"bn1.{k}" for k in bn)]
    for stage in (1, 2, 3):
        for block in range(n):
            for layer in (1, 2):
                prefix = f"layer{stage}.{block}"
                expected += [f"{prefix}.conv{layer}.weight", *(f"{prefix}.bn{layer}.{k}" for k in bn)]
    expected += ["linear.weight", "linear.bias"]
    assert list(build.backbone.state_dict()) == expected


def test_parameter_count_by_hand() -> None:
    """ResNet-20 counted from the layer shapes: stem, 3 stages, linear."""
    bn = lambda c: 2 * c  # noqa: E731
    block = lambda cin, c: 9 * cin * c + 9 * c * c + 2 * bn(c)  # noqa: E731
    stem = 9 * 3 * 16 + bn(16)
    stages = 3 * block(16, 16) + block(16, 32) + 2 * block(32, 32) + block(32, 64) + 2 * block(64, 64)
    assert stem + stages + 64 * 10 + 10 == 269_722


def test_forward_shape_and_preprocessing() -> None:
    build = cr.cifar_resnet20()
    with torch.no_grad():
        out = build.backbone.eval()(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 10)
    pre = build.preprocessing
    assert (pre.mean, pre.std, pre.input_size, pre.crop_pct) == (IMAGENET_MEAN, IMAGENET_STD, (3, 32, 32), 1.0)


def test_num_classes() -> None:
    build = cr.cifar_resnet56(num_classes=100)
    assert build.num_classes == 100
    with torch.no_grad():
        assert build.backbone.eval()(torch.zeros(1, 3, 32, 32)).shape == (1, 100)


def test_option_a_shortcut() -> None:
    net = cr.CifarResNet(20)
    shortcuts = [m for m in net.modules() if isinstance(m, cr.ShortcutA)]
    assert len(shortcuts) == 2  # first blocks of layer2 and layer3
    assert all(not list(s.parameters()) and not list(s.buffers()) for s in shortcuts)
    block = net.layer2[0]
    assert isinstance(block, cr.BasicBlock) and isinstance(block.shortcut, cr.ShortcutA)
    x = torch.randn(2, 16, 32, 32)
    y = block.shortcut(x)
    assert y.shape == (2, 32, 16, 16)
    assert torch.equal(y[:, 8:24], x[:, :, ::2, ::2])
    assert not y[:, :8].any() and not y[:, 24:].any()


def test_rejects_bad_arguments() -> None:
    with pytest.raises(InputError, match="10 classes"):
        cr.cifar_resnet20(pretrained=True, num_classes=100)
    with pytest.raises(InputError, match="no options"):
        cr.cifar_resnet20(width=2)
    with pytest.raises(InputError, match="6n \\+ 2"):
        cr.CifarResNet(21)


def test_pretrained_offline_fails_fast(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # no cached weights
    start = time.monotonic()
    with pytest.raises(RunError, match="--weights"):
        cr.cifar_resnet20(pretrained=True)
    assert time.monotonic() - start < 10


def test_entry_points() -> None:
    eps = {ep.name: ep.value for ep in entry_points(group="robaudit.models")}
    for name in FACTORIES:
        assert eps.get(name) == f"robaudit_cifar_resnets:{name}"


Images = tuple[torch.Tensor, torch.Tensor]  # [0, 1] NCHW pixels, labels


def _validation_file(*parts: str) -> Path:
    root = os.environ.get("ROBAUDIT_VALIDATION_DATA")
    if not root:
        pytest.skip("ROBAUDIT_VALIDATION_DATA is not set")
    path = Path(root, *parts)
    if not path.is_file():
        pytest.skip(f"{path} is missing")
    return path


@pytest.fixture(scope="module")
def cifar10_test() -> Images:
    """The first 1017 CIFAR-10 test images as [0, 1] NCHW pixels, and their labels."""
    data = np.load(_validation_file("cifar10", "test_exact_1017.npz"))
    pixels = torch.from_numpy(data["x"]).permute(0, 3, 1, 2).float() / 255
    assert pixels.shape == (1017, 3, 32, 32)
    return pixels, torch.from_numpy(data["y"])


def _accuracy(net: torch.nn.Module, pixels: torch.Tensor, labels: torch.Tensor) -> float:
    with torch.no_grad():
        return (net.eval()(pixels).argmax(1) == labels).float().mean().item()


@pytest.mark.parametrize(("depth", "low", "high"), [(20, 0.91, 0.925), (32, 0.92, 0.935)])
def test_published_weights_accuracy(
    depth: int, low: float, high: float, cifar10_test: Images, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    weights = _validation_file("weights", f"cifar10_resnet{depth}.th")
    checkpoint = torch.load(weights, map_location="cpu", weights_only=True)
    assert all(k.startswith("module.") for k in checkpoint["state_dict"])
    url = cr.WEIGHTS[depth]
    filename = url.rsplit("/", 1)[1]
    assert hashlib.sha256(weights.read_bytes()).hexdigest().startswith(filename.split("-")[1].split(".")[0])
    # The published file where torch hub caches it: pretrained=True then loads it with no network.
    cache = tmp_path / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    (cache / filename).symlink_to(weights)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    build = FACTORIES[f"cifar_resnet{depth}"][0](pretrained=True)
    assert build.pretrained_from == url
    pixels, labels = cifar10_test
    inputs = (pixels - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    accuracy = _accuracy(build.backbone, inputs, labels)
    assert low <= accuracy <= high, f"ResNet-{depth}: accuracy {accuracy:.4f}"


def test_published_weights_through_robaudit(cifar10_test: Images) -> None:
    """What `robaudit ... --model cifar_resnet20 --weights FILE` does: registry, checkpoint reading, normalization."""
    weights = _validation_file("weights", "cifar10_resnet20.th")
    model = load_model(ModelSpec("cifar_resnet20", weights=str(weights)), device="cpu")
    assert 0.91 <= _accuracy(model.module, *cifar10_test) <= 0.925
