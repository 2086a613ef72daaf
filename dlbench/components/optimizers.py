"""Optimizers: update rules written once for a stack of runs, with per-run hyperparameters.

A stack holds R runs; every parameter tensor has the runs along dim 0. A rule updates
a `Slice`: the contiguous rows [start, stop) of the runs that use it, with one column
per hyperparameter (a value per run). Runs are ordered so that the runs of one
optimizer are contiguous, which makes every update an in-place op on a view.

Adding an optimizer = its record in `dlbench.catalog.builtin` (the settings it reads, with their
defaults) and one function registered here against that name:

    @OPTIMIZERS.register("name")
    def name(s: Slice, t: int) -> None:      # t: the step number, starting at 1
        c = s.columns(neg_lr=-s.hyper["lr"])  # per-run coefficients, broadcast against any tensor
        for i, p, g, is_weight in s.tensors():  # parameter rows, gradient rows
            buf = s.state("name_of_state", i)  # zero-initialized on first use, kept across steps
            ...update p in place...

Each rule is the single-tensor `torch.optim` update with per-run columns in place of
Python scalars; tests/test_stacked_optim.py checks every registered rule against its
`torch.optim` reference run by run. Weight decay applies to weights only (`is_weight`:
2+ dims per run), and to biases and normalization parameters too in the runs with
`optimizer.decay_biases` (`Slice.decay`); the L1 penalty applies to weights only.
Weight decay is L2 added to the gradient (coupled) for every optimizer but adamw,
where it is decoupled (Loshchilov & Hutter).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import Tensor

from dlbench.catalog import CATALOG, Kind



def is_weight(stacked: Tensor) -> bool:
    """A weight (matrix or conv kernel) rather than a bias or norm parameter: 2+ dims per run."""
    return stacked.dim() > 2


class Columns:
    """Per-run coefficients on the device, viewed to broadcast against a stacked tensor of any rank."""

    def __init__(self, values: dict[str, Tensor], like: Tensor) -> None:
        # one host -> device copy for all coefficients; float64 -> float32 rounds like a Python scalar does
        packed = torch.stack(list(values.values())).to(like.dtype)
        # to a GPU pinned and asynchronous: a plain copy would wait for every kernel queued before it
        packed = packed.pin_memory().to(like.device, non_blocking=True) if like.is_cuda else packed.to(like.device)
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
    scalar: Callable[[str, float], Tensor]  # (name, initial value) -> per-run float64 [n] host state (nadam, schedule-free)

    def __post_init__(self) -> None:
        self.decays = bool((self.hyper["weight_decay"] != 0).any())
        self.decays_biases = self.decays and bool(self.hyper["decay_biases"].any())

    def tensors(self) -> list[tuple[int, Tensor, Tensor, bool]]:
        """(index, parameter rows, gradient rows, is a weight) for every parameter with a gradient."""
        return [(i, p[self.start:self.stop], p.grad[self.start:self.stop], is_weight(p))
                for i, p in enumerate(self.params) if p.grad is not None]

    def columns(self, **values: Tensor) -> Columns:
        if self.decays_biases:
            values["decay_biases"] = self.hyper["decay_biases"]
        return Columns(values, self.params[0])

    def decay(self, cols: Columns, name: str, p: Tensor, weight: bool, off: float) -> Tensor | None:
        """The per-run weight-decay column `name` for parameter p, or None where no run of the slice decays p.

        Weights decay in every run; biases and norm parameters only in the runs with
        optimizer.decay_biases (the others get `off`, the value that leaves p as it is).
        This is the one place that decides which tensors weight decay touches.
        """
        if not self.decays or not (weight or self.decays_biases):
            return None
        if weight:
            return cols(name, p)
        return torch.where(cols("decay_biases", p) > 0, cols(name, p), off)

    def coupled_decay(self, p: Tensor, g: Tensor, weight: bool, cols: Columns) -> Tensor:
        """L2 in the gradient (g + wd * w), like `grad.add(param, alpha=weight_decay)`."""
        wd = self.decay(cols, "weight_decay", p, weight, 0.0)
        return g if wd is None else torch.addcmul(g, p, wd)


Rule = Callable[[Slice, int], None]  # (slice, step number starting at 1)
OPTIMIZERS: Kind[Rule] = CATALOG["optimizer"]


def _heavy_ball(s: Slice, nesterov: bool) -> None:
    c = s.columns(neg_lr=-s.hyper["lr"], momentum=s.hyper["momentum"], weight_decay=s.hyper["weight_decay"])
    for i, p, g, w in s.tensors():
        g = s.coupled_decay(p, g, w, c)
        buf = s.state("momentum_buffer", i)
        buf.mul_(c("momentum", p)).add_(g)  # from zeros, the first step gives buf = g as torch.optim does
        step = torch.addcmul(g, buf, c("momentum", p)) if nesterov else buf
        p.addcmul_(step, c("neg_lr", p))




@OPTIMIZERS.register("sgd")
def sgd(s: Slice, t: int) -> None:
    """(stochastic) gradient descent: w -= lr g; with optimizer.momentum set, as torch.optim.SGD(momentum=m)"""
    if bool((s.hyper["momentum"] != 0).any()):
        _heavy_ball(s, nesterov=False)  # runs with m = 0 in the slice: buf = 0 * buf + g = g, the plain step
        return
    c = s.columns(neg_lr=-s.hyper["lr"], weight_decay=s.hyper["weight_decay"])
    for _, p, g, w in s.tensors():
        p.addcmul_(s.coupled_decay(p, g, w, c), c("neg_lr", p))


@OPTIMIZERS.register("momentum")
def momentum(s: Slice, t: int) -> None:
    """heavy-ball momentum: v = m v + g; w -= lr v"""
    _heavy_ball(s, nesterov=False)


@OPTIMIZERS.register("nesterov")
def nesterov(s: Slice, t: int) -> None:
    """Nesterov momentum: v = m v + g; w -= lr (g + m v)"""
    _heavy_ball(s, nesterov=True)


@OPTIMIZERS.register("adagrad")
def adagrad(s: Slice, t: int) -> None:
    """AdaGrad: G += g^2; w -= lr g / (sqrt(G) + eps)"""
    c = s.columns(neg_lr=-s.hyper["lr"], eps=s.hyper["eps"], weight_decay=s.hyper["weight_decay"])
    for i, p, g, w in s.tensors():
        g = s.coupled_decay(p, g, w, c)
        total = s.state("sum", i)
        total.addcmul_(g, g)
        p.addcmul_(g / total.sqrt().add_(c("eps", p)), c("neg_lr", p))


@OPTIMIZERS.register("rmsprop")
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
            decay = s.decay(c, "decay", p, w, 1.0)
            if decay is not None:
                p.mul_(decay)
        else:
            g = s.coupled_decay(p, g, w, c)
        exp_avg, exp_avg_sq = s.state("exp_avg", i), s.state("exp_avg_sq", i)
        exp_avg.lerp_(g, c("one_minus_beta1", p))
        exp_avg_sq.mul_(c("beta2", p)).addcmul_(g * c("one_minus_beta2", p), g)
        denom = (exp_avg_sq.sqrt() * c("inv_bc2_sqrt", p)).add_(c("eps", p))
        p.addcmul_(exp_avg / denom, c("neg_step_size", p))




@OPTIMIZERS.register("adam")
def adam(s: Slice, t: int) -> None:
    """Adam: momentum + RMSprop scaling with bias correction; weight decay is L2 in the gradient"""
    _adam(s, t, decoupled=False)


@OPTIMIZERS.register("adamw")
def adamw(s: Slice, t: int) -> None:
    """AdamW: Adam with decoupled weight decay (w -= lr * wd * w)"""
    _adam(s, t, decoupled=True)


def hyperparameters(configs: list[Any]) -> dict[str, Tensor]:
    """Per-run hyperparameters of one optimizer's runs as float64 host vectors (what torch.optim holds as
    Python floats): every setting it reads, betas as beta1 and beta2."""
    columns: dict[str, list[float]] = {}
    for cfg in configs:
        for key, value in cfg.settings().items():
            if key == "betas":
                columns.setdefault("beta1", []).append(value[0])
                columns.setdefault("beta2", []).append(value[1])
            elif isinstance(value, (bool, int, float)) and key != "clip_norm":
                columns.setdefault(key, []).append(float(value))
    return {k: torch.tensor(v, dtype=torch.float64) for k, v in columns.items()}


class StackedOptimizer:
    """Steps stacked parameters; run r uses optimizer `configs[r]`.

    The runs of each optimizer must be contiguous (sort runs by optimizer name).
    State tensors are allocated for all rows the first time a rule asks for them.
    """

    def __init__(self, params: list[Tensor], configs: list[Any]) -> None:
        names = [c.name for c in configs]
        if any(names[i] != names[i + 1] and names[i + 1] in names[:i] for i in range(len(names) - 1)):
            raise ValueError("runs of one optimizer must be contiguous")
        self.params = params
        self.configs = configs
        self.steps = 0
        self._state: dict[str, list[Tensor | None]] = {}
        self._scalars: dict[str, Tensor] = {}  # per-run host state of a rule (nadam's momentum product, ...)
        self._slices = self._split()

    def lrs(self) -> list[float]:
        """The learning rate each run steps with."""
        return torch.cat([s.hyper["lr"] for _, s in self._slices]).tolist()

    def _slot(self, name: str, index: int) -> Tensor:
        slots = self._state.setdefault(name, [None] * len(self.params))
        if slots[index] is None:
            slots[index] = torch.zeros_like(self.params[index], memory_format=torch.contiguous_format)
        return slots[index]  # type: ignore[return-value]

    def _scalar(self, name: str, initial: float) -> Tensor:
        if name not in self._scalars:
            self._scalars[name] = torch.full((len(self.configs),), initial, dtype=torch.float64)
        return self._scalars[name]

    def _split(self) -> list[tuple[str, Slice]]:
        out, start = [], 0
        for stop in range(1, len(self.configs) + 1):
            if stop == len(self.configs) or self.configs[stop].name != self.configs[start].name:
                a, b = start, stop
                out.append((self.configs[a].name, Slice(
                    a, b, self.params, lambda name, i, a=a, b=b: self._slot(name, i)[a:b],
                    hyperparameters(self.configs[a:b]),
                    lambda name, initial, a=a, b=b: self._scalar(name, initial)[a:b])))
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
        self._scalars = {k: v[rows.cpu()] for k, v in self._scalars.items()}
        self._slices = self._split()

    def state_dict(self) -> dict[str, object]:
        """Step count and state tensors (plain tensors, lists and dicts: loadable with weights_only=True)."""
        return {"steps": self.steps, "state": self._state, "scalars": self._scalars}

    def load_state_dict(self, state: dict[str, object]) -> None:
        self.steps = int(state["steps"])  # type: ignore[call-overload]
        self._state = state["state"]  # type: ignore[assignment]
        self._scalars = state.get("scalars", {})  # type: ignore[assignment]
        self._slices = self._split()  # the slices' scalar views read the restored tensors


# --------------------------------------------------------------------------------------
# Newer optimizers, each checked against its reference (torch.optim, or the package its
# authors publish) in tests/test_stacked_optim.py; gradient clipping; the schedule-free
# switch between training and evaluation weights.
# --------------------------------------------------------------------------------------


class _Subset(Slice):
    """The same runs and state, restricted to the parameters `keep` accepts (muon's AdamW part)."""

    def __init__(self, s: Slice, keep: Callable[[Tensor], bool]) -> None:
        super().__init__(s.start, s.stop, s.params, s.state, s.hyper, s.scalar)
        self._keep = keep

    def tensors(self) -> list[tuple[int, Tensor, Tensor, bool]]:
        return [item for item in super().tensors() if self._keep(item[1])]


@OPTIMIZERS.register("nadam")
def nadam(s: Slice, t: int) -> None:
    """Adam with Nesterov momentum (Dozat 2016), momentum warming up with 0.96^(t * 0.004) as torch.optim.NAdam"""
    h = s.hyper
    b1, b2 = h["beta1"], h["beta2"]
    momentum_decay = 4e-3  # torch.optim.NAdam's default; not a dlbench setting
    mu = b1 * (1.0 - 0.5 * 0.96 ** (t * momentum_decay))
    mu_next = b1 * (1.0 - 0.5 * 0.96 ** ((t + 1) * momentum_decay))
    mu_product = s.scalar("mu_product", 1.0)
    # torch keeps the product in a float32 tensor: round the same way
    mu_product.copy_((mu_product.float() * mu.float()).double())
    c = s.columns(bc2=1 - b2 ** t, one_minus_beta1=1 - b1, beta2=b2, one_minus_beta2=1 - b2, eps=h["eps"],
                  weight_decay=h["weight_decay"], grad_coef=-h["lr"] * (1 - mu) / (1 - mu_product),
                  avg_coef=-h["lr"] * mu_next / (1 - mu_product * mu_next))
    for i, p, g, w in s.tensors():
        g = s.coupled_decay(p, g, w, c)
        exp_avg, exp_avg_sq = s.state("exp_avg", i), s.state("exp_avg_sq", i)
        exp_avg.lerp_(g, c("one_minus_beta1", p))
        exp_avg_sq.mul_(c("beta2", p)).addcmul_(g * c("one_minus_beta2", p), g)
        denom = (exp_avg_sq / c("bc2", p)).sqrt_().add_(c("eps", p))
        p.addcmul_(g / denom, c("grad_coef", p))
        p.addcmul_(exp_avg / denom, c("avg_coef", p))


@OPTIMIZERS.register("radam")
def radam(s: Slice, t: int) -> None:
    """Rectified Adam (Liu et al. 2020): momentum SGD until the variance estimate is trustworthy, then Adam"""
    h = s.hyper
    b1, b2 = h["beta1"], h["beta2"]
    bc2 = 1 - b2 ** t
    rho_inf = 2 / (1 - b2) - 1
    rho_t = rho_inf - 2 * t * b2 ** t / bc2
    adaptive = rho_t > 5.0  # per run: rectified Adam step, else the bias-corrected momentum alone
    rect = ((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t)).clamp_min(0).sqrt()
    c = s.columns(neg_lr=-h["lr"], bc1=1 - b1 ** t, one_minus_beta1=1 - b1, beta2=b2, one_minus_beta2=1 - b2,
                  eps=h["eps"], weight_decay=h["weight_decay"], bc2_sqrt=bc2.sqrt(), rect=rect,
                  adaptive=adaptive.double())
    use_adaptive = bool(adaptive.any())
    for i, p, g, w in s.tensors():
        g = s.coupled_decay(p, g, w, c)
        exp_avg, exp_avg_sq = s.state("exp_avg", i), s.state("exp_avg_sq", i)
        exp_avg.lerp_(g, c("one_minus_beta1", p))
        exp_avg_sq.mul_(c("beta2", p)).addcmul_(g * c("one_minus_beta2", p), g)
        step = exp_avg / c("bc1", p) * c("neg_lr", p)
        if use_adaptive:
            scale = c("bc2_sqrt", p) / exp_avg_sq.sqrt().add_(c("eps", p)) * c("rect", p)
            step = torch.where(c("adaptive", p) > 0, step * scale, step)
        p.add_(step)


@OPTIMIZERS.register("adamax")
def adamax(s: Slice, t: int) -> None:
    """Adam with the infinity norm: u = max(b2 u, |g| + eps); w -= lr / (1 - b1^t) m / u"""
    h = s.hyper
    b1, b2 = h["beta1"], h["beta2"]
    c = s.columns(neg_clr=-h["lr"] / (1 - b1 ** t), one_minus_beta1=1 - b1, beta2=b2, eps=h["eps"],
                  weight_decay=h["weight_decay"])
    for i, p, g, w in s.tensors():
        g = s.coupled_decay(p, g, w, c)
        exp_avg, exp_inf = s.state("exp_avg", i), s.state("exp_inf", i)
        exp_avg.lerp_(g, c("one_minus_beta1", p))
        torch.maximum(exp_inf.mul_(c("beta2", p)), g.abs().add_(c("eps", p)), out=exp_inf)
        p.addcmul_(exp_avg / exp_inf, c("neg_clr", p))


@OPTIMIZERS.register("adadelta")
def adadelta(s: Slice, t: int) -> None:
    """AdaDelta (Zeiler 2012): steps scaled by RMS(past steps) / RMS(gradients), both decaying with optimizer.rho"""
    h = s.hyper
    c = s.columns(neg_lr=-h["lr"], rho=h["rho"], one_minus_rho=1 - h["rho"], eps=h["eps"],
                  weight_decay=h["weight_decay"])
    for i, p, g, w in s.tensors():
        g = s.coupled_decay(p, g, w, c)
        square_avg, acc_delta = s.state("square_avg", i), s.state("acc_delta", i)
        square_avg.mul_(c("rho", p)).addcmul_(g * c("one_minus_rho", p), g)
        delta = acc_delta.add(c("eps", p)).sqrt_().div_(square_avg.add(c("eps", p)).sqrt_()).mul_(g)
        acc_delta.mul_(c("rho", p)).addcmul_(delta * c("one_minus_rho", p), delta)
        p.addcmul_(delta, c("neg_lr", p))


@OPTIMIZERS.register("lion")
def lion(s: Slice, t: int) -> None:
    """Lion (Chen et al. 2023): w -= lr sign(b1 m + (1 - b1) g); m = b2 m + (1 - b2) g; decoupled decay"""
    h = s.hyper
    b1, b2 = h["beta1"], h["beta2"]
    c = s.columns(neg_lr=-h["lr"], decay=1 - h["lr"] * h["weight_decay"], beta1=b1, one_minus_beta1=1 - b1,
                  beta2=b2, one_minus_beta2=1 - b2)
    for i, p, g, w in s.tensors():
        decay = s.decay(c, "decay", p, w, 1.0)
        if decay is not None:
            p.mul_(decay)
        exp_avg = s.state("exp_avg", i)
        update = (exp_avg * c("beta1", p)).addcmul_(g, c("one_minus_beta1", p)).sign_()
        p.addcmul_(update, c("neg_lr", p))
        exp_avg.mul_(c("beta2", p)).addcmul_(g, c("one_minus_beta2", p))


NEWTON_SCHULZ = (3.4445, -4.7750, 2.0315)  # torch.optim.Muon's quintic coefficients (Keller Jordan)
NEWTON_SCHULZ_STEPS = 5
MUON_EPS = 1e-7


def _orthogonalize(update: Tensor) -> Tensor:
    """Newton-Schulz iterations towards U V^T of each run's matrix [n, A, B], in bfloat16 as torch.optim.Muon."""
    a, b, c = NEWTON_SCHULZ
    x = update.bfloat16()
    tall = update.size(-2) > update.size(-1)
    if tall:
        x = x.mT
    x.div_(x.norm(dim=(-2, -1), keepdim=True).clamp(min=MUON_EPS))
    for _ in range(NEWTON_SCHULZ_STEPS):
        gram = x @ x.mT
        x = torch.baddbmm(x, torch.baddbmm(gram, gram, gram, beta=b, alpha=c), x, beta=a)
    return x.mT if tall else x


@OPTIMIZERS.register("muon")
def muon(s: Slice, t: int) -> None:
    """Muon (Jordan et al. 2024): Nesterov momentum, orthogonalized per weight matrix; biases and gains by AdamW

    As torch.optim.Muon with adjust_lr_fn="match_rms_adamw" (Moonshot's scaling, 0.2 sqrt(max(A, B))),
    so one lr and weight decay serve both parts. Conv kernels [out, in, k, k] are orthogonalized as
    [out, in k k] matrices (Keller Jordan's reference); torch.optim.Muon takes 2-D parameters only.
    Parameters with one dim per run (biases, norm gains) take the AdamW step, as Muon's authors advise.
    """
    h = s.hyper
    m = h["momentum"]
    c = s.columns(momentum=m, one_minus_momentum=1 - m, decay=1 - h["lr"] * h["weight_decay"])
    for i, p, g, w in s.tensors():
        if p.dim() <= 2:
            continue
        buf = s.state("momentum_buffer", i)
        buf.lerp_(g, c("one_minus_momentum", p))
        update = g.lerp(buf, c("momentum", p))  # Nesterov: g + m (buf - g)
        matrix = update.flatten(2)
        adjusted = s.columns(neg_lr=-h["lr"] * 0.2 * max(matrix.shape[1:]) ** 0.5)  # RMS matched to AdamW's
        decay = s.decay(c, "decay", p, w, 1.0)
        if decay is not None:
            p.mul_(decay)
        p.addcmul_(_orthogonalize(matrix).view_as(p).to(p.dtype), adjusted("neg_lr", p))
    _adam(_Subset(s, lambda p: p.dim() <= 2), t, decoupled=True)


@OPTIMIZERS.register("adamw_schedulefree")
def adamw_schedulefree(s: Slice, t: int) -> None:
    """Schedule-free AdamW (Defazio et al. 2024): no decay schedule needed; evaluates an average of the iterates

    As schedulefree.AdamWScheduleFree (r = 0, weight_lr_power = 2): the parameters hold the training
    point y; `to_eval_weights` / `to_train_weights` swap in the averaged point x for evaluation.
    Its warmup is the run's schedule.warmup (the lr column the rule reads each step).
    """
    h = s.hyper
    b1, b2, lr = h["beta1"], h["beta2"], h["lr"]
    lr_max = s.scalar("sf_lr_max", -1.0)
    torch.maximum(lr_max, lr, out=lr_max)
    weight = lr_max ** 2  # (k + 1)^r lr_max^weight_lr_power with r = 0, power 2
    weight_sum = s.scalar("sf_weight_sum", 0.0)
    weight_sum.add_(weight)
    ckp1 = torch.where(weight_sum > 0, weight / weight_sum, 0.0)
    c = s.columns(bc2=1 - b2 ** t, beta2=b2, one_minus_beta2=1 - b2, eps=h["eps"], weight_decay=h["weight_decay"],
                  ckp1=ckp1, y_coef=lr * (b1 * (1 - ckp1) - 1), neg_lr=-lr)
    for i, p, g, w in s.tensors():
        z = s.state("z", i)
        if t == 1:  # schedulefree starts z at the initial parameters
            z.copy_(p)
        exp_avg_sq = s.state("exp_avg_sq", i)
        exp_avg_sq.mul_(c("beta2", p)).addcmul_(g * c("one_minus_beta2", p), g)
        normalized = g / (exp_avg_sq / c("bc2", p)).sqrt_().add_(c("eps", p))
        wd = s.decay(c, "weight_decay", p, w, 0.0)
        if wd is not None:
            normalized.addcmul_(p, wd)
        p.lerp_(z, c("ckp1", p))
        p.addcmul_(normalized, c("y_coef", p))
        z.addcmul_(normalized, c("neg_lr", p))


def _schedulefree_weights(opt: StackedOptimizer, to_eval: bool) -> None:
    for name, s in opt._slices:
        if name != "adamw_schedulefree" or "z" not in opt._state:
            continue
        b1 = s.hyper["beta1"]
        c = s.columns(weight=1 - 1 / b1 if to_eval else 1 - b1)
        for i, stack in enumerate(s.params):  # every parameter: gradients are gone at evaluation
            rows = stack[s.start:s.stop]
            rows.lerp_(s.state("z", i), c("weight", rows))


@torch.no_grad()
def to_eval_weights(opt: StackedOptimizer) -> None:
    """Before evaluating: schedule-free runs' parameters become the averaged point x (others unchanged)."""
    _schedulefree_weights(opt, to_eval=True)


@torch.no_grad()
def to_train_weights(opt: StackedOptimizer) -> None:
    """After evaluating: schedule-free runs' parameters return to the training point y."""
    _schedulefree_weights(opt, to_eval=False)


@torch.no_grad()
def clip_grad_norms_(grads: list[Tensor], max_norms: Tensor) -> Tensor:
    """Scale each run's gradients to global norm <= max_norms[r] (inf: no clipping); returns the norms before.

    Run r's norm is the 2-norm over all its gradient rows, computed as torch.nn.utils.clip_grad_norm_
    computes it for that run alone (norm of the per-tensor norms), and so is the factor
    max_norm / (norm + 1e-6), capped at 1.
    """
    per_tensor = torch.stack([torch.linalg.vector_norm(g.flatten(1), dim=1) for g in grads])
    norms = torch.linalg.vector_norm(per_tensor, dim=0)
    factor = (max_norms.to(norms) / (norms + 1e-6)).clamp_(max=1.0)
    for g in grads:
        g.mul_(factor.view(-1, *[1] * (g.dim() - 1)))
    return norms


def set_lr_multipliers(opt: StackedOptimizer, multipliers: Tensor) -> Tensor:
    """Run r steps with optimizer.lr * multipliers[r] from now on (a schedule); returns the lr per run."""
    lr = torch.tensor([c.lr for c in opt.configs], dtype=torch.float64) * multipliers.to(torch.float64).cpu()
    for _, s in opt._slices:
        s.hyper["lr"].copy_(lr[s.start:s.stop])
    return lr
