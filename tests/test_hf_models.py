"""Hugging Face transformers image classifiers (``hf:``), offline: tiny randomly initialized models saved with
save_pretrained stand in for the hub's."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from robaudit.errors import InputError, RunError
from robaudit.models import ModelSpec, load_model

transformers = pytest.importorskip("transformers")


def _save(folder: Path, model: Any, processor: Any) -> Path:
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def vit(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    """A two-layer ViT for 32x32 inputs, with a processor that resizes to 32x32 and normalizes by 0.5/0.25."""
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    torch.manual_seed(0)
    config = ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                       intermediate_size=64, num_labels=10)  # fmt: skip
    model = ViTForImageClassification(config).eval()
    processor = ViTImageProcessor(size={"height": 32, "width": 32}, image_mean=[0.5] * 3, image_std=[0.25] * 3)
    return _save(tmp_path_factory.mktemp("vit"), model, processor), model


def test_pretrained_folder_gives_the_models_logits_and_preprocessing(vit: tuple[Path, Any]) -> None:
    folder, reference = vit
    loaded = load_model(ModelSpec(f"hf:{folder}", pretrained=True), "cpu")
    pre = loaded.preprocessing
    assert pre.mean == (0.5, 0.5, 0.5) and pre.std == (0.25, 0.25, 0.25)
    assert pre.input_size == (3, 32, 32) and pre.crop_pct == 1.0 and pre.interpolation == "bilinear"
    assert loaded.num_classes == 10
    x = torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(loaded(x), reference(pixel_values=(x - 0.5) / 0.25).logits, atol=1e-5)
    assert loaded.provenance["weights_origin"] == "pretrained" and not loaded.caveats
    assert loaded.provenance["pretrained_from"] == str(folder)


def test_without_pretrained_the_architecture_is_random(vit: tuple[Path, Any]) -> None:
    folder, _ = vit
    loaded = load_model(ModelSpec(f"hf:{folder}", num_classes=4), "cpu")
    assert loaded.num_classes == 4 and loaded.provenance["weights_origin"] == "random"
    assert [c.code for c in loaded.caveats] == ["random-weights"]
    head = load_model(ModelSpec(f"hf:{folder}", pretrained=True, num_classes=4), "cpu")
    assert head.num_classes == 4  # a new head on the pretrained body, as timm does


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        # (processor settings, (input size, crop fraction, interpolation))
        (
            {
                "size": {"shortest_edge": 40},
                "crop_size": {"height": 32, "width": 32},
                "do_center_crop": True,
                "resample": 3,
            },
            ((3, 32, 32), 0.8, "bicubic"),
        ),
        ({"size": {"height": 48, "width": 40}, "resample": 2}, ((3, 48, 40), 1.0, "bilinear")),
        ({"size": {"shortest_edge": 36}, "crop_pct": 0.875, "resample": 3}, ((3, 36, 36), 0.875, "bicubic")),
        ({"size": {"height": 32, "width": 32}, "do_normalize": False}, ((3, 32, 32), 1.0, "bilinear")),
    ],
    ids=["crop", "rectangle", "crop_pct", "no-normalize"],
)
def test_preprocessing_of_image_processors(kind: dict[str, Any], expected: tuple[Any, float, str]) -> None:
    from types import SimpleNamespace

    from robaudit.models.hf import preprocessing_of

    processor = SimpleNamespace(image_mean=[0.1, 0.2, 0.3], image_std=[0.4, 0.5, 0.6], **kind)
    pre = preprocessing_of(processor, 3)
    assert (pre.input_size, pytest.approx(pre.crop_pct), pre.interpolation) == expected
    if kind.get("do_normalize") is False:
        assert pre.mean == (0.0, 0.0, 0.0) and pre.std == (1.0, 1.0, 1.0)
    else:
        assert pre.mean == (0.1, 0.2, 0.3) and pre.std == (0.4, 0.5, 0.6)


def test_a_convnext_folder_with_its_own_processor(tmp_path: Path) -> None:
    from transformers import ConvNextConfig, ConvNextForImageClassification, ConvNextImageProcessor

    config = ConvNextConfig(hidden_sizes=[8, 16], depths=[1, 1], num_stages=2, num_labels=3)
    folder = _save(tmp_path / "convnext", ConvNextForImageClassification(config), ConvNextImageProcessor())
    loaded = load_model(ModelSpec(f"hf:{folder}", pretrained=True), "cpu")
    assert loaded.preprocessing.input_size == (3, 384, 384)  # the processor's shortest edge (crop_pct at 384: none)
    assert loaded.num_classes == 3 and loaded(torch.rand(1, 3, 64, 64)).shape == (1, 3)


def test_missing_downloads_fail_fast_with_the_offline_ways(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants

    from robaudit.models import downloads

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    probes: list[str] = []
    monkeypatch.setattr(downloads, "host_reachable", lambda host, *a, **k: probes.append(host) or False)
    for pretrained in (True, False):
        with pytest.raises(RunError, match="cannot be reached") as error:
            load_model(ModelSpec("hf:google/vit-base-patch16-224", pretrained=pretrained), "cpu")
        message = str(error.value)
        assert "hf:/path/to/folder" in message and "HF_HOME" in message and "HF_HUB_OFFLINE=1" in message
    assert probes == ["huggingface.co", "huggingface.co"]  # one short probe each, no retries
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(RunError, match="HF_HUB_OFFLINE is set.*hf:/path/to/folder"):
        load_model(ModelSpec("hf:google/vit-base-patch16-224", pretrained=True), "cpu")
    assert len(probes) == 2  # offline mode does not even probe


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("hf:", "hf: needs a model"),
        ("hf:/no/such/folder", "no such folder"),
        ("hf:./missing", "no such folder"),
    ],
)
def test_bad_hf_names(name: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        load_model(ModelSpec(name), "cpu")


def test_folder_without_config_and_not_a_classifier(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no config.json"):
        load_model(ModelSpec(f"hf:{tmp_path / 'empty'}"), "cpu")
    (tmp_path / "text").mkdir()
    (tmp_path / "text" / "config.json").write_text(json.dumps({"model_type": "bert", "vocab_size": 10}))
    with pytest.raises((RunError, InputError), match="cannot load transformers model|image processor"):
        load_model(ModelSpec(f"hf:{tmp_path / 'text'}"), "cpu")


def test_eval_command_on_a_transformers_folder(vit: tuple[Path, Any], cli: Any, tmp_path: Path) -> None:
    from robaudit.reports.read import read_metadata

    folder, _ = vit
    result = cli("eval", "-m", f"hf:{folder}", "--pretrained", "-d", "digits", "--limit", 12, "-o", tmp_path / "r")
    assert result.code == 0, result.err
    assert "random weights" not in result.err and "Loading weights" not in result.err
    meta = read_metadata(tmp_path / "r" / "eval.parquet")["model"]
    assert meta["resolved_by"].startswith("hf:") and meta["preprocessing"]["std"] == [0.25, 0.25, 0.25]
