"""The hybrid-image audit: at which frequency does a classifier switch from one image's content to another's?

After Li et al. (2023). Each image ``x_low`` is paired with an image ``x_high`` of a different class; their
hybrid keeps ``x_low``'s spectrum inside a disc of normalized radius ``f_mix`` (1 = 0.5 cycles/pixel, the
axis Nyquist frequency) and ``x_high``'s outside it, channel by channel, clipped to [0, 1]. Sweeping
``f_mix`` over a grid, ``D(f_mix) = P(pred = low label) − P(pred = high label)`` rises from negative
(the model follows the high image) to positive (it follows the low image); the *reversal frequency*
``f_rev`` is its first zero crossing. A low ``f_rev`` means the model decides on low frequencies (shape,
layout), a high one that it relies on fine texture.

Pairing happens within each batch (that is what keeps chunks, shards and ``--resume`` valid): for repeat
``r`` a generator seeded from (seed, r, first data index of the batch) draws a permutation of the batch,
repaired by swaps until no image is paired with its own class; when a class holds more than half of the
batch no such permutation exists and those images draw a partner of another class independently. Each
image serves once as the low image per repeat. The batch size therefore changes the rows
(``batch_dependent``).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, ClassVar

from ..errors import InputError
from ..frequency import NYQUIST
from ..reports.content import FigureSpec, Table, finite, num, pairs, text
from ..reports.metrics import Metric, Pattern, present
from .base import Audit, AuditBatch
from .options import Option, float_list

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    import torch
    from matplotlib.figure import Figure

    from ..models import LoadedModel
    from ..reports.folder import Report

#: the reference's ALPHAS (percent of Nyquist / 100)
DEFAULT_FMIX = (0, 0.03, 0.04, 0.05, 0.06, 0.08, 0.09, 0.11, 0.13, 0.15, 0.17, 0.19, 0.22, 0.27, 0.33, 0.42, 0.57, 1.0)
MAX_FMIX = 1.5
BOOTSTRAP = 1000


def hybrid_images(low: torch.Tensor, high: torch.Tensor, fmix: float) -> torch.Tensor:
    """``Re(IFFT2(FFT2(low)·M + FFT2(high)·(1−M)))`` per channel, clipped to [0, 1]; M is the f_mix disc."""
    import torch

    return mix_spectra(torch.fft.fft2(low), torch.fft.fft2(high), fmix, low.dtype)


def mix_spectra(low: torch.Tensor, high: torch.Tensor, fmix: float, dtype: torch.dtype) -> torch.Tensor:
    """The hybrid images of two batches given by their 2-D spectra (so a sweep transforms each image once)."""
    import torch

    from ..frequency.radius import low_pass_mask

    mask = torch.from_numpy(low_pass_mask(low.shape[-1], fmix)).to(low.device)
    return torch.fft.ifft2(torch.where(mask, low, high)).real.clamp(0, 1).to(dtype)


def draw_partners(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Per position, the position of a partner with a different label: a repaired random permutation."""
    import numpy as np

    n = len(labels)
    perm = rng.permutation(n)
    if np.unique(labels, return_counts=True)[1].max() * 2 <= n:
        for _ in range(100 * n):
            bad = np.flatnonzero(labels[perm] == labels)
            if not len(bad):
                return perm
            i, j = int(bad[0]), int(rng.integers(n))
            if labels[perm[j]] != labels[i] and labels[perm[i]] != labels[j]:
                perm[i], perm[j] = perm[j], perm[i]
    for k in np.flatnonzero(labels[perm] == labels):
        perm[k] = rng.choice(np.flatnonzero(labels != labels[k]))
    return perm


def reversal_frequency(fmix: np.ndarray, d: np.ndarray) -> tuple[float | None, str | None]:
    """First zero crossing (negative to non-negative) of ``d(fmix)`` by linear interpolation, or a note why none."""
    if d[0] >= 0:
        return None, f"D is already >= 0 at the first grid point (f_mix={fmix[0]:g})"
    for k in range(1, len(d)):
        if d[k] >= 0:
            return float(fmix[k - 1] + (0 - d[k - 1]) * (fmix[k] - fmix[k - 1]) / (d[k] - d[k - 1])), None
    return None, f"D stays negative up to f_mix={fmix[-1]:g}"


