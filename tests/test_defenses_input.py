"""Input defenses: the Gaussian blur and the PCA projection (layer, fitting, artifact, CLI)."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from robaudit.data import Dataset, LoadedBatch
from robaudit.defenses.base import build_defense
from robaudit.defenses.blur import GaussianBlur
from robaudit.defenses.pca import PCAProjection, fit_pca
from robaudit.errors import InputError
from robaudit.models import Preprocessing
from robaudit.reports.read import read_metadata


def fake_model(size: tuple[int, int, int]) -> SimpleNamespace:
    """What ``bind`` reads of a LoadedModel: its preprocessing."""
    return SimpleNamespace(preprocessing=Preprocessing(input_size=size))


# -- blur --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("sigma", [0.3, 1.0, 1.5, 2.7])
def test_blur_kernel_size_and_sum(sigma: float) -> None:
    kernel = GaussianBlur(sigma=sigma).kernel
    half = math.ceil(2.5 * sigma)
    assert kernel.shape == (2 * half + 1, 2 * half + 1)
    assert float(kernel.sum()) == pytest.approx(1.0, abs=1e-6)
    assert torch.equal(kernel, kernel.T) and torch.equal(kernel, kernel.flip(0))
    assert int(kernel.argmax()) == half * (2 * half + 1) + half  # the peak is the centre


@pytest.mark.parametrize("sigma", [0, 0.0, 1e-6])
def test_tiny_sigma_is_the_identity(sigma: float) -> None:
    x = torch.rand(2, 3, 7, 6)
    assert torch.equal(GaussianBlur(sigma=sigma)(x), x)
    assert GaussianBlur(sigma=0).kernel.shape == (1, 1)


def reference_blur(x: np.ndarray, sigma: float) -> np.ndarray:
    """Per-channel 2-D convolution with circular wrap, written from the formula with numpy loops."""
    half = math.ceil(2.5 * sigma)
    w = np.array([[math.exp(-(a * a + b * b) / (2 * sigma * sigma)) for b in range(-half, half + 1)]
                  for a in range(-half, half + 1)])  # fmt: skip
    w /= w.sum()
    height, width = x.shape[2:]
    out = np.zeros_like(x, dtype=np.float64)
    for i in range(height):
        for j in range(width):
            for a in range(-half, half + 1):
                for b in range(-half, half + 1):
                    out[:, :, i, j] += w[a + half, b + half] * x[:, :, (i + a) % height, (j + b) % width]
    return out


def test_blur_matches_an_independent_circular_convolution() -> None:
    x = torch.rand(2, 3, 9, 8, generator=torch.Generator().manual_seed(0))
    expected = reference_blur(x.double().numpy(), 1.2)
    got = GaussianBlur(sigma=1.2)(x).double().numpy()
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_circular_blur_commutes_with_cyclic_shifts() -> None:
    blur = GaussianBlur(sigma=1.5)
    x = torch.rand(1, 3, 12, 10, generator=torch.Generator().manual_seed(1))
    for shift in [(3, 0), (0, -4), (5, 7)]:
        rolled = torch.roll(x, shifts=shift, dims=(2, 3))
        torch.testing.assert_close(blur(rolled), torch.roll(blur(x), shifts=shift, dims=(2, 3)))


@pytest.mark.parametrize("padding", ["circular", "reflect", "zeros"])
def test_constant_image_is_unchanged_except_with_zero_padding(padding: str) -> None:
    x = torch.full((1, 3, 10, 10), 0.7)
    y = GaussianBlur(sigma=1.5, padding=padding)(x)
    if padding == "zeros":
        assert float(y[0, 0, 0, 0]) < 0.6 and float(y[0, 0, 5, 5]) == pytest.approx(0.7, abs=1e-3)
    else:
        torch.testing.assert_close(y, x)


def test_blur_gradcheck() -> None:
    x = torch.rand(1, 2, 5, 5, dtype=torch.float64, requires_grad=True)
    for padding in ("circular", "reflect", "zeros"):
        assert torch.autograd.gradcheck(GaussianBlur(sigma=0.8, padding=padding), (x,))


def test_blur_repr_and_string_form() -> None:
    assert repr(GaussianBlur()) == "blur(padding='circular', sigma=1.5)"
    built = build_defense("blur:sigma=1,padding=reflect")
    assert isinstance(built, GaussianBlur) and built.sigma == 1.0 and built.padding == "reflect"
    assert repr(built) == "blur(padding='reflect', sigma=1.0)"
    with pytest.raises(InputError, match="did you mean 'sigma'"):
        build_defense("blur:sgima=1")


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"sigma": -1}, ">= 0"),
        ({"sigma": float("nan")}, "finite"),
        ({"sigma": float("inf")}, "finite"),
        ({"sigma": "wide"}, "number"),
        ({"padding": "wrap"}, "circular, reflect, zeros"),
    ],
)
def test_blur_rejects_bad_parameters(params: dict[str, object], message: str) -> None:
    with pytest.raises(InputError, match=message):
        GaussianBlur(**params)  # type: ignore[arg-type]


def test_blur_checks_shapes() -> None:
    blur = GaussianBlur(sigma=2.0)  # half-width 5
    with pytest.raises(InputError, match="N, C, H, W"):
        blur(torch.rand(3, 8, 8))
    with pytest.raises(InputError, match="half-width of 5"):
        blur.bind(fake_model((3, 5, 32)), [])  # type: ignore[arg-type]
    with pytest.raises(InputError, match="padding=zeros"):
        blur(torch.rand(1, 3, 4, 4))
    blur.bind(fake_model((3, 6, 6)), [])  # type: ignore[arg-type]
    GaussianBlur(sigma=2.0, padding="zeros").bind(fake_model((3, 4, 4)), [])  # type: ignore[arg-type]


# -- pca ---------------------------------------------------------------------------------------------------

SHAPE = (2, 3, 4)  # D = 24: small enough for full-rank fits
DIM = 24


class Images(Dataset):
    """Images from an in-memory float array of any shape (not restricted to [0, 1] or 3 channels)."""

    def __init__(self, images: np.ndarray) -> None:
        self.images = images.astype(np.float32)
        self.labels = np.zeros(len(images), dtype=np.int64)
        self.num_classes = 1
        self.description = f"synthetic {images.shape}"

    def load(self, indices: np.ndarray) -> LoadedBatch:
        return LoadedBatch(np.asarray(indices), torch.from_numpy(self.images[indices]))

    def fingerprint(self) -> str:
        return hashlib.sha256(self.images.tobytes()).hexdigest()


def synthetic(n: int, rank: int | None, seed: int = 0) -> Images:
    """n images of shape SHAPE around a mean, spanning ``rank`` directions (all of them when None)."""
    rng = np.random.default_rng(seed)
    basis = rng.normal(size=(rank or DIM, DIM)) * np.linspace(2, 0.2, rank or DIM)[:, None]
    flat = 0.5 + 0.1 * rng.normal(size=(n, rank or DIM)) @ basis
    return Images(flat.reshape(n, *SHAPE))


def fit(dataset: Images, out: Path, k: int, **kwargs: object) -> dict[str, object]:
    kwargs.setdefault("batch_size", 32)  # several batches: the sums are streamed
    return fit_pca(dataset, np.arange(len(dataset)), k=k, out=out, **kwargs)  # type: ignore[arg-type]


def test_exact_and_randomized_agree_and_reconstruct_low_rank_data(tmp_path: Path) -> None:
    data = synthetic(150, rank=5)
    meta_exact = fit(data, tmp_path / "exact", 5, method="exact")
    meta_rand = fit(data, tmp_path / "rand", 5, method="randomized", oversample=4, power_iters=1)
    assert meta_exact["method"] == "exact" and meta_rand["method"] == "randomized"
    assert meta_exact["explained_variance"] == pytest.approx(1.0, abs=1e-5)
    assert meta_rand["explained_variance"] == pytest.approx(1.0, abs=1e-5)
    exact, rand = PCAProjection(path=str(tmp_path / "exact")), PCAProjection(path=str(tmp_path / "rand"))
    np.testing.assert_allclose(
        np.load(tmp_path / "exact" / "eigenvalues.npy"), np.load(tmp_path / "rand" / "eigenvalues.npy"), rtol=1e-4
    )
    # Same subspace: the projectors agree on arbitrary points, and the signs are fixed the same way.
    probe = torch.rand(10, *SHAPE)
    torch.testing.assert_close(exact(probe), rand(probe), atol=1e-5, rtol=0)
    torch.testing.assert_close(exact.components, rand.components, atol=1e-4, rtol=0)
    images = torch.from_numpy(data.images)
    torch.testing.assert_close(exact(images), images, atol=1e-5, rtol=0)
    torch.testing.assert_close(rand(images), images, atol=1e-5, rtol=0)


@pytest.mark.parametrize("method", ["exact", "randomized"])
def test_full_rank_projection_is_the_identity(tmp_path: Path, method: str) -> None:
    fit(synthetic(100, rank=None), tmp_path / "p", DIM, method=method)
    x = torch.rand(4, *SHAPE)
    torch.testing.assert_close(PCAProjection(path=str(tmp_path / "p"))(x), x, atol=1e-5, rtol=0)


def test_projection_is_idempotent_and_differentiable(tmp_path: Path) -> None:
    fit(synthetic(100, rank=None), tmp_path / "p", 6)
    layer = PCAProjection(path=str(tmp_path / "p"), k=4)
    x = torch.rand(3, *SHAPE)
    once = layer(x)
    assert not torch.allclose(once, x, atol=1e-3)
    torch.testing.assert_close(layer(once), once, atol=1e-5, rtol=0)
    assert torch.autograd.gradcheck(layer, (torch.rand(2, *SHAPE, dtype=torch.float64, requires_grad=True),))


def test_fingerprint_is_stable_and_recorded(tmp_path: Path) -> None:
    data = synthetic(80, rank=None)
    for method in ("exact", "randomized"):
        a = fit(data, tmp_path / f"{method}-a", 5, method=method, seed=3)
        b = fit(data, tmp_path / f"{method}-b", 5, method=method, seed=3)
        assert a["fingerprint"] == b["fingerprint"]
    meta = json.loads((tmp_path / "exact-a" / "meta.json").read_text())
    assert meta["image_shape"] == list(SHAPE) and meta["k"] == 5 and meta["n_samples"] == 80
    assert meta["data_fingerprint"] == data.fingerprint() and meta["robaudit_version"]
    layer = PCAProjection(path=str(tmp_path / "exact-a"), k=3)
    assert layer.artifacts() == {"pca": meta["fingerprint"]}
    assert repr(layer) == f"pca(k=3, path='{tmp_path / 'exact-a'}')"
    assert PCAProjection(path=str(tmp_path / "exact-a")).k == 5  # all stored components by default


def test_fit_refuses_bad_requests(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="pixel dimension D = 24"):
        fit(synthetic(100, rank=None), tmp_path / "a", DIM + 1)
    with pytest.raises(InputError, match="number of samples"):
        fit(synthetic(10, rank=None), tmp_path / "b", 11)
    with pytest.raises(InputError, match="--method"):
        fit(synthetic(10, rank=None), tmp_path / "c", 2, method="svd")
    fit(synthetic(10, rank=None), tmp_path / "d", 2)
    with pytest.raises(InputError, match="--overwrite"):
        fit(synthetic(10, rank=None), tmp_path / "d", 3)
    fit(synthetic(10, rank=None), tmp_path / "d", 3, overwrite=True)
    assert json.loads((tmp_path / "d" / "meta.json").read_text())["k"] == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]  # no temporary folder left behind


def test_artifact_errors(tmp_path: Path) -> None:
    out = tmp_path / "p"
    fit(synthetic(40, rank=None), out, 4)
    with pytest.raises(InputError, match="does not exist"):
        PCAProjection(path=str(tmp_path / "missing"))
    for bad_k in (0, 5, 2.5):
        with pytest.raises(InputError, match=r"1\.\.4"):
            PCAProjection(path=str(out), k=bad_k)  # type: ignore[arg-type]
    layer = PCAProjection(path=str(out))
    with pytest.raises(InputError, match=r"\(N, 2, 3, 4\).*\(1, 3, 4, 2\)"):
        layer(torch.rand(1, 3, 4, 2))
    with pytest.raises(InputError, match=r"\[2, 3, 4\].*\[3, 32, 32\]"):
        layer.bind(fake_model((3, 32, 32)), [])  # type: ignore[arg-type]
    layer.bind(fake_model(SHAPE), [])  # type: ignore[arg-type]

    np.save(out / "mean.npy", np.zeros(DIM, dtype=np.float32))
    with pytest.raises(InputError, match="fingerprint"):
        PCAProjection(path=str(out))
    (out / "eigenvalues.npy").unlink()
    with pytest.raises(InputError, match="eigenvalues.npy is missing"):
        PCAProjection(path=str(out))
    (out / "components.npy").write_bytes(b"not numpy")
    with pytest.raises(InputError, match="components.npy is corrupt"):
        PCAProjection(path=str(out))
    (out / "meta.json").write_text("{")
    with pytest.raises(InputError, match="meta.json is corrupt"):
        PCAProjection(path=str(out))


# -- through the command line ------------------------------------------------------------------------------


def test_pca_fit_cli_and_eval_with_input_defenses(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    artifact = tmp_path / "pca"
    result = cli("pca", "fit", "--data", "digits", "--split", "train", "--k", 64, "--out", artifact, "--json")
    assert result.code == 0, result.err
    meta = result.result
    assert result.files["pca"] == str(artifact) and meta["k"] == 64 and meta["dim"] == 3 * 32 * 32
    assert meta["method"] == "exact" and meta["n_samples"] == 1438 and meta["explained_variance"] > 0.99
    again = cli("pca", "fit", "--data", "digits", "--k", 8, "--out", artifact)
    assert again.code == 2 and "--overwrite" in again.err

    model = "robaudit.models.demo:digits_cnn"
    for defense, name in ((f"pca:path={artifact},k=32", "pca"), ("blur:sigma=1.0", "blur")):
        out = tmp_path / name
        args = ("eval", "--model", model, "--defense", defense, "--data", "digits", "--limit", 50, "--out", out)
        result = cli(*args, "--json")
        assert result.code == 0, result.err
        assert result.result["samples"] == 50
        defenses = read_metadata(out / "eval.parquet")["identity"]["defenses"]
        assert defenses[0]["repr"].startswith(f"{name}(")
        if name == "pca":
            assert defenses[0]["artifacts"] == {"pca": meta["fingerprint"]}
    bad = cli("eval", "--model", model, "--defense", f"pca:path={tmp_path / 'nope'}", "--data", "digits")
    assert bad.code == 2 and "does not exist" in bad.err
