"""Stacked optimizer updates match their references run by run, for every registry optimizer.

The references: torch.optim (through dlbench's own builders for the classic seven),
lion-pytorch's Lion and schedulefree's AdamWScheduleFree. Weight decay touches
weights only, so each reference gets two parameter groups.
"""

from __future__ import annotations

from typing import Any, Callable

import pytest
import torch
from lion_pytorch import Lion
from schedulefree import AdamWScheduleFree
from torch import nn
from torch.func import functional_call, stack_module_state

from dlbench.components import optim
from dlbench.components.optimizers import (
    STACKED_OPTIMIZERS,
    StackedOptimizer,
    clip_grad_norms_,
    set_lr_multipliers,
    to_eval_weights,
    to_train_weights,
)
from dlbench.config.schema import OptimizerConfig

STEPS = 25
TOLERANCE = 1e-5  # worst relative parameter difference over STEPS steps (float32 rounding of the columns)
# Muon orthogonalizes in bfloat16 (8 bits of mantissa), as torch.optim.Muon does; the stack's batched
# matmuls (baddbmm) round a tie differently from torch's addmm now and then, one bfloat16 ulp, which the
# next steps' gradients then carry on. Given the same gradients its steps are identical (see below).
LOOSER = {"muon": 1e-3}


def _groups(model: nn.Module, cfg: OptimizerConfig) -> list[dict]:
    params = list(model.parameters())
    return [{"params": [p for p in params if p.dim() > 1], "weight_decay": cfg.weight_decay},
            {"params": [p for p in params if p.dim() <= 1], "weight_decay": 0.0}]


def _muon(model: nn.Module, cfg: OptimizerConfig) -> list[torch.optim.Optimizer]:
    params = list(model.parameters())
    momentum = 0.95 if cfg.momentum is None else cfg.momentum
    matrices, others = [p for p in params if p.dim() == 2], [p for p in params if p.dim() < 2]
    return [torch.optim.Muon(matrices, lr=cfg.lr, weight_decay=cfg.weight_decay, momentum=momentum,
                             adjust_lr_fn="match_rms_adamw"),
            *([torch.optim.AdamW(others, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, weight_decay=0.0)] if others else [])]


def _schedulefree(model: nn.Module, cfg: OptimizerConfig, warmup_steps: int = 0) -> list[torch.optim.Optimizer]:
    opt = AdamWScheduleFree(_groups(model, cfg), lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, warmup_steps=warmup_steps)
    opt.train()
    return [opt]


Reference = Callable[[nn.Module, OptimizerConfig], list[torch.optim.Optimizer]]
# the newer optimizers' references; the classic ones are dlbench's torch.optim builders
REFERENCES: dict[str, Reference] = {
    "nadam": lambda m, c: [torch.optim.NAdam(_groups(m, c), lr=c.lr, betas=c.betas, eps=c.eps)],
    "radam": lambda m, c: [torch.optim.RAdam(_groups(m, c), lr=c.lr, betas=c.betas, eps=c.eps)],
    "adamax": lambda m, c: [torch.optim.Adamax(_groups(m, c), lr=c.lr, betas=c.betas, eps=c.eps)],
    "adadelta": lambda m, c: [torch.optim.Adadelta(_groups(m, c), lr=c.lr, rho=c.rho, eps=c.eps)],
    "lion": lambda m, c: [Lion(_groups(m, c), lr=c.lr, betas=c.betas)],
    "muon": _muon,
    "adamw_schedulefree": _schedulefree,
}


def _reference(model: nn.Module, cfg: OptimizerConfig) -> list[torch.optim.Optimizer]:
    return REFERENCES[cfg.name](model, cfg) if cfg.name in REFERENCES else [optim.build(model, cfg)]


def _info(name: str) -> dict[str, Any]:
    return (optim.OPTIMIZERS[name] if name in optim.OPTIMIZERS else STACKED_OPTIMIZERS[name]).info


def _model() -> nn.Module:
    return nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.LayerNorm(8), nn.Linear(8, 3))


def _configs(name: str) -> list[OptimizerConfig]:
    """Three runs of one optimizer that differ in every hyperparameter it reads."""
    lr, reads_rho = _info(name)["lr"], "rho" in _info(name)["hyper"]
    return [
        OptimizerConfig(name=name, lr=lr, weight_decay=0.0),
        OptimizerConfig(name=name, lr=lr * 3, momentum=0.5, betas=(0.8, 0.99), alpha=0.9, eps=1e-6,
                        weight_decay=0.01, **({"rho": 0.8} if reads_rho else {})),
        OptimizerConfig(name=name, lr=lr / 2, momentum=0.95, betas=(0.95, 0.9), alpha=0.5, eps=1e-3,
                        weight_decay=0.1, **({"rho": 0.95} if reads_rho else {})),
    ]


def _loss(model: nn.Module, params: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return nn.functional.cross_entropy(functional_call(model, params, (x,)), y)


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm().clamp_min(1e-12))


