"""Optimizers: update rules written once for a stack of runs, with per-run hyperparameters.

A stack holds R runs; every parameter tensor has the runs along dim 0. A rule updates
a `Slice`: the contiguous rows [start, stop) of the runs that use it, with one column
per hyperparameter (a value per run). Runs are ordered so that the runs of one
optimizer are contiguous, which makes every update an in-place op on a view.

An optimizer is a chain of steps, as in optax's `chain(clip, coupled_decay, scale_by_adam,
decoupled_decay, scale_by_lr)`: each parameter's gradient goes through the steps in turn,
and the last one moves the parameter. `CHAINS` (below the steps) says which steps each
optimizer takes. The steps every optimizer shares are written once here:

- clipping: `clip_grad_norms_`, before any chain (the engine calls it: a run's norm needs
  all its gradients at once);
- weight decay: `coupled_decay` (L2 added to the gradient, before the rule), or
  `decoupled_decay` (w *= 1 - lr wd, Loshchilov & Hutter), or `add_decayed_weights`
  (wd w added to the rule's output, schedule-free's placement). Which tensors decay is
  decided in one place (`_decay_column`): weights (2+ dims per run, `is_weight`), and
  biases and normalization parameters too in the runs with `optimizer.decay_biases`;
- the lr: `scale_by_lr`, p += -lr * direction (a rule that folds a correction into its
  step size, as torch does for Adam's bias correction, names its own column).

A rule (scale_by_adam, ...) is its own step only: the single-tensor `torch.optim` update
with per-run columns in place of Python scalars; tests/test_stacked_optim.py checks every
registered rule against its `torch.optim` (or reference package) run by run.

Adding an optimizer = its record in `dlbench.catalog.builtin` (the settings it reads, with
their defaults) and a rule registered against that name: a chain,

    def _my_columns(s: Slice) -> dict[str, Tensor]:   # per-run coefficients at step s.t (from 1)
        return {"beta": s.hyper["beta"]}

    @step(_my_columns)
    def scale_by_mine(s: Slice, c: Columns, x: Param, g: Tensor) -> Update:  # x: index i, rows p, gradient
        buf = s.state("mine", x.i)  # zero-initialized on first use, kept across steps
        buf.mul_(c("beta", x.p)).add_(g)
        return buf                  # the direction: scale_by_lr steps by -lr * buf

    OPTIMIZERS.register("mine")(chain(coupled_decay, scale_by_mine, scale_by_lr))

or any function (s: Slice, t: int) -> None that updates s.tensors() in place.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

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
        self._base: dict[str, Tensor] = {}
        if values:
            packed = torch.stack(list(values.values())).to(like.dtype)
            # to a GPU pinned and asynchronous: a plain copy would wait for every kernel queued before it
            packed = packed.pin_memory().to(like.device, non_blocking=True) if like.is_cuda else packed.to(like.device)
            self._base = dict(zip(values, packed.unbind()))
        self._views: dict[tuple[str, int], Tensor] = {}

    def __contains__(self, name: str) -> bool:
        return name in self._base

    def __call__(self, name: str, like: Tensor) -> Tensor:
        key = (name, like.dim())
        if key not in self._views:
            self._views[key] = self._base[name].view(-1, *[1] * (like.dim() - 1))
        return self._views[key]


class Param(NamedTuple):
    """One parameter's rows in a slice: its index in the stack's parameter list, the rows, their gradient."""

    i: int
    p: Tensor
    g: Tensor
    weight: bool  # a weight rather than a bias or norm parameter (is_weight)


@dataclass
class Slice:
    """The runs of one optimizer: rows [start, stop) of every stacked tensor."""

    start: int
    stop: int
    params: list[Tensor]  # full stacks; the rule updates rows [start, stop)
    state: Callable[[str, int], Tensor]  # (state name, param index) -> rows [start, stop) of a zero-initialized stack
    hyper: dict[str, Tensor]  # hyperparameter -> float64 [n] on the host
    # (name, initial value) -> per-run float64 [n] host state (nadam, schedule-free)
    scalar: Callable[[str, float], Tensor]
    # (name, param index) -> rows [start, stop) of a work buffer shaped like the parameter: a rule's
    # intermediate written with out= / in place, so a step allocates nothing (not state: never saved)
    scratch: Callable[[str, int], Tensor]
    t: int = 0  # the step being taken, from 1 (set by the chain)
    configs: list[Any] = field(default_factory=list)  # the runs' optimizer sections (a torch.optim plugin's kwargs)

    def __post_init__(self) -> None:
        wd = self.hyper.get("weight_decay")
        self.decays = wd is not None and bool((wd != 0).any())
        self.decays_biases = self.decays and bool(self.hyper["decay_biases"].any())

    def tensors(self) -> list[Param]:
        """Every parameter with a gradient: its rows in this slice."""
        return [Param(i, p[self.start:self.stop], p.grad[self.start:self.stop], is_weight(p))
                for i, p in enumerate(self.params) if p.grad is not None]

    def columns(self, **values: Tensor) -> Columns:
        return Columns(values, self.params[0])


# --------------------------------------------------------------------------------------
# Steps and chains
# --------------------------------------------------------------------------------------

# What flows between steps: a direction that scale_by_lr multiplies by -lr, or directions
# each with the name of its own step-size column (Adam's bias correction folded into its
# step size, nadam's two terms, muon's lr adjusted per matrix).
Terms = tuple[tuple[Tensor, str], ...]
Update = Tensor | Terms


def no_columns(s: Slice) -> dict[str, Tensor]:
    return {}


# A step's update: (slice, coefficients, parameter, what the steps before it gave) -> what it gives.
# The gradient goes into the first step; steps before the rule take and give a gradient (Tensor),
# the rule gives an Update, and the last step moves the parameter.
StepUpdate = Callable[[Slice, Columns, Param, Any], Any]


@dataclass(frozen=True)
class Step:
    """One stage of an update rule: per-run coefficients for the slice, then each parameter's update."""

    name: str
    columns: Callable[[Slice], dict[str, Tensor]]  # called once per step of the optimizer; may update host state
    update: StepUpdate


