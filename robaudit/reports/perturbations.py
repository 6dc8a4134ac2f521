"""Perturbation files: adversarial perturbations exported from an attack report, and reading them back.

``robaudit attack --save-perturbations PATH.npz`` keeps each judged perturbation in the report (float16) and
exports them here as one ``.npz``: ``delta`` (N, C, H, W) with, per perturbation, the data ``index`` and
``label`` of its image, the ``threat``, the model that made it (``made_by``), the budget ``eps`` (NaN for
minimal runs) and whether the attack succeeded (``success``); ``data`` and ``data_fingerprint`` name the
images they were computed on. The ``perturbations:PATH`` data source reads such a file back for audits of
perturbations (``robaudit spectrum``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import InputError

if TYPE_CHECKING:
    import numpy as np

#: the arrays every perturbation file has; newer files also name their data (``data``, ``data_fingerprint``)
REQUIRED = ("delta", "index", "label", "threat", "eps", "success")


def export_perturbations(report: Path, out: Path) -> str:
    """Write the perturbations kept in an attack report to ``out`` (.npz), one per image x threat x ε."""
    import numpy as np

    from .read import read_report

    rows, meta = read_report(report)
    rows = rows[rows["perturbation"].notna()] if "perturbation" in rows else rows.iloc[:0]
    if rows.empty:
        raise InputError(f"{report} holds no perturbations (run the attack with --save-perturbations)")
    # every judge of a threat sees the same perturbation: keep one row per image, threat and budget
    rows = rows.drop_duplicates(subset=["index", "threat", "eps"])
    shape = tuple(int(v) for v in rows["perturbation_shape"].iloc[0])
    deltas = np.stack([np.asarray(p, dtype=np.float16).reshape(shape) for p in rows["perturbation"]])
    tmp = out.with_name(out.name + ".tmp.npz")
    np.savez(
        tmp,
        delta=deltas,
        index=rows["index"].to_numpy(),
        label=rows["label"].to_numpy(),
        threat=rows["threat"].to_numpy(dtype=str),
        made_by=rows["made_by"].to_numpy(dtype=str),
        eps=rows["eps"].to_numpy(),
        success=rows["source_success"].to_numpy(dtype=bool),
        # which images these are: a spectrum run can check it is given the same data
        data=np.array(meta.get("data", {}).get("description", "")),
        data_fingerprint=np.array(meta.get("identity", {}).get("data_fingerprint", "")),
    )
    os.replace(tmp, out)
    return f"perturbations: {len(deltas)} written to {out}"


def load_perturbations(path: Path) -> dict[str, np.ndarray]:
    """The arrays of a perturbation file, checked for keys and matching lengths."""
    import numpy as np

    if not path.is_file():
        raise InputError(f"{path}: no such file (write one with robaudit attack ... --save-perturbations PATH.npz)")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: np.asarray(npz[k]) for k in npz.files}
    except Exception as exc:
        raise InputError(f"{path}: not a readable .npz file ({type(exc).__name__}: {exc})") from None
    missing = [k for k in REQUIRED if k not in arrays]
    if missing:
        raise InputError(f"{path}: missing key(s) {', '.join(missing)} (expected {', '.join(REQUIRED)})")
    delta = arrays["delta"]
    if delta.ndim != 4:
        raise InputError(f"{path}: delta must be (N, C, H, W), got shape {delta.shape}")
    if len(delta) == 0:
        raise InputError(f"{path}: holds no perturbations")
    bad = [k for k in REQUIRED[1:] if arrays[k].shape != (delta.shape[0],)]
    if bad:
        raise InputError(f"{path}: {', '.join(bad)} must have one entry per perturbation ({delta.shape[0]})")
    if not np.isfinite(delta.astype(np.float32)).all():
        raise InputError(f"{path}: delta contains NaN or inf")
    return arrays
