"""Per-layer diagnostics: activation statistics and histograms, gradient norms, weight sparsity.

Two users: a training run whose config turns on `diagnostics:` records them at every
evaluation (`Recorder`, called by the engine with the run taken out of its stack as a
plain module), and `task: activations` measures an untrained net fed Gaussian noise
(`probe`). Layer i is the i-th weighted layer (Linear / Conv) and the i-th
activation module after it; the output layer has weights but no activation. Activations are
measured in eval mode on fixed inputs
(dropout off, BatchNorm on its running statistics), so recording them changes
neither the random stream nor the BatchNorm statistics of the run.
"""

from __future__ import annotations

import io
import math
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from dlbench.components import inits
from dlbench.components import models

if TYPE_CHECKING:
    import pandas as pd

    from dlbench.plan.sweep import RunSpec

# an output outside (low, high) sits on the activation's flat part, where its gradient ~ 0;
# sigmoid < 0.05 or > 0.95, and the same points for tanh (tanh(x) = 2 sigmoid(2x) - 1)
SATURATION = {"sigmoid": (0.05, 0.95), "tanh": (-0.9, 0.9)}
# histogram ranges; values outside are counted in the edge bins, so an explosion stays visible
HIST_RANGE = {"sigmoid": (0.0, 1.0), "tanh": (-1.0, 1.0), "relu": (0.0, 3.0)}
DEFAULT_RANGE = (-3.0, 3.0)
LOG10_W_RANGE = (-6.0, 1.0)  # weight histograms are over log10 |w|
STAT_COLUMNS = ["step", "layer", "act_mean", "act_std", "act_saturated", "act_zero", "grad_norm", "weight_norm",
                "weight_near_zero", "n_weights"]


def weighted_layers(model: nn.Module) -> list[nn.Linear | nn.Conv1d | nn.Conv2d]:
    return [m for m in model.modules() if isinstance(m, inits.WEIGHTED)]


def activation_layers(model: nn.Module, activation: str) -> list[nn.Module]:
    kind = type(models.ACTIVATIONS[activation].builder())
    return [m for m in model.modules() if type(m) is kind]


@torch.no_grad()
def activations_of(model: nn.Module, x: torch.Tensor, activation: str) -> list[torch.Tensor]:
    """The output of every activation module for inputs x, in eval mode."""
    outputs: list[torch.Tensor] = []
    hooks = [m.register_forward_hook(lambda m, i, out: outputs.append(out.detach()))
             for m in activation_layers(model, activation)]
    was_training = model.training
    model.eval()
    try:
        model(x)
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    return outputs


def histogram(values: torch.Tensor, low: float, high: float, bins: int) -> list[dict[str, float]]:
    counts = torch.histc(values.float().clamp(low, high), bins, low, high)
    edges = torch.linspace(low, high, bins + 1)
    return [{"left": float(a), "right": float(b), "count": int(c)} for a, b, c in zip(edges, edges[1:], counts)]


