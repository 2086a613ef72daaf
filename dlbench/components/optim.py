"""Optimizers (torch.optim underneath), the L1 penalty and input-noise injection.

Each registry entry has an info record saying which hyperparameters it reads;
`optimizer.momentum` left empty means the optimizer's usual value (0.9 for
momentum / nesterov, 0 for rmsprop). Weight decay and the L1 penalty apply to
weights (tensors with 2+ dims), never to biases or normalization parameters.
Weight decay is L2 added to the gradient (coupled) for every optimizer but
adamw, where it is decoupled (Loshchilov & Hutter).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Iterable

import torch
from torch import nn

from dlbench.components.registry import Registry

if TYPE_CHECKING:
    from dlbench.config.schema import OptimizerConfig

Builder = Callable[[list[dict], "OptimizerConfig"], torch.optim.Optimizer]
OPTIMIZERS: Registry[Builder] = Registry("optimizer")


def momentum_of(cfg: "OptimizerConfig") -> float:
    default = OPTIMIZERS[cfg.name].info.get("momentum", 0.0)
    return default if cfg.momentum is None else cfg.momentum


@OPTIMIZERS.register("sgd", lr=0.1, hyper=("lr", "weight_decay"))
def sgd(groups: list[dict], cfg: "OptimizerConfig") -> torch.optim.Optimizer:
    """plain (stochastic) gradient descent: w -= lr * g"""
    return torch.optim.SGD(groups, lr=cfg.lr)


@OPTIMIZERS.register("momentum", lr=0.01, momentum=0.9, hyper=("lr", "momentum", "weight_decay"))
def momentum(groups: list[dict], cfg: "OptimizerConfig") -> torch.optim.Optimizer:
    """heavy-ball momentum: v = m v + g; w -= lr v"""
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=momentum_of(cfg))


@OPTIMIZERS.register("nesterov", lr=0.01, momentum=0.9, hyper=("lr", "momentum", "weight_decay"))
def nesterov(groups: list[dict], cfg: "OptimizerConfig") -> torch.optim.Optimizer:
    """Nesterov momentum: the gradient step looks ahead along the velocity"""
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=momentum_of(cfg), nesterov=True)


@OPTIMIZERS.register("adagrad", lr=0.01, hyper=("lr", "eps", "weight_decay"))
def adagrad(groups: list[dict], cfg: "OptimizerConfig") -> torch.optim.Optimizer:
    """AdaGrad: per-weight steps shrink with the sum of squared gradients"""
    return torch.optim.Adagrad(groups, lr=cfg.lr, eps=cfg.eps)


@OPTIMIZERS.register("rmsprop", lr=0.001, momentum=0.0, hyper=("lr", "alpha", "eps", "momentum", "weight_decay"))
def rmsprop(groups: list[dict], cfg: "OptimizerConfig") -> torch.optim.Optimizer:
    """RMSprop: steps scaled by a running mean (decay optimizer.alpha) of squared gradients"""
    return torch.optim.RMSprop(groups, lr=cfg.lr, alpha=cfg.alpha, eps=cfg.eps, momentum=momentum_of(cfg))


@OPTIMIZERS.register("adam", lr=0.001, hyper=("lr", "betas", "eps", "weight_decay"))
def adam(groups: list[dict], cfg: "OptimizerConfig") -> torch.optim.Optimizer:
    """Adam: momentum + RMSprop scaling with bias correction; weight decay is L2 in the gradient"""
    return torch.optim.Adam(groups, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps)


@OPTIMIZERS.register("adamw", lr=0.001, hyper=("lr", "betas", "eps", "weight_decay"))
def adamw(groups: list[dict], cfg: "OptimizerConfig") -> torch.optim.Optimizer:
    """AdamW: Adam with decoupled weight decay (w -= lr * wd * w)"""
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps)


def is_weight(p: torch.Tensor) -> bool:
    return p.dim() > 1


def build(model: nn.Module, cfg: "OptimizerConfig") -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if is_weight(p)], "weight_decay": cfg.weight_decay},
        {"params": [p for p in params if not is_weight(p)], "weight_decay": 0.0},
    ]
    return OPTIMIZERS[cfg.name].builder([g for g in groups if g["params"]], cfg)


def l1_penalty(params: Iterable[torch.Tensor]) -> torch.Tensor:
    """sum of |w| over the weights (not biases)"""
    return torch.stack([p.abs().sum() for p in params if is_weight(p)]).sum()
