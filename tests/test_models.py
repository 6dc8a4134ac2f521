"""Model names, sources, preprocessing, weights files, offline behaviour."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch
from torch import nn

from robaudit.errors import InputError, RunError
from robaudit.models import ModelSpec, load_model
from robaudit.models.weights import file_sha256


def test_timm_model_pixel_interface(tiny_models: Path) -> None:
    loaded = load_model(ModelSpec("resnet18", num_classes=7), "cpu")
    assert loaded.num_classes == 7
    pre = loaded.preprocessing
    assert pre.mean == pytest.approx((0.485, 0.456, 0.406)) and pre.input_size == (3, 224, 224)
    assert not loaded.module.training and not any(p.requires_grad for p in loaded.module.parameters())
    x = torch.rand(2, 3, 64, 64)
    mean = torch.tensor(pre.mean).view(1, 3, 1, 1)
    std = torch.tensor(pre.std).view(1, 3, 1, 1)
    with torch.no_grad():
        assert torch.allclose(loaded(x), loaded.backbone((x - mean) / std), atol=1e-5)


def test_torchvision_model_reads_preprocessing_from_weights() -> None:
    loaded = load_model(ModelSpec("tv:resnet18"), "cpu")
    assert loaded.num_classes == 1000
    assert loaded.preprocessing.input_size == (3, 224, 224)
    assert loaded.preprocessing.crop_pct == pytest.approx(224 / 256)
    assert loaded.provenance["resolved_by"].startswith("tv:")


def test_overrides_of_normalization_and_size(tiny_models: Path) -> None:
    spec = ModelSpec(f"{tiny_models}:tiny", mean=(0.1, 0.2, 0.3), std=(0.5, 0.5, 0.5), input_size=(3, 48, 48))
    loaded = load_model(spec, "cpu")
    assert loaded.preprocessing.mean == (0.1, 0.2, 0.3)
    assert loaded.preprocessing.input_size == (3, 48, 48)
    assert torch.allclose(loaded.module.mean.flatten(), torch.tensor([0.1, 0.2, 0.3]))


def test_file_factory_returning_plain_module(tiny_models: Path) -> None:
    loaded = load_model(ModelSpec(f"{tiny_models}:bare", input_size=(3, 32, 32)), "cpu")
    assert loaded.num_classes == 10
    assert loaded.preprocessing.mean == (0.0, 0.0, 0.0)  # a bare module takes pixels as they are


def test_random_initialization_is_deterministic(tiny_models: Path) -> None:
    torch.manual_seed(123)
    a = load_model(ModelSpec("cifar_resnet20"), "cpu")
    torch.manual_seed(456)
    b = load_model(ModelSpec("cifar_resnet20"), "cpu")
    assert a.fingerprint == b.fingerprint
    after = torch.rand(1)
    torch.manual_seed(456)
    torch.rand(0)
    assert torch.equal(after, torch.rand(1))  # loading left the global RNG where it was


def test_bare_module_at_the_wrong_size_asks_for_input_size(tmp_path: Path) -> None:
    path = tmp_path / "fixed.py"
    path.write_text(
        "import torch\ndef net(name, **kw):\n    return torch.nn.Sequential(torch.nn.Flatten(), "
        "torch.nn.Linear(3 * 32 * 32, 10))\n"
    )
    with pytest.raises(InputError, match="--input-size"):
        load_model(ModelSpec(f"{path}:net"), "cpu")
    assert load_model(ModelSpec(f"{path}:net", input_size=(3, 32, 32)), "cpu").num_classes == 10


def test_unknown_timm_tag_lists_the_available_ones() -> None:
    with pytest.raises(InputError, match="available: .*resnet18.a1_in1k"):
        load_model(ModelSpec("resnet18.xyz"), "cpu")


def test_importable_factory() -> None:
    loaded = load_model(ModelSpec("robaudit.models.demo:digits_cnn"), "cpu")
    assert loaded.num_classes == 10 and loaded.preprocessing.input_size == (3, 32, 32)


def test_plugin_model_by_name() -> None:
    loaded = load_model(ModelSpec("cifar_resnet20"), "cpu")
    assert loaded.provenance["resolved_by"].startswith("robaudit-cifar-resnets")
    assert sum(p.numel() for p in loaded.module.parameters()) == 269_722


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("resnet5", "did you mean 'resnet50'"),
        ("tv:resnt18", "did you mean 'resnet18'"),
        ("tvv:resnet18", "unknown model source 'tvv:'"),
        ("no_such_pkg.mod:factory", "cannot import model factory"),
        ("/nonexistent/file.py:f", "does not exist"),
    ],
)
def test_unknown_models(name: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        load_model(ModelSpec(name), "cpu")


def test_factory_errors(tiny_models: Path) -> None:
    with pytest.raises(InputError, match="not a ModelBuild"):
        load_model(ModelSpec(f"{tiny_models}:broken"), "cpu")
    with pytest.raises(InputError, match="no factory 'tinny'.*did you mean 'tiny'"):
        load_model(ModelSpec(f"{tiny_models}:tinny"), "cpu")
    with pytest.raises(InputError, match="num-classes"):
        load_model(ModelSpec(f"{tiny_models}:tiny", num_classes=0), "cpu")


def test_cuda_request_without_cuda() -> None:
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(InputError, match="no CUDA device"):
        load_model(ModelSpec("resnet18"), "cuda")


@pytest.mark.parametrize("name", ["resnet18", "tv:resnet18", "cifar_resnet20"])
def test_pretrained_offline_fails_fast(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants

    from robaudit.models import downloads

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setattr(downloads, "host_reachable", lambda *a, **k: False)  # as on a machine with no network
    started = time.perf_counter()
    with pytest.raises(RunError, match="--weights PATH") as info:
        load_model(ModelSpec(name, pretrained=True), "cpu")
    assert time.perf_counter() - started < 10
    assert "cannot be reached" in str(info.value)


def test_hf_offline_env_fails_without_probe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(RunError, match="HF_HUB_OFFLINE is set"):
        load_model(ModelSpec("hf-hub:timm/resnet18.a1_in1k"), "cpu")


# -- weights files ------------------------------------------------------------------------------------------


def _tiny_state(tiny_models: Path) -> dict[str, torch.Tensor]:
    return load_model(ModelSpec(f"{tiny_models}:tiny"), "cpu").backbone.state_dict()


def _logits(spec: ModelSpec) -> torch.Tensor:
    torch.manual_seed(1)
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        return load_model(spec, "cpu")(x)


def _perturbed(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v + 0.01 if v.is_floating_point() else v for k, v in state.items()}


def test_weights_safetensors_and_nested_state_dicts(tiny_models: Path, tmp_path: Path) -> None:
    from safetensors.torch import save_file

    state = _perturbed(_tiny_state(tiny_models))
    reference = None
    files = {
        "w.safetensors": None,
        "prefixed.safetensors": None,
        "plain.pt": state,
        "nested.pth": {"state_dict": {f"module.{k}": v for k, v in state.items()}, "best_prec1": 91.0},
        "model_key.pt": {"model": state, "epoch": 3},
    }
    for name, content in files.items():
        path = tmp_path / name
        if content is None:
            save_file({f"module.{k}" if name.startswith("prefixed") else k: v for k, v in state.items()}, str(path))
        else:
            torch.save(content, path)
        loaded = load_model(ModelSpec(f"{tiny_models}:tiny", weights=str(path)), "cpu")
        assert loaded.provenance["weights_sha256"] == file_sha256(path)
        out = _logits(ModelSpec(f"{tiny_models}:tiny", weights=str(path)))
        reference = out if reference is None else reference
        assert torch.equal(out, reference), name
    assert not torch.equal(reference, _logits(ModelSpec(f"{tiny_models}:tiny")))


def test_untrusted_pickle_is_refused_unless_trusted(tiny_models: Path, tmp_path: Path) -> None:
    path = tmp_path / "whole_model.pt"
    module = load_model(ModelSpec(f"{tiny_models}:tiny"), "cpu").backbone
    torch.save(module, path)  # a full pickled module: loading it executes code
    with pytest.raises(InputError, match="--trust-checkpoint"):
        load_model(ModelSpec(f"{tiny_models}:tiny", weights=str(path)), "cpu")
    loaded = load_model(ModelSpec(f"{tiny_models}:tiny", weights=str(path), trust_checkpoint=True), "cpu")
    assert loaded.num_classes == 10


def test_bad_weights_files(tiny_models: Path, tmp_path: Path) -> None:
    spec = f"{tiny_models}:tiny"
    with pytest.raises(InputError, match="does not exist"):
        load_model(ModelSpec(spec, weights=str(tmp_path / "none.pt")), "cpu")
    corrupt = tmp_path / "corrupt.pt"
    good = tmp_path / "good.pt"
    torch.save(_tiny_state(tiny_models), good)
    corrupt.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    with pytest.raises(InputError, match="truncated"):
        load_model(ModelSpec(spec, weights=str(corrupt)), "cpu")
    (tmp_path / "junk.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(InputError, match="is a text file"):
        load_model(ModelSpec(spec, weights=str(tmp_path / "junk.safetensors")), "cpu")


def test_mismatched_checkpoints_say_what_differs(tiny_models: Path, tmp_path: Path) -> None:
    spec = f"{tiny_models}:tiny"
    state = _tiny_state(tiny_models)
    renamed = {k.replace("conv.", "features."): v for k, v in state.items()}
    torch.save(renamed, tmp_path / "renamed.pt")
    with pytest.raises(InputError, match=r"missing from the checkpoint: conv\.weight.*not in the model: features"):
        load_model(ModelSpec(spec, weights=str(tmp_path / "renamed.pt")), "cpu")
    hundred = load_model(ModelSpec(spec, num_classes=100), "cpu").backbone.state_dict()
    torch.save(hundred, tmp_path / "hundred.pt")
    with pytest.raises(InputError, match="fc.weight: checkpoint \\(100, 8\\), model \\(10, 8\\).*--num-classes 100"):
        load_model(ModelSpec(spec, weights=str(tmp_path / "hundred.pt")), "cpu")
    assert load_model(ModelSpec(spec, weights=str(tmp_path / "hundred.pt"), num_classes=100), "cpu").num_classes == 100


def test_old_checkpoint_without_batchnorm_counters(tmp_path: Path) -> None:
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.LazyLinear(2))
    net(torch.zeros(1, 3, 8, 8))
    state = {k: v for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}
    from robaudit.models.weights import apply_state_dict

    apply_state_dict(net, state, source="old.pt")  # no error: the counters are bookkeeping