def activation_stats(outputs: list[torch.Tensor], activation: str, bins: int
                     ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(one row of statistics per layer, histogram rows) for the outputs of each activation layer."""
    stats, hists = [], []
    low, high = HIST_RANGE.get(activation, DEFAULT_RANGE)
    for layer, a in enumerate(outputs, 1):
        row: dict[str, Any] = {"layer": layer, "act_mean": a.mean().item(), "act_std": a.std().item(),
                               "act_zero": (a == 0).float().mean().item(), "act_saturated": math.nan}
        if activation in SATURATION:
            lo, hi = SATURATION[activation]
            row["act_saturated"] = ((a < lo) | (a > hi)).float().mean().item()
        stats.append(row)
        # exact zeros (ReLU's flat half) are left out of the histogram, so it shows the spread of the
        # rest; their share is act_zero
        hists += [{"kind": "activation", "layer": layer, **h} for h in histogram(a[a != 0], low, high, bins)]
    return stats, hists


class Recorder:
    """Collects the diagnostics a config asks for, at each evaluation of one training run."""

    def __init__(self, cfg: Any, activation: str, x_train: torch.Tensor) -> None:
        self.cfg = cfg
        self.activation = activation
        self.x = x_train[: cfg.samples]  # the same samples at every evaluation
        self.rows: list[dict[str, Any]] = []
        self.first_hist: list[dict[str, Any]] = []
        self.last_hist: list[dict[str, Any]] = []

    def record(self, model: nn.Module, step: int) -> None:
        layers: dict[int, dict[str, Any]] = {}
        hists: list[dict[str, Any]] = []
        if self.cfg.activations:
            stats, act_hists = activation_stats(activations_of(model, self.x, self.activation),
                                                self.activation, self.cfg.bins)
            for row in stats:
                layers.setdefault(row["layer"], {}).update(row)
            hists += act_hists
        for layer, module in enumerate(weighted_layers(model), 1):
            row = layers.setdefault(layer, {"layer": layer})
            w = module.weight.detach()
            if self.cfg.gradients:
                # the gradient of the last training batch (none yet before the first step)
                grad = module.weight.grad
                row["grad_norm"] = grad.norm().item() if grad is not None else math.nan
            if self.cfg.weights:
                row.update(weight_norm=w.norm().item(), n_weights=w.numel(),
                           weight_near_zero=(w.abs() < self.cfg.near_zero).float().mean().item())
                hists += [{"kind": "weight", "layer": layer, **h}
                          for h in histogram(w.abs().clamp_min(1e-30).log10(), *LOG10_W_RANGE, self.cfg.bins)]
        self.rows += [{"step": step, **layers[k]} for k in sorted(layers)]
        hists = [{"step": step, **h} for h in hists]
        self.first_hist = self.first_hist or hists
        self.last_hist = hists

    def state(self) -> dict[str, Any]:
        """What was recorded so far, as plain lists and dicts (for checkpoints)."""
        return {"rows": self.rows, "first_hist": self.first_hist, "last_hist": self.last_hist}

    def restore(self, state: dict[str, Any]) -> None:
        self.rows, self.first_hist, self.last_hist = state["rows"], state["first_hist"], state["last_hist"]

    def files(self) -> dict[str, str]:
        """diagnostics.csv (per step and layer) and histograms.csv (first and last evaluation)."""
        import pandas as pd  # here, not at the top: the training path does not pay pandas' import

        stats = pd.DataFrame(self.rows).reindex(columns=STAT_COLUMNS).dropna(axis=1, how="all")
        hist = self.first_hist + (self.last_hist if self.last_hist != self.first_hist else [])
        return {"diagnostics.csv": _csv(stats), "histograms.csv": _csv(pd.DataFrame(hist))}

    def final(self) -> dict[str, float]:
        """Headline numbers at the last evaluation, for summary.json and the diagnostics table."""
        if not self.rows:
            return {}
        import pandas as pd

        last = pd.DataFrame([r for r in self.rows if r["step"] == self.rows[-1]["step"]])
        out: dict[str, float] = {}
        if self.cfg.weights:
            out["weight_near_zero"] = float((last["weight_near_zero"] * last["n_weights"]).sum()
                                            / last["n_weights"].sum())
            out["weight_norm"] = float(math.sqrt((last["weight_norm"] ** 2).sum()))
        if self.cfg.gradients:
            out["grad_norm_first"] = float(last["grad_norm"].iloc[0])
            out["grad_norm_last"] = float(last["grad_norm"].iloc[-1])
        if self.cfg.activations:
            acts = last.dropna(subset=["act_std"])
            out["act_std_first"] = float(acts["act_std"].iloc[0])
            out["act_std_last"] = float(acts["act_std"].iloc[-1])
            out["act_saturated"] = float(acts["act_saturated"].mean())
        return out


def _csv(df: pd.DataFrame) -> str:
    buf = io.StringIO()
    df.to_csv(buf, index=False, lineterminator="\n")
    return buf.getvalue()


# ---------------------------------------------------------------- task: activations


def probe(specs: list[RunSpec]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Untrained nets (model + init of each spec) fed N(0, 1) inputs: (per-layer statistics, histograms)."""
    import pandas as pd

    stats, hists = [], []
    for spec in specs:
        cfg = spec.config
        torch.manual_seed(spec.seed)
        x = torch.randn(cfg.activations.samples, cfg.activations.features)
        model = models.build(cfg.model, (cfg.activations.features,), 10)  # the output layer is never used
        inits.initialize(model, cfg.init)
        layer_stats, layer_hists = activation_stats(activations_of(model, x, cfg.model.activation),
                                                    cfg.model.activation, cfg.diagnostics.bins)
        stats += [{**spec.params, "seed": spec.seed, **row} for row in layer_stats]
        hists += [{**spec.params, "seed": spec.seed, **row} for row in layer_hists]
    return pd.DataFrame(stats), pd.DataFrame(hists)
