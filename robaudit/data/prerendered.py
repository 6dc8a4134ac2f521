"""Pre-rendered corruption benchmarks: the released ImageNet-C JPEGs and CIFAR-10-C arrays.

``imagenet-c:ROOT`` reads ``ROOT/<corruption>/<severity>/<wnid>/*.JPEG`` (Hendrycks' layout, 224² images).
Class folders that are all ImageNet-1k wnids get their standard index (sorted-wnid order, 1000 classes),
so a subset of classes still lines up with an ImageNet classifier's outputs; other folder names are
numbered in sorted order over the whole tree. ``cifar10-c:ROOT`` reads ``ROOT/<corruption>.npy`` (uint8
``(5·n, 32, 32, 3)``, severity blocks of ``n`` rows in order 1..5) and ``ROOT/labels.npy``, memory-mapped.

Both report each sample's ``corruption`` and ``severity`` through :meth:`Dataset.sample_info`, which the
corruptions audit reads instead of corrupting images itself. A filter after ``::`` keeps part of the set,
e.g. ``imagenet-c:/data/ImageNet-C::fog,noise@1-3`` (corruption names, groups, bands, ``all`` or
``common``; severities after ``@``); ``robaudit corruptions`` adds it from ``--corruptions`` and
``--severities``.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import InputError, suggest
from . import Dataset, LoadedBatch
from .sources import IMAGE_EXTENSIONS, files_fingerprint, imagenet_wnids, load_image_files

if TYPE_CHECKING:
    from ..models import Preprocessing

FILTER = "::"
#: rows hashed from each CIFAR-10-C array for the fingerprint (hashing 19 x 150 MB would take seconds)
FINGERPRINT_ROWS = 64


def split_filter(arg: str | None, source: str) -> tuple[Path, list[str], list[int]]:
    """``ROOT[::CORRUPTIONS[@SEVERITIES]]`` -> (root, corruption names, severities)."""
    from ..corruption import NAMES, parse_severities, resolve_names

    if not arg:
        raise InputError(f"{source} needs a folder: {source}:ROOT")
    root, _, selection = arg.partition(FILTER)
    names_spec, _, severity_spec = selection.partition("@")
    names = resolve_names(names_spec) if names_spec else list(NAMES)
    severities = parse_severities(severity_spec) if severity_spec else [1, 2, 3, 4, 5]
    path = Path(root)
    if not path.is_dir():
        raise InputError(f"{source} folder {root!r} does not exist or is not a directory")
    return path, names, severities


class ImageNetC(Dataset):
    """The ImageNet-C JPEG tree, filtered to some corruptions and severities."""

    def __init__(self, root: Path, names: list[str], severities: list[int], size: int, interpolation: str) -> None:
        from ..corruption import NAMES

        present = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        strangers = [p for p in present if p not in NAMES]
        if strangers:
            raise InputError(
                f"{root} is not an ImageNet-C tree: folder {strangers[0]!r} is not a corruption"
                f"{suggest(strangers[0], NAMES)} (expected ROOT/<corruption>/<severity>/<wnid>/*.JPEG)"
            )
        wanted = [n for n in names if n in present]
        if not wanted:
            raise InputError(f"{root} holds none of the requested corruptions ({', '.join(names)}); it has {present}")
        entries: list[tuple[str, str, int, str]] = []  # (path, corruption, severity, class folder)
        for name in wanted:
            for severity in severities:
                folder = root / name / str(severity)
                if not folder.is_dir():
                    raise InputError(f"{root}: missing {name}/{severity} (expected one folder per severity 1-5)")
                for class_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
                    entries += [
                        (os.path.join(class_dir, f), name, severity, class_dir.name)
                        for f in sorted(os.listdir(class_dir))
                        if os.path.splitext(f)[1].lower() in IMAGE_EXTENSIONS
                    ]
        if not entries:
            raise InputError(f"no images under {root} for {', '.join(wanted)} at severities {severities}")
        classes = sorted({e[3] for e in entries})
        wnids = imagenet_wnids()
        if set(classes) <= set(wnids):
            index = {w: i for i, w in enumerate(wnids)}
            self.class_names = wnids
        else:
            index = {c: i for i, c in enumerate(classes)}
            self.class_names = classes
        self.root = root
        self.files = [e[0] for e in entries]
        self.corruption = np.array([e[1] for e in entries], dtype=object)
        self.severity = np.array([e[2] for e in entries], dtype=np.int64)
        self.labels = np.array([index[e[3]] for e in entries], dtype=np.int64)
        self.num_classes = len(self.class_names)
        self.size = size
        self.interpolation = interpolation
        self.description = (
            f"imagenet-c:{root} ({len(entries)} images: {len(wanted)} corruptions x {len(severities)} severities)"
        )

    def load(self, indices: np.ndarray) -> LoadedBatch:
        # The released files are already 224x224 crops; a model of another size gets them resized, not re-cropped.
        return load_image_files(self.files, indices, self.size, self.size, self.interpolation)

    def sample_info(self, indices: np.ndarray) -> dict[str, np.ndarray]:
        return {"corruption": self.corruption[indices], "severity": self.severity[indices]}

    def fingerprint(self) -> str:
        return files_fingerprint(self.root, self.files, self.labels, f"{self.size}/{self.interpolation}")


class Cifar10C(Dataset):
    """CIFAR-10-C arrays, memory-mapped, filtered to some corruptions and severities."""

    def __init__(self, root: Path, names: list[str], severities: list[int]) -> None:
        from ..data.sources import CIFAR10_CLASSES

        labels_path = root / "labels.npy"
        if not labels_path.is_file():
            raise InputError(f"{root} is not a CIFAR-10-C folder: labels.npy is missing")
        labels = self._open(labels_path)
        present = [n for n in names if (root / f"{n}.npy").is_file()]
        if not present:
            found = sorted(p.stem for p in root.glob("*.npy") if p.stem != "labels")
            raise InputError(f"{root} holds none of the requested corruptions ({', '.join(names)}); it has {found}")
        self.arrays: dict[str, np.ndarray] = {}
        rows: list[np.ndarray] = []
        for name in present:
            array = self._open(root / f"{name}.npy")
            if array.ndim != 4 or array.shape[-1] != 3 or array.dtype != np.uint8 or len(array) % 5:
                raise InputError(
                    f"{root / f'{name}.npy'}: expected uint8 (5*n, H, W, 3) with severity blocks of n rows, "
                    f"got {array.dtype} {array.shape}"
                )
            if len(labels) not in (len(array), len(array) // 5):
                raise InputError(
                    f"{labels_path} has {len(labels)} labels but {name}.npy has {len(array)} images "
                    f"(expected {len(array)} or {len(array) // 5})"
                )
            self.arrays[name] = array
            block = len(array) // 5
            for severity in severities:
                start = (severity - 1) * block
                rows.append(np.stack([np.full(block, len(self.arrays) - 1), np.arange(start, start + block)], 1))
        self.names = present
        self.plan = np.concatenate(rows)  # (N, 2): which array, which row
        self.root = root
        self.labels = np.asarray(labels, dtype=np.int64)[self.plan[:, 1] % len(labels)]
        if self.labels.min() < 0 or self.labels.max() >= 10:
            raise InputError(f"{labels_path}: CIFAR-10-C labels must lie in 0..9")
        self.num_classes = 10
        self.class_names = list(CIFAR10_CLASSES)
        self.description = (
            f"cifar10-c:{root} ({len(self.labels)} images: {len(present)} corruptions x {len(severities)} severities)"
        )

    @staticmethod
    def _open(path: Path) -> np.ndarray:
        try:
            return np.load(path, mmap_mode="r", allow_pickle=False)
        except Exception as exc:
            raise InputError(f"cannot read {path}: {type(exc).__name__}: {exc}") from None

    def load(self, indices: np.ndarray) -> LoadedBatch:
        import torch

        plan = self.plan[indices]
        images = np.stack([self.arrays[self.names[a]][r] for a, r in plan]) if len(plan) else None
        tensor = (
            torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0
            if images is not None
            else torch.empty(0, 3, 32, 32)
        )
        return LoadedBatch(np.asarray(indices), tensor.contiguous())

    def sample_info(self, indices: np.ndarray) -> dict[str, np.ndarray]:
        plan = self.plan[indices]
        block = {name: len(self.arrays[name]) // 5 for name in self.names}
        corruption = np.array([self.names[a] for a in plan[:, 0]], dtype=object)
        severity = np.array([r // block[c] + 1 for c, r in zip(corruption, plan[:, 1], strict=True)], dtype=np.int64)
        return {"corruption": corruption, "severity": severity}

    def fingerprint(self) -> str:
        digest = hashlib.sha256()
        for name, array in self.arrays.items():
            digest.update(f"{name}{array.shape}".encode())
            picks = np.unique(np.linspace(0, len(array) - 1, FINGERPRINT_ROWS).astype(np.int64))
            digest.update(np.ascontiguousarray(array[picks]).tobytes())
        digest.update(self.plan.tobytes())
        digest.update(self.labels.tobytes())
        return digest.hexdigest()


def imagenet_c(
    arg: str | None = None, *, split: str | None = None, preprocessing: Preprocessing | None = None
) -> Dataset:
    """Released ImageNet-C JPEGs: ``ROOT/<corruption>/<severity>/<wnid>/*.JPEG`` (filter with ``::``)."""
    if split is not None:
        raise InputError("imagenet-c has no splits; drop --split")
    root, names, severities = split_filter(arg, "imagenet-c")
    size, interpolation = 224, "bilinear"
    if preprocessing is not None:
        _, height, width = preprocessing.input_size
        if height != width:
            raise InputError(f"imagenet-c images are square; the model wants {height}x{width}")
        size, interpolation = height, preprocessing.interpolation
    return ImageNetC(root, names, severities, size, interpolation)


def cifar10_c(
    arg: str | None = None, *, split: str | None = None, preprocessing: Preprocessing | None = None
) -> Dataset:
    """Released CIFAR-10-C arrays: ``ROOT/<corruption>.npy`` + ``ROOT/labels.npy`` (filter with ``::``)."""
    if split is not None:
        raise InputError("cifar10-c has no splits; drop --split")
    root, names, severities = split_filter(arg, "cifar10-c")
    return Cifar10C(root, names, severities)
