"""What would fused or `foreach` optimizer updates buy the engine? Times one update of a stack's
parameters, side by side in one process:

  (a) dlbench's stacked rule (`components/optimizers.py`: per-run hyperparameter columns);
  (b) torch.optim on the same stacked tensors as plain parameters, one lr for all runs, in its
      three implementations: single-tensor (for loops), foreach (multi-tensor ops), fused
      (one kernel per parameter);
  (c) torch.optim fused with the grid's learning rates: one optimizer per group of runs that
      share an lr, over those runs' rows of the stack (the public API's way to per-run lrs);

and the engine's whole training step (forward + backward + update) for scale, beside the same
step with a 4-unit hidden layer, where the matmuls cost next to nothing (the per-step overhead).

    python bench/updates.py [--runs 64] [--threads N] [--steps 200]

The stack is the 64-run grid's (MNIST-1D MLP 100-100, batch 100) built by the engine; the
gradients are random: only the time matters. (b) is not a drop-in for (a): it cannot give each
run its own lr, betas or weight decay; it shows the floor a fused kernel would reach.
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from pathlib import Path
from collections.abc import Callable
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import ROOT, lr_seed_grid

from dlbench.config.schema import section
from dlbench.components.optimizers import StackedOptimizer
from dlbench.training import engine


def step_all(optimizers: list[torch.optim.Optimizer]) -> None:
    for o in optimizers:
        o.step()


def per_call(fn: Callable[[], object], steps: int) -> float:
    """Best of three: ms per call of fn."""
    best = float("inf")
    for _ in range(3):
        fn()
        start = time.perf_counter()
        for _ in range(steps):
            fn()
        best = min(best, (time.perf_counter() - start) / steps * 1e3)
    return best


def train_step(stack: engine.Stack, perms: torch.Tensor) -> None:
    """One training step of the stack on the first batch of `perms`: forward, backward, update."""
    for p in stack.params.values():
        p.grad = None
    stack._losses(perms[:, :stack.bs]).sum().backward()
    stack.optimizer.step()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=64)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    engine.keep_freed_memory()
    specs = lr_seed_grid(args.runs, [f"data.root={ROOT / 'data'}"])
    stack = engine.Stack(specs, torch.device("cpu"))
    n = sum(p.numel() for p in stack.params.values())
    print(f"{args.runs} runs, {n} parameters in {len(stack.params)} stacked tensors, "
          f"{torch.get_num_threads()} torch threads")
    rows = []
    for name, kind in (("adam", torch.optim.Adam), ("momentum", torch.optim.SGD)):
        params = [p.detach().clone().requires_grad_() for p in stack.params.values()]
        for p in params:
            p.grad = torch.randn_like(p)
        configs = [section("optimizer", name=name, lr=spec.config.optimizer.lr) for spec in stack.runs]
        ours = StackedOptimizer(params, configs)
        rows.append((name, "dlbench stacked rule (per-run columns)", per_call(ours.step, args.steps)))
        extra: dict[str, Any] = {"momentum": 0.9} if name == "momentum" else {}
        for impl in ("single-tensor", "foreach", "fused"):
            flags: dict[str, Any] = ({"foreach": impl == "foreach", "fused": impl == "fused"}
                                     if impl != "single-tensor" else {"foreach": False})
            try:
                reference = kind(params, lr=1e-3, **extra, **flags)
            except (RuntimeError, ValueError) as e:  # an implementation this build lacks on CPU
                rows.append((name, f"torch.optim {impl}", float("nan")))
                print(f"  {name} {impl}: {e}")
                continue
            rows.append((name, f"torch.optim {impl} (one lr)", per_call(reference.step, args.steps)))
        # fused with the grid's learning rates: one optimizer per group of runs sharing an lr (rows of the stack)
        groups: dict[float, list[int]] = {}
        for i, c in enumerate(configs):
            groups.setdefault(c.lr, []).append(i)
        optimizers: list[torch.optim.Optimizer] = []
        for lr, members in groups.items():
            views = []
            for p in params:
                for i in members:
                    view = p.detach()[i:i + 1].requires_grad_()
                    view.grad = p.grad[i:i + 1]
                    views.append(view)
            optimizers.append(kind(views, lr=lr, **extra, fused=True))
        rows.append((name, f"torch.optim fused, one per lr ({len(groups)} groups of runs)",
                     per_call(functools.partial(step_all, optimizers), args.steps)))

    # the whole training step, for scale, and the same step with a 4-unit hidden layer, where the
    # matmuls cost next to nothing: the per-step overhead
    perms = torch.stack([torch.randperm(len(stack.splits.x_train), generator=g) for g in stack.v.order])
    tiny = engine.Stack(lr_seed_grid(args.runs, [f"data.root={ROOT / 'data'}", "model.hidden=[4]"]),
                        torch.device("cpu"))
    step_ms, overhead_ms = (per_call(functools.partial(train_step, s, perms), max(20, args.steps // 10))
                            for s in (stack, tiny))
    print("| optimizer | update | ms per update | share of a training step |\n|---|---|---|---|")
    for name, what, ms in rows:
        print(f"| {name} | {what} | {ms:.3f} | {100 * ms / step_ms:.0f} % |")
    print(f"training step of the stack (forward + backward + Adam update): {step_ms:.2f} ms; the same step with a "
          f"4-unit hidden layer (what is left without the matmuls' work): {overhead_ms:.2f} ms")


if __name__ == "__main__":
    main()
