"""How does the engine's throughput grow with the stack size? Trains stacks of R runs of the
64-run grid's model (MNIST-1D MLP 100-100, Adam, batch 100) for one epoch each, evaluation of
train / val / test included, in one process, and prints run-epochs per second against R.

    python bench/stacks.py [--sizes 1 4 16 64 256] [--threads N]

A stack of one is the engine without vmap (what `--executor serial` runs); the largest stack
the engine builds is 256 runs (`plan.stacks.MAX_STACK`).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import ROOT, lr_seed_grid

from dlbench.training import engine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 4, 16, 64, 256])
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    engine.keep_freed_memory()
    print(f"{torch.get_num_threads()} torch threads; one epoch (36 steps + 2 evaluations) per stack")
    print("| runs in the stack | seconds | run-epochs / s | vs a stack of one |\n|---|---|---|---|")
    base = None
    for size in args.sizes:
        specs = lr_seed_grid(max(4, size), [f"data.root={ROOT / 'data'}", "train.epochs=1"])[:size]
        list(engine.train(specs[:1], torch.device("cpu")))  # warm-up: first-call costs out of the clock
        start = time.perf_counter()
        results = list(engine.train(specs, torch.device("cpu")))
        seconds = time.perf_counter() - start
        assert all(r.status == "ok" for r in results)
        rate = size / seconds
        base = base or rate
        print(f"| {size} | {seconds:.2f} | {rate:.1f} | {rate / base:.1f}x |", flush=True)


if __name__ == "__main__":
    main()
