"""The Jacobian audit: how strongly the predicted probabilities react to the input pixels.

For a test image x and a model with output o(x) (logits, or log-probabilities for the cache defense: softmax
of log p is p), the audit measures J = ∂p(·|x)/∂x with p = softmax(o(x)), a C × D matrix (D = C_in·H·W
pixels in [0, 1] units). Per image and per model (the undefended ``backbone`` and, with defenses, the
``defended`` model) it reports the Frobenius norm ‖J‖_F, the top-k singular values and the norm of the row of
the predicted class. The cache paper (Orhan 2018) argues that the cache makes ‖J‖ smaller.

Methods:

* ``exact``: C vector-Jacobian products (one backward pass per class) give every row of J; singular values
  are the square roots of the eigenvalues of the C × C Gram matrix J Jᵀ (float64). Memory N·C·D floats.
* ``randomized``: block power (subspace) iteration on J Jᵀ in output space, each step one VJP and one JVP
  (the JVP by double backward) per vector, gives an orthonormal basis Q of the top-k output directions; the
  singular values of Jᵀ Q estimate the top-k singular values. ‖J‖_F² = ‖Qᵀ J‖_F² + ‖(I − QQᵀ) J‖_F², the
  first term exact from the same VJPs, the second by Hutchinson's estimator E‖Jᵀ(I − QQᵀ)u‖², u ~ N(0, I_C),
  over ``probes`` draws (the deflation removes most of the variance of plain Hutchinson).
* ``auto``: exact when C ≤ 100, randomized otherwise.

Random draws come from (seed, image index), so rows do not depend on how images are batched.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from ..errors import InputError
from ..reports.content import FigureSpec, Table, num, pairs, text
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

METHODS = ("auto", "exact", "randomized")
#: ``auto`` computes J exactly up to this many classes
EXACT_MAX_CLASSES = 100


def _probabilities(module: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(p = softmax(output) with graph to ``x``, predictions)."""

    out = module(x).float()
    return out.softmax(dim=1), out.argmax(dim=1)


def _vjp(p: torch.Tensor, x: torch.Tensor, u: torch.Tensor, create_graph: bool = False) -> torch.Tensor:
    """Jᵀu per image: (N, C) -> (N, D)."""
    import torch

    (g,) = torch.autograd.grad(p, x, grad_outputs=u, retain_graph=True, create_graph=create_graph)
    return g.flatten(1)


