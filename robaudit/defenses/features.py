"""Reading a network's activations at named layers as one feature vector per image (the cache's keys).

Layers are module names of the backbone (``layer3.2``, ``layer4.1``, ``blocks.11``), nodes of its traced
graph (``layer1.0.relu_1``: the output of a functional ReLU inside a residual block, ``layer2.1.add``: a
residual sum before its activation), or the aliases ``penultimate`` (the input of the classifier layer: the
global-pooled features), ``logits`` and ``probs`` (softmax of the logits).

Module outputs are captured with forward hooks, the fast path: no tracing, the model runs as it is. A value
that no module returns (a function call inside ``forward``, such as ``F.relu(out + shortcut)``) has no
module to hook, so a layer that is not a module name is looked up among the nodes of the backbone's
``torch.fx`` graph (:func:`graph_nodes`, timm's tracer, which knows timm's untraceable modules) and read
with a feature extractor sharing the backbone's weights (``create_feature_extractor``) that returns the
requested nodes and the output in one forward pass. A module name given alongside node names is read from
the graph too (as the last node inside that module).

A spatial activation (N, C, H, W) is global-average-pooled (``pool="avg"``, the default) or flattened
whole (``pool="flatten"``, as the original CIFAR cache model did); token sequences (N, T, C) are averaged
over tokens. Several layers are concatenated and the result is L2-normalized per image, so that a dot
product of two keys is their cosine similarity.

Activations are captured within the one forward pass (hooks registered for that pass only, or the
extractor's outputs), so the captured tensors stay in the autograd graph: gradients of a cache's output
reach the input pixels.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError, RunError, suggest

ALIASES = ("penultimate", "logits", "probs")
POOLS = ("avg", "flatten")


def classifier_of(backbone: nn.Module) -> nn.Module:
    """The final classification layer: timm's ``get_classifier()``, else the last ``nn.Linear``."""
    getter = getattr(backbone, "get_classifier", None)
    if callable(getter):
        head = getter()
        if isinstance(head, nn.Module) and not isinstance(head, nn.Identity):
            return head
    linears = [m for m in backbone.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise InputError("cannot find the classifier layer for 'penultimate' (no nn.Linear); name a layer instead")
    return linears[-1]


def parse_layers(text: str | list[str]) -> list[str]:
    layers = [p.strip() for p in (text.split("+") if isinstance(text, str) else text) if p.strip()]
    if not layers:
        raise InputError("no cache layer given (e.g. penultimate, layer3.2, or layer3.1+layer3.2)")
    return layers


def graph_nodes(backbone: nn.Module) -> list[str]:
    """The names of the nodes of the backbone's traced graph in eval mode, in execution order (the last one
    computes the output); a model that cannot be traced is an input error that says so."""
    from timm.models import get_graph_node_names

    try:
        return list(get_graph_node_names(backbone)[1])
    except Exception as exc:
        raise InputError(
            f"cannot trace the model's graph to find intermediate values ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}); use module names (robaudit cache layers lists them)"
        ) from exc


def module_names(backbone: nn.Module) -> list[str]:
    return [name for name, _ in backbone.named_modules() if name]


def _shown(names: list[str], most: int = 12) -> str:
    return ", ".join(names[:most]) + (f" ... ({len(names)} in all)" if len(names) > most else "")


#: the name under which the feature extractor returns the backbone's output
_OUTPUT = "__robaudit_output__"


class FeatureReader:
    """Runs the pixel model once and returns (L2-normalized features, logits)."""

    def __init__(self, base: nn.Module, layers: list[str], pool: str = "avg") -> None:
        if pool not in POOLS:
            raise InputError(f"pool must be one of {', '.join(POOLS)}, got {pool!r}")
        backbone: nn.Module = getattr(base, "backbone", base)
        modules = dict(backbone.named_modules())
        named = [layer for layer in layers if layer not in ALIASES]
        self.layers = list(layers)
        self.pool = pool
        self._classifier = classifier_of(backbone) if "penultimate" in layers else None
        self._modules: dict[str, nn.Module] = {}
        self._extractor: nn.Module | None = None
        self._checked = False
        if all(layer in modules for layer in named):
            self._modules = {layer: modules[layer] for layer in named}
            return
        # some value is no module's output: read every named layer from the traced graph
        nodes = graph_nodes(backbone)
        for layer in named:
            if layer not in modules and layer not in nodes:
                names = module_names(backbone)
                candidates = list(dict.fromkeys(names + nodes + list(ALIASES)))
                raise InputError(
                    f"the model has no layer {layer!r} (module or graph node){suggest(layer, candidates)}; "
                    f"aliases: {', '.join(ALIASES)}; layers: {_shown(names)}; graph nodes: {_shown(nodes)} "
                    "(`robaudit cache layers --model ...` lists them)"
                )
        from timm.models import create_feature_extractor

        self._output_node = nodes[-1]
        return_nodes = {layer: layer for layer in named}
        return_nodes[self._output_node] = _OUTPUT
        try:
            self._extractor = create_feature_extractor(backbone, return_nodes=return_nodes).eval()
        except Exception as exc:
            raise InputError(f"cannot build a feature extractor for {', '.join(named)}: {exc}") from exc

    def _reduce(self, activation: torch.Tensor) -> torch.Tensor:
        if activation.ndim == 4:
            return activation.flatten(1) if self.pool == "flatten" else activation.mean(dim=(2, 3))
        if activation.ndim == 3:
            return activation.mean(dim=1)
        return activation.flatten(1)

    def __call__(self, base: nn.Module, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        captured: dict[str, torch.Tensor] = {}

        def keep(name: str) -> Callable[[nn.Module, tuple[torch.Tensor, ...], object], None]:
            def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: object) -> None:
                captured[name] = output[0] if isinstance(output, (tuple, list)) else output  # type: ignore[assignment]

            return hook

        handles = [module.register_forward_hook(keep(name)) for name, module in self._modules.items()]
        if self._classifier is not None:
            # the classifier is a leaf module: the graph extractor calls this very module, so the hook fires there too
            handles.append(
                self._classifier.register_forward_pre_hook(
                    lambda module, inputs: captured.__setitem__("penultimate", inputs[0])
                )
            )
        try:
            logits = base(pixels) if self._extractor is None else self._from_graph(base, pixels, captured)
        finally:
            for handle in handles:
                handle.remove()
        parts = []
        for layer in self.layers:
            if layer == "logits":
                activation = logits
            elif layer == "probs":
                activation = logits.softmax(dim=1)
            elif layer in captured:
                activation = captured[layer]
            else:
                raise RunError(f"layer {layer!r} did not run during the forward pass")
            parts.append(self._reduce(activation.float()))
        return F.normalize(torch.cat(parts, dim=1), dim=1), logits

    def _from_graph(self, base: nn.Module, pixels: torch.Tensor, captured: dict[str, torch.Tensor]) -> torch.Tensor:
        """The logits, with the requested graph nodes put into ``captured`` (one forward pass)."""
        assert self._extractor is not None
        run = getattr(base, "run", None)
        outputs = run(self._extractor, pixels) if callable(run) else self._extractor(pixels)
        logits = outputs.pop(_OUTPUT)
        if not self._checked:
            # the last graph node is taken for the output; confirm it once against the model itself
            with torch.no_grad():
                direct = base(pixels[:2])
            same = isinstance(logits, torch.Tensor) and logits.shape[1:] == direct.shape[1:]
            if not same or not torch.allclose(logits[:2].detach().float(), direct.float(), rtol=1e-2, atol=1e-3):
                raise RunError(
                    f"the last node of the model's graph ({self._output_node}) is not its output; "
                    "name module layers instead of graph nodes for this model"
                )
            self._checked = True
        for name, value in outputs.items():
            captured[name] = value[0] if isinstance(value, (tuple, list)) else value
        return logits
