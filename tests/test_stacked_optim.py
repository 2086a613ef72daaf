"""Every registered update rule matches its torch.optim reference run by run, over many steps."""

from __future__ import annotations

from typing import Any, Callable

import pytest
import torch
from torch import nn
from torch.func import stack_module_state

from dlbench.components.optimizers import OPTIMIZERS, StackedOptimizer, info, is_weight, momentum_of
from dlbench.config.schema import OptimizerConfig

STEPS = 100

# name -> the torch.optim optimizer it must be, given the run's config (momentum resolved)
REFERENCE: dict[str, Callable[[list[dict[str, Any]], OptimizerConfig], torch.optim.Optimizer]] = {
    "sgd": lambda g, c: torch.optim.SGD(g, lr=c.lr, momentum=momentum_of(c)),
    "momentum": lambda g, c: torch.optim.SGD(g, lr=c.lr, momentum=momentum_of(c)),
    "nesterov": lambda g, c: torch.optim.SGD(g, lr=c.lr, momentum=momentum_of(c), nesterov=True),
    "adagrad": lambda g, c: torch.optim.Adagrad(g, lr=c.lr, eps=c.eps),
    "rmsprop": lambda g, c: torch.optim.RMSprop(g, lr=c.lr, alpha=c.alpha, eps=c.eps, momentum=momentum_of(c)),
    "adam": lambda g, c: torch.optim.Adam(g, lr=c.lr, betas=c.betas, eps=c.eps),
    "adamw": lambda g, c: torch.optim.AdamW(g, lr=c.lr, betas=c.betas, eps=c.eps),
}


def test_every_optimizer_has_a_reference() -> None:
    assert set(REFERENCE) == set(OPTIMIZERS.names())


def _reference(model: nn.Module, cfg: OptimizerConfig) -> torch.optim.Optimizer:
    """Weight decay on weights only, as the stacked rules apply it."""
    params = list(model.parameters())
    groups = [{"params": [p for p in params if p.dim() > 1], "weight_decay": cfg.weight_decay},
              {"params": [p for p in params if p.dim() <= 1], "weight_decay": 0.0}]
    return REFERENCE[cfg.name](groups, cfg)


def _model() -> nn.Module:
    return nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.LayerNorm(8), nn.Linear(8, 3))


def _configs(name: str) -> list[OptimizerConfig]:
    """Four runs of one optimizer that differ in every hyperparameter it reads (weight decay included)."""
    reads = info(name).reads
    lr = info(name).usual_lr
    variants = [
        {"lr": lr},
        {"lr": lr * 3, "momentum": 0.5, "betas": (0.8, 0.99), "alpha": 0.9, "eps": 1e-6, "weight_decay": 0.01},
        {"lr": lr / 2, "momentum": 0.95, "betas": (0.95, 0.9), "alpha": 0.5, "eps": 1e-3, "weight_decay": 0.1},
        # momentum 0 beside momentum > 0 in one slice (sgd, rmsprop); nesterov needs a momentum
        {"lr": lr, "momentum": 0.0 if info(name).usual_momentum == 0 else 0.3, "weight_decay": 0.05},
    ]
    return [OptimizerConfig(name=name, **{k: v for k, v in v.items() if k in reads}) for v in variants]


def _worst_difference(configs: list[OptimizerConfig]) -> float:
    """Worst relative difference between stacked and torch.optim parameters over STEPS steps.

    Both are fed the same gradients (random, independent of the parameters), so the
    comparison measures the update rule alone, not how training amplifies float rounding."""
    torch.manual_seed(0)
    models = [_model() for _ in configs]
    stacked, _ = stack_module_state(models)
    names = list(stacked)
    reference = [_reference(m, c) for m, c in zip(models, configs)]
    stepper = StackedOptimizer([stacked[k] for k in names], configs)
    worst = 0.0
    for _ in range(STEPS):
        for k in names:
            stacked[k].grad = torch.randn_like(stacked[k])
        for r, (model, opt) in enumerate(zip(models, reference)):
            for k, p in model.named_parameters():
                p.grad = stacked[k].grad[r].clone()
            opt.step()
        stepper.step()
        for r, model in enumerate(models):
            for k, p in model.named_parameters():
                a, b = stacked[k][r].detach(), p.detach()
                worst = max(worst, float((a - b).abs().max() / b.abs().max().clamp_min(1e-12)))
    return worst


