"""Every registered update rule matches its reference run by run, over many steps.

The references: torch.optim, lion-pytorch's Lion and schedulefree's AdamWScheduleFree
(test dependencies only). Weight decay touches weights only, so each reference gets
two parameter groups.
"""

from __future__ import annotations

from typing import Any
from collections.abc import Callable

import pytest
import torch
from lion_pytorch import Lion
from schedulefree import AdamWScheduleFree
from torch import nn
from torch.func import stack_module_state

from dlbench.components.optimizers import (
    OPTIMIZERS,
    StackedOptimizer,
    clip_grad_norms_,
    is_weight,
    set_lr_multipliers,
    to_eval_weights,
    to_train_weights,
)
from dlbench.config.schema import section

STEPS = 100
TOLERANCE = 1e-6  # worst relative difference over STEPS steps (float32 rounding of the per-run columns)
# Muon orthogonalizes in bfloat16 (8 bits of mantissa), as torch.optim.Muon does; the stack's batched
# matmuls (baddbmm) round a tie differently from torch's addmm now and then (one bfloat16 ulp of one
# step's update), and those differences add up over the steps. Given the same gradients one step is
# bit-identical (test_muon_steps_match_torch_given_the_same_gradients).
LOOSER = {"muon": 1e-4}



def _groups(params: list[nn.Parameter], cfg: Any) -> list[dict[str, Any]]:
    """Weight decay on weights, and on biases and norm parameters with decay_biases, as the stacked rules apply it."""
    return [{"params": [p for p in params if p.dim() > 1], "weight_decay": cfg.weight_decay},
            {"params": [p for p in params if p.dim() <= 1], "weight_decay": _bias_decay(cfg)}]


def _bias_decay(cfg: Any) -> float:
    return cfg.weight_decay if cfg.decay_biases else 0.0


def _muon(params: list[nn.Parameter], c: Any) -> list[torch.optim.Optimizer]:
    """torch.optim.Muon takes matrices only: biases and gains take AdamW without decay, as the rule does."""
    matrices, others = [p for p in params if p.dim() == 2], [p for p in params if p.dim() < 2]
    return [torch.optim.Muon(matrices, lr=c.lr, weight_decay=c.weight_decay, momentum=c.momentum,
                             adjust_lr_fn="match_rms_adamw"),
            torch.optim.AdamW(others, lr=c.lr, betas=c.betas, eps=c.eps, weight_decay=_bias_decay(c))]


def _schedulefree(params: list[nn.Parameter], c: Any, warmup_steps: int = 0) -> list[torch.optim.Optimizer]:
    opt = AdamWScheduleFree(_groups(params, c), lr=c.lr, betas=c.betas, eps=c.eps, warmup_steps=warmup_steps)
    opt.train()
    return [opt]


Reference = Callable[[list[nn.Parameter], Any], list[torch.optim.Optimizer]]


def _one(build: Callable[[list[dict[str, Any]], Any], torch.optim.Optimizer]) -> Reference:
    return lambda params, c: [build(_groups(params, c), c)]


# name -> the reference optimizer(s) it must be, given the run's config (momentum resolved)
REFERENCE: dict[str, Reference] = {
    "sgd": _one(lambda g, c: torch.optim.SGD(g, lr=c.lr, momentum=c.momentum)),
    "momentum": _one(lambda g, c: torch.optim.SGD(g, lr=c.lr, momentum=c.momentum)),
    "nesterov": _one(lambda g, c: torch.optim.SGD(g, lr=c.lr, momentum=c.momentum, nesterov=True)),
    "adagrad": _one(lambda g, c: torch.optim.Adagrad(g, lr=c.lr, eps=c.eps)),
    "rmsprop": _one(lambda g, c: torch.optim.RMSprop(g, lr=c.lr, alpha=c.alpha, eps=c.eps, momentum=c.momentum)),
    "adam": _one(lambda g, c: torch.optim.Adam(g, lr=c.lr, betas=c.betas, eps=c.eps)),
    "adamw": _one(lambda g, c: torch.optim.AdamW(g, lr=c.lr, betas=c.betas, eps=c.eps)),
    "nadam": _one(lambda g, c: torch.optim.NAdam(g, lr=c.lr, betas=c.betas, eps=c.eps)),
    "radam": _one(lambda g, c: torch.optim.RAdam(g, lr=c.lr, betas=c.betas, eps=c.eps)),
    "adamax": _one(lambda g, c: torch.optim.Adamax(g, lr=c.lr, betas=c.betas, eps=c.eps)),
    "adadelta": _one(lambda g, c: torch.optim.Adadelta(g, lr=c.lr, rho=c.rho, eps=c.eps)),
    "lion": _one(lambda g, c: Lion(g, lr=c.lr, betas=c.betas)),
    "muon": _muon,
    "adamw_schedulefree": _schedulefree,
}


def test_every_optimizer_has_a_reference() -> None:
    assert set(REFERENCE) == set(OPTIMIZERS.names())


def _model() -> nn.Module:
    return nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.LayerNorm(8), nn.Linear(8, 3))