def step(columns: Callable[[Slice], dict[str, Tensor]] = no_columns) -> Callable[[StepUpdate], Step]:
    """Decorator: a step from its update function and the function giving the columns it reads."""
    return lambda update: Step(update.__name__, columns, update)


Rule = Callable[[Slice, int], None]  # (slice, step number starting at 1)


def _merged_columns(steps: tuple[Step, ...], s: Slice) -> dict[str, Tensor]:
    values: dict[str, Tensor] = {}
    for st in steps:
        values.update(st.columns(s))  # a name two steps share holds the same value (neg_lr, decay)
    return values


@dataclass(frozen=True)
class Chain:
    """A rule: each parameter's gradient passed through `steps` in turn."""

    steps: tuple[Step, ...]

    def __call__(self, s: Slice, t: int) -> None:
        s.t = t
        c = s.columns(**_merged_columns(self.steps, s))  # one host -> device copy for the whole chain
        for x in s.tensors():
            u: Any = x.g
            for st in self.steps:
                u = st.update(s, c, x, u)


def chain(*steps: Step) -> Chain:
    return Chain(steps)


def by_tensor(weights: tuple[Step, ...], others: tuple[Step, ...]) -> Step:
    """Weights take the steps `weights`, biases and norm parameters the steps `others` (muon)."""

    def update(s: Slice, c: Columns, x: Param, u: Any) -> Any:
        for st in weights if x.weight else others:
            u = st.update(s, c, x, u)
        return u

    return Step("by_tensor", lambda s: _merged_columns(weights + others, s), update)


# --------------------------------------------------------------------------------------
# The steps every optimizer shares: weight decay (which tensors, coupled or decoupled), the lr
# --------------------------------------------------------------------------------------


def _decay_columns(s: Slice, **values: Tensor) -> dict[str, Tensor]:
    if not s.decays:
        return {}
    return {**values, "decay_biases": s.hyper["decay_biases"]} if s.decays_biases else values


