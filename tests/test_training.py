"""robaudit train: exact resume after kill -9, the card, defenses in audits, the schedule, bad inputs."""

from __future__ import annotations

import itertools
import json
import math
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from robaudit.errors import InputError
from robaudit.training.optim import learning_rate

# A small BatchNorm network (so running statistics take part in the resume check) whose forward can be
# slowed down by an environment variable, to kill a run in the middle of an epoch.
MODELS = """
import os
import time

import torch
from torch import nn

from robaudit.models import ModelBuild, Preprocessing


class Small(nn.Module):
    def __init__(self, num_classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1, stride=2)
        self.bn2 = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, num_classes)

    def forward(self, x):
        if os.environ.get("SMALL_SLOW"):
            time.sleep(float(os.environ["SMALL_SLOW"]))
        x = self.bn1(self.conv1(x)).relu()
        x = self.bn2(self.conv2(x)).relu()
        return self.fc(x.mean((2, 3)))


def small(name, *, pretrained=False, num_classes=None):
    return ModelBuild(Small(num_classes or 10), Preprocessing(input_size=(3, 32, 32), crop_pct=1.0), num_classes or 10)
"""

TRAIN = ["--data", "digits", "--limit", "160", "--val-limit", "64", "--batch-size", "16", "--augment", "crop"]


@pytest.fixture
def small_model(tmp_path: Path) -> str:
    path = tmp_path / "small_models.py"
    path.write_text(textwrap.dedent(MODELS))
    return f"{path}:small"


def _weights(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path))


def _card(out: Path) -> dict:  # type: ignore[type-arg]
    return json.loads((out / "card.json").read_text())