def _trajectories(configs: list[OptimizerConfig], reference: Callable[..., list[torch.optim.Optimizer]] = _reference,
                  lr_multiplier: Callable[[int], float] | None = None) -> float:
    """Worst relative difference between stacked and reference parameters over STEPS steps.

    Where the optimizer keeps evaluation weights apart (schedule-free), they are compared too,
    after every step, and training goes on from the training weights.
    """
    torch.manual_seed(0)
    models = [_model() for _ in configs]
    stacked, _ = stack_module_state(models)
    names = list(stacked)
    references = [reference(m, c) for m, c in zip(models, configs)]
    stepper = StackedOptimizer([stacked[k] for k in names], configs)
    data = [(torch.randn(16, 6), torch.randint(0, 3, (16,))) for _ in range(STEPS)]
    worst = 0.0

    def compare() -> None:
        nonlocal worst
        for r, model in enumerate(models):
            for k, p in model.named_parameters():
                worst = max(worst, _relative(stacked[k][r].detach(), p.detach()))

    for step, (x, y) in enumerate(data):
        for model, opts in zip(models, references):
            for opt in opts:
                opt.zero_grad()
            _loss(model, dict(model.named_parameters()), x, y).backward()
            for opt in opts:
                opt.step()
        # the same per-run gradient computation on the stacked slices, so only the update rule differs
        grads = [torch.autograd.grad(_loss(models[0], {k: stacked[k][r] for k in names}, x, y),
                                     [stacked[k] for k in names]) for r in range(len(configs))]
        for i, k in enumerate(names):
            stacked[k].grad = torch.stack([g[i][r] for r, g in enumerate(grads)])
        if lr_multiplier is not None:
            set_lr_multipliers(stepper, torch.full((len(configs),), lr_multiplier(step), dtype=torch.float64))
        stepper.step()
        compare()
        evals = [opt for opts in references for opt in opts if hasattr(opt, "eval")]
        if evals:
            for opt in evals:
                opt.eval()
            to_eval_weights(stepper)
            compare()
            for opt in evals:
                opt.train()
            to_train_weights(stepper)
    return worst


def test_every_optimizer_has_a_stacked_rule_and_a_reference() -> None:
    assert set(optim.OPTIMIZERS.names()) <= set(STACKED_OPTIMIZERS.names())
    assert set(STACKED_OPTIMIZERS.names()) - set(optim.OPTIMIZERS.names()) == set(REFERENCES)


@pytest.mark.parametrize("name", STACKED_OPTIMIZERS.names())
def test_stacked_update_matches_reference(name: str) -> None:
    assert _trajectories(_configs(name)) < LOOSER.get(name, TOLERANCE)


def test_mixed_optimizers_in_one_stack_match() -> None:
    configs = [c for name in STACKED_OPTIMIZERS.names() for c in _configs(name)[1:]]
    assert _trajectories(configs) < max(LOOSER.values())


@pytest.mark.parametrize("shape", [(8, 6), (3, 8), (4, 3, 3, 3)])
def test_muon_steps_match_torch_given_the_same_gradients(shape: tuple[int, ...]) -> None:
    """Matrices as torch.optim.Muon; conv kernels as Muon on their [out, in k k] matrix (Keller Jordan's reference)."""
    torch.manual_seed(0)
    configs = [OptimizerConfig(name="muon", lr=0.01), OptimizerConfig(name="muon", lr=0.02, momentum=0.5,
                                                                      weight_decay=0.1)]
    start = torch.randn(len(configs), *shape)
    stacked = start.clone().requires_grad_()
    stepper = StackedOptimizer([stacked], configs)
    matrices = [nn.Parameter(start[r].flatten(1).clone()) for r in range(len(configs))]
    references = [torch.optim.Muon([m], lr=c.lr, weight_decay=c.weight_decay, momentum=c.momentum or 0.95,
                                   adjust_lr_fn="match_rms_adamw") for m, c in zip(matrices, configs)]
    for _ in range(5):
        grad = torch.randn(len(configs), *shape)
        stacked.grad = grad.clone()
        stepper.step()
        for r, (m, opt) in enumerate(zip(matrices, references)):
            m.grad = grad[r].flatten(1).clone()
            opt.step()
            assert torch.equal(stacked[r].detach().flatten(1), m.detach())


def test_schedulefree_warmup_is_the_lr_column() -> None:
    """AdamWScheduleFree(warmup_steps=W) is the stacked rule under the lr multiplier (k + 1) / W."""
    warmup = 10
    configs = _configs("adamw_schedulefree")
    assert _trajectories(configs, lambda m, c: _schedulefree(m, c, warmup_steps=warmup),
                         lambda k: min(1.0, (k + 1) / warmup)) < 1e-5


def test_clip_grad_norms_match_clip_grad_norm_run_by_run() -> None:
    torch.manual_seed(0)
    shapes = [(5, 3), (3,), (2, 2, 4)]
    grads = [torch.randn(4, *s) * torch.tensor([0.01, 1.0, 10.0, 3.0]).view(-1, *[1] * len(s)) for s in shapes]
    max_norms = torch.tensor([1.0, 1.0, 2.0, float("inf")], dtype=torch.float64)
    runs = [[nn.Parameter(g[r].clone()) for g in grads] for r in range(4)]
    expected_norms = []
    for r, params in enumerate(runs):
        for p, g in zip(params, grads):
            p.grad = g[r].clone()
        expected_norms.append(torch.nn.utils.clip_grad_norm_(params, float(max_norms[r])))
    norms = clip_grad_norms_(grads, max_norms)
    torch.testing.assert_close(norms, torch.stack(expected_norms), rtol=1e-6, atol=0)
    for r, params in enumerate(runs):
        for p, g in zip(params, grads):
            torch.testing.assert_close(g[r], p.grad, rtol=1e-6, atol=0)
    assert float(norms[0]) < 1.0 and torch.equal(grads[0][3], runs[3][0].grad)  # under the limit: untouched


def test_optimizer_runs_must_be_contiguous() -> None:
    configs = [OptimizerConfig(name=n) for n in ("sgd", "adam", "sgd")]
    with pytest.raises(ValueError, match="contiguous"):
        StackedOptimizer([torch.zeros(3, 2, requires_grad=True)], configs)