def _decay_column(c: Columns, name: str, x: Param, off: float) -> Tensor | None:
    """The per-run weight-decay column `name` for x, or None where no run of the slice decays x.

    Weights decay in every run; biases and norm parameters only in the runs with
    optimizer.decay_biases (the others get `off`, the value that leaves x as it is).
    This is the one place that decides which tensors weight decay touches.
    """
    if name not in c or not (x.weight or "decay_biases" in c):
        return None
    if x.weight:
        return c(name, x.p)
    return torch.where(c("decay_biases", x.p) > 0, c(name, x.p), off)


@step(lambda s: _decay_columns(s, weight_decay=s.hyper["weight_decay"]))
def coupled_decay(s: Slice, c: Columns, x: Param, g: Tensor) -> Tensor:
    """L2 in the gradient (g + wd * w), like torch.optim's `grad.add(param, alpha=weight_decay)`."""
    wd = _decay_column(c, "weight_decay", x, 0.0)
    return g if wd is None else torch.addcmul(g, x.p, wd)


@step(lambda s: _decay_columns(s, decay=1 - s.hyper["lr"] * s.hyper["weight_decay"]))
def decoupled_decay(s: Slice, c: Columns, x: Param, u: Update) -> Update:
    """Decoupled weight decay (Loshchilov & Hutter): w *= 1 - lr * wd, before the rule's step, as torch.optim.AdamW."""
    decay = _decay_column(c, "decay", x, 1.0)
    if decay is not None:
        x.p.mul_(decay)
    return u


@step(lambda s: _decay_columns(s, weight_decay=s.hyper["weight_decay"]))
def add_decayed_weights(s: Slice, c: Columns, x: Param, u: Tensor) -> Tensor:
    """wd * w added to the rule's output, so the lr scales both (optax's placement; schedule-free's)."""
    wd = _decay_column(c, "weight_decay", x, 0.0)
    if wd is not None:
        u.addcmul_(x.p, wd)  # the rule's output is a fresh tensor
    return u


@step(lambda s: {"neg_lr": -s.hyper["lr"]})
def scale_by_lr(s: Slice, c: Columns, x: Param, u: Update) -> Update:
    """The parameter moves: w += -lr * direction, or each term's own step size times its direction."""
    if isinstance(u, tuple):
        for direction, column in u:
            x.p.addcmul_(direction, c(column, x.p))
    else:
        x.p.addcmul_(u, c("neg_lr", x.p))
    return u


# --------------------------------------------------------------------------------------
# The rules: each its own step, the single-tensor torch.optim update with per-run columns
# --------------------------------------------------------------------------------------


def _momentum_columns(s: Slice) -> dict[str, Tensor]:
    m = s.hyper["momentum"]
    # no run with momentum (sgd's default): no buffer; m = 0 would give the same step, buf = g
    return {"momentum": m} if bool((m != 0).any()) else {}


def heavy_ball(nesterov: bool) -> Step:
    """Momentum as torch.optim.SGD: v = m v + g, then the step v, or g + m v (Nesterov)."""

    def update(s: Slice, c: Columns, x: Param, g: Tensor) -> Update:
        if "momentum" not in c:
            return g
        buf = s.state("momentum_buffer", x.i)
        buf.mul_(c("momentum", x.p)).add_(g)  # from zeros, the first step gives buf = g as torch.optim does
        return torch.addcmul(g, buf, c("momentum", x.p)) if nesterov else buf

    return Step("nesterov_momentum" if nesterov else "heavy_ball_momentum", _momentum_columns, update)


@step(lambda s: {"eps": s.hyper["eps"]})
def scale_by_adagrad(s: Slice, c: Columns, x: Param, g: Tensor) -> Update:
    """AdaGrad: G += g^2; direction g / (sqrt(G) + eps)"""
    total = s.state("sum", x.i)
    total.addcmul_(g, g)
    denom = torch.sqrt(total, out=s.scratch("direction", x.i)).add_(c("eps", x.p))
    return torch.div(g, denom, out=denom)


def _rmsprop_columns(s: Slice) -> dict[str, Tensor]:
    h = s.hyper
    return {"alpha": h["alpha"], "one_minus_alpha": 1 - h["alpha"], "eps": h["eps"], "momentum": h["momentum"]}


