"""The built-in data sources: ``digits`` (embedded, offline), ``cifar10[:ROOT]``, ``imagefolder:PATH``, ``npz:PATH``.

Every source is a factory ``(arg, *, split, preprocessing) -> Dataset``, registered in the
``robaudit.datasets`` entry-point group like a plugin's would be.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

import numpy as np

from ..errors import InputError, RunError
from . import ArrayDataset, Dataset, LoadedBatch, stratified_subset

if TYPE_CHECKING:
    from ..models import Preprocessing

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp", ".gif"}
DIGITS_SPLIT_SEED = 0
DIGITS_TEST_FRACTION = 0.2


def cache_dir() -> Path:
    """robaudit's cache: ``$ROBAUDIT_CACHE``, else ``$XDG_CACHE_HOME/robaudit``, else ``~/.cache/robaudit``."""
    if os.environ.get("ROBAUDIT_CACHE"):
        return Path(os.environ["ROBAUDIT_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "robaudit"


def _split(split: str | None, allowed: tuple[str, ...], default: str, source: str) -> str:
    split = split or default
    if split not in allowed:
        raise InputError(f"{source} has splits {', '.join(allowed)}; got --split {split!r}")
    return split


def digits(arg: str | None = None, *, split: str | None = None, preprocessing: Preprocessing | None = None) -> Dataset:
    """Handwritten digits (1,797 8×8 images with 17 grey levels), upsampled to 3x32x32; offline.

    The images are the UCI "Optical Recognition of Handwritten Digits" test set (Alpaydin & Kaynak 1998,
    CC BY 4.0) as scikit-learn bundles it, shipped in ``digits.npz`` beside this module.
    """
    import torch
    import torch.nn.functional as F

    if arg:
        raise InputError(f"digits takes no argument, got digits:{arg}")
    split = _split(split, ("train", "test"), "test", "digits")
    with np.load(Path(__file__).with_name("digits.npz"), allow_pickle=False) as stored:
        grey, labels = stored["images"], stored["labels"].astype(np.int64)
    small = torch.from_numpy(grey.astype(np.float32) / 16.0)[:, None]
    big = F.interpolate(small, size=(32, 32), mode="bilinear", align_corners=False).clamp(0, 1)
    images = (big[:, 0].numpy() * 255).round().astype(np.uint8)
    test = stratified_subset(labels, round(len(labels) * DIGITS_TEST_FRACTION), DIGITS_SPLIT_SEED)
    keep = test if split == "test" else np.setdiff1d(np.arange(len(labels)), test)
    return ArrayDataset(
        images[keep],
        labels[keep],
        description=f"digits/{split}",
        class_names=[str(d) for d in range(10)],
        num_classes=10,
    )


def npz(arg: str | None = None, *, split: str | None = None, preprocessing: Preprocessing | None = None) -> Dataset:
    """A NumPy ``.npz`` file with ``x`` (uint8 N,H,W,3 RGB, or floats in [0,1]) and ``y`` (integer labels)."""
    if not arg:
        raise InputError("npz needs a path: npz:PATH")
    if split is not None:
        raise InputError("npz files have no splits; drop --split")
    path = Path(arg)
    if not path.is_file():
        raise InputError(f"npz file {arg!r} does not exist")
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = {"x", "y"} - set(data.files)
            if missing:
                raise InputError(f"{arg} lacks {', '.join(sorted(missing))}; it holds {', '.join(data.files)}")
            x, y = data["x"], data["y"]
    except InputError:
        raise
    except Exception as exc:
        raise InputError(f"cannot read npz file {arg}: {type(exc).__name__}: {exc}") from exc
    return ArrayDataset(x, y, description=f"npz:{arg}")


CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def cifar10(arg: str | None = None, *, split: str | None = None, preprocessing: Preprocessing | None = None) -> Dataset:
    """CIFAR-10 through torchvision (python batches under ROOT, default the robaudit cache); downloads when online."""
    from torchvision.datasets import CIFAR10

    split = _split(split, ("train", "test"), "test", "cifar10")
    root = Path(arg) if arg else cache_dir() / "data"
    train = split == "train"
    try:
        ds = CIFAR10(str(root), train=train, download=False)
    except RuntimeError:
        from ..models.downloads import host_reachable

        if not host_reachable(urlparse(CIFAR10.url).hostname or ""):
            raise InputError(
                f"CIFAR-10 is not under {root} and cannot be downloaded here (no network); put the extracted "
                f"cifar-10-batches-py folder into {root}, or name its parent with cifar10:ROOT"
            ) from None
        try:
            ds = CIFAR10(str(root), train=train, download=True)
        except Exception as exc:
            raise RunError(f"downloading CIFAR-10 to {root} failed: {exc}; place cifar-10-batches-py there") from exc
    return ArrayDataset(
        np.asarray(ds.data),
        np.asarray(ds.targets),
        description=f"cifar10/{split} at {root}",
        class_names=list(CIFAR10_CLASSES),
        num_classes=10,
    )


class ImageFolder(Dataset):
    """``ROOT/<class>/<image>`` (classes in sorted order); images resized and centre-cropped for the model.

    The shorter side is resized to ``size / crop_pct`` and the centre ``size x size`` is cut out, as timm
    and torchvision evaluate; a model that sets ``crop_pct = 1`` with the images' own size sees them as is.
    """

    def __init__(self, root: Path, size: int, crop_pct: float, interpolation: str) -> None:
        classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        files: list[tuple[str, int]] = []
        for label, name in enumerate(classes):
            for dirpath, _, names in sorted(os.walk(root / name)):
                files += [
                    (os.path.join(dirpath, f), label)
                    for f in sorted(names)
                    if os.path.splitext(f)[1].lower() in IMAGE_EXTENSIONS
                ]
        if not files:
            raise InputError(
                f"no images found under {root} (expected {root}/<class>/<image>, "
                f"extensions {', '.join(sorted(IMAGE_EXTENSIONS))})"
            )
        self.root = root
        self.files = [f for f, _ in files]
        self.labels = np.array([lab for _, lab in files], dtype=np.int64)
        self.class_names = classes
        self.num_classes = len(classes)
        wnids = imagenet_wnids()
        if len(classes) < len(wnids) and set(classes) <= set(wnids):
            # a subset of ImageNet's classes: numbering the folders 0..k-1 would not match an ImageNet
            # classifier's outputs, so each folder keeps its ImageNet-1k index
            index = {w: i for i, w in enumerate(wnids)}
            self.labels = np.array([index[classes[lab]] for lab in self.labels], dtype=np.int64)
            self.class_names, self.num_classes = wnids, len(wnids)
        self.size = size
        self.resize = round(size / crop_pct)
        self.interpolation = interpolation
        self.description = f"imagefolder:{root} ({len(files)} images, {len(classes)} classes, {size}x{size})"

    def load(self, indices: np.ndarray) -> LoadedBatch:
        return load_image_files(self.files, indices, self.size, self.resize, self.interpolation)

    def fingerprint(self) -> str:
        return files_fingerprint(self.root, self.files, self.labels, f"{self.size}/{self.resize}/{self.interpolation}")


def imagenet_wnids() -> list[str]:
    """The 1,000 ImageNet-1k wnids in class-index order (sorted), from timm's bundled list."""
    from importlib.resources import files

    text = files("timm.data").joinpath("_info", "imagenet_synsets.txt").read_text()
    return [line.strip() for line in text.splitlines() if line.strip()]


def files_fingerprint(root: Path, files: list[str], labels: np.ndarray, sizing: str) -> str:
    """A hash of a file list (paths relative to ``root``, labels, byte sizes) and of how images are sized.

    File contents are not read: hashing every byte of a large image folder would take minutes.
    """
    digest = hashlib.sha256()
    for path, label in zip(files, labels, strict=True):
        try:
            size: int | str = os.path.getsize(path)
        except OSError:  # a dangling link or an unreadable entry: it fails to decode and is reported then
            size = "unreadable"
        digest.update(f"{os.path.relpath(path, root)}\t{label}\t{size}\n".encode())
    digest.update(sizing.encode())
    return digest.hexdigest()


def read_pixels(path: str, size: int, resize: int, interpolation: str) -> np.ndarray:
    """One image file as float32 ``(size, size, 3)`` in [0, 1]: shorter side resized to ``resize``, centre
    ``size`` crop. Every Pillow mode is read by its own scale or refused (:mod:`.pixels`)."""
    from PIL import Image

    from .pixels import as_array, decoded

    modes = {
        "bilinear": Image.Resampling.BILINEAR,
        "bicubic": Image.Resampling.BICUBIC,
        "nearest": Image.Resampling.NEAREST,
        "lanczos": Image.Resampling.LANCZOS,
    }
    with Image.open(path) as opened:
        img = decoded(opened)
        w, h = img.size
        scale = resize / min(w, h)
        if (w, h) != (size, size) or resize != size:
            img = img.resize(
                (max(size, round(w * scale)), max(size, round(h * scale))),
                modes.get(interpolation, Image.Resampling.BILINEAR),
            )
        w, h = img.size
        left, top = (w - size) // 2, (h - size) // 2
        img = img.crop((left, top, left + size, top + size))
        return as_array(img)


def read_square(path: str, size: int, resize: int, interpolation: str) -> np.ndarray:
    """:func:`read_pixels` as uint8 ``(size, size, 3)`` (for pictures of images)."""
    return np.round(read_pixels(path, size, resize, interpolation) * 255).astype(np.uint8)


def load_image_files(files: list[str], indices: np.ndarray, size: int, resize: int, interpolation: str) -> LoadedBatch:
    """The images ``files[i]`` for ``i`` in ``indices`` as a batch; files that fail to decode become failures."""
    import torch

    ok, arrays, failures = [], [], []
    for i in indices:
        try:
            arrays.append(read_pixels(files[i], size, resize, interpolation))
            ok.append(i)
        except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError... for broken files
            failures.append((int(i), f"{files[i]}: {type(exc).__name__}: {exc}"))
    images = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2) if arrays else torch.empty(0, 3, size, size)
    return LoadedBatch(np.array(ok, dtype=np.int64), images.contiguous(), failures)


def imagefolder(
    arg: str | None = None, *, split: str | None = None, preprocessing: Preprocessing | None = None
) -> Dataset:
    """An ImageNet-style folder ``PATH/<class>/<image>``, or ``PATH/<split>/<class>/<image>`` with --split."""
    if not arg:
        raise InputError("imagefolder needs a path: imagefolder:PATH")
    root = Path(arg)
    if not root.is_dir():
        raise InputError(f"image folder {arg!r} does not exist or is not a directory")
    split_dirs = sorted(p.name for p in root.iterdir() if p.is_dir() and p.name in {"train", "val", "test"})
    if split is not None:
        if not (root / split).is_dir():
            raise InputError(
                f"{arg} has no split folder {split!r}" + (f"; it has {', '.join(split_dirs)}" if split_dirs else "")
            )
        root = root / split
    elif split_dirs:
        raise InputError(f"{arg} holds splits ({', '.join(split_dirs)}); choose one with --split")
    if preprocessing is None:
        raise InputError("imagefolder needs the model's preprocessing to size images")
    _, height, width = preprocessing.input_size
    if height != width:
        raise InputError(f"imagefolder crops squares; the model wants {height}x{width}")
    return ImageFolder(root, height, preprocessing.crop_pct, preprocessing.interpolation)
