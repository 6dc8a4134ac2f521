"""Representational similarity: SNR scaling, the similarity loss by hand, the regularizer in training, plugins,
target files, and the rsa audit."""

from __future__ import annotations

import json
import math
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from robaudit.errors import InputError
from robaudit.similarity.measures import (
    cka,
    cosine_similarity_matrix,
    scaled_responses,
    similarity_loss,
    snr_weights,
)
from robaudit.similarity.target import write_target

# Two stimuli, two trials, two units. Unit 0: trial means 2 and 6 (signal variance 4), trial variances 1 and 1
# (noise 1): SNR 4. Unit 1: means 1 and 4 (signal 2.25), trial variances 1 and 4 (noise 2.5): SNR 0.9.
TRIALS = np.array([[[1.0, 0.0], [3.0, 2.0]], [[5.0, 2.0], [7.0, 6.0]]])


def test_snr_weights_match_a_hand_computation() -> None:
    assert snr_weights(TRIALS) == pytest.approx([4.0, 0.9])
    # with trials, a stimulus's response is its trial mean, scaled
    assert scaled_responses(TRIALS) == pytest.approx(np.array([[2 * 4.0, 1 * 0.9], [6 * 4.0, 4 * 0.9]]))
    # weights from other (repeated) stimuli, applied to single responses
    assert scaled_responses(np.array([[1.0, 1.0], [2.0, 0.0]]), TRIALS) == pytest.approx(np.array([[4, 0.9], [8, 0]]))


def test_snr_rejects_infinite_ratios_and_zeroes_silent_units() -> None:
    silent = TRIALS.copy()
    silent[:, :, 1] = 3.0  # unit 1 never varies: no signal, no noise
    assert snr_weights(silent) == pytest.approx([4.0, 0.0])
    steady = TRIALS.copy()
    steady[0, :, 1], steady[1, :, 1] = 1.0, 5.0  # varies across stimuli, never across trials
    with pytest.raises(InputError, match="infinite"):
        snr_weights(steady)
    with pytest.raises(InputError, match="at least 2 trials"):
        snr_weights(TRIALS[:, :1])


def test_centred_cosine_similarity_by_hand() -> None:
    # features (1,0), (0,1), (1,1): centred (1/3,-2/3), (-2/3,1/3), (1/3,1/3)
    similarity = cosine_similarity_matrix(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], dtype=torch.float64))
    s = -1 / math.sqrt(10)
    assert similarity.numpy() == pytest.approx(np.array([[1, -0.8, s], [-0.8, 1, s], [s, s, 1]]))


def test_similarity_loss_by_hand_and_cka_of_equal_kernels() -> None:
    model = torch.tensor([[1.0, 0.3, -0.2], [0.3, 1.0, 0.6], [-0.2, 0.6, 1.0]])
    target = torch.tensor([[1.0, 0.5, 0.0], [0.5, 1.0, -0.4], [0.0, -0.4, 1.0]])
    pairs = [(0.3, 0.5), (-0.2, 0.0), (0.6, -0.4)]
    expected = sum((math.atanh(m) - math.atanh(t)) ** 2 for m, t in pairs) / 3
    assert float(similarity_loss(model, target)) == pytest.approx(expected, rel=1e-6)
    gram = np.random.default_rng(0).normal(size=(6, 3))
    gram = gram @ gram.T
    assert cka(gram, 2.5 * gram) == pytest.approx(1.0)


# Images of one pixel: layer "a" reads (R, G), layer "b" reads (G, B), by fixed 1x1 convolutions.
PROBE = """
import torch
from torch import nn

from robaudit.models import ModelBuild, Preprocessing


class Probe(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 2, 1, bias=False)
        self.b = nn.Conv2d(3, 2, 1, bias=False)
        with torch.no_grad():
            self.a.weight.copy_(torch.tensor([[1.0, 0, 0], [0, 1.0, 0]]).view(2, 3, 1, 1))
            self.b.weight.copy_(torch.tensor([[0, 1.0, 0], [0, 0, 1.0]]).view(2, 3, 1, 1))
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(torch.cat([self.a(x), self.b(x)], dim=1).flatten(1))


def probe(name, *, pretrained=False, num_classes=None):
    return ModelBuild(Probe(), Preprocessing(input_size=(3, 1, 1), crop_pct=1.0), 3)
"""