@step(_rmsprop_columns)
def scale_by_rmsprop(s: Slice, c: Columns, x: Param, g: Tensor) -> Update:
    """RMSprop: E = a E + (1 - a) g^2; v = m v + g / (sqrt(E) + eps); direction v"""
    square_avg = s.state("square_avg", x.i)
    square_avg.mul_(c("alpha", x.p)).addcmul_(g * c("one_minus_alpha", x.p), g)
    avg = square_avg.sqrt().add_(c("eps", x.p))
    # torch.optim skips the buffer when momentum == 0; m = 0 gives the same step: v = g / avg
    buf = s.state("momentum_buffer", x.i)
    return buf.mul_(c("momentum", x.p)).addcdiv_(g, avg)


def _adam_columns(s: Slice) -> dict[str, Tensor]:
    h, t = s.hyper, s.t
    b1, b2 = h["beta1"], h["beta2"]
    # torch folds the first bias correction into the step size, and divides by the Python scalar
    # bc2_sqrt as a multiplication by its float32 reciprocal
    return {"adam_step_size": -h["lr"] / (1 - b1 ** t), "inv_bc2_sqrt": (1 / ((1 - b2 ** t) ** 0.5).float()).double(),
            "one_minus_beta1": 1 - b1, "beta2": b2, "one_minus_beta2": 1 - b2, "eps": h["eps"]}


def _moments(s: Slice, c: Columns, x: Param, g: Tensor) -> tuple[Tensor, Tensor]:
    """Adam's moment estimates (adam, nadam, radam), updated in place and returned:
    m <- m + (1 - beta1)(g - m), v <- beta2 v + (1 - beta2) g^2 (torch.optim's operation order)."""
    exp_avg, exp_avg_sq = s.state("exp_avg", x.i), s.state("exp_avg_sq", x.i)
    exp_avg.lerp_(g, c("one_minus_beta1", x.p))
    exp_avg_sq.mul_(c("beta2", x.p)).addcmul_(torch.mul(g, c("one_minus_beta2", x.p), out=s.scratch("g", x.i)), g)
    return exp_avg, exp_avg_sq


@step(_adam_columns)
def scale_by_adam(s: Slice, c: Columns, x: Param, g: Tensor) -> Update:
    """Adam: momentum + RMSprop scaling with bias correction"""
    p = x.p
    exp_avg, exp_avg_sq = _moments(s, c, x, g)
    denom = torch.sqrt(exp_avg_sq, out=s.scratch("direction", x.i)).mul_(c("inv_bc2_sqrt", p)).add_(c("eps", p))
    return ((torch.div(exp_avg, denom, out=denom), "adam_step_size"),)


NADAM_MOMENTUM_DECAY = 4e-3  # torch.optim.NAdam's default; not a dlbench setting


def _nadam_columns(s: Slice) -> dict[str, Tensor]:
    h, t = s.hyper, s.t
    b1, b2 = h["beta1"], h["beta2"]
    mu = b1 * (1.0 - 0.5 * 0.96 ** (t * NADAM_MOMENTUM_DECAY))
    mu_next = b1 * (1.0 - 0.5 * 0.96 ** ((t + 1) * NADAM_MOMENTUM_DECAY))
    mu_product = s.scalar("mu_product", 1.0)
    # torch keeps the product in a float32 tensor: round the same way
    mu_product.copy_((mu_product.float() * mu.float()).double())
    return {"bc2": 1 - b2 ** t, "one_minus_beta1": 1 - b1, "beta2": b2, "one_minus_beta2": 1 - b2, "eps": h["eps"],
            "grad_step_size": -h["lr"] * (1 - mu) / (1 - mu_product),
            "avg_step_size": -h["lr"] * mu_next / (1 - mu_product * mu_next)}


