"""Data sources, validation of their files, stratified subsets, chunks and shards."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from robaudit.data import (
    DataSpec,
    iter_batches,
    load_dataset,
    parse_shard,
    plan_chunks,
    shard_chunks,
    stratified_subset,
)
from robaudit.errors import InputError
from robaudit.models import Preprocessing

PRE32 = Preprocessing(input_size=(3, 32, 32), crop_pct=1.0)


def test_digits_splits_are_disjoint_stratified_and_images_valid() -> None:
    test = load_dataset(DataSpec("digits"))
    train = load_dataset(DataSpec("digits", split="train"))
    assert len(test) == 359 and len(train) == 1797 - 359
    assert test.num_classes == 10 and set(np.unique(test.labels)) == set(range(10))
    counts = np.bincount(test.labels)
    assert counts.max() - counts.min() <= 2
    batch = test.load(np.arange(5))
    assert batch.images.shape == (5, 3, 32, 32) and batch.images.dtype == torch.float32
    assert float(batch.images.min()) >= 0 and float(batch.images.max()) <= 1 and float(batch.images.max()) > 0.9
    assert torch.equal(batch.images[:, 0], batch.images[:, 1])  # grey replicated to RGB
    all_test = test.load(np.arange(len(test))).images.flatten(1)
    all_train = train.load(np.arange(len(train))).images.flatten(1)
    assert not (torch.cdist(all_test, all_train).min(dim=1).values == 0).all()


def test_unknown_source_and_bad_options() -> None:
    with pytest.raises(InputError, match="unknown data source 'cifar100'.*did you mean 'cifar10'"):
        load_dataset(DataSpec("cifar100"))
    with pytest.raises(InputError, match="splits train, test"):
        load_dataset(DataSpec("digits", split="val"))
    with pytest.raises(InputError, match="--limit must be >= 1"):
        load_dataset(DataSpec("digits", limit=0))
    with pytest.raises(InputError, match="--on-bad-image"):
        load_dataset(DataSpec("digits", on_bad_image="ignore"))


def test_stratified_subset_is_proportional_and_seeded() -> None:
    labels = np.repeat(np.arange(4), [100, 50, 30, 20])
    subset = stratified_subset(labels, 40, seed=3)
    assert len(subset) == 40 and np.all(np.diff(subset) > 0)
    assert np.bincount(labels[subset]).tolist() == [20, 10, 6, 4]
    assert np.array_equal(subset, stratified_subset(labels, 40, seed=3))
    assert not np.array_equal(subset, stratified_subset(labels, 40, seed=4))
    assert np.array_equal(stratified_subset(labels, None, seed=0), np.arange(200))
    assert np.array_equal(stratified_subset(labels, 500, seed=0), np.arange(200))


def test_chunks_and_shards_partition_the_selection() -> None:
    chunks = plan_chunks(np.arange(10), 3)
    assert [c.indices.tolist() for c in chunks] == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9]]
    parts = [shard_chunks(chunks, (i, 3)) for i in range(3)]
    assert sorted(c.id for p in parts for c in p) == [0, 1, 2, 3]
    assert [c.id for c in parts[0]] == [0, 3]
    assert parse_shard("1/4") == (1, 4) and parse_shard(None) == (0, 1)
    for bad in ("4/4", "x", "1/0", "-1/2"):
        with pytest.raises(InputError):
            parse_shard(bad)
    with pytest.raises(InputError):
        plan_chunks(np.arange(3), 0)


def test_iter_batches_respects_chunk_boundaries() -> None:
    dataset = load_dataset(DataSpec("digits"))
    chunks = plan_chunks(np.arange(25), 10)
    seen = [(c.id, last, b.indices.tolist()) for c, last, b in iter_batches(dataset, chunks, batch_size=4)]
    assert [s[0] for s in seen] == [0, 0, 0, 1, 1, 1, 2, 2]
    assert [s[1] for s in seen] == [False, False, True, False, False, True, False, True]
    assert [i for s in seen for i in s[2]] == list(range(25))
    with_workers = [b.indices.tolist() for _, _, b in iter_batches(dataset, chunks, batch_size=4, workers=2)]
    assert with_workers == [s[2] for s in seen]


# -- npz ------------------------------------------------------------------------------------------------


def _npz(path: Path, **arrays: np.ndarray) -> str:
    np.savez(path, **arrays)
    return f"npz:{path}"


def test_npz_reads_uint8_and_float(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (6, 8, 8, 3), dtype=np.uint8)
    y = np.array([0, 1, 2, 0, 1, 2])
    ds = load_dataset(DataSpec(_npz(tmp_path / "a.npz", x=x, y=y)))
    assert len(ds) == 6 and ds.num_classes == 3
    assert torch.allclose(ds.load(np.array([1])).images[0], torch.from_numpy(x[1]).permute(2, 0, 1).float() / 255)
    floats = load_dataset(DataSpec(_npz(tmp_path / "f.npz", x=x / 255.0, y=y)))
    assert torch.allclose(floats.load(np.arange(6)).images, ds.load(np.arange(6)).images, atol=1e-6)
    grey = load_dataset(DataSpec(_npz(tmp_path / "g.npz", x=x[..., 0], y=y)))
    assert grey.load(np.arange(2)).images.shape == (2, 3, 8, 8)


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"x": np.zeros((3, 8, 8, 3), np.uint8)}, "lacks y"),
        ({"x": np.zeros((3, 8, 8, 3), np.uint8), "y": np.zeros(4, int)}, "3 images but 4 labels"),
        ({"x": np.zeros((3, 8, 8, 5), np.uint8), "y": np.zeros(3, int)}, "images must be"),
        ({"x": np.full((3, 8, 8, 3), np.nan), "y": np.zeros(3, int)}, "NaN or inf"),
        ({"x": np.full((3, 8, 8, 3), 200.0), "y": np.zeros(3, int)}, "must lie in \\[0, 1\\]"),
        ({"x": np.zeros((3, 8, 8, 3), np.uint8), "y": np.array([0, -1, 1])}, "labels must be >= 0"),
        ({"x": np.zeros((3, 8, 8, 3), np.uint8), "y": np.array([0.5, 1, 1])}, "labels must be integers"),
        ({"x": np.zeros((0, 8, 8, 3), np.uint8), "y": np.zeros(0, int)}, "holds no images"),
    ],
)
def test_npz_validation(tmp_path: Path, arrays: dict[str, np.ndarray], message: str) -> None:
    with pytest.raises(InputError, match=message):
        load_dataset(DataSpec(_npz(tmp_path / "bad.npz", **arrays)))


def test_npz_missing_corrupt_and_split(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        load_dataset(DataSpec(f"npz:{tmp_path / 'none.npz'}"))
    (tmp_path / "corrupt.npz").write_bytes(b"PK\x03\x04garbage")
    with pytest.raises(InputError, match="cannot read npz"):
        load_dataset(DataSpec(f"npz:{tmp_path / 'corrupt.npz'}"))
    spec = _npz(tmp_path / "a.npz", x=np.zeros((2, 4, 4, 3), np.uint8), y=np.zeros(2, int))
    with pytest.raises(InputError, match="no splits"):
        load_dataset(DataSpec(spec, split="test"))


# -- imagefolder ---------------------------------------------------------------------------------------------


def make_image_folder(root: Path, per_class: int = 3, size: tuple[int, int] = (40, 30)) -> Path:
    rng = np.random.default_rng(0)
    for cls in ("cat", "dog"):
        (root / cls).mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / cls / f"{i:03d}.png")
    return root


def test_imagefolder_resizes_and_crops_for_the_model(tmp_path: Path) -> None:
    root = make_image_folder(tmp_path / "imgs")
    ds = load_dataset(DataSpec(f"imagefolder:{root}"), Preprocessing(input_size=(3, 24, 24), crop_pct=0.75))
    assert ds.class_names == ["cat", "dog"] and ds.labels.tolist() == [0, 0, 0, 1, 1, 1]
    batch = ds.load(np.arange(6))
    assert batch.images.shape == (6, 3, 24, 24) and not batch.failures
    same_size = load_dataset(DataSpec(f"imagefolder:{root}"), Preprocessing(input_size=(3, 30, 30), crop_pct=1.0))
    original = np.array(Image.open(root / "cat" / "000.png"))
    expected = torch.from_numpy(original[:, 5:35]).permute(2, 0, 1).float() / 255  # centre 30x30 of 40x30
    assert torch.allclose(same_size.load(np.array([0])).images[0], expected)


def test_imagefolder_errors_and_bad_images(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        load_dataset(DataSpec(f"imagefolder:{tmp_path / 'none'}"), PRE32)
    (tmp_path / "empty" / "cat").mkdir(parents=True)
    with pytest.raises(InputError, match="no images found"):
        load_dataset(DataSpec(f"imagefolder:{tmp_path / 'empty'}"), PRE32)
    root = make_image_folder(tmp_path / "split" / "test")
    with pytest.raises(InputError, match="choose one with --split"):
        load_dataset(DataSpec(f"imagefolder:{tmp_path / 'split'}"), PRE32)
    with pytest.raises(InputError, match="no split folder 'train'; it has test"):
        load_dataset(DataSpec(f"imagefolder:{tmp_path / 'split'}", split="train"), PRE32)
    good = load_dataset(DataSpec(f"imagefolder:{tmp_path / 'split'}", split="test"), PRE32)
    assert len(good) == 6
    data = (root / "dog" / "001.png").read_bytes()
    (root / "dog" / "001.png").write_bytes(data[: len(data) // 3])  # truncated
    (root / "dog" / "002.png").write_bytes(b"not an image at all")
    ds = load_dataset(DataSpec(f"imagefolder:{tmp_path / 'split'}", split="test"), PRE32)
    batch = ds.load(np.arange(6))
    assert batch.indices.tolist() == [0, 1, 2, 3] and batch.images.shape[0] == 4
    assert [i for i, _ in batch.failures] == [4, 5] and "002.png" in batch.failures[1][1]


def test_imagefolder_of_some_imagenet_classes_keeps_their_imagenet_indices(tmp_path: Path) -> None:
    from robaudit.data import DataSpec, load_dataset

    for wnid in ("n01443537", "n01440764", "n15075141"):  # classes 1, 0 and 999 of ImageNet-1k
        (tmp_path / wnid).mkdir()
        Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(tmp_path / wnid / "a.png")
    dataset = load_dataset(DataSpec(f"imagefolder:{tmp_path}"), Preprocessing(input_size=(3, 8, 8), crop_pct=1.0))
    assert dataset.labels.tolist() == [0, 1, 999] and dataset.num_classes == 1000
    (tmp_path / "not_a_wnid").mkdir()
    Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(tmp_path / "not_a_wnid" / "b.png")
    other = load_dataset(DataSpec(f"imagefolder:{tmp_path}"), Preprocessing(input_size=(3, 8, 8), crop_pct=1.0))
    assert other.labels.tolist() == [0, 1, 2, 3] and other.num_classes == 4  # plain folders: sorted order


def test_real_imagenet_images_get_their_published_class_index(validation_data: Path, tmp_path: Path) -> None:
    import csv
    import shutil

    from robaudit.data import DataSpec, load_dataset

    with open(validation_data / "imagenet" / "val20_labels.csv") as table:
        rows = list(csv.DictReader(table))
    for row in rows:
        (tmp_path / row["wnid"]).mkdir(exist_ok=True)
        shutil.copy(validation_data / "imagenet" / row["path"], tmp_path / row["wnid"])
    dataset = load_dataset(DataSpec(f"imagefolder:{tmp_path}"), Preprocessing())
    expected = {Path(r["path"]).name: int(r["class_index"]) for r in rows}
    assert {Path(f).name: int(label) for f, label in zip(dataset.files, dataset.labels, strict=True)} == expected
