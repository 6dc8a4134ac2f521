"""Noise and digital corruptions: statistics, agreement with colorsys / Pillow / SciPy, determinism, severity."""

from __future__ import annotations

import colorsys
import io
import math
from collections.abc import Callable, Iterator

import numpy as np
import pytest
import torch
from PIL import Image

from robaudit.corruption import corrupt, get
from robaudit.corruption import digital as dg
from robaudit.corruption.base import CorruptionContext
from robaudit.errors import InputError

NOISE = ("gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise")
DIGITAL = ("brightness", "contrast", "saturate", "jpeg_compression", "pixelate", "elastic_transform")
NAMES = NOISE + DIGITAL
RANDOM = (*NOISE, "elastic_transform")
#: severities whose damage is not monotone (the reference's own AlexNet errors say so)
NON_MONOTONE = ("elastic_transform", "saturate")


@pytest.fixture(autouse=True, scope="module")
def _single_thread() -> Iterator[None]:
    """These tensors are tiny: thread start-up and spinning would cost more than the work (and slow a busy CPU)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def scene(n: int, size: int, width: int | None = None) -> torch.Tensor:
    """Smooth "natural-ish" 8-bit images: a few low-frequency sinusoids per channel plus two straight edges."""
    width = width or size
    ys = torch.linspace(0, 1, size).view(size, 1)
    xs = torch.linspace(0, 1, width).view(1, width)
    images = []
    for i in range(n):
        phase = 0.7 * i
        r = 0.5 + 0.25 * torch.sin(2 * math.pi * (1.3 * xs + 0.4 * ys) + phase) + 0.1 * torch.cos(5 * ys)
        g = 0.45 + 0.2 * torch.cos(2 * math.pi * (0.8 * ys - 0.6 * xs) + phase) + 0.15 * (xs > 0.6)
        b = 0.4 + 0.2 * torch.sin(3 * xs * ys + phase) + 0.2 * (ys > 0.3 + 0.1 * i)
        images.append(torch.stack(torch.broadcast_tensors(r, g, b)))
    return torch.round(torch.stack(images).clamp(0.05, 0.95) * 255) / 255


def apply(name: str, x: torch.Tensor, severity: int, param_set: str = "cifar", seed: int = 0) -> torch.Tensor:
    """The corruption function itself (no clamping or quantization), with a seeded CPU generator."""
    entry = get(name)
    generator = torch.Generator().manual_seed(seed)
    return entry.fn(x, entry.parameters(severity, param_set), generator, CorruptionContext(param_set))


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(10 * torch.log10(1 / ((a - b) ** 2).mean()))


def random_levels(shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, shape, generator=generator).float() / 255


def as_uint8_hwc(x: torch.Tensor) -> np.ndarray:
    return (x * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()


# ------------------------------------------------------------------------------------------ registration


def test_parameter_tables_follow_the_references() -> None:
    assert get("gaussian_noise").params["imagenet"] == (0.08, 0.12, 0.18, 0.26, 0.38)
    assert get("gaussian_noise").params["cifar"] == (0.04, 0.06, 0.08, 0.09, 0.10)
    assert get("shot_noise").params["cifar"] == (500, 250, 100, 75, 50)
    assert get("impulse_noise").params["imagenet"][3] == 0.17
    assert get("speckle_noise").params["cifar"][-1] == 0.20
    assert get("brightness").params["cifar"] == (0.05, 0.1, 0.15, 0.2, 0.3)
    assert get("contrast").params["imagenet"] == (0.4, 0.3, 0.2, 0.1, 0.05)
    assert get("saturate").params["imagenet"][4] == (20.0, 0.2)
    assert get("jpeg_compression").params["imagenet"] == (25, 18, 15, 10, 7)
    assert get("jpeg_compression").params["cifar"] == (80, 65, 58, 50, 40)
    assert get("pixelate").params["cifar"] == (0.95, 0.9, 0.85, 0.75, 0.65)
    # elastic fractions times the reference's multipliers: 244·(2, 0.7, 0.1) at 224², 32·(0.1, 0.03, 0.03) at 32²
    scale = dg.elastic_scale("imagenet", 224)
    assert [f * scale for f in get("elastic_transform").params["imagenet"][0]] == pytest.approx([488, 170.8, 24.4])
    assert [f * 32 for f in get("elastic_transform").params["cifar"][4]] == pytest.approx([3.2, 0.96, 0.96])
    assert dg.elastic_scale("cifar", 32) == 32 and dg.elastic_scale("imagenet", 448) == 488
    assert {n for n in NAMES if get(n).random} == set(RANDOM)


@pytest.mark.parametrize("name", NAMES)
def test_shape_range_and_determinism(name: str) -> None:
    x = scene(3, 32)
    first = corrupt(x, name, 4, seed=7)
    assert first.shape == x.shape and first.dtype == torch.float32
    assert first.min() >= 0 and first.max() <= 1
    assert torch.equal(first, corrupt(x, name, 4, seed=7))
    assert not torch.equal(first, x)
    other_seed = corrupt(x, name, 4, seed=8)
    twins = corrupt(x[:1].repeat(2, 1, 1, 1), name, 4, seed=7)
    if name in RANDOM:
        assert not torch.equal(first, other_seed)
        assert not torch.equal(twins[0], twins[1])  # each image of a batch gets its own draws
    else:
        assert torch.equal(first, other_seed)
        assert torch.equal(twins[0], twins[1]) and torch.equal(twins[0], first[0])


def test_pixelate_refuses_images_too_small_to_shrink() -> None:
    with pytest.raises(InputError, match="pixelate needs images of at least 4x4"):
        corrupt(torch.rand(1, 3, 3, 3), "pixelate", 5)


# ------------------------------------------------------------------------------------------------ noise


def test_gaussian_noise_residual_has_std_sigma() -> None:
    x = torch.full((8, 3, 64, 64), 0.5)
    residual = apply("gaussian_noise", x, 2, "imagenet") - x  # σ = 0.12: no clipping at 0.5 ± 4σ
    assert abs(float(residual.std()) - 0.12) < 0.12 * 0.01
    assert abs(float(residual.mean())) < 0.002


def test_shot_noise_mean_and_variance() -> None:
    x = torch.full((8, 3, 64, 64), 0.3)
    y = apply("shot_noise", x, 2, "imagenet")  # λ = 25
    assert abs(float(y.mean()) - 0.3) < 0.003
    assert float(y.var()) == pytest.approx(0.3 / 25, rel=0.03)
    # counts of photons: every value is a multiple of 1/λ
    assert torch.allclose(y * 25, torch.round(y * 25), atol=1e-4)


def test_impulse_noise_flips_amount_half_salt_half_pepper() -> None:
    x = torch.full((8, 3, 64, 64), 0.5)
    y = apply("impulse_noise", x, 4, "imagenet")  # amount 0.17
    salt, pepper, kept = (y == 1).float().mean(), (y == 0).float().mean(), (y == 0.5).float().mean()
    assert float(salt + pepper) == pytest.approx(0.17, abs=0.005)
    assert float(salt / pepper) == pytest.approx(1.0, abs=0.05)
    assert float(kept + salt + pepper) == 1.0


def test_speckle_noise_scales_with_brightness() -> None:
    x = torch.cat([torch.full((4, 3, 64, 64), 0.2), torch.full((4, 3, 64, 64), 0.4)])
    residual = apply("speckle_noise", x, 1, "imagenet") - x  # σ = 0.15: 0.4 + 4σ·0.4 stays below 1
    assert float(residual[:4].std()) == pytest.approx(0.15 * 0.2, rel=0.02)
    assert float(residual[4:].std()) == pytest.approx(0.15 * 0.4, rel=0.02)


# ------------------------------------------------------------------------------------------- colour


def test_rgb_to_hsv_matches_colorsys_and_inverts() -> None:
    x = random_levels((2, 3, 5, 6))
    x[0, :, 0, 0] = 0.0  # black
    x[0, :, 0, 1] = 0.4  # gray
    x[1, 0, 1, 1], x[1, 1, 1, 1], x[1, 2, 1, 1] = 0.8, 0.8, 0.1  # tie between red and green
    hsv = dg.rgb_to_hsv(x)
    pixels = x.permute(0, 2, 3, 1).reshape(-1, 3).double().tolist()
    expected = torch.tensor([colorsys.rgb_to_hsv(*p) for p in pixels], dtype=torch.float64)
    assert torch.allclose(hsv.permute(0, 2, 3, 1).reshape(-1, 3).double(), expected, atol=1e-6)
    assert torch.allclose(dg.hsv_to_rgb(hsv), x, atol=1e-6)


def _colorsys_map(x: torch.Tensor, change: Callable[[float, float, float], tuple[float, float, float]]) -> torch.Tensor:
    pixels = x.permute(0, 2, 3, 1).reshape(-1, 3).double().tolist()
    out = [colorsys.hsv_to_rgb(*change(*colorsys.rgb_to_hsv(*p))) for p in pixels]
    return torch.tensor(out, dtype=torch.float64).view(x.shape[0], x.shape[2], x.shape[3], 3).permute(0, 3, 1, 2)


@pytest.mark.parametrize("severity", [1, 5])
def test_brightness_matches_colorsys(severity: int) -> None:
    x = random_levels((2, 3, 6, 7), seed=1)
    c = get("brightness").parameters(severity, "imagenet")
    expected = _colorsys_map(x, lambda h, s, v: (h, s, min(max(v + c, 0.0), 1.0)))
    assert torch.allclose(apply("brightness", x, severity, "imagenet").double(), expected, atol=1e-5)


@pytest.mark.parametrize("severity", [1, 3, 5])
def test_saturate_matches_colorsys(severity: int) -> None:
    x = random_levels((2, 3, 6, 7), seed=2)
    k, b = get("saturate").parameters(severity, "imagenet")
    expected = _colorsys_map(x, lambda h, s, v: (h, min(max(k * s + b, 0.0), 1.0), v))
    assert torch.allclose(apply("saturate", x, severity, "imagenet").double(), expected, atol=1e-5)


def test_contrast_is_the_formula_with_per_channel_spatial_means() -> None:
    x = random_levels((2, 3, 9, 11), seed=3)
    got = apply("contrast", x, 2, "cifar")  # c = 0.5
    xd = x.double()
    mean = xd.mean(dim=(2, 3), keepdim=True)
    assert torch.allclose(got.double(), (xd - mean) * 0.5 + mean, atol=1e-6, rtol=0)
    assert torch.allclose(got.mean(dim=(2, 3)), x.mean(dim=(2, 3)), atol=1e-6)


# ---------------------------------------------------------------------------------------------- JPEG


def _pillow_jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))


@pytest.mark.parametrize(
    ("param_set", "codec"), [("imagenet", "torchvision"), ("cifar", "torchvision"), ("cifar", "pillow")]
)
def test_jpeg_equals_pillow_round_trip(param_set: str, codec: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if codec == "pillow":
        monkeypatch.setattr(dg, "_torchvision_codec", lambda: None)
    elif dg._torchvision_codec() is None:
        pytest.skip("this torchvision has no JPEG codec")
    x = torch.cat([scene(1, 40, 48), random_levels((1, 3, 40, 48), seed=4)])
    for severity in range(1, 6):
        quality = get("jpeg_compression").parameters(severity, param_set)
        got = apply("jpeg_compression", x, severity, param_set)
        for image, out in zip(x, got, strict=True):
            assert np.array_equal(as_uint8_hwc(out), _pillow_jpeg(as_uint8_hwc(image), quality))


def _photographs() -> torch.Tensor:
    """Natural 8-bit images: the validation photographs and CIFAR-10 images when present, else scenes."""
    import os
    from pathlib import Path

    from robaudit.data.sources import read_square

    root = Path(os.environ.get("ROBAUDIT_VALIDATION_DATA", "/nonexistent"))
    photos = sorted((root / "imagenet" / "val20").glob("*.JPEG"))[:6]
    if photos:
        arrays = np.stack([read_square(str(f), 96, 110, "bilinear") for f in photos])
        return torch.from_numpy(arrays).permute(0, 3, 1, 2).contiguous()
    return (scene(6, 96) * 255).round().to(torch.uint8)


# Measured against libjpeg over photographs and CIFAR images at every quality of both tables: mean absolute
# difference <= 0.35 level, <= 3.5 % of pixels more than two levels apart (docs/corruptions.md).
JPEG_MEAN_LEVELS, JPEG_FAR_FRACTION = 0.5, 0.05


@pytest.mark.parametrize("size", [(96, 96), (37, 50), (8, 9)])
def test_tensor_jpeg_agrees_with_libjpeg(size: tuple[int, int]) -> None:
    """The batched round trip (the GPU path) against libjpeg, at every quality of both parameter tables,
    for sizes that are and are not whole 16 × 16 macroblocks."""
    from robaudit.corruption.jpeg import jpeg_round_trip_tensor

    height, width = size
    photos = _photographs()
    # every whole tile of that size, so that small sizes still give many pixels
    tiles = photos.unfold(2, height, height).unfold(3, width, width)
    images = tiles.permute(0, 2, 3, 1, 4, 5).reshape(-1, 3, height, width).contiguous()
    qualities = {*get("jpeg_compression").params["imagenet"], *get("jpeg_compression").params["cifar"]}
    for quality in sorted(qualities):
        expected = torch.stack(dg.jpeg_round_trip(list(images), quality)).int()
        got = jpeg_round_trip_tensor(images, quality)
        assert got.dtype == torch.uint8 and got.shape == images.shape
        difference = (got.int() - expected).abs().float()
        assert difference.mean() <= JPEG_MEAN_LEVELS, (quality, difference.mean())
        assert (difference > 2).float().mean() <= JPEG_FAR_FRACTION, (quality, (difference > 2).float().mean())
        # and it is JPEG: far from the input at low quality
        assert (got.int() - images.int()).abs().float().mean() > (2 if quality <= 25 else 0)


def test_jpeg_codec_follows_the_device(monkeypatch: pytest.MonkeyPatch) -> None:
    """CPU images keep libjpeg (unchanged, exact); images anywhere else use the tensor round trip on their
    device."""
    assert dg.jpeg_codec(torch.device("cpu")) in {"libjpeg", "pillow"}
    assert dg.jpeg_codec(torch.device("cuda")) == dg.jpeg_codec(torch.device("cuda", 1)) == "tensor"
    x = scene(3, 40, 48)
    monkeypatch.setattr(dg, "jpeg_round_trip_tensor", lambda *a: pytest.fail("the CPU path must stay libjpeg"))
    apply("jpeg_compression", x, 3, "imagenet")
    monkeypatch.undo()
    taken = []
    monkeypatch.setattr(dg, "jpeg_codec", lambda device: "tensor")
    monkeypatch.setattr(dg, "jpeg_round_trip_tensor", lambda levels, quality: taken.append(quality) or levels)
    out = apply("jpeg_compression", x, 3, "imagenet")
    assert taken == [15] and torch.equal(out, dg.to_levels(x).float() / 255)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_jpeg_on_cuda_agrees_with_the_cpu_path() -> None:
    x = _photographs().float() / 255
    for severity in range(1, 6):
        cpu = apply("jpeg_compression", x, severity, "imagenet")
        gpu = apply("jpeg_compression", x.cuda(), severity, "imagenet").cpu()
        difference = ((gpu - cpu) * 255).round().abs()
        assert difference.mean() <= JPEG_MEAN_LEVELS and (difference > 2).float().mean() <= JPEG_FAR_FRACTION


# ------------------------------------------------------------------------------------------- pixelate


def _pillow_pixelate(image: np.ndarray, factor: float) -> np.ndarray:
    h, w = image.shape[:2]
    small = Image.fromarray(image).resize((int(w * factor), int(h * factor)), Image.BOX)
    return np.asarray(small.resize((w, h), Image.BOX))


@pytest.mark.parametrize(("param_set", "height", "width"), [("cifar", 32, 32), ("imagenet", 50, 37)])
def test_pixelate_equals_pillow_box(param_set: str, height: int, width: int) -> None:
    x = torch.cat([random_levels((2, 3, height, width), seed=5), scene(1, height, width)])
    for severity in range(1, 6):
        factor = get("pixelate").parameters(severity, param_set)
        got = apply("pixelate", x, severity, param_set)
        for image, out in zip(x, got, strict=True):
            assert np.array_equal(as_uint8_hwc(out), _pillow_pixelate(as_uint8_hwc(image), factor))


@pytest.mark.parametrize(("height", "width", "out_height", "out_width"), [(20, 30, 20, 13), (120, 144, 12, 12)])
def test_box_shrink_equals_pillow(height: int, width: int, out_height: int, out_width: int) -> None:
    # one axis only; and boxes of 10 and 12 pixels, where Pillow's 22-bit weights round exact halves down
    x = random_levels((2, 3, height, width), seed=6)
    got = dg.pillow_box_shrink(x, out_height, out_width)
    for image, out in zip(x, got, strict=True):
        expected = np.asarray(Image.fromarray(as_uint8_hwc(image)).resize((out_width, out_height), Image.BOX))
        assert np.array_equal(as_uint8_hwc(out), expected)


def test_box_enlarge_gather_path_equals_interpolate_path(monkeypatch: pytest.MonkeyPatch) -> None:
    small = random_levels((2, 3, 13, 9), seed=7)
    fast = dg._box_enlarge(small, 32, 30)
    monkeypatch.setattr(dg, "_interpolate_is_box", lambda *args: False)
    assert torch.equal(dg._box_enlarge(small, 32, 30), fast)


def test_pixelate_keeps_constant_and_block_aligned_images() -> None:
    constant = torch.full((1, 3, 64, 64), 100 / 255)
    assert torch.equal(apply("pixelate", constant, 5, "imagenet"), constant)
    blocks = random_levels((2, 3, 16, 16), seed=8).repeat_interleave(4, dim=2).repeat_interleave(4, dim=3)
    for severity in (2, 5):  # factors 0.5 and 0.25: boxes of 2 and 4 pixels, aligned with the 4x4 blocks
        assert torch.equal(apply("pixelate", blocks, severity, "imagenet"), blocks)


# -------------------------------------------------------------------------------------------- elastic


def test_gaussian_reflect_matrix_equals_scipy() -> None:
    ndimage = pytest.importorskip("scipy.ndimage")
    signal = np.random.default_rng(0).uniform(-1, 1, (37, 5))
    for sigma in (0.96, 2.44, 6.4, 170.8):  # the last kernel is many times longer than the signal
        expected = ndimage.gaussian_filter1d(signal, sigma, axis=0, mode="reflect", truncate=3)
        assert np.allclose(dg.gaussian_reflect_matrix(37, sigma).numpy() @ signal, expected, atol=1e-12)


def test_elastic_displacement_equals_scipy_map_coordinates() -> None:
    ndimage = pytest.importorskip("scipy.ndimage")
    x = scene(1, 24)
    alpha, sigma = 20.0, 1.5  # displacements of several pixels: samples leave the image and reflect
    got = dg.elastic_displace(x, alpha, sigma, torch.Generator().manual_seed(3))
    noise = torch.rand((1, 2, 24, 24), generator=torch.Generator().manual_seed(3)) * 2 - 1
    field = [
        alpha * ndimage.gaussian_filter(noise[0, i].double().numpy(), sigma, mode="reflect", truncate=3) for i in (0, 1)
    ]
    rows, cols = np.mgrid[0:24, 0:24]
    for channel in range(3):
        expected = ndimage.map_coordinates(
            x[0, channel].double().numpy(), [rows + field[1], cols + field[0]], order=1, mode="reflect"
        )
        assert np.allclose(got[0, channel].numpy(), expected, atol=1e-5)


def test_affine_without_jitter_is_identity() -> None:
    x = scene(2, 20)
    assert torch.allclose(dg.random_affine(x, 0.0, torch.Generator().manual_seed(0)), x, atol=1e-5)


@pytest.mark.parametrize(("param_set", "size"), [("cifar", 32), ("imagenet", 64)])
def test_elastic_is_a_smooth_seeded_warp(param_set: str, size: int) -> None:
    x = scene(2, size)
    for severity in range(1, 6):
        y = apply("elastic_transform", x, severity, param_set, seed=1)
        assert torch.equal(y, apply("elastic_transform", x, severity, param_set, seed=1))
        assert not torch.equal(y, apply("elastic_transform", x, severity, param_set, seed=2))
        assert not torch.allclose(y, x, atol=1e-3)
        # a resampling moves pixels around: the image mean barely changes and no new values appear
        assert abs(float(y.mean() - x.mean())) < 0.03
        assert x.min() - 1e-6 <= y.min() and y.max() <= x.max() + 1e-6


# ------------------------------------------------------------------------------------------- severity


@pytest.mark.parametrize(("param_set", "size"), [("cifar", 32), ("imagenet", 64)])
@pytest.mark.parametrize("name", NAMES)
def test_severity_degrades_the_image(name: str, param_set: str, size: int) -> None:
    x = scene(4, size)
    quality = [psnr(corrupt(x, name, s, seed=0, param_set=param_set), x) for s in range(1, 6)]
    assert all(math.isfinite(q) for q in quality)
    if name == "elastic_transform":
        # the affine part shrinks while the local warp grows: severity 1 is among the strongest in both sets
        assert max(quality) < 45
    elif name in NON_MONOTONE or (name, param_set) == ("pixelate", "imagenet"):
        # ImageNet pixelate: the integer shrink ratios (0.5, 0.25) give aligned boxes of 2 and 4 pixels, the
        # others mix boxes of 1 and 2 (2 and 3, 3 and 4) pixels and miss by more than their size suggests
        assert quality[-1] < quality[0]
    else:
        assert quality == sorted(quality, reverse=True), quality


@pytest.mark.parametrize(("param_set", "size"), [("cifar", 32), ("imagenet", 64)])
def test_pixelate_resolution_drops_with_severity(param_set: str, size: int) -> None:
    x = random_levels((1, 3, size, size), seed=9)
    rows = [len(torch.unique(apply("pixelate", x, s, param_set)[0, 0], dim=0)) for s in range(1, 6)]
    factors = get("pixelate").params[param_set]
    assert rows == [int(size * f) for f in factors]