@step(_nadam_columns)
def scale_by_nadam(s: Slice, c: Columns, x: Param, g: Tensor) -> Update:
    """Adam with Nesterov momentum, warming up with 0.96^(t * 0.004): a gradient term and a momentum term"""
    p = x.p
    exp_avg, exp_avg_sq = _moments(s, c, x, g)
    denom = (exp_avg_sq / c("bc2", p)).sqrt_().add_(c("eps", p))
    return ((g / denom, "grad_step_size"), (exp_avg / denom, "avg_step_size"))


def _radam_columns(s: Slice) -> dict[str, Tensor]:
    h, t = s.hyper, s.t
    b1, b2 = h["beta1"], h["beta2"]
    bc2 = 1 - b2 ** t
    rho_inf = 2 / (1 - b2) - 1
    rho_t = rho_inf - 2 * t * b2 ** t / bc2
    adaptive = rho_t > 5.0  # per run: rectified Adam step, else the bias-corrected momentum alone
    values = {"bc1": 1 - b1 ** t, "one_minus_beta1": 1 - b1, "beta2": b2, "one_minus_beta2": 1 - b2}
    if bool(adaptive.any()):
        rect = ((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t)).clamp_min(0).sqrt()
        values.update(eps=h["eps"], bc2_sqrt=bc2.sqrt(), rect=rect, adaptive=adaptive.double())
    return values


@step(_radam_columns)
def scale_by_radam(s: Slice, c: Columns, x: Param, g: Tensor) -> Update:
    """Rectified Adam: the bias-corrected momentum until the variance estimate is trustworthy, then Adam's step"""
    p = x.p
    exp_avg, exp_avg_sq = _moments(s, c, x, g)
    direction = exp_avg / c("bc1", p)
    if "adaptive" in c:
        scale = c("bc2_sqrt", p) / exp_avg_sq.sqrt().add_(c("eps", p)) * c("rect", p)
        direction = torch.where(c("adaptive", p) > 0, direction * scale, direction)
    return direction


def _adamax_columns(s: Slice) -> dict[str, Tensor]:
    h = s.hyper
    b1 = h["beta1"]
    return {"adamax_step_size": -h["lr"] / (1 - b1 ** s.t), "one_minus_beta1": 1 - b1, "beta2": h["beta2"],
            "eps": h["eps"]}


@step(_adamax_columns)
def scale_by_adamax(s: Slice, c: Columns, x: Param, g: Tensor) -> Update:
    """Adam with the infinity norm: u = max(b2 u, |g| + eps); direction m / u, step size lr / (1 - b1^t)"""
    p = x.p
    exp_avg, exp_inf = s.state("exp_avg", x.i), s.state("exp_inf", x.i)
    exp_avg.lerp_(g, c("one_minus_beta1", p))
    torch.maximum(exp_inf.mul_(c("beta2", p)), g.abs().add_(c("eps", p)), out=exp_inf)
    return ((exp_avg / exp_inf, "adamax_step_size"),)


@step(lambda s: {"rho": s.hyper["rho"], "one_minus_rho": 1 - s.hyper["rho"], "eps": s.hyper["eps"]})
def scale_by_adadelta(s: Slice, c: Columns, x: Param, g: Tensor) -> Update:
    """AdaDelta: steps scaled by RMS(past steps) / RMS(gradients), both decaying with rho"""
    p = x.p
    square_avg, acc_delta = s.state("square_avg", x.i), s.state("acc_delta", x.i)
    square_avg.mul_(c("rho", p)).addcmul_(g * c("one_minus_rho", p), g)
    delta = acc_delta.add(c("eps", p)).sqrt_().div_(square_avg.add(c("eps", p)).sqrt_()).mul_(g)
    acc_delta.mul_(c("rho", p)).addcmul_(delta * c("one_minus_rho", p), delta)
    return delta


def _lion_columns(s: Slice) -> dict[str, Tensor]:
    b1, b2 = s.hyper["beta1"], s.hyper["beta2"]
    return {"beta1": b1, "one_minus_beta1": 1 - b1, "beta2": b2, "one_minus_beta2": 1 - b2}


