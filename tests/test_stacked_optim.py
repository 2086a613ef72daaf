"""Stacked optimizer updates match torch.optim run by run, for every registry optimizer."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.func import functional_call, stack_module_state

from dlbench.components import optim
from dlbench.config.schema import OptimizerConfig
from dlbench.components.optimizers import STACKED_OPTIMIZERS, StackedOptimizer

STEPS = 25


def _model() -> nn.Module:
    return nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.LayerNorm(8), nn.Linear(8, 3))


def _configs(name: str) -> list[OptimizerConfig]:
    """Three runs of one optimizer that differ in every hyperparameter it reads."""
    lr = optim.OPTIMIZERS[name].info["lr"]
    return [
        OptimizerConfig(name=name, lr=lr, weight_decay=0.0),
        OptimizerConfig(name=name, lr=lr * 3, momentum=0.5, betas=(0.8, 0.99), alpha=0.9, eps=1e-6,
                        weight_decay=0.01),
        OptimizerConfig(name=name, lr=lr / 2, momentum=0.95, betas=(0.95, 0.9), alpha=0.5, eps=1e-3,
                        weight_decay=0.1),
    ]


def _loss(model: nn.Module, params: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return nn.functional.cross_entropy(functional_call(model, params, (x,)), y)


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm().clamp_min(1e-12))


def _trajectories(configs: list[OptimizerConfig]) -> float:
    """Worst relative difference between stacked and torch.optim parameters over STEPS steps."""
    torch.manual_seed(0)
    models = [_model() for _ in configs]
    stacked, _ = stack_module_state(models)
    names = list(stacked)
    reference = [optim.build(m, c) for m, c in zip(models, configs)]
    stepper = StackedOptimizer([stacked[k] for k in names], configs)
    data = [(torch.randn(16, 6), torch.randint(0, 3, (16,))) for _ in range(STEPS)]
    worst = 0.0
    for x, y in data:
        for r, (model, opt) in enumerate(zip(models, reference)):
            opt.zero_grad()
            _loss(model, dict(model.named_parameters()), x, y).backward()
            opt.step()
        # the same per-run gradient computation on the stacked slices, so only the update rule differs
        grads = [torch.autograd.grad(_loss(models[0], {k: stacked[k][r] for k in names}, x, y),
                                     [stacked[k] for k in names]) for r in range(len(configs))]
        for i, k in enumerate(names):
            stacked[k].grad = torch.stack([g[i][r] for r, g in enumerate(grads)])
        stepper.step()
        for r, model in enumerate(models):
            for k, p in model.named_parameters():
                worst = max(worst, _relative(stacked[k][r].detach(), p.detach()))
    return worst


@pytest.mark.parametrize("name", optim.OPTIMIZERS.names())
def test_stacked_update_matches_torch_optim(name: str) -> None:
    assert name in STACKED_OPTIMIZERS, f"optimizer {name!r} has no stacked update rule in dlbench/stacked_optim.py"
    assert _trajectories(_configs(name)) < 1e-5


def test_mixed_optimizers_in_one_stack_match() -> None:
    configs = [c for name in optim.OPTIMIZERS.names() for c in _configs(name)[1:]]
    assert _trajectories(configs) < 1e-5


def test_optimizer_runs_must_be_contiguous() -> None:
    configs = [OptimizerConfig(name=n) for n in ("sgd", "adam", "sgd")]
    with pytest.raises(ValueError, match="contiguous"):
        StackedOptimizer([torch.zeros(3, 2, requires_grad=True)], configs)
