"""Per-image cost of the reference corruptions (``imagecorruptions`` 1.1.2), served to a benchmark over pipes.

The reference corrupts one ``uint8`` H×W×3 image at a time with numpy, SciPy, scikit-image, OpenCV and
PIL, and only runs with old pins (benchmarks/reference_env/requirements.txt), so it lives in its own
virtual environment. ``benchmarks/corruptions_speed.py`` starts this file with that environment's Python
and keeps it running, so the import cost is paid once and reference timings can be interleaved with
robaudit's, measurement by measurement, under the same machine load.

Protocol: one JSON object per line on stdin, one JSON answer per line on stdout.

* at start-up the worker says ``{"ready": true, "versions": {...}, "corruptions": [...]}``;
* a command ``{"corruption": "fog", "severity": 3, "size": 224, "n_images": 8, "seed": 0, "repeats": 3,
  "warmup": true}`` is answered ``{"ok": true, "seconds_per_image": <median over repeats>, "times": [...]}``
  (``repeats`` and ``warmup`` are optional, 1 and false by default); a failure is ``{"ok": false,
  "error": "..."}`` and the worker carries on;
* ``{"quit": true}`` or the end of stdin ends it.

Each repeat seeds ``np.random`` with ``seed`` (the reference draws from the global state) and times
``imagecorruptions.corrupt(img, corruption_name=..., severity=...)`` over ``n_images`` images. Images are
real photographs when ``--images-dir`` names a folder (resized so the short side is ``size``, centre
crop), smooth synthetic ones otherwise: noise on flat or random images would flatter or penalise
corruptions whose cost depends on content (JPEG encoding, spatter's edge detection).

Compatibility: scikit-image dropped the ``multichannel=`` keyword of ``filters.gaussian`` in 0.20, and no
release that still has it ships Python 3.11 wheels, so the worker maps ``multichannel=True`` to
``channel_axis=-1`` for the reference's glass_blur and gaussian_blur, the exact translation scikit-image
0.19 performed itself; the filtering and its cost are unchanged.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np
from PIL import Image

PHOTO_SUFFIXES = (".jpeg", ".jpg", ".png", ".bmp", ".webp")


def photo_paths(folder: Path) -> list[Path]:
    """The image files directly inside ``folder``, sorted by name (so every process picks the same ones)."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in PHOTO_SUFFIXES)


def square_crop(path: Path, size: int) -> np.ndarray:
    """The photo resized so its short side is ``size`` (bicubic, antialiased), centre-cropped to size × size."""
    with Image.open(path) as photo:
        rgb = photo.convert("RGB")
    scale = size / min(rgb.size)
    width, height = max(size, round(rgb.width * scale)), max(size, round(rgb.height * scale))
    rgb = rgb.resize((width, height), Image.Resampling.BICUBIC, reducing_gap=3.0)
    left, top = (width - size) // 2, (height - size) // 2
    return np.asarray(rgb.crop((left, top, left + size, top + size)), dtype=np.uint8)


def load_photos(folder: Path, size: int, count: int) -> np.ndarray:
    """``count`` photos from ``folder`` as ``(count, size, size, 3)`` uint8, cycling when it holds fewer."""
    paths = photo_paths(folder)
    if not paths:
        raise ValueError(f"no images ({', '.join(PHOTO_SUFFIXES)}) in {folder}")
    crops = [square_crop(p, size) for p in paths[:count]]
    return np.stack([crops[i % len(crops)] for i in range(count)])


def synthetic_images(size: int, count: int, seed: int) -> np.ndarray:
    """Smooth, photo-like images: a few low-frequency waves and a gradient, correlated across channels.

    Natural images put most of their power at low spatial frequencies and their colour channels move
    together; a little fine-grained texture keeps edges and JPEG blocks from being trivially empty.
    """
    rng = np.random.default_rng(seed)
    grid = np.linspace(0.0, 1.0, size, dtype=np.float64)
    yy, xx = np.meshgrid(grid, grid, indexing="ij")
    images = np.empty((count, size, size, 3), dtype=np.uint8)
    for i in range(count):
        luma = rng.uniform(-0.3, 0.3) * xx + rng.uniform(-0.3, 0.3) * yy
        for _ in range(6):
            fy, fx = rng.uniform(0.5, 6.0, size=2)
            luma += rng.uniform(0.05, 0.2) * np.cos(2 * np.pi * (fy * yy + fx * xx) + rng.uniform(0, 2 * np.pi))
        tint = rng.uniform(0.7, 1.3, size=3)
        texture = rng.normal(0.0, 0.02, size=(size, size, 3))
        pixels = 0.5 + luma[..., None] * tint + texture
        images[i] = np.clip(pixels * 255.0, 0, 255).astype(np.uint8)
    return images