@step(_lion_columns)
def scale_by_lion(s: Slice, c: Columns, x: Param, g: Tensor) -> Update:
    """Lion: direction sign(b1 m + (1 - b1) g), then m = b2 m + (1 - b2) g"""
    p = x.p
    exp_avg = s.state("exp_avg", x.i)
    direction = (exp_avg * c("beta1", p)).addcmul_(g, c("one_minus_beta1", p)).sign_()
    exp_avg.mul_(c("beta2", p)).addcmul_(g, c("one_minus_beta2", p))
    return direction


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


def _muon_columns(s: Slice) -> dict[str, Tensor]:
    m, lr = s.hyper["momentum"], s.hyper["lr"]
    values = {"momentum": m, "one_minus_momentum": 1 - m}
    for i, p in enumerate(s.params):
        if is_weight(p):  # the lr of an [A, B] matrix, RMS matched to AdamW's: 0.2 sqrt(max(A, B))
            values[f"muon_step_size_{i}"] = -lr * 0.2 * max(p.shape[1], p[0].flatten(1).shape[1]) ** 0.5
    return values


@step(_muon_columns)
def scale_by_muon(s: Slice, c: Columns, x: Param, g: Tensor) -> Update:
    """Muon: Nesterov momentum, orthogonalized per weight matrix

    As torch.optim.Muon with adjust_lr_fn="match_rms_adamw" (Moonshot's scaling, 0.2 sqrt(max(A, B))),
    so one lr and weight decay serve both Muon and the AdamW step of biases and gains. Conv kernels
    [out, in, k, k] are orthogonalized as [out, in k k] matrices (Keller Jordan's reference);
    torch.optim.Muon takes 2-D parameters only.
    """
    buf = s.state("momentum_buffer", x.i)
    buf.lerp_(g, c("one_minus_momentum", x.p))
    direction = g.lerp(buf, c("momentum", x.p))  # Nesterov: g + m (buf - g)
    return ((_orthogonalize(direction.flatten(2)).view_as(x.p).to(x.p.dtype), f"muon_step_size_{x.i}"),)


def _schedulefree_columns(s: Slice) -> dict[str, Tensor]:
    h = s.hyper
    b1, b2, lr = h["beta1"], h["beta2"], h["lr"]
    lr_max = s.scalar("sf_lr_max", -1.0)
    torch.maximum(lr_max, lr, out=lr_max)
    weight = lr_max ** 2  # (k + 1)^r lr_max^weight_lr_power with r = 0, power 2
    weight_sum = s.scalar("sf_weight_sum", 0.0)
    weight_sum.add_(weight)
    ckp1 = torch.where(weight_sum > 0, weight / weight_sum, 0.0)
    return {"bc2": 1 - b2 ** s.t, "beta2": b2, "one_minus_beta2": 1 - b2, "eps": h["eps"], "ckp1": ckp1,
            "y_coef": lr * (b1 * (1 - ckp1) - 1), "neg_lr": -lr}


@step(_schedulefree_columns)
def scale_by_schedulefree_adam(s: Slice, c: Columns, x: Param, g: Tensor) -> Update:
    """Schedule-free AdamW's direction: the gradient over the bias-corrected RMS (no momentum buffer)"""
    exp_avg_sq = s.state("exp_avg_sq", x.i)
    exp_avg_sq.mul_(c("beta2", x.p)).addcmul_(g * c("one_minus_beta2", x.p), g)
    return g / (exp_avg_sq / c("bc2", x.p)).sqrt_().add_(c("eps", x.p))


@step()
def schedulefree_interpolate(s: Slice, c: Columns, x: Param, u: Tensor) -> Tensor:
    """Schedule-free's own move (Defazio et al. 2024), in place of scale_by_lr: z steps by -lr u; the
    parameters hold y, interpolated towards z with weight ckp1 and stepped by lr (b1 (1 - ckp1) - 1) u

    As schedulefree.AdamWScheduleFree (r = 0, weight_lr_power = 2); `to_eval_weights` /
    `to_train_weights` swap in the averaged point x for evaluation. Its warmup is the run's
    schedule.warmup (the lr column the rule reads each step).
    """
    p = x.p
    z = s.state("z", x.i)
    if s.t == 1:  # schedulefree starts z at the initial parameters
        z.copy_(p)
    p.lerp_(z, c("ckp1", p))
    p.addcmul_(u, c("y_coef", p))
    z.addcmul_(u, c("neg_lr", p))
    return u


