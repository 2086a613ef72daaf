"""Optimizer updates for stacked runs: each tensor holds one parameter of R runs along dim 0.

The vectorized executor trains R compatible runs as one stacked model; this module
applies each run's own optimizer with its own hyperparameters to its slice of the
stack. Runs are ordered so that the runs of one optimizer are a contiguous range of
dim 0, which makes every update an in-place op on a view (no gather / scatter).

Each rule below is the single-tensor `torch.optim` update written with per-run
coefficient columns (shape [n, 1, ...]) in place of Python scalars; the tests check
every rule against `torch.optim` run by run. Weight decay and AdamW's decoupled decay
touch weights only (tensors with 2+ dims per run), as in `dlbench.optim.build`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import torch
from torch import Tensor

from dlbench.components.optim import momentum_of
from dlbench.components.registry import Registry

if TYPE_CHECKING:
    from dlbench.config.schema import OptimizerConfig


class Columns:
    """Per-run coefficients on the device, viewed to broadcast against a stacked tensor of any rank."""

    def __init__(self, values: dict[str, Tensor], like: Tensor) -> None:
        # one host -> device copy for all coefficients; float64 -> float32 rounds like a Python scalar does
        packed = torch.stack(list(values.values())).to(device=like.device, dtype=like.dtype)
        self._base = dict(zip(values, packed.unbind()))
        self._views: dict[tuple[str, int], Tensor] = {}

    def __call__(self, name: str, like: Tensor) -> Tensor:
        key = (name, like.dim())
        if key not in self._views:
            self._views[key] = self._base[name].view(-1, *[1] * (like.dim() - 1))
        return self._views[key]


@dataclass
class Slice:
    """The runs of one optimizer: rows [start, stop) of every stacked tensor."""

    start: int
    stop: int
    params: list[Tensor]  # full stacks; the rule updates rows [start, stop)
    state: Callable[[str, int], Tensor]  # (state name, param index) -> rows [start, stop) of a zero-initialized stack
    hyper: dict[str, Tensor]  # hyperparameter -> float64 [n] on the host

    def __post_init__(self) -> None:
        self.decays = bool((self.hyper["weight_decay"] != 0).any())

    def tensors(self) -> list[tuple[int, Tensor, Tensor, bool]]:
        """(index, parameter rows, gradient rows, is a weight) for every parameter."""
        return [(i, p[self.start:self.stop], p.grad[self.start:self.stop], p.dim() > 2)
                for i, p in enumerate(self.params) if p.grad is not None]

    def columns(self, **values: Tensor) -> Columns:
        return Columns(values, self.params[0])

    def coupled_decay(self, p: Tensor, g: Tensor, is_weight: bool, cols: Columns) -> Tensor:
        """L2 in the gradient (g + wd * w), weights only, like `grad.add(param, alpha=weight_decay)`."""
        if not is_weight or not self.decays:
            return g
        return torch.addcmul(g, p, cols("weight_decay", p))


Rule = Callable[[Slice, int], None]  # (slice, step number starting at 1)
STACKED_OPTIMIZERS: Registry[Rule] = Registry("stacked optimizer")


@STACKED_OPTIMIZERS.register("sgd")
def sgd(s: Slice, t: int) -> None:
    """w -= lr * g"""
    c = s.columns(neg_lr=-s.hyper["lr"], weight_decay=s.hyper["weight_decay"])
    for _, p, g, w in s.tensors():
        p.addcmul_(s.coupled_decay(p, g, w, c), c("neg_lr", p))


def _heavy_ball(s: Slice, nesterov: bool) -> None:
    m = s.hyper["momentum"]
    c = s.columns(neg_lr=-s.hyper["lr"], momentum=m, weight_decay=s.hyper["weight_decay"])
    for i, p, g, w in s.tensors():
        g = s.coupled_decay(p, g, w, c)
        buf = s.state("momentum_buffer", i)
        buf.mul_(c("momentum", p)).add_(g)  # from zeros, the first step gives buf = g as torch.optim does
        step = torch.addcmul(g, buf, c("momentum", p)) if nesterov else buf
        p.addcmul_(step, c("neg_lr", p))


@STACKED_OPTIMIZERS.register("momentum")
def momentum(s: Slice, t: int) -> None:
    """v = m v + g; w -= lr v"""
    _heavy_ball(s, nesterov=False)


@STACKED_OPTIMIZERS.register("nesterov")
def nesterov(s: Slice, t: int) -> None:
    """v = m v + g; w -= lr (g + m v)"""
    _heavy_ball(s, nesterov=True)


@STACKED_OPTIMIZERS.register("adagrad")
def adagrad(s: Slice, t: int) -> None:
    """G += g^2; w -= lr g / (sqrt(G) + eps)"""
    c = s.columns(neg_lr=-s.hyper["lr"], eps=s.hyper["eps"], weight_decay=s.hyper["weight_decay"])
    for i, p, g, w in s.tensors():
        g = s.coupled_decay(p, g, w, c)
        total = s.state("sum", i)
        total.addcmul_(g, g)
        p.addcmul_(g / total.sqrt().add_(c("eps", p)), c("neg_lr", p))


@STACKED_OPTIMIZERS.register("rmsprop")
def rmsprop(s: Slice, t: int) -> None:
    """E = a E + (1 - a) g^2; v = m v + g / (sqrt(E) + eps); w -= lr v"""
    h = s.hyper
    c = s.columns(neg_lr=-h["lr"], alpha=h["alpha"], one_minus_alpha=1 - h["alpha"], eps=h["eps"],
                  momentum=h["momentum"], weight_decay=h["weight_decay"])
    for i, p, g, w in s.tensors():
        g = s.coupled_decay(p, g, w, c)
        square_avg = s.state("square_avg", i)
        square_avg.mul_(c("alpha", p)).addcmul_(g * c("one_minus_alpha", p), g)
        avg = square_avg.sqrt().add_(c("eps", p))
        # torch.optim skips the buffer when momentum == 0; m = 0 gives the same step: v = g / avg
        buf = s.state("momentum_buffer", i)
        buf.mul_(c("momentum", p)).addcdiv_(g, avg)
        p.addcmul_(buf, c("neg_lr", p))


def _adam(s: Slice, t: int, decoupled: bool) -> None:
    h = s.hyper
    b1, b2 = h["beta1"], h["beta2"]
    c = s.columns(neg_step_size=-h["lr"] / (1 - b1 ** t), bc2_sqrt=(1 - b2 ** t) ** 0.5,
                  one_minus_beta1=1 - b1, beta2=b2, one_minus_beta2=1 - b2, eps=h["eps"],
                  weight_decay=h["weight_decay"], decay=1 - h["lr"] * h["weight_decay"])
    for i, p, g, w in s.tensors():
        if decoupled:
            if w:
                p.mul_(c("decay", p))
        else:
            g = s.coupled_decay(p, g, w, c)
        exp_avg, exp_avg_sq = s.state("exp_avg", i), s.state("exp_avg_sq", i)
        exp_avg.lerp_(g, c("one_minus_beta1", p))
        exp_avg_sq.mul_(c("beta2", p)).addcmul_(g * c("one_minus_beta2", p), g)
        denom = (exp_avg_sq.sqrt() / c("bc2_sqrt", p)).add_(c("eps", p))
        p.addcmul_(exp_avg / denom, c("neg_step_size", p))


@STACKED_OPTIMIZERS.register("adam")
def adam(s: Slice, t: int) -> None:
    """bias-corrected m / (sqrt(v) + eps) steps; weight decay is L2 in the gradient"""
    _adam(s, t, decoupled=False)


@STACKED_OPTIMIZERS.register("adamw")
def adamw(s: Slice, t: int) -> None:
    """Adam with decoupled weight decay: w *= 1 - lr wd before the Adam step"""
    _adam(s, t, decoupled=True)


def hyperparameters(configs: list["OptimizerConfig"]) -> dict[str, Tensor]:
    """Per-run hyperparameters as float64 host vectors (what torch.optim holds as Python floats)."""
    columns = {
        "lr": [c.lr for c in configs],
        "momentum": [momentum_of(c) for c in configs],
        "beta1": [c.betas[0] for c in configs],
        "beta2": [c.betas[1] for c in configs],
        "alpha": [c.alpha for c in configs],
        "eps": [c.eps for c in configs],
        "weight_decay": [c.weight_decay for c in configs],
    }
    return {k: torch.tensor(v, dtype=torch.float64) for k, v in columns.items()}


class StackedOptimizer:
    """Steps stacked parameters; run r uses optimizer `configs[r]`.

    The runs of each optimizer must be contiguous (sort runs by optimizer name).
    State tensors are allocated for all rows the first time a rule asks for them.
    """

    def __init__(self, params: list[Tensor], configs: list["OptimizerConfig"]) -> None:
        names = [c.name for c in configs]
        if any(names[i] != names[i + 1] and names[i + 1] in names[:i] for i in range(len(names) - 1)):
            raise ValueError("runs of one optimizer must be contiguous")
        missing = sorted(set(names) - set(STACKED_OPTIMIZERS.names()))
        if missing:
            raise ValueError(f"no stacked update rule for optimizer(s) {', '.join(missing)}")
        self.params = params
        self.configs = configs
        self.steps = 0
        self._state: dict[str, list[Tensor | None]] = {}
        self._slices = self._split()

    def _slot(self, name: str, index: int) -> Tensor:
        slots = self._state.setdefault(name, [None] * len(self.params))
        if slots[index] is None:
            slots[index] = torch.zeros_like(self.params[index], memory_format=torch.contiguous_format)
        return slots[index]  # type: ignore[return-value]

    def _split(self) -> list[tuple[str, Slice]]:
        out, start = [], 0
        for stop in range(1, len(self.configs) + 1):
            if stop == len(self.configs) or self.configs[stop].name != self.configs[start].name:
                a, b = start, stop
                out.append((self.configs[a].name, Slice(
                    a, b, self.params, lambda name, i, a=a, b=b: self._slot(name, i)[a:b],
                    hyperparameters(self.configs[a:b]))))
                start = stop
        return out

    @torch.no_grad()
    def step(self) -> None:
        self.steps += 1
        for name, s in self._slices:
            STACKED_OPTIMIZERS[name].builder(s, self.steps)

    def keep(self, rows: Tensor, params: list[Tensor]) -> None:
        """Continue with a subset of the runs: `rows` (indices) of every stack; `params` are the new stacks."""
        self.params = params
        self.configs = [self.configs[i] for i in rows.tolist()]
        self._state = {k: [None if t is None else t[rows.to(t.device)] for t in v] for k, v in self._state.items()}
        self._slices = self._split()
