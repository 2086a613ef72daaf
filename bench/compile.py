"""Does torch.compile speed up the engine's stacked step? Times one training step's forward +
backward of a stack (the engine's vmap over functional_call) eagerly and compiled, side by side.

    python bench/compile.py [--runs 64] [--threads 1] [--steps 50]

The model and batch are the 64-run grid's (MNIST-1D MLP 100-100, batch 100, 40 inputs);
the data are random: only the time matters. Prints ms per step (eager, compiled, eager
again to show the machine's drift), the compile time, and the ratio.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state, vmap


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=50)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    models = [nn.Sequential(nn.Linear(40, 100), nn.ReLU(), nn.Linear(100, 100), nn.ReLU(), nn.Linear(100, 10))
              for _ in range(args.runs)]
    params, _ = stack_module_state(models)
    template = models[0].to("meta")

    def loss(p: dict[str, Tensor], x: Tensor, y: Tensor) -> Tensor:
        return nn.functional.cross_entropy(functional_call(template, p, (x,)), y)

    x, y = torch.randn(args.runs, 100, 40), torch.randint(0, 10, (args.runs, 100))

    def step(fn: Callable[..., Tensor]) -> None:
        for p in params.values():
            p.grad = None
        fn(params, x, y).sum().backward()

    def ms_per_step(fn: Callable[..., Tensor]) -> float:
        for _ in range(5):
            step(fn)
        start = time.perf_counter()
        for _ in range(args.steps):
            step(fn)
        return (time.perf_counter() - start) / args.steps * 1000

    eager = vmap(loss)
    before = ms_per_step(eager)
    start = time.perf_counter()
    compiled = torch.compile(vmap(loss))
    step(compiled)
    compile_s = time.perf_counter() - start
    after = ms_per_step(compiled)
    again = ms_per_step(eager)
    print(f"{args.runs} runs, {args.threads} thread(s), torch {torch.__version__}")
    print("| eager ms/step | compiled ms/step | eager again | compile s | compiled / eager |")
    print("|---|---|---|---|---|")
    print(f"| {before:.1f} | {after:.1f} | {again:.1f} | {compile_s:.0f} | {after / ((before + again) / 2):.2f} |")


if __name__ == "__main__":
    main()