# --------------------------------------------------------------------------------------
# Every optimizer as its chain: where weight decay goes (coupled into the gradient, or
# decoupled from it), the rule, and how the parameter moves. Gradient clipping comes
# before every chain (`clip_grad_norms_`).
# --------------------------------------------------------------------------------------

CHAINS: dict[str, Rule] = {
    "sgd":                chain(coupled_decay, heavy_ball(nesterov=False), scale_by_lr),  # momentum 0 by default
    "momentum":           chain(coupled_decay, heavy_ball(nesterov=False), scale_by_lr),
    "nesterov":           chain(coupled_decay, heavy_ball(nesterov=True), scale_by_lr),
    "adagrad":            chain(coupled_decay, scale_by_adagrad, scale_by_lr),
    "rmsprop":            chain(coupled_decay, scale_by_rmsprop, scale_by_lr),
    "adam":               chain(coupled_decay, scale_by_adam, scale_by_lr),
    "adamw":              chain(scale_by_adam, decoupled_decay, scale_by_lr),
    "nadam":              chain(coupled_decay, scale_by_nadam, scale_by_lr),
    "radam":              chain(coupled_decay, scale_by_radam, scale_by_lr),
    "adamax":             chain(coupled_decay, scale_by_adamax, scale_by_lr),
    "adadelta":           chain(coupled_decay, scale_by_adadelta, scale_by_lr),
    "lion":               chain(scale_by_lion, decoupled_decay, scale_by_lr),
    # weight matrices by Muon, biases and norm parameters by AdamW (as Muon's authors advise)
    "muon":               chain(by_tensor(weights=(scale_by_muon, decoupled_decay),
                                          others=(scale_by_adam, decoupled_decay)), scale_by_lr),
    "adamw_schedulefree": chain(scale_by_schedulefree_adam, add_decayed_weights, schedulefree_interpolate),
}

OPTIMIZERS: Kind[Rule] = CATALOG["optimizer"]
for _name, _rule in CHAINS.items():
    OPTIMIZERS.register(_name)(_rule)


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
        self._scratch: dict[tuple[str, int], Tensor] = {}  # rules' work buffers (Slice.scratch)
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

    def _slot_rows(self, a: int, b: int, name: str, i: int) -> Tensor:
        return self._slot(name, i)[a:b]

    def _scratch_rows(self, a: int, b: int, name: str, i: int) -> Tensor:
        if (name, i) not in self._scratch:
            self._scratch[(name, i)] = torch.empty_like(self.params[i], memory_format=torch.contiguous_format)
        return self._scratch[(name, i)][a:b]

    def _scalar_rows(self, a: int, b: int, name: str, initial: float) -> Tensor:
        return self._scalar(name, initial)[a:b]

    def _split(self) -> list[tuple[str, Slice]]:
        out, start = [], 0
        for stop in range(1, len(self.configs) + 1):
            if stop == len(self.configs) or self.configs[stop].name != self.configs[start].name:
                a, b = start, stop
                out.append((self.configs[a].name, Slice(
                    a, b, self.params, functools.partial(self._slot_rows, a, b), hyperparameters(self.configs[a:b]),
                    functools.partial(self._scalar_rows, a, b), functools.partial(self._scratch_rows, a, b),
                    configs=self.configs[a:b])))
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
        self._scratch = {}
        self._slices = self._split()

    def state_dict(self) -> dict[str, object]:
        """Step count and state tensors (plain tensors, lists and dicts: loadable with weights_only=True)."""
        return {"steps": self.steps, "state": self._state, "scalars": self._scalars}

    def load_state_dict(self, state: dict[str, object]) -> None:
        self.steps = int(state["steps"])  # type: ignore[call-overload]
        self._state = state["state"]  # type: ignore[assignment]
        self._scalars = state.get("scalars", {})  # type: ignore[assignment]
        self._slices = self._split()  # the slices' scalar views read the restored tensors


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
