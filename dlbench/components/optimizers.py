"""Optimizers: update rules written once for a stack of runs, with per-run hyperparameters.

A stack holds R runs; every parameter tensor has the runs along dim 0. A rule updates
a `Slice`: the contiguous rows [start, stop) of the runs that use it, with one column
per hyperparameter (a value per run). Runs are ordered so that the runs of one
optimizer are contiguous, which makes every update an in-place op on a view.

Adding an optimizer = one function registered in OPTIMIZERS with its `OptimizerInfo`:

    @OPTIMIZERS.register("name", optimizer=OptimizerInfo(reads=frozenset({"lr", ...}), usual_lr=1e-3))
    def name(s: Slice, t: int) -> None:      # t: the step number, starting at 1
        c = s.columns(neg_lr=-s.hyper["lr"])  # per-run coefficients, broadcast against any tensor
        for i, p, g, is_weight in s.tensors():  # parameter rows, gradient rows
            buf = s.state("name_of_state", i)  # zero-initialized on first use, kept across steps
            ...update p in place...

Each rule is the single-tensor `torch.optim` update with per-run columns in place of
Python scalars; tests/test_stacked_optim.py checks every registered rule against its
`torch.optim` reference run by run. Weight decay and the L1 penalty apply to weights
only (`is_weight`: 2+ dims per run), never to biases or normalization parameters.
Weight decay is L2 added to the gradient (coupled) for every optimizer but adamw,
where it is decoupled (Loshchilov & Hutter).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import torch
from torch import Tensor

from dlbench.components.registry import Registry

if TYPE_CHECKING:
    from dlbench.config.schema import OptimizerConfig


@dataclass(frozen=True)
class OptimizerInfo:
    """What an optimizer reads from `optimizer:` and its usual values."""

    reads: frozenset[str]  # OptimizerConfig fields the rule uses (name aside)
    usual_lr: float
    usual_momentum: float | None = None  # the value an empty `optimizer.momentum` means; None: not read

    def __str__(self) -> str:  # for `dlbench list`
        text = f"reads {', '.join(sorted(self.reads))}; usual lr {self.usual_lr:g}"
        return text if self.usual_momentum is None else f"{text}, momentum {self.usual_momentum:g}"


def is_weight(stacked: Tensor) -> bool:
    """A weight (matrix or conv kernel) rather than a bias or norm parameter: 2+ dims per run."""
    return stacked.dim() > 2


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
        """(index, parameter rows, gradient rows, is a weight) for every parameter with a gradient."""
        return [(i, p[self.start:self.stop], p.grad[self.start:self.stop], is_weight(p))
                for i, p in enumerate(self.params) if p.grad is not None]

    def columns(self, **values: Tensor) -> Columns:
        return Columns(values, self.params[0])

    def coupled_decay(self, p: Tensor, g: Tensor, weight: bool, cols: Columns) -> Tensor:
        """L2 in the gradient (g + wd * w), weights only, like `grad.add(param, alpha=weight_decay)`."""
        if not weight or not self.decays:
            return g
        return torch.addcmul(g, p, cols("weight_decay", p))


Rule = Callable[[Slice, int], None]  # (slice, step number starting at 1)
OPTIMIZERS: Registry[Rule] = Registry("optimizer")


def info(name: str) -> OptimizerInfo:
    return OPTIMIZERS[name].info["optimizer"]


def momentum_of(cfg: "OptimizerConfig") -> float:
    """optimizer.momentum, or the optimizer's usual value when empty (0 where it reads none)."""
    if cfg.momentum is not None:
        return cfg.momentum
    return info(cfg.name).usual_momentum or 0.0


def _heavy_ball(s: Slice, nesterov: bool) -> None:
    c = s.columns(neg_lr=-s.hyper["lr"], momentum=s.hyper["momentum"], weight_decay=s.hyper["weight_decay"])
    for i, p, g, w in s.tensors():
        g = s.coupled_decay(p, g, w, c)
        buf = s.state("momentum_buffer", i)
        buf.mul_(c("momentum", p)).add_(g)  # from zeros, the first step gives buf = g as torch.optim does
        step = torch.addcmul(g, buf, c("momentum", p)) if nesterov else buf
        p.addcmul_(step, c("neg_lr", p))


_SGD_READS = frozenset({"lr", "momentum", "weight_decay"})


