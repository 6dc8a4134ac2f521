"""What a report records about where it came from: library versions, device, git revisions, time."""

from __future__ import annotations

import platform
import subprocess
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

LIBRARIES = ("robaudit", "torch", "torchvision", "timm", "foolbox", "faiss-cpu", "numpy", "pyarrow", "pandas")


def library_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def git_sha(directory: Path) -> str | None:
    try:
        result = subprocess.run(
            ["git", "-C", str(directory), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() or None if result.returncode == 0 else None


def device_description(device: Any) -> str:
    import torch

    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def environment(device: Any) -> dict[str, Any]:
    return {
        "versions": library_versions(),
        "device": device_description(device),
        "host": platform.node(),
        "robaudit_git_sha": git_sha(Path(__file__).resolve().parent),
        "workdir_git_sha": git_sha(Path.cwd()),
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
