"""The Fourier heat-map audit: how often does a perturbation along one Fourier basis image fool the model?

After Yin et al. (2019), "A Fourier perspective on model robustness". For every frequency ``(u, v)`` of the
unshifted ``H × W`` FFT grid (half plane: ``u`` in ``0..H-1``, ``v`` in ``0..W//2``, every ``step``-th
index), the basis image ``U_{u,v}`` is ``Re(IFFT2(δ_{u,v} + δ_{-u,-v}))`` scaled to unit L2 norm: a real
plane wave whose spectrum sits at ``±(u, v)`` only. Each image becomes ``clip(x + r·ε·U_{u,v}, 0, 1)``,
the same basis on every channel (``ε = norm``, the L2 norm per channel), with a sign ``r = ±1`` drawn per
image from ``(seed, data index)`` (so rows do not depend on batching). One row per image and frequency.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, ClassVar

from ..errors import InputError
from ..reports.content import FigureSpec, Table, num, pairs, pct
from ..reports.metrics import Metric, Pattern, present
from .base import Audit, AuditBatch
from .options import Option

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    import torch
    from matplotlib.figure import Figure

    from ..models import LoadedModel
    from ..reports.folder import Report

#: perturbed images per forward pass (images × frequencies are chunked to this)
MAX_FORWARD = 2048
BANDS = ("low", "mid", "high")


def frequency_grid(h: int, w: int, step: int = 1) -> np.ndarray:
    """``(F, 2)`` unshifted FFT indices ``(u, v)`` of the half plane, every ``step``-th u and v."""
    import numpy as np

    u, v = np.meshgrid(np.arange(0, h, step), np.arange(0, w // 2 + 1, step), indexing="ij")
    return np.stack([u.ravel(), v.ravel()], axis=1)


def signed(k: np.ndarray, n: int) -> np.ndarray:
    """fftfreq-style signed index of unshifted index ``k``: in ``[-n/2, n/2)``."""
    return (k + n // 2) % n - n // 2


def fourier_basis(h: int, w: int, freqs: np.ndarray) -> torch.Tensor:
    """``(F, h, w)`` real, unit-L2 basis images: ``Re(IFFT2`` of a one-hot at ``(u, v)`` plus ``(-u, -v))``."""
    import torch

    u, v = torch.from_numpy(freqs[:, 0]), torch.from_numpy(freqs[:, 1])
    spectrum = torch.zeros(len(freqs), h, w, dtype=torch.complex128)
    rows = torch.arange(len(freqs))
    spectrum[rows, u, v] += 1
    spectrum[rows, (-u) % h, (-v) % w] += 1
    basis = torch.fft.ifft2(spectrum).real
    return (basis / basis.flatten(1).norm(dim=1)[:, None, None]).float()


ERROR = Pattern("fourier-map.error", "proportion", False, "error under Fourier-basis noise, over all frequencies")
BAND_ERROR = Pattern(
    "fourier-map.band.<band>.error", "proportion", False, "error under Fourier-basis noise in one band"
)


class FourierMapAudit(Audit):
    """Error rate under a perturbation along each Fourier basis image: the Fourier heat map."""

    name = "fourier-map"
    title = "Fourier heat map"
    order = 45
    options = (
        Option("norm", "L2 norm ε of the perturbation per channel (4 suits 32×32).", default=4.0, type=float),
        Option("step", "Use every s-th u and v (cost falls as 1/s²).", default=1, type=int),
    )
    metric_patterns = (ERROR, BAND_ERROR)
    columns: ClassVar[dict[str, Any]] = {
        "u": "int32",
        "v": "int32",
        "radius": "float64",
        "sign": "int8",
        "prediction": "int64",
        "correct": "bool",
    }

    def __init__(self, *, norm: float = 4.0, step: int = 1, seed: int = 0) -> None:
        import numpy as np

        super().__init__(norm=float(norm), step=int(step), seed=int(seed))
        if not norm > 0 or not np.isfinite(norm):
            raise InputError(f"--norm must be a positive L2 norm, got {norm}")
        if step < 1:
            raise InputError(f"--step must be >= 1, got {step}")

    def run_batch(self, model: LoadedModel, batch: AuditBatch) -> dict[str, np.ndarray]:
        import numpy as np
        import torch

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
        import numpy as np

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

    # -- what the report means -----------------------------------------------------------------------------------
    @classmethod
    def metrics(cls, summary: dict[str, Any], metadata: dict[str, Any]) -> list[Metric]:
        n = summary.get("samples")
        out: list[Metric | None] = [ERROR.metric("fourier-map.error", summary.get("error"), samples=n)]
        for band in summary.get("bands", []):
            out.append(BAND_ERROR.metric(f"fourier-map.band.{band['band']}.error", band.get("error"), samples=n))
        return present(out)

    @classmethod
    def tables(cls, summary: dict[str, Any], metadata: dict[str, Any]) -> list[Table]:
        worst = summary.get("worst") or {}
        units = summary.get("radius_units", "")
        bands = [
            (
                f"{b['band']} band error (radius {num(b['radius'][0])}–{num(b['radius'][1])} {units})",
                pct(b.get("error")),
            )
            for b in summary.get("bands", [])
        ]
        rows = [
            ("mean error over all frequencies", pct(summary.get("error"))),
            *bands,
            ("worst frequency (u, v)", f"({worst['u']}, {worst['v']}): {pct(worst['error'])}" if worst else "–"),
            ("images", str(summary.get("samples", "–"))),
        ]
        return [pairs("Fourier heat map", rows)]

    @classmethod
    def key_numbers(cls, summary: dict[str, Any], metadata: dict[str, Any]) -> dict[str, str]:
        return {"Fourier-map error": pct(summary.get("error"))}

    @classmethod
    def figures(cls, report: Report) -> list[FigureSpec]:
        fig = fourier_map_figure(report.summary)
        return [FigureSpec("fourier-map", "Error rate per Fourier basis direction (DC in the centre)", fig)]


def fourier_grid(cells: list[dict[str, Any]]) -> tuple[list[int], list[int], np.ndarray]:
    """The full (u, v) plane of a Fourier-map summary's half-plane cells: rows ``us``, columns ``vs``.

    A real perturbation at (u, v) equals the one at (−u, −v), so the half plane is mirrored; a Nyquist
    index (−n/2 with n even) is its own alias at +n/2, so it is shown on both edges.
    """
    import numpy as np

    measured = {(int(c["u"]), int(c["v"])): float(c["error"]) for c in cells}
    full = dict(measured)
    full.update({(-u, -v): e for (u, v), e in measured.items()})
    for axis in (0, 1):
        low = min(key[axis] for key in full)
        if low < 0 and -low not in {key[axis] for key in measured}:
            for key, e in list(full.items()):
                if key[axis] == low:
                    full[(-low, key[1]) if axis == 0 else (key[0], -low)] = e
    full.update({(-u, -v): e for (u, v), e in list(full.items())})
    us = sorted({u for u, _ in full})
    vs = sorted({v for _, v in full})
    grid = np.full((len(us), len(vs)), np.nan)
    for (u, v), e in full.items():
        grid[us.index(u), vs.index(v)] = e
    return us, vs, grid


def fourier_map_figure(summary: dict[str, Any]) -> Figure:
    """Heat map of the error rate over (u, v), DC in the centre."""
    import numpy as np

    from ..reports.plots import new_figure, no_data

    fig, (ax,) = new_figure(5.5, 4.5)
    cells = summary.get("map") or []
    if not cells:
        no_data(ax, "no Fourier-map rows")
        return fig
    us, vs, grid = fourier_grid(cells)
    # the image's side from any cell off the centre (radius = |(u, v)| / N): the axes then read in cycles/pixel
    side = next((math.hypot(c["u"], c["v"]) / c["radius"] for c in cells if c["radius"] > 0), None)
    if side is None:
        image = ax.imshow(np.ma.masked_invalid(grid), cmap="viridis", vmin=0, vmax=1, origin="lower")
        ax.set_ylabel("u (rows)")
        ax.set_xlabel("v (columns)")
    else:
        step_u = (us[1] - us[0]) / side if len(us) > 1 else 1 / side
        step_v = (vs[1] - vs[0]) / side if len(vs) > 1 else 1 / side
        extent = (
            vs[0] / side - step_v / 2,
            vs[-1] / side + step_v / 2,
            us[0] / side - step_u / 2,
            us[-1] / side + step_u / 2,
        )
        image = ax.imshow(
            np.ma.masked_invalid(grid), cmap="viridis", vmin=0, vmax=1, origin="lower", extent=extent, aspect="equal"
        )
        ax.set_ylabel("vertical frequency (cycles/pixel)")
        ax.set_xlabel("horizontal frequency (cycles/pixel)")
    ax.set_title("error rate per Fourier basis perturbation", fontsize=9)
    fig.colorbar(image, ax=ax, label="error rate")
    fig.tight_layout()
    return fig