@OPTIMIZERS.register("sgd", optimizer=OptimizerInfo(_SGD_READS, usual_lr=0.1, usual_momentum=0.0))
def sgd(s: Slice, t: int) -> None:
    """(stochastic) gradient descent: w -= lr g; with optimizer.momentum set, as torch.optim.SGD(momentum=m)"""
    if bool((s.hyper["momentum"] != 0).any()):
        _heavy_ball(s, nesterov=False)  # runs with m = 0 in the slice: buf = 0 * buf + g = g, the plain step
        return
    c = s.columns(neg_lr=-s.hyper["lr"], weight_decay=s.hyper["weight_decay"])
    for _, p, g, w in s.tensors():
        p.addcmul_(s.coupled_decay(p, g, w, c), c("neg_lr", p))


@OPTIMIZERS.register("momentum", optimizer=OptimizerInfo(_SGD_READS, usual_lr=0.01, usual_momentum=0.9))
def momentum(s: Slice, t: int) -> None:
    """heavy-ball momentum: v = m v + g; w -= lr v"""
    _heavy_ball(s, nesterov=False)


@OPTIMIZERS.register("nesterov", optimizer=OptimizerInfo(_SGD_READS, usual_lr=0.01, usual_momentum=0.9))
def nesterov(s: Slice, t: int) -> None:
    """Nesterov momentum: v = m v + g; w -= lr (g + m v)"""
    _heavy_ball(s, nesterov=True)


@OPTIMIZERS.register("adagrad", optimizer=OptimizerInfo(frozenset({"lr", "eps", "weight_decay"}), usual_lr=0.01))
def adagrad(s: Slice, t: int) -> None:
    """AdaGrad: G += g^2; w -= lr g / (sqrt(G) + eps)"""
    c = s.columns(neg_lr=-s.hyper["lr"], eps=s.hyper["eps"], weight_decay=s.hyper["weight_decay"])
    for i, p, g, w in s.tensors():
        g = s.coupled_decay(p, g, w, c)
        total = s.state("sum", i)
        total.addcmul_(g, g)
        p.addcmul_(g / total.sqrt().add_(c("eps", p)), c("neg_lr", p))


@OPTIMIZERS.register("rmsprop", optimizer=OptimizerInfo(
    frozenset({"lr", "alpha", "eps", "momentum", "weight_decay"}), usual_lr=0.001, usual_momentum=0.0))
def rmsprop(s: Slice, t: int) -> None:
    """RMSprop: E = a E + (1 - a) g^2; v = m v + g / (sqrt(E) + eps); w -= lr v"""
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
    # torch divides by the Python scalar bc2_sqrt as a multiplication by its float32 reciprocal
    c = s.columns(neg_step_size=-h["lr"] / (1 - b1 ** t), inv_bc2_sqrt=(1 / ((1 - b2 ** t) ** 0.5).float()).double(),
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
        denom = (exp_avg_sq.sqrt() * c("inv_bc2_sqrt", p)).add_(c("eps", p))
        p.addcmul_(exp_avg / denom, c("neg_step_size", p))


_ADAM_READS = frozenset({"lr", "betas", "eps", "weight_decay"})


@OPTIMIZERS.register("adam", optimizer=OptimizerInfo(_ADAM_READS, usual_lr=0.001))
def adam(s: Slice, t: int) -> None:
    """Adam: momentum + RMSprop scaling with bias correction; weight decay is L2 in the gradient"""
    _adam(s, t, decoupled=False)


@OPTIMIZERS.register("adamw", optimizer=OptimizerInfo(_ADAM_READS, usual_lr=0.001))
def adamw(s: Slice, t: int) -> None:
    """AdamW: Adam with decoupled weight decay (w -= lr * wd * w)"""
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
        self.params = params
        self.configs = configs
        self.steps = 0
        self._state: dict[str, list[Tensor | None]] = {}
        self._slices = self._split()

    def lrs(self) -> list[float]:
        """The learning rate each run steps with."""
        return torch.cat([s.hyper["lr"] for _, s in self._slices]).tolist()

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
            OPTIMIZERS[name].builder(s, self.steps)

    def keep(self, rows: Tensor, params: list[Tensor]) -> None:
        """Continue with a subset of the runs: `rows` (indices) of every stack; `params` are the new stacks."""
        self.params = params
        self.configs = [self.configs[i] for i in rows.tolist()]
        self._state = {k: [None if t is None else t[rows.to(t.device)] for t in v] for k, v in self._state.items()}
        self._slices = self._split()

    def state_dict(self) -> dict[str, object]:
        """Step count and state tensors (plain tensors, lists and dicts: loadable with weights_only=True)."""
        return {"steps": self.steps, "state": self._state}

    def load_state_dict(self, state: dict[str, object]) -> None:
        self.steps = int(state["steps"])  # type: ignore[call-overload]
        self._state = state["state"]  # type: ignore[assignment]
