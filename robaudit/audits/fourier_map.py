"""The Fourier heat-map audit: how often does a perturbation along one Fourier basis image fool the model?

After Yin et al. (2019), "A Fourier perspective on model robustness". For every frequency ``(u, v)`` of the
unshifted ``H × W`` FFT grid (half plane: ``u`` in ``0..H-1``, ``v`` in ``0..W//2``, every ``step``-th
index), the basis image ``U_{u,v}`` is ``Re(IFFT2(δ_{u,v} + δ_{-u,-v}))`` scaled to unit L2 norm: a real
plane wave whose spectrum sits at ``±(u, v)`` only. Each image becomes ``clip(x + r·ε·U_{u,v}, 0, 1)``,
the same basis on every channel (``ε = norm``, the L2 norm per channel), with a sign ``r = ±1`` drawn per
image from ``(seed, data index)`` (so rows do not depend on batching). One row per image and frequency.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pyarrow as pa
import torch

from ..errors import InputError
from .base import Audit, AuditBatch

if TYPE_CHECKING:
    import pandas as pd

    from ..models import LoadedModel

#: perturbed images per forward pass (images × frequencies are chunked to this)
MAX_FORWARD = 2048
BANDS = ("low", "mid", "high")


def frequency_grid(h: int, w: int, step: int = 1) -> np.ndarray:
    """``(F, 2)`` unshifted FFT indices ``(u, v)`` of the half plane, every ``step``-th u and v."""
    u, v = np.meshgrid(np.arange(0, h, step), np.arange(0, w // 2 + 1, step), indexing="ij")
    return np.stack([u.ravel(), v.ravel()], axis=1)


def signed(k: np.ndarray, n: int) -> np.ndarray:
    """fftfreq-style signed index of unshifted index ``k``: in ``[-n/2, n/2)``."""
    return (k + n // 2) % n - n // 2


def fourier_basis(h: int, w: int, freqs: np.ndarray) -> torch.Tensor:
    """``(F, h, w)`` real, unit-L2 basis images: ``Re(IFFT2`` of a one-hot at ``(u, v)`` plus ``(-u, -v))``."""
    u, v = torch.from_numpy(freqs[:, 0]), torch.from_numpy(freqs[:, 1])
    spectrum = torch.zeros(len(freqs), h, w, dtype=torch.complex128)
    rows = torch.arange(len(freqs))
    spectrum[rows, u, v] += 1
    spectrum[rows, (-u) % h, (-v) % w] += 1
    basis = torch.fft.ifft2(spectrum).real
    return (basis / basis.flatten(1).norm(dim=1)[:, None, None]).float()


class FourierMapAudit(Audit):
    """Error rate under a perturbation along each Fourier basis image: the Fourier heat map."""

    name = "fourier-map"
    columns: ClassVar[dict[str, pa.DataType]] = {
        "u": pa.int32(),
        "v": pa.int32(),
        "radius": pa.float64(),
        "sign": pa.int8(),
        "prediction": pa.int64(),
        "correct": pa.bool_(),
    }

    def __init__(self, *, norm: float = 4.0, step: int = 1, seed: int = 0) -> None:
        super().__init__(norm=float(norm), step=int(step), seed=int(seed))
        if not norm > 0 or not np.isfinite(norm):
            raise InputError(f"--norm must be a positive L2 norm, got {norm}")
        if step < 1:
            raise InputError(f"--step must be >= 1, got {step}")

    def run_batch(self, model: LoadedModel, batch: AuditBatch) -> dict[str, np.ndarray]:
        x, y = batch.images, batch.labels
        n, _, h, w = x.shape
        if h != w:
            raise InputError(f"the Fourier heat map needs square images, got {(h, w)}")
        freqs = frequency_grid(h, w, int(self.params["step"]))
        basis = fourier_basis(h, w, freqs).to(device=x.device, dtype=x.dtype)
        seed = int(self.params["seed"])
        sign = np.array([1 if np.random.default_rng([seed, int(i)]).random() < 0.5 else -1 for i in batch.indices])
        scale = torch.from_numpy(sign * float(self.params["norm"])).to(device=x.device, dtype=x.dtype)
        predictions = np.empty((n, len(freqs)), dtype=np.int64)
        per_chunk = max(1, MAX_FORWARD // max(n, 1))
        for start in range(0, len(freqs), per_chunk):
            part = basis[start : start + per_chunk]  # (f, h, w)
            perturbed = (x[:, None] + scale[:, None, None, None, None] * part[None, :, None]).clamp(0, 1)
            with torch.inference_mode():
                logits = model(perturbed.flatten(0, 1)).float()
            predictions[:, start : start + len(part)] = logits.argmax(dim=1).view(n, len(part)).cpu().numpy()
        labels = y.cpu().numpy()
        u, v = signed(freqs[:, 0], h), signed(freqs[:, 1], w)
        f = len(freqs)
        return {
            "sample": np.repeat(np.arange(n), f),
            "u": np.tile(u, n).astype(np.int32),
            "v": np.tile(v, n).astype(np.int32),
            "radius": np.tile(np.hypot(u / h, v / w), n),
            "sign": np.repeat(sign, f).astype(np.int8),
            "prediction": predictions.ravel(),
            "correct": (predictions == labels[:, None]).ravel(),
        }

    @classmethod
    def summarize(cls, rows: pd.DataFrame, metadata: dict[str, Any]) -> dict[str, Any]:
        done = rows[~rows["skipped"]]
        summary: dict[str, Any] = {"samples": int(done["index"].nunique()), "skipped": int(rows["skipped"].sum())}
        if done.empty:
            return {**summary, "error": None, "bands": [], "worst": None, "map": []}
        done = done.assign(error=~done["correct"].astype(bool))
        per_freq = done.groupby(["u", "v"], as_index=False).agg(radius=("radius", "first"), error=("error", "mean"))
        top = float(per_freq["radius"].max())
        edges = np.linspace(0, top, len(BANDS) + 1)
        band = np.clip(np.searchsorted(edges, done["radius"].to_numpy(), side="right") - 1, 0, len(BANDS) - 1)
        band[done["radius"].to_numpy() <= 0] = 0
        bands = []
        for k, name in enumerate(BANDS):
            sel = done["error"].to_numpy()[band == k]
            bands.append(
                {
                    "band": name,
                    "radius": [float(edges[k]), float(edges[k + 1])],
                    "error": float(sel.mean()) if len(sel) else None,
                }
            )
        cells = [
            {"u": int(u), "v": int(v), "radius": round(float(r), 6), "error": float(e)}
            for u, v, r, e in zip(per_freq["u"], per_freq["v"], per_freq["radius"], per_freq["error"], strict=True)
        ]
        summary.update(
            error=float(done["error"].mean()),
            bands=bands,
            worst=max(cells, key=lambda c: c["error"]),
            radius_units="cycles/pixel",
            map=cells,
        )
        return summary