F_REV = Pattern("hybrid.f_rev", "number", None, "reversal frequency of hybrid images, mean over repeats")
F_REV_STD = Pattern("hybrid.f_rev_std", "number", None, "standard deviation of f_rev over repeats")


class HybridAudit(Audit):
    """Hybrid images of two classes over a sweep of mixing frequencies; the reversal frequency f_rev."""

    name = "hybrid"
    title = "Hybrid images (reversal frequency)"
    order = 30
    batch_dependent = True
    columns: ClassVar[dict[str, Any]] = {
        "repeat": "int32",
        "fmix": "float64",
        "low_label": "int64",
        "high_label": "int64",
        "high_index": "int64",
        "prediction": "int64",
        "p_low": "float32",
        "p_high": "float32",
        "pred_low": "bool",
        "pred_high": "bool",
    }
    options = (
        Option(
            "fmix",
            "Mixing frequencies to sweep, comma-separated, normalized (1 = Nyquist); "
            "default: the 18-point grid of Li et al. 2023.",
            parse=lambda v: list(float_list(v, "--fmix")),
        ),
        Option("repeats", "Independent random pairings (f_rev: mean ± std).", default=1, type=int),
    )
    metric_patterns = (F_REV, F_REV_STD)

    def __init__(self, *, fmix: list[float] | None = None, repeats: int = 1, seed: int = 0) -> None:
        grid = sorted({float(f) for f in (DEFAULT_FMIX if fmix is None else fmix)})
        super().__init__(fmix=grid, repeats=repeats, seed=seed)
        if not grid:
            raise InputError("--fmix needs at least one value")
        if any(not math.isfinite(f) or not 0 <= f <= MAX_FMIX for f in grid):
            raise InputError(f"--fmix values must lie in [0, {MAX_FMIX}] (1 = Nyquist), got {grid}")
        if repeats < 1:
            raise InputError(f"--repeats must be >= 1, got {repeats}")

    def prepare(self, model: LoadedModel) -> None:
        if model.num_classes < 2:
            raise InputError("hybrid images mix two classes: the model needs at least 2 classes")

    def run_batch(self, model: LoadedModel, batch: AuditBatch) -> dict[str, np.ndarray]:
        import numpy as np
        import torch

        x, y = batch.images, batch.labels
        if x.shape[-1] != x.shape[-2]:
            raise InputError(f"hybrid images need square images, got {tuple(x.shape[-2:])}")
        labels = y.cpu().numpy()
        if len(np.unique(labels)) < 2:
            raise InputError(
                f"hybrid pairs images of different classes within a batch; the batch at data index "
                f"{int(batch.indices[0])} holds {len(labels)} image(s) of one class (raise --batch-size or "
                "--chunk-size, or use --limit for a class-stratified subset)"
            )
        n = len(labels)
        columns: dict[str, list[np.ndarray]] = {name: [] for name in ["sample", "repeat", "fmix", "low_label"]}
        columns.update(high_label=[], high_index=[])
        # results stay on the device until the end of the batch: one transfer instead of a wait per f_mix
        on_device: list[torch.Tensor] = []
        for repeat in range(int(self.params["repeats"])):
            rng = np.random.default_rng([int(self.params["seed"]), repeat, int(batch.indices[0])])
            partner = draw_partners(labels, rng)
            high_labels = y[torch.from_numpy(partner).to(y.device)]
            spectrum_low = torch.fft.fft2(x)
            spectrum_high = spectrum_low[torch.from_numpy(partner).to(x.device)]  # the partner's own spectrum
            for fmix in self.params["fmix"]:
                with torch.inference_mode():
                    logits = model(mix_spectra(spectrum_low, spectrum_high, fmix, x.dtype)).float()
                    probs = logits.softmax(dim=1)
                    prediction = probs.argmax(dim=1)
                    on_device.append(
                        torch.stack(
                            [
                                prediction.float(),  # class indices are exact in float32
                                probs.gather(1, y[:, None])[:, 0],
                                probs.gather(1, high_labels[:, None])[:, 0],
                                (prediction == y).float(),
                                (prediction == high_labels).float(),
                            ]
                        )
                    )
                values = {
                    "sample": np.arange(n),
                    "repeat": np.full(n, repeat, dtype=np.int32),
                    "fmix": np.full(n, fmix),
                    "low_label": labels,
                    "high_label": labels[partner],
                    "high_index": batch.indices[partner],
                }
                for name, value in values.items():
                    columns[name].append(value)
        # (quantity, condition × sample): conditions in the order their rows were appended above
        results = torch.cat(on_device, dim=1).cpu().numpy()
        out = {name: np.concatenate(parts) for name, parts in columns.items()}
        out.update(
            prediction=results[0].astype(np.int64),
            p_low=results[1].astype(np.float32),
            p_high=results[2].astype(np.float32),
            pred_low=results[3].astype(bool),
            pred_high=results[4].astype(bool),
        )
        return out

    @classmethod
    def summarize(cls, rows: pd.DataFrame, metadata: dict[str, Any]) -> dict[str, Any]:
        import numpy as np

        done = rows[~rows["skipped"]]
        grid = np.sort(done["fmix"].unique())
        repeats = sorted(int(r) for r in done["repeat"].unique())
        summary: dict[str, Any] = {
            "samples": int(done["index"].nunique()),
            "skipped": int(rows["skipped"].sum()),
            "repeats": len(repeats),
        }
        if done.empty:
            return {**summary, "f_rev": None, "f_rev_note": "no rows"}
        done = done.assign(d=done["pred_low"].astype(float) - done["pred_high"].astype(float))
        # per image and f_mix, averaged over repeats: the unit the bootstrap resamples
        per_image = done.pivot_table(index="index", columns="fmix", values="d", aggfunc="mean")[grid].to_numpy()
        rng = np.random.default_rng(0)
        boot = np.concatenate(
            [
                per_image[rng.integers(0, len(per_image), (10, len(per_image)))].mean(axis=1)
                for _ in range(BOOTSTRAP // 10)
            ]
        )
        lo, hi = np.percentile(boot, [2.5, 97.5], axis=0)
        by_fmix = done.groupby("fmix")
        curve = [
            {
                "fmix": float(f),
                "D": float(per_image[:, k].mean()),
                "D_ci95": [float(lo[k]), float(hi[k])],
                "acc_low": float(by_fmix.get_group(f)["pred_low"].mean()),
                "acc_high": float(by_fmix.get_group(f)["pred_high"].mean()),
                "p_low": float(by_fmix.get_group(f)["p_low"].mean()),
                "p_high": float(by_fmix.get_group(f)["p_high"].mean()),
            }
            for k, f in enumerate(grid)
        ]
        per_repeat = done.groupby(["repeat", "fmix"])["d"].mean().unstack("fmix")[grid]
        found: list[float] = []
        notes: list[str] = []
        f_rev_per_repeat: list[float | None] = []
        for repeat in repeats:
            value, note = reversal_frequency(grid, per_repeat.loc[repeat].to_numpy())
            f_rev_per_repeat.append(value)
            if value is None:
                notes.append(f"repeat {repeat}: {note}")
            else:
                found.append(value)
        summary.update(
            f_rev=float(np.mean(found)) if found else None,
            f_rev_std=float(np.std(found)) if found else None,
            f_rev_per_repeat=f_rev_per_repeat,
            f_rev_note="; ".join(notes) if notes else None,
            f_rev_units="normalized frequency (1 = Nyquist, 0.5 cycles/pixel)",
            # the unit every other frequency of robaudit's reports is in
            f_rev_cycles_per_pixel=float(np.mean(found)) * NYQUIST if found else None,
            curve=curve,
        )
        return summary

    # -- what the report means -----------------------------------------------------------------------------------
    @classmethod
    def metrics(cls, summary: dict[str, Any], metadata: dict[str, Any]) -> list[Metric]:
        repeats = int(summary.get("repeats") or 0)
        spread = summary.get("f_rev_std")
        # f_rev is a mean over repeats: its standard error is the spread over repeats / sqrt(repeats)
        stderr = spread / math.sqrt(repeats) if spread is not None and repeats >= 2 else None
        return present(
            [
                F_REV.metric("hybrid.f_rev", summary.get("f_rev"), stderr=stderr),
                F_REV_STD.metric("hybrid.f_rev_std", spread),
            ]
        )

    @classmethod
    def tables(cls, summary: dict[str, Any], metadata: dict[str, Any]) -> list[Table]:
        s = summary
        f_rev = num(_cycles(s.get("f_rev")))
        if finite(s.get("f_rev")) and finite(s.get("f_rev_std")) and (s.get("repeats") or 0) > 1:
            f_rev = f"{s['f_rev'] * NYQUIST:.3f} ± {s['f_rev_std'] * NYQUIST:.3f}"
        return [
            pairs(
                "Reversal frequency",
                [
                    ("f_rev (cycles/pixel; axis Nyquist 0.5)", f_rev),
                    ("f_rev normalized (1 = Nyquist), as the paper and the gate's metric give it", num(s.get("f_rev"))),
                    ("repeats", text(s.get("repeats"))),
                    ("images", text(s.get("samples"))),
                    ("skipped images", text(s.get("skipped"))),
                    *((("note", str(s["f_rev_note"])),) if s.get("f_rev_note") else ()),
                ],
            )
        ]

    @classmethod
    def key_numbers(cls, summary: dict[str, Any], metadata: dict[str, Any]) -> dict[str, str]:
        return {"f_rev (cycles/pixel)": num(_cycles(summary.get("f_rev")))}

    @classmethod
    def figures(cls, report: Report) -> list[FigureSpec]:
        return [FigureSpec("hybrid", "D(f_mix) with bootstrap 95 % band; dotted: f_rev", hybrid_figure(report.summary))]


def _cycles(normalized: Any) -> float | None:
    """A normalized frequency (1 = axis Nyquist) in cycles/pixel, the unit of every figure and table."""
    return float(normalized) * NYQUIST if finite(normalized) else None


def hybrid_figure(summary: dict[str, Any]) -> Figure:
    """D vs f_mix with its bootstrap 95 % band and the f_rev marker."""
    from ..reports.plots import new_figure, no_data

    fig, (ax,) = new_figure(6.0, 4.0)
    curve = summary.get("curve") or []
    if not curve:
        no_data(ax, summary.get("f_rev_note") or "no hybrid rows")
        return fig
    f = [c["fmix"] * NYQUIST for c in curve]
    ax.fill_between(f, [c["D_ci95"][0] for c in curve], [c["D_ci95"][1] for c in curve], alpha=0.3, label="95 % CI")
    ax.plot(f, [c["D"] for c in curve], marker="o", label="D = acc(low) − acc(high)")
    ax.plot(f, [c["p_low"] - c["p_high"] for c in curve], ls="--", label="mean p(low) − p(high)")
    ax.axhline(0, color="grey", lw=0.8)
    if summary.get("f_rev") is not None:
        f_rev = summary["f_rev"] * NYQUIST
        ax.axvline(f_rev, color="red", ls=":", label=f"f_rev = {f_rev:.3f} cycles/pixel")
    ax.set_xscale("symlog", linthresh=0.015)
    ax.set_xlim(0, max(f))
    ax.set_xlabel("mixing radius f_mix (cycles/pixel; axis Nyquist 0.5)")
    ax.set_ylabel("D")
    ax.set_title(summary.get("f_rev_note") or "hybrid images: reversal frequency", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
