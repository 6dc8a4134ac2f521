"""Recognizing a weights file by its first bytes, before any loader sees it.

``--weights`` reads two formats: PyTorch checkpoints (``torch.save``: a zip archive holding ``data.pkl``, or
the legacy bare pickle) and safetensors files. Anything else handed to ``torch.load`` fails with a message
about pickles, or about code execution, that sends the user the wrong way (a Keras ``.h5`` file is not a
pickle at all). :func:`sniff` names what a file is from its magic bytes (HDF5, zip archives and what they
hold, ONNX's protobuf header, safetensors' JSON header, NumPy arrays, text, empty files) and
:func:`check_weights_file` turns an unsupported kind into one clear error that says what is supported.
"""

from __future__ import annotations

import json
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError

SUPPORTED = "--weights reads PyTorch checkpoints (a state dict saved with torch.save) and .safetensors files"
_HEAD = 4096
_HDF5 = b"\x89HDF\r\n\x1a\n"
_ZIP = b"PK\x03\x04"
_EMPTY_ZIP = b"PK\x05\x06"
_NUMPY = b"\x93NUMPY"
_PICKLE_PROTOCOLS = {2, 3, 4, 5}
# the fields an ONNX ModelProto starts with: ir_version (1, varint), then opset_import (8), producer_name (2),
# producer_version (3), domain (4), model_version (5), doc_string (6) or graph (7)
_ONNX_SECOND_FIELDS = {0x42, 0x12, 0x1A, 0x22, 0x28, 0x32, 0x3A}


@dataclass(frozen=True)
class FileKind:
    """What a file is: ``reader`` is ``torch`` or ``safetensors`` when ``--weights`` can read it."""

    name: str
    reader: str | None = None
    advice: str = ""
    #: a kind --weights reads, but this file of it is damaged
    damaged: bool = False


def _zip_kind(path: Path, head: bytes) -> FileKind:
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError):
        first = _first_zip_entry(head)
        if first.endswith(("data.pkl", ".format_version", "byteorder")):
            return FileKind(
                "a PyTorch checkpoint that is truncated or damaged (its zip directory is missing)",
                advice="the file was not written or copied completely; download or save it again",
                damaged=True,
            )
        return FileKind("a damaged zip archive (its directory is missing)")
    base = {n.split("/", 1)[-1] for n in names}
    if "constants.pkl" in base or any(n.split("/", 1)[-1].startswith("code/") for n in names):
        return FileKind(
            "a TorchScript archive (torch.jit.save)",
            advice="save the scripted model's state_dict() with torch.save and build the architecture with a factory",
        )
    if "data.pkl" in base:
        return FileKind("a PyTorch checkpoint", reader="torch")
    if "config.json" in base and any(n.endswith(".weights.h5") for n in names):
        return FileKind(
            "a Keras 3 model archive (.keras)",
            advice="export the weights to PyTorch (e.g. rebuild the network in torch and copy them) or use ONNX tools",
        )
    if names and all(n.endswith(".npy") for n in names):
        return FileKind("a NumPy .npz archive", advice="convert the arrays to a state dict and torch.save it")
    shown = ", ".join(names[:4]) + (" ..." if len(names) > 4 else "")
    return FileKind(f"a zip archive that is not a PyTorch checkpoint (it holds {shown or 'nothing'})")


def _first_zip_entry(head: bytes) -> str:
    """The file name of a zip's first local header (readable even when the archive is cut short)."""
    if len(head) < 30:
        return ""
    name_length = struct.unpack_from("<H", head, 26)[0]
    return head[30 : 30 + name_length].decode("utf-8", "replace")


def _is_safetensors(head: bytes, size: int) -> bool:
    if len(head) < 10:
        return False
    header_length = struct.unpack_from("<Q", head, 0)[0]
    return 2 <= header_length <= size - 8 and head[8:9] == b"{"


def _is_onnx(head: bytes) -> bool:
    # protobuf, field 1 (ir_version, a small varint), then one of the ModelProto's next fields
    return len(head) > 3 and head[0] == 0x08 and 1 <= head[1] <= 20 and head[2] in _ONNX_SECOND_FIELDS


def _is_text(head: bytes) -> bool:
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(c.isprintable() or c in "\r\n\t" for c in text)


def sniff(path: Path) -> FileKind:
    """What the file at ``path`` is, from its first bytes (a folder is recognized too)."""
    if path.is_dir():
        if (path / "saved_model.pb").is_file():
            return FileKind(
                "a TensorFlow SavedModel folder",
                advice="export the weights to PyTorch or ONNX first; robaudit audits PyTorch models",
            )
        if (path / "config.json").is_file():
            return FileKind(
                "a folder with a config.json (a Hugging Face model?)",
                advice=f"load it as --model hf:{path} --pretrained (transformers models)",
            )
        return FileKind("a folder", advice="pass the checkpoint file inside it")
    size = path.stat().st_size
    with open(path, "rb") as handle:
        head = handle.read(_HEAD)
    if not head:
        return FileKind("an empty file", advice="the file was not written or copied completely")
    if head.startswith(_HDF5):
        return FileKind(
            "an HDF5 file (Keras .h5 weights)",
            advice="Keras weights cannot be loaded into a PyTorch model as they are; rebuild the network in torch "
            "and convert the weights, then torch.save the state dict",
        )
    if head.startswith((_ZIP, _EMPTY_ZIP)):
        return _zip_kind(path, head)
    if head.startswith(_NUMPY):
        return FileKind("a NumPy .npy array", advice="convert it to a state dict and torch.save it")
    if _is_safetensors(head, size):
        return FileKind("a safetensors file", reader="safetensors")
    if len(head) > 1 and head[0] == 0x80 and head[1] in _PICKLE_PROTOCOLS:
        return FileKind("a pickle (a legacy PyTorch checkpoint?)", reader="torch")
    if _is_onnx(head) or path.suffix == ".onnx":
        return FileKind(
            "an ONNX model",
            advice="robaudit differentiates through PyTorch models; convert it (e.g. with onnx2torch) and save the "
            "state dict",
        )
    if path.suffix == ".pb":
        return FileKind("a TensorFlow graph (.pb)", advice="export the weights to PyTorch first")
    if _is_text(head):
        first = head.decode("utf-8").strip().splitlines()[0][:60] if head.strip() else ""
        if first.startswith("version https://git-lfs"):
            return FileKind("a Git LFS pointer, not the file itself", advice="run git lfs pull to fetch the file")
        if first.startswith(("{", "[")):
            try:
                json.loads(head.decode("utf-8"))
                return FileKind("a JSON file", advice="pass the checkpoint, not its configuration")
            except ValueError:
                pass
        return FileKind(f"a text file (it starts with {first!r})")
    return FileKind("a file of unknown format")


def check_weights_file(path: Path) -> FileKind:
    """The file's kind if ``--weights`` can read it; otherwise an input error saying what it is and what
    is supported."""
    if not path.exists():
        raise InputError(f"weights file {path} does not exist")
    kind = sniff(path)
    if kind.damaged:
        raise InputError(f"weights {path} is {kind.name}: {kind.advice}")
    if kind.reader is None:
        advice = f"; {kind.advice}" if kind.advice else ""
        raise InputError(f"weights {path} is {kind.name}: {SUPPORTED}{advice}")
    return kind
