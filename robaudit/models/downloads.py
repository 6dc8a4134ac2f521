"""Fast, explicit failure when pretrained weights would need a network that is not there.

Hub clients retry for tens of seconds before giving up offline. Before any download robaudit checks the
local caches; when the file is missing it tries one TCP connection with a short timeout and, if that fails,
stops at once with a message that says how to supply the weights offline.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

from ..errors import RunError

PROBE_TIMEOUT_S = 3.0


def host_reachable(host: str, port: int = 443, timeout: float = PROBE_TIMEOUT_S) -> bool:
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError:
        return False
    return True


def offline_help(what: str, *, hub: str = "torch", weights_help: bool = True, alternatives: str | None = None) -> str:
    """``what``, then how to supply the file without a network; ``hub`` is "hf" or "torch"; ``alternatives``
    replaces the generic advice (a source with its own ways, such as a local folder)."""
    if alternatives is not None:
        return f"{what}. To work offline: {alternatives}"
    if hub == "hf":
        from huggingface_hub import constants

        cache = (
            f"copy the Hugging Face cache ({constants.HF_HUB_CACHE}) from a machine with internet "
            "and set HF_HUB_OFFLINE=1"
        )
    else:
        cache = f"put the file into the torch hub cache ({Path(torch_hub_dir()) / 'checkpoints'})"
    weights = "pass --weights PATH (a .safetensors file or a state-dict checkpoint), or " if weights_help else ""
    return f"{what}. To work offline: {weights}{cache}"


def torch_hub_dir() -> str:
    import torch

    return torch.hub.get_dir()


def require_url(
    url: str, what: str, *, hub: str = "torch", weights_help: bool = True, alternatives: str | None = None
) -> None:
    """Raise a RunError now if ``url``'s host cannot be reached."""
    parsed = urlparse(url)
    host = parsed.hostname or url
    if not host_reachable(host, parsed.port or 443):
        raise RunError(
            offline_help(
                f"{what} is not in the local cache and {host} cannot be reached",
                hub=hub,
                weights_help=weights_help,
                alternatives=alternatives,
            )
        )


def torch_hub_cached(url: str) -> bool:
    return (Path(torch_hub_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)).is_file()


def hf_cached(repo_id: str, any_of: tuple[str, ...], all_of: tuple[str, ...] = ()) -> bool:
    """Whether one of ``any_of`` and all of ``all_of`` are in the Hugging Face cache."""
    from huggingface_hub import try_to_load_from_cache

    def cached(name: str) -> bool:
        return isinstance(try_to_load_from_cache(repo_id, name), str)

    return all(cached(f) for f in all_of) and (not any_of or any(cached(f) for f in any_of))


def hf_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co")


def require_hf(
    repo_id: str,
    any_of: tuple[str, ...],
    what: str,
    *,
    all_of: tuple[str, ...] = (),
    weights_help: bool = True,
    alternatives: str | None = None,
) -> bool:
    """True when the files are cached (then use offline mode); else check the hub answers, or raise."""
    if hf_cached(repo_id, any_of, all_of):
        return True
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        raise RunError(
            offline_help(
                f"{what} ({repo_id}) is not in the Hugging Face cache and HF_HUB_OFFLINE is set",
                hub="hf",
                weights_help=weights_help,
                alternatives=alternatives,
            )
        )
    require_url(hf_endpoint(), f"{what} ({repo_id})", hub="hf", weights_help=weights_help, alternatives=alternatives)
    return False


@contextmanager
def hf_offline(enabled: bool = True) -> Iterator[None]:
    """Keep the hub client from reaching out (and retrying) when everything needed is cached."""
    from huggingface_hub import constants

    previous = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = enabled or previous
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = previous


def download_state_dict(url: str, what: str) -> dict:
    """A state dict from ``url`` through torch hub's cache (checked against the hash in the file name)."""
    import torch

    if not torch_hub_cached(url):
        require_url(url, what)
    try:
        return torch.hub.load_state_dict_from_url(url, map_location="cpu", check_hash=True, weights_only=True)
    except Exception as exc:
        raise RunError(offline_help(f"downloading {what} from {url} failed: {exc}")) from exc