# pixels (R, G, B) = (1, 0, 0), (0, 1, 0), (1, 1, 1): layer a sees (1,0), (0,1), (1,1); layer b (0,0), (1,0), (1,1)
PIXELS = np.array([[1, 0, 0], [0, 1, 0], [1, 1, 1]], dtype=np.uint8).reshape(3, 1, 1, 3) * 255
TARGET = np.array([[1.0, 0.5, -0.2], [0.5, 1.0, 0.1], [-0.2, 0.1, 1.0]])


@pytest.fixture
def probe(tmp_path: Path) -> tuple[str, Path]:
    model = tmp_path / "probe.py"
    model.write_text(textwrap.dedent(PROBE))
    target = write_target(tmp_path / "target.npz", similarity=TARGET, images=PIXELS, labels=np.array([0, 1, 2]))
    return f"{model}:probe", target


def _run(model: str, target: Path, tmp_path: Path, regularizer: str, epochs: int = 1):  # type: ignore[no-untyped-def]
    from robaudit.data import DataSpec
    from robaudit.models import ModelSpec
    from robaudit.training.config import TrainConfig
    from robaudit.training.loop import Run

    config = TrainConfig(
        model=ModelSpec(model),
        data=DataSpec(f"npz:{target}"),
        heldout=None,
        out=tmp_path / "run",
        epochs=epochs,
        batch_size=3,
        lr=0.5,
        warmup_epochs=0,
        augment="none",
        regularizers=(regularizer,),
        device="cpu",
    )
    return Run(config)