def test_resume_after_kill_gives_the_same_weights(cli, small_model: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """kill -9 in the middle of epoch 2, --resume: bit-identical to a run that was never interrupted."""
    args = ["-m", small_model, *TRAIN, "--epochs", "3", "--lr", "0.05", "--device", "cpu"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the killed subprocess runs with OMP_NUM_THREADS=1: the same arithmetic
    try:
        whole = cli("train", *args, "-o", tmp_path / "whole")
        assert whole.code == 0, whole.err
        env = {**os.environ, "SMALL_SLOW": "0.1", "OMP_NUM_THREADS": "1"}
        killed = tmp_path / "killed"
        process = subprocess.Popen(
            [sys.executable, "-m", "robaudit", "train", *map(str, args), "-o", str(killed)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                card = killed / "card.json"
                if card.is_file() and json.loads(card.read_text()).get("checkpoint_epoch") == 1:
                    break
                assert process.poll() is None, "the run ended before it could be killed"
                time.sleep(0.05)
            time.sleep(0.4)  # 10 steps of >= 0.1 s each (plus held-out batches): epoch 2 is under way
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
        stopped = _card(killed)
        assert stopped["status"] == "running" and stopped["checkpoint_epoch"] == 1 and len(stopped["epochs"]) == 1
        resumed = cli("train", *args, "-o", killed, "--resume")
        assert resumed.code == 0, resumed.err
        assert "resumed after epoch 1 of 3" in resumed.err
    finally:
        torch.set_num_threads(threads)
    expected, got = _weights(tmp_path / "whole" / "model.safetensors"), _weights(killed / "model.safetensors")
    assert expected.keys() == got.keys()
    for key in expected:
        assert torch.equal(expected[key], got[key]), key
    assert any("running_mean" in k for k in expected)
    final = _card(killed)
    assert final["status"] == "complete" and [e["epoch"] for e in final["epochs"]] == [1, 2, 3]
    assert final["epochs"][2]["loss"] == _card(tmp_path / "whole")["epochs"][2]["loss"]
    assert not list(killed.glob(".*.tmp")), "temporary files of the killed run were left behind"


def test_card_records_the_run_and_audits_read_its_defenses(cli, small_model: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "run"
    result = cli(
        "train", "-m", small_model, *TRAIN, "--limit", "64", "--val-limit", "32", "--epochs", "2",
        "--defense", "blur:sigma=1.0", "--grayscale",
        "--label-smoothing", "0.1", "--optimizer", "adamw", "--keep-checkpoints", "1", "-o", out, "--json",
    )  # fmt: skip
    assert result.code == 0, result.err
    assert result.files["weights"] == str(out / "model.safetensors")
    card = _card(out)
    assert card["defenses"] == ["grayscale", "blur:sigma=1.0"]
    assert card["options"]["optimizer"] == "adamw" and card["options"]["lr"] == 1e-3
    assert card["data"]["train"]["images"] == 64 and card["data"]["heldout"]["images"] == 32
    assert [e["epoch"] for e in card["epochs"]] == [1, 2] and 0 <= card["epochs"][1]["heldout"]["accuracy"] <= 1
    # --keep-checkpoints 1: only the last epoch's files remain
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == [
        "epoch-0002.safetensors",
        "epoch-0002.state.safetensors",
    ]
    # the audit finds the card beside the weights and puts the defenses in front again
    audit = cli("eval", "-m", small_model, "--weights", out / "model.safetensors", "--limit", "8", "-o", tmp_path / "e")
    assert audit.code == 0, audit.err
    import pyarrow.parquet as pq

    column = pq.read_table(tmp_path / "e" / "eval.parquet", columns=["defense"])["defense"].to_pylist()
    assert set(column) == {"grayscale() -> blur(padding='circular', sigma=1.0)"}
    # the held-out accuracy on the card is what an eval audit of the same images measures
    heldout = cli(
        "eval", "-m", small_model, "--weights", out / "model.safetensors", "--split", "test", "--limit", "32",
        "-o", tmp_path / "h", "--json",
    )  # fmt: skip
    assert heldout.result["top1"] == pytest.approx(card["epochs"][1]["heldout"]["accuracy"])
    bare = cli(
        "eval", "-m", small_model, "--weights", out / "model.safetensors", "--defense", "none", "--limit", "8",
        "-o", tmp_path / "n",
    )  # fmt: skip
    assert bare.code == 0, bare.err
    assert set(pq.read_table(tmp_path / "n" / "eval.parquet", columns=["defense"])["defense"].to_pylist()) == {"none"}


def test_folder_holding_a_run_needs_resume_or_overwrite(cli, small_model: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    args = ["train", "-m", small_model, *TRAIN, "--epochs", "1", "-o", tmp_path / "run"]
    assert cli(*args).code == 0
    again = cli(*args)
    assert again.code == 2 and "--resume" in again.err and "--overwrite" in again.err
    changed = cli(*args, "--lr", "0.5", "--resume")
    assert changed.code == 2 and "options.lr (0.1 -> 0.5)" in changed.err
    finished = cli(*args, "--resume")
    assert finished.code == 0
    assert cli(*args, "--overwrite").code == 0


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--epochs", "0"], "--epochs must be >= 1"),
        (["--warmup-epochs", "3", "--epochs", "2"], "--warmup-epochs must lie in"),
        (["--optimizer", "adam"], "--optimizer must be one of sgd, adamw"),
        (["--augment", "mixup"], "--augment must be one of"),
        (["--regularizer", "simliarity:target=x.npz"], "did you mean 'similarity'"),
        (["--regularizer", "similarity:target=x.npz,weight=-1"], "weight must be >= 0"),
        (["--regularizer", "similarity:target=x.npz,layrs=conv1"], "did you mean 'layers'"),
        (["--regularizer", "adversarial:eps=8/255,attack=ddn"], "minimization attack"),
        (["--regularizer", "adversarial:eps=-1"], "eps must be > 0"),
        (["--val-data", "digits", "--val-split", "train"], "also training images"),
        (["--batch-size", "500"], "larger than the 160 training images"),
        (["--data", "npz:/nonexistent.npz", "--split", "none"], "does not exist"),
        (["--data", "npz:/nonexistent.npz"], "--split none reads a source without splits"),
    ],
)
def test_bad_training_input_exits_2_before_writing(
    cli, small_model: str, tmp_path: Path, extra: list[str], message: str
) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "run"
    result = cli("train", "-m", small_model, *TRAIN, "--epochs", "2", *extra, "-o", out)
    assert result.code == 2, result.err
    assert message in result.err
    assert not out.exists()


NOT_DIFFERENTIABLE = '''
import torch
import robaudit.plugins
from robaudit.defenses.base import InputDefense, ReadoutDefense


@robaudit.plugins.defenses.register("quantize")
class Quantize(InputDefense):
    """Rounds pixels to 8 levels (no useful gradient)."""

    name = "quantize"
    differentiable = False

    def forward(self, pixels):
        return torch.round(pixels * 7) / 7


@robaudit.plugins.defenses.register("vote")
class Vote(ReadoutDefense):
    """Averages the logits of the image and its mirror."""

    name = "vote"

    def forward(self, base, pixels):
        return (base(pixels) + base(pixels.flip(-1))) / 2
'''


@pytest.mark.parametrize(
    ("defense", "message"),
    [("quantize", "quantize is not differentiable"), ("vote", "vote is a readout defense; only input defenses")],
)
def test_defense_that_cannot_be_trained_behind_exits_2(  # type: ignore[no-untyped-def]
    cli, small_model: str, tmp_path: Path, defense: str, message: str
) -> None:
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "defenses.py").write_text(NOT_DIFFERENTIABLE)
    out = tmp_path / "run"
    try:
        result = cli("--plugins-dir", plugins, "train", "-m", small_model, *TRAIN, "--defense", defense, "-o", out)
    finally:
        from robaudit import plugins as registries

        for name in ("quantize", "vote"):
            registries.defenses.unregister(name)
    assert result.code == 2
    assert message in result.err
    assert not out.exists()


def test_learning_rate_warms_up_then_follows_a_cosine() -> None:
    schedule = [learning_rate(s, base=0.1, minimum=0.01, warmup_steps=4, total_steps=14) for s in range(14)]
    assert schedule[:4] == pytest.approx([0.025, 0.05, 0.075, 0.1])
    assert schedule[4] == pytest.approx(0.1)
    assert schedule[9] == pytest.approx(0.01 + 0.09 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert all(a >= b for a, b in itertools.pairwise(schedule[4:]))
    assert learning_rate(14, base=0.1, minimum=0.01, warmup_steps=4, total_steps=14) == pytest.approx(0.01)


def test_grayscale_defense_is_the_luminance_in_every_channel() -> None:
    from robaudit.defenses.grayscale import Grayscale

    pixels = torch.rand(2, 3, 4, 4)
    out = Grayscale()(pixels)
    luma = 0.299 * pixels[:, 0] + 0.587 * pixels[:, 1] + 0.114 * pixels[:, 2]
    for channel in range(3):
        assert torch.allclose(out[:, channel], luma)


def test_config_checks_values() -> None:
    from robaudit.data import DataSpec
    from robaudit.models import ModelSpec
    from robaudit.training.config import TrainConfig

    base: dict = {"model": ModelSpec("digits_cnn"), "data": DataSpec("digits"), "heldout": None, "out": Path("x")}  # type: ignore[type-arg]
    for bad, message in (
        ({"lr": -1.0}, "--lr must be > 0"),
        ({"momentum": 1.0}, "--momentum must lie in [0, 1)"),
        ({"label_smoothing": 1.0}, "--label-smoothing must lie in [0, 1)"),
        ({"min_lr": 1.0}, "--min-lr must lie in [0, --lr = 0.1]"),
        ({"grayscale": True, "defenses": ("grayscale",)}, "--grayscale puts the grayscale defense in front already"),
    ):
        with pytest.raises(InputError, match=re.escape(message)):
            TrainConfig(**base, **bad)


def test_epoch_order_depends_on_seed_and_epoch_only() -> None:
    from robaudit.training.data import epoch_order

    assert np.array_equal(epoch_order(50, 0, 2), epoch_order(50, 0, 2))
    assert not np.array_equal(epoch_order(50, 0, 2), epoch_order(50, 0, 3))
    assert not np.array_equal(epoch_order(50, 0, 2), epoch_order(50, 1, 2))
    assert sorted(epoch_order(50, 0, 2).tolist()) == list(range(50))


def test_train_suite_is_built_in_and_checks(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    printed = cli("run", "--example", "train")
    assert printed.code == 0 and 'command = "train"' in printed.out
    unknown = cli("run", "--example", "trian")
    assert unknown.code == 2 and "did you mean 'train'" in unknown.err
    planned = cli("run", "train", "--dry-run", "-o", tmp_path / "suite", "--json")
    assert planned.code == 0, planned.err
    steps = {s["id"]: s["argv"] for s in planned.result["steps"]}
    assert steps["blur/train"][:2] == ["robaudit", "train"] and "blur:sigma=1.5" in steps["blur/train"]
    assert "{steps.train.weights}" in steps["blur/attack"] and "--minimal" in steps["blur/attack"]
    assert "--defense" not in steps["standard/train"]


def test_adversarial_regularizer_attacks_within_the_budget_in_eval_mode() -> None:
    from robaudit.training.adversarial import AdversarialTraining
    from robaudit.training.regularizer import TrainStep

    seen: list[bool] = []

    class Probe(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 4))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            seen.append(self.training)
            return self.net(x)

    model = Probe().train()
    images, labels = torch.rand(6, 3, 8, 8), torch.arange(6) % 4
    step = TrainStep(model, model, images, labels, 1, 0, lambda: torch.autocast("cpu", enabled=False))
    replace = AdversarialTraining(eps="8/255", steps=3)
    assert replace.replaces_task_images and replace.eps == pytest.approx(8 / 255)
    replace.start_epoch(1, 0)
    adversarial = replace.task_images(step)
    assert adversarial is not None and replace.term(step) is None
    assert float((adversarial - images).abs().max()) <= 8 / 255 + 1e-6 and not torch.equal(adversarial, images)
    assert seen and not any(seen) and model.training  # attacked in eval mode, back in train mode after
    replace.start_epoch(1, 0)
    assert torch.equal(replace.task_images(step), adversarial)  # the epoch's seed fixes the random start
    mixed = AdversarialTraining(eps=0.05, steps=2, mode="add", weight=0.5)
    mixed.start_epoch(1, 0)
    assert mixed.task_images(step) is None and mixed.weight == 0.5
    term = mixed.term(step)
    assert term is not None and term.requires_grad
    with pytest.raises(InputError, match="weight applies to mode=add"):
        AdversarialTraining(eps=0.1, weight=2.0)
    with pytest.raises(InputError, match="has no parameter 'steps'"):
        AdversarialTraining(eps=0.1, attack="fgsm", steps=3)
