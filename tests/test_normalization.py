"""Normalization statistics of any broadcastable shape: per channel, per pixel (H×W) or a C×H×W mean image."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from robaudit.errors import InputError
from robaudit.models import ModelSpec, Preprocessing, load_model
from robaudit.models.normalization import RECORD_VALUES_UP_TO, to_nested

RNG = np.random.default_rng(0)

# shapes a statistic may have for a 3x32x32 input, and how each reads as (C, H, W)
VALID = {
    (): (1, 1, 1),
    (1,): (1, 1, 1),
    (3,): (3, 1, 1),
    (3, 1, 1): (3, 1, 1),
    (1, 32, 32): (1, 32, 32),
    (32, 32): (1, 32, 32),
    (3, 32, 32): (3, 32, 32),
    (3, 1, 32): (3, 1, 32),
    (1, 32, 1): (1, 32, 1),
}
INVALID = {
    (2,): "does not broadcast",
    (4,): "does not broadcast",
    (3, 31, 32): "axis H",
    (32, 31): "axis W",
    (5, 1, 1): "axis C",
    (3, 16, 16): "axis H, W",
    (1, 3, 32, 32): "at most 3 dimensions",
}


def _stat(shape: tuple[int, ...], low: float) -> np.ndarray:
    return np.asarray(low + RNG.random(shape), dtype=np.float32)


@pytest.mark.parametrize("shape", list(VALID), ids=str)
@pytest.mark.parametrize("as_file", [False, True], ids=["values", "npy"])
def test_broadcastable_statistics_normalize_by_the_rule(
    shape: tuple[int, ...], as_file: bool, tiny_models: Path, tmp_path: Path
) -> None:
    mean, std = _stat(shape, 0.0), _stat(shape, 0.5)
    given: dict[str, Any] = {}
    for name, array in (("mean", mean), ("std", std)):
        if as_file:
            np.save(tmp_path / f"{name}.npy", array)
            given[name] = str(tmp_path / f"{name}.npy")
        else:
            given[name] = to_nested(array)
    model = load_model(ModelSpec(f"{tiny_models}:tiny", **given), "cpu")
    x = torch.rand(2, 3, 32, 32)
    view = (1, *VALID[shape])
    expected = (x - torch.from_numpy(mean).reshape(view)) / torch.from_numpy(std).reshape(view)
    with torch.no_grad():
        assert torch.allclose(model(x), model.backbone(expected), atol=1e-5)
    if as_file:
        assert model.provenance["normalization_files"] == given


@pytest.mark.parametrize(("shape", "message"), list(INVALID.items()), ids=str)
@pytest.mark.parametrize("which", ["mean", "std"])
def test_shapes_that_do_not_broadcast_are_named(
    shape: tuple[int, ...], message: str, which: str, tiny_models: Path, tmp_path: Path
) -> None:
    path = tmp_path / f"{which}.npy"
    np.save(path, _stat(shape, 0.5))
    with pytest.raises(InputError, match=message) as error:
        load_model(ModelSpec(f"{tiny_models}:tiny", **{which: str(path)}), "cpu")  # type: ignore[arg-type]
    assert f"--{which}" in str(error.value)


BAD_VALUES: list[tuple[str, Callable[[Path], Any], str]] = [
    ("std", lambda p: (0.5, 0.0, 0.5), "must be positive"),
    ("std", lambda p: (-1.0,), "must be positive"),
    ("mean", lambda p: (float("nan"), 0.0, 0.0), "non-finite"),
    ("mean", lambda p: str(p / "missing.npy"), "no such file"),
    ("mean", lambda p: (p / "text.npy").write_text("0.5") and str(p / "text.npy"), "not a NumPy .npy array"),
    ("std", lambda p: np.save(p / "s.npy", np.array(["a", "b"])) or str(p / "s.npy"), "not real numbers"),
    ("std", lambda p: np.save(p / "e.npy", np.zeros(0)) or str(p / "e.npy"), "is empty"),
]


@pytest.mark.parametrize(("which", "make", "message"), BAD_VALUES)
def test_bad_statistics(
    which: str, make: Callable[[Path], Any], message: str, tiny_models: Path, tmp_path: Path
) -> None:
    with pytest.raises(InputError, match=message):
        load_model(ModelSpec(f"{tiny_models}:tiny", **{which: make(tmp_path)}), "cpu")


def test_a_per_pixel_statistic_refuses_images_of_another_size(tiny_models: Path) -> None:
    model = load_model(ModelSpec(f"{tiny_models}:tiny", mean=to_nested(_stat((32, 32), 0.0))), "cpu")
    with pytest.raises(InputError, match="per-pixel normalization is 32x32 but the images are 16x16"):
        model(torch.rand(1, 3, 16, 16))
    per_channel = load_model(ModelSpec(f"{tiny_models}:tiny", mean=(0.5,)), "cpu")
    assert per_channel(torch.rand(1, 3, 16, 16)).shape == (1, 10)  # per channel: any size, as always


def test_reports_record_statistics_faithfully() -> None:
    small = to_nested(_stat((3, 2, 2), 0.0))
    large = _stat((3, 32, 32), 0.0)
    pre = Preprocessing(mean=small, std=to_nested(large), input_size=(3, 32, 32))
    recorded = pre.as_dict()
    assert recorded["mean"]["shape"] == [3, 2, 2] and np.allclose(recorded["mean"]["values"], small)
    assert 12 <= RECORD_VALUES_UP_TO < large.size
    assert recorded["std"]["shape"] == [3, 32, 32] and "values" not in recorded["std"]
    assert recorded["std"]["sha256"] == hashlib.sha256(np.ascontiguousarray(large, np.float32).tobytes()).hexdigest()
    # per channel stays a plain list, as reports have always had it
    assert Preprocessing(mean=(0.1, 0.2, 0.3)).as_dict()["mean"] == [0.1, 0.2, 0.3]
    back = Preprocessing.from_dict(recorded)
    assert np.allclose(np.asarray(back.mean), small) and back.std == Preprocessing().std  # a hash cannot be undone


def test_cli_takes_a_mean_image(cli: Any, tiny_models: Path, tmp_path: Path) -> None:
    from robaudit.reports.read import read_metadata

    mean = _stat((3, 32, 32), 0.0) * 0.5
    np.save(tmp_path / "mean.npy", mean)
    out = tmp_path / "r"
    result = cli("eval", "-m", f"{tiny_models}:tiny", "-d", "digits", "--limit", 10, "--mean", tmp_path / "mean.npy",
                 "--std", "0.5", "-o", out)  # fmt: skip
    assert result.code == 0, result.err
    meta = read_metadata(out / "eval.parquet")
    assert meta["model"]["preprocessing"]["mean"]["shape"] == [3, 32, 32]
    assert meta["model"]["preprocessing"]["std"] == [0.5]
    assert meta["identity"]["model"]["mean"] == str(tmp_path / "mean.npy")
    bad = cli("eval", "-m", f"{tiny_models}:tiny", "--mean", "0.5,x", "-o", tmp_path / "x")
    assert bad.code == 2 and "comma-separated numbers or a .npy file" in bad.err
    np.save(tmp_path / "wrong.npy", _stat((3, 30, 30), 0.0))
    wrong = cli("eval", "-m", f"{tiny_models}:tiny", "--mean", tmp_path / "wrong.npy", "-o", tmp_path / "y")
    assert wrong.code == 2 and "does not broadcast to the input 3x32x32" in wrong.err


def test_statistic_files_are_read_before_the_model_is_built(tmp_path: Path) -> None:
    marker = tmp_path / "built"
    factory = tmp_path / "marking.py"
    factory.write_text(
        "from pathlib import Path\nfrom torch import nn\n\n\n"
        "def net(name, *, pretrained=False, num_classes=None):\n"
        f"    Path({str(marker)!r}).touch()\n"
        "    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 10))\n"
    )
    (tmp_path / "bad.npy").write_text("not numpy")
    for mean in (str(tmp_path / "missing.npy"), str(tmp_path / "bad.npy")):
        with pytest.raises(InputError, match="--mean"):
            load_model(ModelSpec(f"{factory}:net", mean=mean, input_size=(3, 32, 32)), "cpu")
    assert not marker.exists()
