"""The contract every corruption keeps: shape, dtype, range, determinism, degradation with severity."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from robaudit import corruption as catalog
from robaudit.errors import InputError

#: corruptions whose reference parameters are not monotone in pixel change (the reference's own errors are
#: not monotone for elastic, snow and saturate; glass blur's iterations and spatter's modes alternate; the
#: elastic transform's affine jitter shrinks with severity in both tables): only severity 5 vs 1 is checked
NON_MONOTONE = {"snow", "saturate", "spatter", "frost", "glass_blur", "brightness"}
#: no order at all: CIFAR-10-C's severity 1 is a pure affine jitter larger than severity 5's
UNORDERED = {"elastic_transform"}
#: adjacent severities may tie within resampling noise (e.g. pixelate 0.95 vs 0.90 of 32 pixels)
TIE_DB = 0.25


def natural_images(n: int, size: int, seed: int = 0) -> torch.Tensor:
    """Smooth images with edges: low-frequency sinusoids per channel plus a few bright rectangles."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    images = torch.zeros(n, 3, size, size)
    for i in range(n):
        for c in range(3):
            f = torch.rand(4, generator=g) * 3 + 0.5
            images[i, c] = 0.5 + 0.2 * torch.sin(2 * math.pi * (f[0] * xx + f[1] * yy)) * torch.cos(
                2 * math.pi * f[2] * yy
            )
        for _ in range(3):
            x0, y0 = (torch.rand(2, generator=g) * size * 0.6).long().tolist()
            w = max(2, size // 5)
            images[i, :, y0 : y0 + w, x0 : x0 + w] = torch.rand(3, 1, 1, generator=g) * 0.6 + 0.2
    return images.clamp(0, 1)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float(((a - b) ** 2).mean())
    return math.inf if mse == 0 else 10 * math.log10(1 / mse)


def test_catalog_lists_the_nineteen_in_canonical_order() -> None:
    assert len(catalog.NAMES) == 19 and len(catalog.COMMON) == 15
    assert catalog.COMMON[-1] == "jpeg_compression" and catalog.EXTRA == (
        "speckle_noise",
        "gaussian_blur",
        "spatter",
        "saturate",
    )
    assert catalog.group_of("brightness") == "weather"
    assert [n for n in catalog.NAMES if catalog.band_of(n) == "high"][:3] == [
        "gaussian_noise",
        "shot_noise",
        "impulse_noise",
    ]


def test_names_groups_bands_and_severities_parse() -> None:
    assert catalog.resolve_names("noise") == ["gaussian_noise", "shot_noise", "impulse_noise"]
    assert catalog.resolve_names("fog,noise,fog")[0] == "gaussian_noise"
    assert len(catalog.resolve_names("common,extra")) == 19
    assert catalog.parse_severities("5,1-2") == [1, 2, 5]
    with pytest.raises(InputError, match="gaussian_noise"):
        catalog.resolve_names("gausian_noise")
    for bad in ("0", "6", "1-7", "x", ""):
        with pytest.raises(InputError):
            catalog.parse_severities(bad)


def test_param_set_follows_image_size() -> None:
    assert catalog.param_set_for(32, 32) == "cifar"
    assert catalog.param_set_for(224, 224) == "imagenet"
    assert catalog.param_set_for(32, 32, "imagenet") == "imagenet"
    with pytest.raises(InputError):
        catalog.param_set_for(32, 32, "tiny")


@pytest.mark.parametrize("name", catalog.NAMES)
def test_every_corruption_keeps_the_contract(name: str) -> None:
    images = natural_images(3, 32)
    out = catalog.corrupt(images, name, 3, seed=1)
    assert out.shape == images.shape and out.dtype == torch.float32
    assert float(out.min()) >= 0 and float(out.max()) <= 1
    # 8-bit levels, as the reference's uint8 output
    assert torch.equal(out, torch.floor(out * 255) / 255)
    again = catalog.corrupt(images, name, 3, seed=1)
    assert torch.equal(out, again), "same seed, same device: same images"
    assert not torch.equal(out, images), "the corruption changes the images"
    if catalog.get(name).random:
        assert not torch.equal(out, catalog.corrupt(images, name, 3, seed=2)), "another seed, other draws"


@pytest.mark.parametrize("name", catalog.NAMES)
@pytest.mark.parametrize("param_set,size", [("cifar", 32), ("imagenet", 64)])
def test_severity_degrades_the_image(name: str, param_set: str, size: int) -> None:
    images = natural_images(4, size, seed=3)
    scores = [psnr(catalog.corrupt(images, name, s, seed=0, param_set=param_set), images) for s in range(1, 6)]
    if name in UNORDERED:
        assert all(s < 40 for s in scores), f"{name}: some severity barely changes the image ({scores})"
    elif name in NON_MONOTONE:
        assert scores[4] < scores[0] + 0.5, f"{name}: severity 5 is no worse than 1 ({scores})"
    else:
        assert all(b <= a + TIE_DB for a, b in itertools.pairwise(scores)), f"{name}: PSNR {scores}"


def test_bad_inputs_are_named() -> None:
    images = natural_images(1, 32)
    with pytest.raises(InputError, match="severity"):
        catalog.corrupt(images, "fog", 6)
    with pytest.raises(InputError, match="did you mean"):
        catalog.corrupt(images, "fogg", 1)
    with pytest.raises(InputError, match=r"\(N, 3, H, W\)"):
        catalog.corrupt(images[0], "fog", 1)
    with pytest.raises(InputError, match="at least"):
        catalog.corrupt(torch.rand(1, 3, 4, 4), "zoom_blur", 1)


def test_real_images_degrade_with_severity(validation_data) -> None:  # type: ignore[no-untyped-def]
    """On real CIFAR-10 test images (CIFAR parameters): PSNR falls from severity 1 to 5 for every corruption."""
    with np.load(validation_data / "cifar10" / "test_exact_1017.npz") as data:
        images = torch.from_numpy(data["x"][:16]).permute(0, 3, 1, 2).float() / 255
    for name in (n for n in catalog.NAMES if n not in UNORDERED):
        first, last = (psnr(catalog.corrupt(images, name, s, seed=0), images) for s in (1, 5))
        assert last < first, f"{name}: PSNR {first:.2f} at severity 1, {last:.2f} at 5"
