"""Every mode Pillow opens becomes RGB in [0, 1] by its own scale (checked against numpy), or is refused clearly."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from conftest import CliResult
from PIL import Image

from robaudit.data.pixels import UnsupportedImage
from robaudit.data.sources import load_image_files, read_pixels

SIZE = 8
rng = np.random.default_rng(0)
U8 = rng.integers(0, 256, (SIZE, SIZE, 4), dtype=np.uint8)
U16 = rng.integers(0, 65536, (SIZE, SIZE), dtype=np.uint16)
FLOATS = rng.random((SIZE, SIZE), dtype=np.float32)
PALETTE = rng.integers(0, 256, 768, dtype=np.uint8)


def gray(values: np.ndarray) -> np.ndarray:
    return np.repeat(values[..., None], 3, axis=2).astype(np.float32)


def palette_image(mode: str = "P") -> Image.Image:
    image = Image.fromarray(U8[..., 0]).convert("L")
    p = Image.new("P", image.size)
    p.putdata(list(U8[..., 0].ravel()))
    p.putpalette(PALETTE.tolist())
    if mode == "PA":
        p = p.convert("PA")
    return p


def palette_expected() -> np.ndarray:
    return PALETTE.reshape(256, 3)[U8[..., 0]].astype(np.float32) / 255


def ycbcr_expected() -> np.ndarray:
    y, cb, cr = (U8[..., i].astype(np.float64) for i in range(3))
    rgb = np.stack([y + 1.402 * (cr - 128), y - 0.344136 * (cb - 128) - 0.714136 * (cr - 128), y + 1.772 * (cb - 128)])
    return np.clip(np.round(np.moveaxis(rgb, 0, -1)), 0, 255).astype(np.float32) / 255


#: (name, writes the file, the independent numpy reading, tolerance)
CASES: list[tuple[str, Callable[[Path], Path], np.ndarray, float]] = [
    ("1 (bilevel png)", lambda d: _save(Image.fromarray(U8[..., 0] > 127), d / "a.png"), gray(U8[..., 0] > 127), 0),
    ("L png", lambda d: _save(Image.fromarray(U8[..., 0]), d / "a.png"), gray(U8[..., 0] / 255), 0),
    ("RGB png", lambda d: _save(Image.fromarray(U8[..., :3]), d / "a.png"), U8[..., :3] / 255, 0),
    ("RGBA png (alpha dropped)", lambda d: _save(Image.fromarray(U8), d / "a.png"), U8[..., :3] / 255, 0),
    ("LA png", lambda d: _save(Image.fromarray(U8[..., :2], "LA"), d / "a.png"), gray(U8[..., 0] / 255), 0),
    ("P png", lambda d: _save(palette_image(), d / "a.png"), palette_expected(), 0),
    (
        "P png with transparency",
        lambda d: _save(palette_image(), d / "a.png", transparency=int(U8[0, 0, 0])),
        palette_expected(),
        0,
    ),
    ("P gif", lambda d: _save(palette_image(), d / "a.gif"), palette_expected(), 0),
    ("PA tiff", lambda d: _save(palette_image("PA"), d / "a.tiff"), palette_expected(), 0),
    (
        "CMYK tiff",
        lambda d: _save(Image.fromarray(U8, "CMYK"), d / "a.tiff"),
        np.round((255.0 - U8[..., :3]) * (255.0 - U8[..., 3:]) / 255) / 255,
        1.01 / 255,
    ),
    ("YCbCr tiff", lambda d: _save(Image.fromarray(U8[..., :3], "YCbCr"), d / "a.tiff"), ycbcr_expected(), 1.01 / 255),
    ("I;16 png", lambda d: _save(Image.fromarray(U16), d / "a.png"), gray(U16 / 65535), 1e-7),
    ("I;16 tiff", lambda d: _save(Image.fromarray(U16), d / "a.tiff"), gray(U16 / 65535), 1e-7),
    (
        "I;16B tiff",
        lambda d: _save(Image.fromarray(U16.astype(">u2")), d / "a.tiff"),
        gray(U16 / 65535),
        1e-7,
    ),
    ("16-bit pgm (mode I)", lambda d: _pnm(d / "a.pgm", U16, 65535), gray(U16 / 65535), 1e-7),
    ("12-bit pgm (mode I)", lambda d: _pnm(d / "a.pgm", U16 >> 4, 4095), gray((U16 >> 4) / 4095), 2e-4),
    ("F tiff", lambda d: _save(Image.fromarray(FLOATS), d / "a.tiff"), gray(FLOATS), 0),
]


def _save(image: Image.Image, path: Path, **options: object) -> Path:
    image.save(path, **options)
    return path


def _pnm(path: Path, values: np.ndarray, maxval: int) -> Path:
    path.write_bytes(f"P5 {SIZE} {SIZE} {maxval}\n".encode() + values.astype(">u2").tobytes())
    return path


@pytest.mark.parametrize(("name", "write", "expected", "tolerance"), CASES, ids=[c[0] for c in CASES])
def test_modes_read_as_numpy_says(
    tmp_path: Path, name: str, write: Callable[[Path], Path], expected: np.ndarray, tolerance: float
) -> None:
    path = write(tmp_path)
    pixels = read_pixels(str(path), SIZE, SIZE, "bilinear")
    assert pixels.dtype == np.float32 and pixels.shape == (SIZE, SIZE, 3)
    np.testing.assert_allclose(pixels, expected, rtol=0, atol=max(tolerance, 1e-7))  # float32 rounding


REFUSED: list[tuple[str, Callable[[Path], Path], str]] = [
    ("32-bit signed I tiff", lambda d: _save(Image.fromarray(U16.astype(np.int32) * 9), d / "a.tiff"), "white level"),
    ("F tiff above 1", lambda d: _save(Image.fromarray(FLOATS * 255), d / "a.tiff"), "[0, 1]"),
    ("F tiff with NaN", lambda d: _save(Image.fromarray(np.full((4, 4), np.nan, np.float32)), d / "a.tiff"), "NaN"),
    ("LAB tiff", lambda d: _save(Image.fromarray(U8[..., :3], "LAB"), d / "a.tiff"), "mode LAB"),
]


@pytest.mark.parametrize(("name", "write", "message"), REFUSED, ids=[c[0] for c in REFUSED])
def test_modes_without_a_defined_rgb_reading_are_refused(
    tmp_path: Path, name: str, write: Callable[[Path], Path], message: str
) -> None:
    path = write(tmp_path)
    with pytest.raises(UnsupportedImage, match=message.replace("[", r"\[").replace("]", r"\]")):
        read_pixels(str(path), SIZE, SIZE, "bilinear")
    batch = load_image_files([str(path)], np.array([0]), SIZE, SIZE, "bilinear")
    assert len(batch.indices) == 0 and "UnsupportedImage" in batch.failures[0][1]


@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic", "lanczos", "nearest"])
def test_deep_images_keep_their_scale_through_resizing(tmp_path: Path, interpolation: str) -> None:
    level = 30000
    Image.fromarray(np.full((40, 60), level, np.uint16)).save(tmp_path / "flat.png")
    pixels = read_pixels(str(tmp_path / "flat.png"), 16, 20, interpolation)
    np.testing.assert_allclose(pixels, level / 65535, rtol=1e-6)
    # a 16-bit ramp resized: within one 8-bit step of the 8-bit picture of it, and finer than 8 bits
    ramp = np.tile(np.linspace(0, 65535, 64).astype(np.uint16), (64, 1))
    Image.fromarray(ramp).save(tmp_path / "ramp.png")
    Image.fromarray((ramp // 257).astype(np.uint8)).save(tmp_path / "ramp8.png")
    deep = read_pixels(str(tmp_path / "ramp.png"), 32, 32, interpolation)
    shallow = read_pixels(str(tmp_path / "ramp8.png"), 32, 32, interpolation)
    np.testing.assert_allclose(deep, shallow, atol=1.5 / 255)
    assert deep.min() >= 0 and deep.max() <= 1


def test_an_image_folder_of_deep_images_runs(cli: Callable[..., CliResult], tiny_models: Path, tmp_path: Path) -> None:
    for cls, image, name in (("a", Image.fromarray(U16), "x.png"), ("b", Image.fromarray(FLOATS), "x.tiff")):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        image.resize((32, 32), Image.Resampling.NEAREST).save(tmp_path / "imgs" / cls / name)
    data = f"imagefolder:{tmp_path / 'imgs'}"
    result = cli("eval", "--model", f"{tiny_models}:tiny", "--data", data, "--out", tmp_path / "r")
    assert result.code == 0, result.err