@pytest.mark.parametrize("name", OPTIMIZERS.names())
def test_rule_matches_torch_optim_run_by_run(name: str) -> None:
    assert _worst_difference(_configs(name)) <= 1e-6


def test_mixed_optimizers_in_one_stack_match() -> None:
    configs = [c for name in OPTIMIZERS.names() for c in _configs(name)[1:3]]
    assert _worst_difference(configs) <= 1e-6


def test_sgd_honours_momentum_as_torch_sgd() -> None:
    configs = [OptimizerConfig(name="sgd", lr=0.05), OptimizerConfig(name="sgd", lr=0.05, momentum=0.9)]
    assert _worst_difference(configs) == 0.0  # the same arithmetic: bit for bit


def test_optimizer_runs_must_be_contiguous() -> None:
    configs = [OptimizerConfig(name=n) for n in ("sgd", "adam", "sgd")]
    with pytest.raises(ValueError, match="contiguous"):
        StackedOptimizer([torch.zeros(3, 2, requires_grad=True)], configs)


def test_weight_decay_skips_biases_and_adamw_decouples() -> None:
    weight = torch.ones(1, 2, 3, requires_grad=True)  # one run's 2x3 weight
    bias = torch.ones(1, 2, requires_grad=True)
    weight.grad, bias.grad = torch.zeros_like(weight), torch.zeros_like(bias)
    StackedOptimizer([weight, bias], [OptimizerConfig(name="adamw", lr=0.1, weight_decay=0.5)]).step()
    # zero gradient: Adam's step is 0, only decoupled decay moves the weights: w *= 1 - lr * wd
    assert torch.allclose(weight, torch.full_like(weight, 1 - 0.1 * 0.5))
    assert torch.equal(bias, torch.ones_like(bias))
    assert is_weight(weight) and not is_weight(bias)


def test_momentum_default_depends_on_optimizer() -> None:
    assert momentum_of(OptimizerConfig(name="momentum")) == 0.9
    assert momentum_of(OptimizerConfig(name="rmsprop")) == 0.0
    assert momentum_of(OptimizerConfig(name="sgd")) == 0.0
    assert momentum_of(OptimizerConfig(name="nesterov", momentum=0.5)) == 0.5


def test_state_survives_a_round_trip() -> None:
    """A stepper restored from state_dict continues exactly as the original (checkpoints)."""
    torch.manual_seed(0)
    params = [torch.randn(2, 4, 3, requires_grad=True), torch.randn(2, 4, requires_grad=True)]
    configs = [OptimizerConfig(name="adam", lr=0.01), OptimizerConfig(name="adam", lr=0.02)]
    first = StackedOptimizer(params, configs)
    grads = [[torch.randn_like(p) for p in params] for _ in range(4)]
    for g in grads[:2]:
        for p, gi in zip(params, g):
            p.grad = gi
        first.step()
    copies = [p.detach().clone().requires_grad_() for p in params]
    second = StackedOptimizer(copies, configs)
    second.load_state_dict({"steps": first.state_dict()["steps"], "state": {
        k: [t.clone() for t in v] for k, v in first.state_dict()["state"].items()}})
    for g in grads[2:]:
        for p, c, gi in zip(params, copies, g):
            p.grad, c.grad = gi, gi.clone()
        first.step()
        second.step()
    for p, c in zip(params, copies):
        assert torch.equal(p, c)