def natural_images(size: int, count: int, images_dir: Path | None, seed: int = 0) -> np.ndarray:
    """The benchmark's input images, ``(count, size, size, 3)`` uint8: photos from ``images_dir`` or synthetic."""
    if images_dir is not None:
        return load_photos(images_dir, size, count)
    return synthetic_images(size, count, seed)


def patch_gaussian_keyword(module: Any) -> None:
    """Let the reference's ``gaussian(..., multichannel=True)`` calls run on scikit-image >= 0.20."""
    original = module.gaussian

    def gaussian(image: Any, *args: Any, multichannel: bool | None = None, **kwargs: Any) -> Any:
        if multichannel:
            kwargs.setdefault("channel_axis", -1)
        return original(image, *args, **kwargs)

    module.gaussian = gaussian


def time_corruption(
    corrupt: Callable[..., np.ndarray], images: np.ndarray, name: str, severity: int, seed: int, repeats: int
) -> list[float]:
    """Seconds per image of each repeat; every repeat starts from the same ``np.random`` state."""
    times = []
    for _ in range(repeats):
        np.random.seed(seed)
        start = time.perf_counter()
        for image in images:
            corrupt(image, corruption_name=name, severity=severity)
        times.append((time.perf_counter() - start) / len(images))
    return times


class Reference:
    """The imported reference and a cache of input images, answering one command at a time."""

    def __init__(self, images_dir: Path | None) -> None:
        # the reference's imports warn about pkg_resources and scipy.ndimage.interpolation; stdout is the
        # protocol channel and stderr should stay readable, so those known warnings are silenced
        warnings.simplefilter("ignore")
        import imagecorruptions
        import imagecorruptions.corruptions as corruptions

        patch_gaussian_keyword(corruptions)
        self.corrupt = imagecorruptions.corrupt
        self.names: list[str] = imagecorruptions.get_corruption_names("all")
        self.images_dir = images_dir
        self._images: dict[tuple[int, int, int], np.ndarray] = {}

    def images(self, size: int, count: int, seed: int) -> np.ndarray:
        key = (size, count, seed)
        if key not in self._images:
            self._images[key] = natural_images(size, count, self.images_dir, seed)
        return self._images[key]

    def answer(self, command: dict[str, Any]) -> dict[str, Any]:
        name, severity = str(command["corruption"]), int(command["severity"])
        if name not in self.names:
            return {"ok": False, "error": f"the reference has no corruption {name!r}"}
        images = self.images(int(command["size"]), int(command["n_images"]), int(command.get("seed", 0)))
        seed = int(command.get("seed", 0))
        if command.get("warmup", False):
            time_corruption(self.corrupt, images[:1], name, severity, seed, 1)
        times = time_corruption(self.corrupt, images, name, severity, seed, int(command.get("repeats", 1)))
        return {"ok": True, "seconds_per_image": statistics.median(times), "times": times}


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": sys.version.split()[0]}
    for dist in ("imagecorruptions", "numpy", "scipy", "scikit-image", "opencv-python", "pillow", "setuptools"):
        try:
            found[dist] = version(dist)
        except PackageNotFoundError:
            continue
    return found


def commands(stream: IO[str]) -> Iterator[dict[str, Any]]:
    for line in stream:
        if line.strip():
            yield json.loads(line)


def send(stream: IO[str], message: dict[str, Any]) -> None:
    stream.write(json.dumps(message) + "\n")
    stream.flush()


def serve(images_dir: Path | None, stdin: IO[str], stdout: IO[str]) -> None:
    reference = Reference(images_dir)
    send(stdout, {"ready": True, "versions": versions(), "corruptions": reference.names})
    for command in commands(stdin):
        if command.get("quit"):
            break
        try:
            send(stdout, reference.answer(command))
        except Exception as error:  # one failing corruption must not end the worker
            send(stdout, {"ok": False, "error": f"{type(error).__name__}: {error}"})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images-dir", type=Path, default=None, help="folder of photos (default: synthetic)")
    args = parser.parse_args()
    serve(args.images_dir, sys.stdin, sys.stdout)


if __name__ == "__main__":
    main()