def _configs(name: str) -> list[Any]:
    """Four runs of one optimizer that differ in every hyperparameter it reads (weight decay included);
    one of them decays its biases and norm parameters too, beside runs that do not."""
    record = OPTIMIZERS.record(name)
    reads, lr = record.reads(), record.facts["usual_lr"]
    variants = [
        {"lr": lr},
        {"lr": lr * 3, "momentum": 0.5, "betas": (0.8, 0.99), "alpha": 0.9, "eps": 1e-6, "weight_decay": 0.01,
         "rho": 0.8},
        {"lr": lr / 2, "momentum": 0.95, "betas": (0.95, 0.9), "alpha": 0.5, "eps": 1e-3, "weight_decay": 0.1,
         "rho": 0.95},
        # momentum 0 beside momentum > 0 in one slice (sgd, rmsprop); nesterov needs a momentum
        {"lr": lr, "momentum": 0.0 if "momentum" in reads and record.setting("momentum").default == 0 else 0.3,
         "weight_decay": 0.05},
    ]
    return [section("optimizer", name=name, decay_biases=i == 2, **{k: v for k, v in v.items() if k in reads})
            for i, v in enumerate(variants)]


def _worst_difference(configs: list[Any], reference: Callable[..., list[torch.optim.Optimizer]] | None = None,
                      lr_multiplier: Callable[[int], float] | None = None) -> float:
    """Worst relative difference between stacked and reference parameters over STEPS steps.

    Both are fed the same gradients (random, independent of the parameters), so the
    comparison measures the update rule alone, not how training amplifies float rounding.
    `lr_multiplier` (step -> factor) schedules the stacked side only (its reference schedules itself).
    Where an optimizer keeps evaluation weights apart (schedule-free), they are compared
    too after every step, and training goes on from the training weights."""
    torch.manual_seed(0)
    models = [_model() for _ in configs]
    stacked, _ = stack_module_state(models)
    names = list(stacked)
    references = [(reference or REFERENCE[c.name])(list(m.parameters()), c) for m, c in zip(models, configs)]
    stepper = StackedOptimizer([stacked[k] for k in names], configs)
    worst = 0.0

    def compare() -> None:
        nonlocal worst
        for r, model in enumerate(models):
            for k, p in model.named_parameters():
                a, b = stacked[k][r].detach(), p.detach()
                worst = max(worst, float((a - b).abs().max() / b.abs().max().clamp_min(1e-12)))

    for step in range(STEPS):
        for k in names:
            stacked[k].grad = torch.randn_like(stacked[k])
        for r, (model, opts) in enumerate(zip(models, references)):
            for k, p in model.named_parameters():
                p.grad = stacked[k].grad[r].clone()
            for opt in opts:
                opt.step()
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


@pytest.mark.parametrize("name", OPTIMIZERS.names())
def test_rule_matches_its_reference_run_by_run(name: str) -> None:
    assert _worst_difference(_configs(name)) <= LOOSER.get(name, TOLERANCE)


def test_mixed_optimizers_in_one_stack_match() -> None:
    configs = [c for name in OPTIMIZERS.names() for c in _configs(name)[1:3]]
    assert _worst_difference(configs) <= max(LOOSER.values())


def test_sgd_honours_momentum_as_torch_sgd() -> None:
    configs = [section("optimizer", name="sgd", lr=0.05), section("optimizer", name="sgd", lr=0.05, momentum=0.9)]
    assert _worst_difference(configs) == 0.0  # the same arithmetic: bit for bit


@pytest.mark.parametrize("shape", [(8, 6), (3, 8), (4, 3, 3, 3)])
def test_muon_steps_match_torch_given_the_same_gradients(shape: tuple[int, ...]) -> None:
    """Matrices as torch.optim.Muon; conv kernels as Muon on their [out, in k k] matrix (Keller Jordan's reference)."""
    torch.manual_seed(0)
    configs = [section("optimizer", name="muon", lr=0.01), section("optimizer", name="muon", lr=0.02, momentum=0.5,
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
    assert _worst_difference(configs, lambda p, c: _schedulefree(p, c, warmup_steps=warmup),
                             lambda k: min(1.0, (k + 1) / warmup)) <= 1e-6


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
    configs = [section("optimizer", name=n) for n in ("sgd", "adam", "sgd")]
    with pytest.raises(ValueError, match="contiguous"):
        StackedOptimizer([torch.zeros(3, 2, requires_grad=True)], configs)


def test_weight_decay_skips_biases_and_adamw_decouples() -> None:
    weight = torch.ones(1, 2, 3, requires_grad=True)  # one run's 2x3 weight
    bias = torch.ones(1, 2, requires_grad=True)
    weight.grad, bias.grad = torch.zeros_like(weight), torch.zeros_like(bias)
    StackedOptimizer([weight, bias], [section("optimizer", name="adamw", lr=0.1, weight_decay=0.5)]).step()
    # zero gradient: Adam's step is 0, only decoupled decay moves the weights: w *= 1 - lr * wd
    assert torch.allclose(weight, torch.full_like(weight, 1 - 0.1 * 0.5))
    assert torch.equal(bias, torch.ones_like(bias))
    assert is_weight(weight) and not is_weight(bias)


def test_momentum_default_depends_on_optimizer() -> None:
    assert section("optimizer", name="momentum").momentum == 0.9
    assert section("optimizer", name="rmsprop").momentum == 0.0
    assert section("optimizer", name="sgd").momentum == 0.0
    assert section("optimizer", name="nesterov", momentum=0.5).momentum == 0.5


def test_state_survives_a_round_trip() -> None:
    """A stepper restored from state_dict continues exactly as the original (checkpoints)."""
    torch.manual_seed(0)
    params = [torch.randn(2, 4, 3, requires_grad=True), torch.randn(2, 4, requires_grad=True)]
    configs = [section("optimizer", name="adam", lr=0.01), section("optimizer", name="adam", lr=0.02)]
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