def test_similarity_term_equals_the_hand_computed_loss_and_trains_the_layer_mix(probe, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from robaudit.training.regularizer import TrainStep

    model, target = probe
    run = _run(model, target, tmp_path, f"similarity:target={target},layers=a+b,batch=3,weight=2")
    regularizer = run.regularizers[0]
    assert regularizer.layers == ["a", "b"] and regularizer.weight == 2.0
    regularizer.start_epoch(1, 0)
    images = torch.from_numpy(PIXELS).permute(0, 3, 1, 2).float() / 255
    step = TrainStep(run.model.module, run.model.backbone, images, torch.arange(3), 1, 0, run.autocast)
    loss = regularizer.term(step)
    assert loss is not None
    # layer a: similarities of pairs (0,1), (0,2), (1,2) are -0.8, -1/sqrt(10), -1/sqrt(10); layer b: -1/sqrt(10),
    # -0.8, -1/sqrt(10); equal mix weights at the start
    s = -1 / math.sqrt(10)
    mixed = [(-0.8 + s) / 2, (s - 0.8) / 2, s]
    expected = sum((math.atanh(m) - math.atanh(t)) ** 2 for m, t in zip(mixed, [0.5, -0.2, 0.1], strict=True)) / 3
    assert float(loss.detach()) == pytest.approx(expected, rel=1e-5)
    # the gradient reaches the layer mix: d loss / d beta_a = w_a w_b sum over pairs of ... (nonzero, opposite)
    loss.backward()
    grad = regularizer.mix.grad
    assert grad is not None and float(grad.abs().sum()) > 1e-4
    assert float(grad[0]) == pytest.approx(-float(grad[1]), rel=1e-5)  # softmax: the weights' gradients cancel
    # and a run moves the mix away from equal weights (recorded on the card)
    result = run.run()
    weights = result.card["epochs"][0]["regularizers"]["similarity"]["layer_weights"]
    assert set(weights) == {"a", "b"} and abs(weights["a"] - 0.5) > 1e-4
    assert result.card["epochs"][0]["terms"]["similarity"] == pytest.approx(expected, rel=1e-5)


def test_shuffled_target_permutes_images_consistently(probe, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    model, target = probe
    run = _run(model, target, tmp_path, f"similarity:target={target},layers=a,shuffle=true")
    shuffled = run.regularizers[0].target.double().numpy()
    permutations = [np.array(p) for p in ([0, 1, 2], [0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0])]
    matches = [p for p in permutations if np.allclose(TARGET[p][:, p], shuffled, atol=1e-6)]
    assert matches and not np.allclose(shuffled, TARGET, atol=1e-6)


@pytest.mark.parametrize(
    ("regularizer", "message"),
    [
        ("similarity:target={target},layers=a+c", "the model has no layer 'c'"),
        ("similarity:target={target},layers=fcc", "did you mean 'fc'"),
        ("similarity:target={bad}", "the similarity cover 3 images but 'x' holds 2"),
        ("similarity:target={target},batch=4", "batch=4 but the target covers 3 images"),
        ("similarity:target={target},teacher=probe", "exactly one of target=FILE and teacher=MODEL"),
        ("similarity:teacher={model}", "needs layer=NAME"),
        ("similarity:target={target},weight=-0.5", "weight must be >= 0"),
    ],
)
def test_bad_similarity_input_exits_2(cli, probe, tmp_path: Path, regularizer: str, message: str) -> None:  # type: ignore[no-untyped-def]
    model, target = probe
    bad = tmp_path / "bad.npz"
    np.savez(bad, similarity=TARGET, x=PIXELS[:2])
    spec = regularizer.format(target=target, bad=bad, model=model)
    out = tmp_path / "run"
    result = cli(
        "train", "-m", model, "--data", f"npz:{target}", "--split", "none", "--val-data", "none", "--batch-size", "3",
        "--augment", "none", "-r", spec, "-o", out,
    )  # fmt: skip
    assert result.code == 2, result.err
    assert message in result.err
    assert not out.exists()


def test_target_file_checks(tmp_path: Path) -> None:
    from robaudit.similarity.target import read_target

    for arrays, message in (
        ({"similarity": TARGET + np.triu(np.full((3, 3), 0.2), 1), "ids": np.arange(3)}, "not symmetric"),
        ({"similarity": TARGET * 2, "ids": np.arange(3)}, r"must lie in \[-1, 1\]"),
        ({"similarity": TARGET, "responses": np.ones((3, 2)), "ids": np.arange(3)}, "exactly one of 'similarity'"),
        ({"similarity": TARGET}, "exactly one of 'x'"),
        ({"similarity": TARGET, "ids": np.array([0, 0, 1])}, "distinct"),
        ({"responses": np.ones((3, 2)), "ids": np.arange(4)}, "cover 3 images but 'ids' holds 4"),
    ):
        path = tmp_path / "t.npz"
        np.savez(path, **arrays)
        with pytest.raises(InputError, match=message):
            read_target(path)
    # responses with trials give the SNR-scaled similarity
    path = write_target(tmp_path / "r.npz", responses=np.concatenate([TRIALS, TRIALS[:1] * 2]), ids=np.arange(3))
    matrix = read_target(path).matrix
    expected = cosine_similarity_matrix(torch.from_numpy(scaled_responses(np.concatenate([TRIALS, TRIALS[:1] * 2]))))
    assert matrix == pytest.approx(expected.numpy())


PLUGIN = '''
import robaudit.plugins
from robaudit.training.regularizer import Regularizer, check_weight


@robaudit.plugins.regularizers.register("logit_norm")
class LogitNorm(Regularizer):
    """The mean squared logit of the task batch (a logit penalty)."""

    name = "logit_norm"

    def __init__(self, *, weight=0.1):
        super().__init__(weight=weight)
        self.weight = check_weight(self.name, weight)

    def term(self, step):
        return step.model(step.images).pow(2).mean()
'''


def test_regularizer_plugin_file_registers_and_trains(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from robaudit import plugins

    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "logit_norm.py").write_text(PLUGIN)
    common = ["-m", "digits_cnn", "--data", "digits", "--limit", "64", "--val-limit", "16", "--batch-size", "32"]
    common += ["--augment", "none", "--epochs", "1", "--device", "cpu"]
    try:
        listing = cli("--plugins-dir", folder, "plugins", "--json")
        assert any(e["name"] == "logit_norm" for e in listing.result["regularizers"])
        result = cli("--plugins-dir", folder, "train", *common, "-r", "logit_norm:weight=1", "-o", tmp_path / "r")
        assert result.code == 0, result.err
    finally:
        plugins.regularizers.unregister("logit_norm")
    plain = cli("train", *common, "-o", tmp_path / "p")
    assert plain.code == 0, plain.err
    card = json.loads((tmp_path / "r" / "card.json").read_text())
    assert card["regularizers"][0]["name"] == "logit_norm"
    assert card["epochs"][0]["terms"]["logit_norm"] > 0
    from safetensors.torch import load_file

    regularized, unregularized = (
        load_file(str(tmp_path / "r" / "model.safetensors")),
        load_file(str(tmp_path / "p" / "model.safetensors")),
    )
    assert any(not torch.equal(regularized[k], unregularized[k]) for k in regularized)


# -- robaudit rsa ---------------------------------------------------------------------------------------------


def _digits_similarity(model: str, layer: str, count: int) -> np.ndarray:
    from robaudit.data import DataSpec, load_dataset
    from robaudit.models import ModelSpec, load_model
    from robaudit.similarity.target import layer_similarity

    loaded = load_model(ModelSpec(model), "cpu")
    images = load_dataset(DataSpec("digits", split="test"), loaded.preprocessing).load(np.arange(count)).images
    return layer_similarity(loaded.module, layer, [images], count)


def test_rsa_against_the_models_own_layer_is_perfect(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    matrix = _digits_similarity("digits_cnn", "features.4", 24)
    target = write_target(tmp_path / "t.npz", similarity=matrix, ids=np.arange(24))
    result = cli(
        "rsa", "-m", "digits_cnn", "--data", "digits", "--indices", "0:24", "--layers", "features.0+features.4",
        "--target", target, "--bootstrap", "50", "-o", tmp_path / "rsa", "--json",
    )  # fmt: skip
    assert result.code == 0, result.err
    summary = result.result
    by_layer = {r["layer"]: r for r in summary["layers"]}
    assert summary["images"] == 24 and summary["best_layer"] == "features.4"
    for key in ("pearson", "spearman", "cka"):
        assert by_layer["features.4"][key] == pytest.approx(1.0, abs=1e-5)
        assert by_layer["features.0"][key] < 0.999
        low, high = by_layer["features.0"][f"{key}_ci95"]
        assert low <= high
    assert (tmp_path / "rsa" / "rsa.png").stat().st_size > 0
    # another model's layer as the target: the same model and layer agree perfectly
    same = cli(
        "rsa", "-m", "digits_cnn", "--data", "digits", "--limit", "20", "--layers", "features.4",
        "--target-model", "digits_cnn", "--target-layer", "features.4", "--bootstrap", "0", "-o", tmp_path / "m",
        "--json",
    )  # fmt: skip
    assert same.code == 0, same.err
    row = same.result["layers"][0]
    assert row["spearman"] == pytest.approx(1.0) and row["cka"] == pytest.approx(1.0)


def test_rsa_figure_and_mismatched_targets(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    matrix = _digits_similarity("digits_cnn", "features.4", 12)
    target = write_target(tmp_path / "t.npz", similarity=matrix, ids=np.arange(12))
    outside = cli(
        "rsa", "-m", "digits_cnn", "--data", "digits", "--indices", "0:20", "--target", target, "-o", tmp_path / "a"
    )
    assert outside.code == 2 and "is not among the ids" in outside.err
    images = np.zeros((12, 32, 32, 3), dtype=np.uint8)
    pixels = write_target(tmp_path / "x.npz", similarity=matrix, images=images, labels=np.zeros(12, dtype=np.int64))
    wrong = cli(
        "rsa", "-m", "digits_cnn", "--data", "digits", "--indices", "0:12", "--target", pixels, "-o", tmp_path / "b"
    )
    assert wrong.code == 2 and "not the images of" in wrong.err
    unknown = cli(
        "rsa", "-m", "digits_cnn", "--data", "digits", "--limit", "12", "--target", target, "--layers", "feature.4",
        "-o", tmp_path / "c",
    )  # fmt: skip
    assert unknown.code == 2 and "did you mean 'features.4'" in unknown.err

    from robaudit.reports.read import read_report
    from robaudit.similarity.rsa import rsa_figure

    ok = cli(
        "rsa", "-m", "digits_cnn", "--data", "digits", "--indices", "0:12", "--target", target, "--bootstrap", "0",
        "-o", tmp_path / "d",
    )  # fmt: skip
    assert ok.code == 0, ok.err
    rows, metadata = read_report(tmp_path / "d" / "rsa.parquet")
    figure = rsa_figure(rows, metadata, max_images=6)
    assert len(figure.axes) == 1 + 3 + 1  # target, the 3 convolutions (auto), the colour bar