def exact_jacobian(module: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(J as (N, C, D), predictions), one backward pass per class."""
    import torch

    x = x.detach().clone().requires_grad_(True)
    p, prediction = _probabilities(module, x)
    eye = torch.eye(p.shape[1], device=p.device, dtype=p.dtype)
    rows = [_vjp(p, x, eye[c].expand_as(p)) for c in range(p.shape[1])]
    return torch.stack(rows, dim=1), prediction


def exact_stats(jacobian: torch.Tensor, prediction: torch.Tensor, k: int) -> dict[str, torch.Tensor]:
    """Frobenius norm, top-k singular values and predicted-row norm from the full J (N, C, D)."""
    import torch

    j64 = jacobian.double()
    gram = j64 @ j64.transpose(1, 2)
    singular = torch.linalg.eigvalsh(gram).flip(-1).clamp_min(0).sqrt()[:, :k]
    rows = jacobian[torch.arange(len(jacobian)), prediction]
    return {
        "frobenius": j64.flatten(1).norm(dim=1),
        "singular": singular,
        "predicted": rows.norm(dim=1),
    }


def _gaussian(indices: np.ndarray, seed: int, shape: tuple[int, ...], stream: int) -> torch.Tensor:
    """Per-image standard normal draws from (seed, stream, image index): independent of batching."""
    import numpy as np
    import torch

    draws = [np.random.default_rng([seed, stream, int(i)]).standard_normal(shape) for i in indices]
    return torch.from_numpy(np.stack(draws)).float()


def randomized_stats(
    module: torch.nn.Module,
    x: torch.Tensor,
    indices: np.ndarray,
    *,
    k: int,
    probes: int,
    power_iters: int,
    seed: int,
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Estimated statistics (as :func:`exact_stats`) from VJPs and JVPs only, and the predictions."""
    import torch

    x = x.detach().clone().requires_grad_(True)
    p, prediction = _probabilities(module, x)
    classes = p.shape[1]
    k = min(k, classes)
    # Jᵀu with u as a differentiable input: differentiating it again w.r.t. u gives J w (a JVP).
    u = torch.zeros_like(p, requires_grad=True)
    jt_u = _vjp(p, x, u, create_graph=True)

    def jt(vectors: torch.Tensor) -> torch.Tensor:  # (N, C, m) -> (N, m, D)
        return torch.stack([_vjp(p, x, vectors[:, :, i]) for i in range(vectors.shape[2])], dim=1)

    def j(vectors: torch.Tensor) -> torch.Tensor:  # (N, m, D) -> (N, C, m)
        columns = [torch.autograd.grad(jt_u, u, vectors[:, i], retain_graph=True)[0] for i in range(vectors.shape[1])]
        return torch.stack(columns, dim=2)

    q = torch.linalg.qr(_gaussian(indices, seed, (classes, k), 0).to(x.device)).Q
    for _ in range(power_iters):
        q = torch.linalg.qr(j(jt(q)).double()).Q.float()
    top = jt(q).double()  # (N, k, D): rows Qᵀ J
    singular = torch.linalg.svdvals(top @ top.transpose(1, 2)).sqrt()
    probe = _gaussian(indices, seed, (classes, probes), 1).to(x.device)
    residual = probe - q @ (q.transpose(1, 2) @ probe)
    tail = jt(residual).double().pow(2).sum(dim=(1, 2)) / probes
    frobenius = (top.pow(2).sum(dim=(1, 2)) + tail).sqrt()
    onehot = torch.nn.functional.one_hot(prediction, classes).float()
    predicted = _vjp(p, x, onehot).norm(dim=1)
    return {"frobenius": frobenius, "singular": singular, "predicted": predicted}, prediction


MEDIAN_FROBENIUS = Pattern(
    "jacobian.<role>.median_frobenius", "number", False, "median Frobenius norm of dp/dx (role: backbone or defended)"
)
FROBENIUS_RATIO = Pattern("jacobian.frobenius_ratio", "number", False, "defended / backbone median Frobenius norm")


class JacobianAudit(Audit):
    """Norms and top singular values of ∂softmax/∂pixels, for the backbone and the defended model."""

    name = "jacobian"
    title = "Input-output Jacobian"
    order = 40
    batch_size = 16
    options = (
        Option("top_k", "Singular values kept per image.", default=5, type=int),
        Option(
            "method",
            "auto (exact up to 100 classes), exact (one backward pass per class) or randomized "
            "(power iteration + Hutchinson probes).",
            default="auto",
        ),
        Option("probes", "Hutchinson probes (randomized method).", default=16, type=int),
        Option("power_iters", "Power iterations (randomized method).", default=20, type=int),
    )
    metric_patterns = (MEDIAN_FROBENIUS, FROBENIUS_RATIO)
    columns: ClassVar[dict[str, Any]] = {
        "model_role": "string",
        "prediction": "int64",
        "frobenius": "float32",
        "top_singular": "list<float32>",
        "predicted_row_norm": "float32",
        "method": "string",
    }

    def __init__(
        self, *, top_k: int = 5, method: str = "auto", probes: int = 16, power_iters: int = 20, seed: int = 0
    ) -> None:
        super().__init__(top_k=top_k, method=method, probes=probes, power_iters=power_iters, seed=seed)
        if method not in METHODS:
            raise InputError(f"--method {method!r}: choose from {', '.join(METHODS)}")
        for option, value in (("--top-k", top_k), ("--probes", probes), ("--power-iters", power_iters)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"{option} must be an integer >= 1, got {value!r}")

    def method_for(self, num_classes: int) -> str:
        method = str(self.params["method"])
        if method == "auto":
            return "exact" if num_classes <= EXACT_MAX_CLASSES else "randomized"
        return method

    def prepare(self, model: LoadedModel) -> None:
        broken = [repr(d) for d in model.defenses if not d.differentiable]
        if broken:
            raise InputError(f"the Jacobian needs differentiable defenses; {', '.join(broken)} is not")

    def run_batch(self, model: LoadedModel, batch: AuditBatch) -> dict[str, np.ndarray]:
        import numpy as np
        import torch

        from ..defenses.base import describe

        models: dict[str, tuple[torch.nn.Module, str]] = {"backbone": (model.base, "none")}
        if model.defenses:
            models["defended"] = (model.module, describe(model.defenses))
        method = self.method_for(model.num_classes)
        k = int(self.params["top_k"])
        data: dict[str, list[Any]] = {name: [] for name in ["sample", "defense", *self.columns]}
        n = len(batch.indices)
        for role, (module, defense) in models.items():
            with torch.enable_grad():
                if method == "exact":
                    jacobian, prediction = exact_jacobian(module, batch.images)
                    stats = exact_stats(jacobian, prediction, k)
                    del jacobian
                else:
                    stats, prediction = randomized_stats(
                        module,
                        batch.images,
                        batch.indices,
                        k=k,
                        probes=int(self.params["probes"]),
                        power_iters=int(self.params["power_iters"]),
                        seed=int(self.params["seed"]),
                    )
            singular = stats["singular"].float().cpu().numpy()
            data["sample"] += list(range(n))
            data["defense"] += [defense] * n
            data["model_role"] += [role] * n
            data["prediction"] += prediction.cpu().tolist()
            data["frobenius"] += stats["frobenius"].float().cpu().tolist()
            data["top_singular"] += [row.tolist() for row in singular]
            data["predicted_row_norm"] += stats["predicted"].float().cpu().tolist()
            data["method"] += [method] * n
        columns = {name: np.array(values) for name, values in data.items() if name != "top_singular"}
        top = np.empty(len(data["top_singular"]), dtype=object)
        top[:] = data["top_singular"]  # element by element: equal-length lists must not become a 2-D array
        columns["top_singular"] = top
        return columns

    @classmethod
    def summarize(cls, rows: pd.DataFrame, metadata: dict[str, Any]) -> dict[str, Any]:
        import numpy as np

        done = rows[~rows["skipped"]]
        models: dict[str, dict[str, Any]] = {}
        for role in ("backbone", "defended"):
            part = done[done["model_role"] == role]
            if part.empty:
                continue
            top = [float(s[0]) for s in part["top_singular"] if len(s)]
            models[role] = {
                "defense": str(part["defense"].iloc[0]),
                "samples": len(part),
                "median_frobenius": float(part["frobenius"].median()),
                "mean_frobenius": float(part["frobenius"].mean()),
                "mean_top_singular": float(np.mean(top)) if top else float("nan"),
                "mean_predicted_row_norm": float(part["predicted_row_norm"].mean()),
            }
        summary: dict[str, Any] = {
            "samples": int(done["index"].nunique()),
            "skipped": int(rows["skipped"].sum()),
            "method": ", ".join(sorted(done["method"].dropna().unique())) or "n/a",
            "models": models,
        }
        if "backbone" in models and "defended" in models:
            base = models["backbone"]["median_frobenius"]
            summary["median_frobenius_ratio"] = models["defended"]["median_frobenius"] / base if base else float("nan")
        return summary

    # -- what the report means -----------------------------------------------------------------------------------
    @classmethod
    def metrics(cls, summary: dict[str, Any], metadata: dict[str, Any]) -> list[Metric]:
        out: list[Metric | None] = [
            MEDIAN_FROBENIUS.metric(f"jacobian.{role}.median_frobenius", figures.get("median_frobenius"))
            for role, figures in summary.get("models", {}).items()
        ]
        out.append(FROBENIUS_RATIO.metric("jacobian.frobenius_ratio", summary.get("median_frobenius_ratio")))
        return present(out)

    @classmethod
    def tables(cls, summary: dict[str, Any], metadata: dict[str, Any]) -> list[Table]:
        models = summary.get("models") or {}
        tables = [
            Table(
                f"Jacobian of the softmax w.r.t. pixels ({summary.get('method', 'n/a')})",
                ["model", "defense", "median ‖J‖_F", "mean ‖J‖_F", "mean top σ", "mean predicted-row norm", "images"],
                [
                    [
                        role,
                        text(m.get("defense")),
                        num(m.get("median_frobenius")),
                        num(m.get("mean_frobenius")),
                        num(m.get("mean_top_singular")),
                        num(m.get("mean_predicted_row_norm")),
                        text(m.get("samples")),
                    ]
                    for role, m in models.items()
                ],
            )
        ]
        if "median_frobenius_ratio" in summary:
            tables.append(
                pairs("Defense effect", [("median ‖J‖_F defended / backbone", num(summary["median_frobenius_ratio"]))])
            )
        return tables

    @classmethod
    def key_numbers(cls, summary: dict[str, Any], metadata: dict[str, Any]) -> dict[str, str]:
        return {
            f"median ‖J‖_F {role}": num(m.get("median_frobenius")) for role, m in (summary.get("models") or {}).items()
        }

    @classmethod
    def figures(cls, report: Report) -> list[FigureSpec]:
        return [
            FigureSpec("jacobian", "Mean singular values of ∂p/∂x", jacobian_figure(singular_profiles(report.rows)))
        ]


def jacobian_figure(profiles: dict[str, Any]) -> Figure:
    """Mean singular-value profile per model (log y), as :func:`singular_profiles` returns them."""
    from matplotlib.ticker import MaxNLocator

    from ..reports.plots import legend_label, new_figure, no_data

    fig, (ax,) = new_figure(6.0, 4.6)
    if not profiles:
        no_data(ax, "no Jacobian rows")
        return fig
    for label, profile in profiles.items():
        # defended models have long descriptions (the cache's parameters): wrap them below the axes
        ax.plot(range(1, len(profile) + 1), profile, marker="o", label=legend_label(label))
    ax.set_yscale("log")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("singular value rank")
    ax.set_ylabel("mean singular value of ∂p/∂x")
    ax.set_title("Jacobian singular-value profile")
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.18), frameon=False)
    fig.tight_layout()
    return fig


def singular_profiles(rows: pd.DataFrame) -> dict[str, np.ndarray]:
    """Mean top-k singular values per model (labelled ``role: defense``), from a report's rows."""
    import numpy as np

    done = rows[~rows["skipped"]]
    profiles = {}
    for role in ("backbone", "defended"):
        part = done[done["model_role"] == role]
        if part.empty:
            continue
        width = min(len(s) for s in part["top_singular"])
        values = np.stack([np.asarray(s, dtype=np.float64)[:width] for s in part["top_singular"]])
        profiles[f"{role}: {part['defense'].iloc[0]}"] = values.mean(axis=0)
    return profiles
