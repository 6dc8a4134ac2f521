"""--weights recognizes a file's format by its first bytes and says what it is and what is supported."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from robaudit.errors import InputError
from robaudit.models import ModelSpec, load_model
from robaudit.models.formats import SUPPORTED, check_weights_file, sniff


def _state(tiny_models: Path) -> dict[str, torch.Tensor]:
    return {k: v + 0.01 for k, v in load_model(ModelSpec(f"{tiny_models}:tiny"), "cpu").backbone.state_dict().items()}


def _zip(path: Path, members: dict[str, bytes]) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)


def _torch_bytes(state: dict[str, torch.Tensor], **kwargs: bool) -> bytes:
    buffer = io.BytesIO()
    torch.save(state, buffer, **kwargs)
    return buffer.getvalue()


# (file name, how to write it from a state dict, what the error must say)
UNSUPPORTED: list[tuple[str, Callable[[Path, dict[str, torch.Tensor]], object], str]] = [
    ("model.h5", lambda p, s: p.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(600)), "HDF5 file \\(Keras .h5"),
    ("weights.bin", lambda p, s: p.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(600)), "HDF5"),
    # the opening of an ONNX file as torch.onnx.export writes it: ir_version 8, producer_name "pytorch"
    ("model.onnx", lambda p, s: p.write_bytes(b"\x08\x08\x12\x07pytorch\x1a\x052.5.1:\x9c\x01" + bytes(64)), "ONNX"),
    ("exported.model", lambda p, s: p.write_bytes(b"\x08\x07\x12\x07pytorch\x1a\x031.0" + bytes(64)), "ONNX"),
    ("archive.zip", lambda p, s: _zip(p, {"readme.txt": b"hi", "weights.csv": b"1,2"}), "zip archive that is not"),
    ("arrays.npz", lambda p, s: np.savez(p, a=np.zeros(3)), "NumPy .npz"),
    ("array.npy", lambda p, s: np.save(p, np.zeros(3)), "NumPy .npy"),
    ("model.keras", lambda p, s: _zip(p, {"config.json": b"{}", "model.weights.h5": b"\x89HDF"}), "Keras 3"),
    ("notes.pt", lambda p, s: p.write_text("these are not weights\n"), "text file"),
    ("config.pt", lambda p, s: p.write_text('{"layers": 3}'), "JSON file"),
    ("lfs.pt", lambda p, s: p.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:ab\n"), "Git LFS"),
    ("empty.pt", lambda p, s: p.write_bytes(b""), "empty file"),
    ("random.pt", lambda p, s: p.write_bytes(bytes(range(7, 256)) * 4), "unknown format"),
]


@pytest.mark.parametrize(("name", "write", "message"), UNSUPPORTED, ids=[u[0] for u in UNSUPPORTED])
def test_unsupported_files_are_named_before_the_model_is_built(
    name: str, write: Callable[[Path, dict[str, torch.Tensor]], object], message: str, tiny_models: Path, tmp_path: Path
) -> None:
    path = tmp_path / name
    write(path, _state(tiny_models))
    with pytest.raises(InputError, match=message) as error:
        load_model(ModelSpec(f"{tiny_models}:tiny", weights=str(path)), "cpu")
    assert SUPPORTED in str(error.value)
    assert "code execution" not in str(error.value)  # never the pickle diagnosis for a file that is no pickle


def test_folders_are_named(tmp_path: Path) -> None:
    saved = tmp_path / "saved"
    saved.mkdir()
    (saved / "saved_model.pb").write_bytes(b"\x08\x01")
    with pytest.raises(InputError, match="TensorFlow SavedModel folder"):
        check_weights_file(saved)
    hf = tmp_path / "hf"
    hf.mkdir()
    (hf / "config.json").write_text("{}")
    with pytest.raises(InputError, match=f"--model hf:{hf}"):
        check_weights_file(hf)


def test_truncated_torch_checkpoints_say_so(tiny_models: Path, tmp_path: Path) -> None:
    data = _torch_bytes(_state(tiny_models))
    for fraction in (0.1, 0.5, 0.9, 0.99):
        path = tmp_path / f"cut{fraction}.pt"
        path.write_bytes(data[: int(len(data) * fraction)])
        with pytest.raises(InputError, match="truncated or damaged") as error:
            check_weights_file(path)
        assert "download or save it again" in str(error.value)


@pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning")
def test_torchscript_is_not_taken_for_a_state_dict(tmp_path: Path) -> None:
    path = tmp_path / "scripted.pt"
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), str(path))
    with pytest.raises(InputError, match="TorchScript archive"):
        check_weights_file(path)


def test_supported_files_load_whatever_their_suffix(tiny_models: Path, tmp_path: Path) -> None:
    from safetensors.torch import save_file

    state = _state(tiny_models)
    writers: dict[str, Callable[[Path], object]] = {
        "zip.pt": lambda p: p.write_bytes(_torch_bytes(state)),
        "zip.weights": lambda p: p.write_bytes(_torch_bytes(state)),
        "legacy.pth": lambda p: p.write_bytes(_torch_bytes(state, _use_new_zipfile_serialization=False)),
        "st.safetensors": lambda p: save_file(state, str(p)),
        "st_without_suffix.bin": lambda p: save_file(state, str(p)),
    }
    x = torch.rand(2, 3, 32, 32)
    outputs = []
    for name, write in writers.items():
        path = tmp_path / name
        write(path)
        assert sniff(path).reader in ("torch", "safetensors"), name
        model = load_model(ModelSpec(f"{tiny_models}:tiny", weights=str(path)), "cpu")
        assert model.provenance["weights_origin"] == "checkpoint"
        with torch.no_grad():
            outputs.append(model(x))
    assert all(torch.equal(outputs[0], out) for out in outputs[1:])
