"""dlbench on one GPU: stacks against the idiomatic loop, throughput against stack size, a CIFAR-shaped CNN
stack, and whether torch.compile or a CUDA graph of the stacked step pays.

    python bench/gpu.py                      # on the GPU (needs one)
    python bench/gpu.py --device cpu --smoke # every section at toy sizes on a CPU: checks the script, times nothing
    python bench/gpu.py --only sizes cnn     # some sections (scripts/gpu-check.sh runs each under a time budget)

Sections (each prints a markdown table):

1. in-process: 256 MNIST-1D runs (the default MLP, Adam, lr x seed grid, 20 epochs, evaluation every
   epoch) in one stack against the idiomatic loop (bench/bench.py's: DataLoader, one model at a time,
   torch.optim) on the same GPU. The idiomatic loop is timed on --idiomatic-runs of the runs and its
   per-run time multiplied out (it is a loop: each run costs the same); the table says so.
2. whole process: `dlbench run` of the same 256 runs against `bench/bench.py --idiomatic` of
   --idiomatic-runs runs, start-up, data loading and result files included.
3. throughput against stack size: steps x runs per second of one stack (training steps only,
   evaluation excluded) at 1, 2, 4, ... runs until the GPU runs out of memory (or --max-runs).
4. a CIFAR-shaped CNN stack (random tensors of CIFAR-10's shape, 3 x 32 x 32, 10 classes: no download)
   at 16 and 64 runs: training steps per second, peak memory and dlbench's estimate of it.
5. the stacked training step (forward, backward) as is, under torch.compile, and captured in a CUDA
   graph, at 64 runs: milliseconds per step; a variant that fails says why in its row.

GPU time is measured between torch.cuda.synchronize() calls; every number is the best of --repeats.
"""

from __future__ import annotations

import argparse
import functools
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from collections.abc import Callable

import numpy as np
import torch
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dlbench.plan import sweep  # noqa: E402
from dlbench.components import data as data_mod  # noqa: E402
from dlbench.config import schema  # noqa: E402
from dlbench.execution.launchers import Options, resolve  # noqa: E402
from dlbench.training import engine, memory  # noqa: E402

CIFAR_SHAPED = "cifar_shaped_random"


data_mod.DATASETS.declare(CIFAR_SHAPED, "random images of CIFAR-10's shape and random labels (bench/gpu.py)",
                          shape=(3, 32, 32), classes=10, n_train=5000, n_test=1000, inputs="image",
                          source="random tensors of CIFAR-10's shape (bench/gpu.py)")


@data_mod.DATASETS.register(CIFAR_SHAPED)
def cifar_shaped(cfg: Any) -> data_mod.RawData:
    """random images of CIFAR-10's shape and random labels (the work of a CIFAR step, not its learning)"""
    rng = np.random.default_rng(0)
    n_train = cfg.train_size or 5000
    return data_mod.RawData(rng.standard_normal((n_train, 3, 32, 32), dtype=np.float32),
                            rng.integers(0, 10, n_train), rng.standard_normal((1000, 3, 32, 32), dtype=np.float32),
                            rng.integers(0, 10, 1000), 10)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def mnist1d_grid(runs: int, epochs: int, device: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """runs / 4 log-spaced Adam learning rates x 4 seeds of the default MNIST-1D MLP."""
    n_lr = max(1, runs // 4)
    lrs = [round(10 ** (-4 + 3 * i / max(1, n_lr - 1)), 8) for i in range(n_lr)]
    return {"name": "gpu_bench", "data": {"root": str(ROOT / "data")}, "optimizer": {"name": "adam"},
            "train": {"epochs": epochs, "seeds": [0, 1, 2, 3][:min(4, runs)], "device": device,
                      "checkpoint_seconds": None}, "grid": {"optimizer.lr": lrs}, **(extra or {})}


def specs_of(raw: dict[str, Any]) -> list[sweep.RunSpec]:
    return sweep.expand(schema.validate(raw), raw)


def markdown(rows: list[dict[str, Any]]) -> str:
    keys = list(dict.fromkeys(k for r in rows for k in r))
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for row in rows:
        lines.append("| " + " | ".join(f"{v:.3g}" if isinstance(v, float) else str(v)
                                        for v in (row.get(k, "") for k in keys)) + " |")
    return "\n".join(lines)


def best_of(repeats: int, device: torch.device, fn: Callable[[], object]) -> float:
    best = math.inf
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        best = min(best, time.perf_counter() - start)
    return best


# ------------------------------------------------------------------ 1. in-process


def in_process(args: argparse.Namespace, device: torch.device) -> list[dict[str, Any]]:
    sys.path.insert(0, str(ROOT / "bench"))
    from bench import idiomatic  # bench/bench.py's loop

    specs = specs_of(mnist1d_grid(args.runs, args.epochs, device.type))
    data_mod.prepare(specs[0].config.data, device)
    few = specs[:args.idiomatic_runs]
    t_idiomatic = best_of(1, device, lambda: idiomatic(few, device)) / len(few) * len(specs)
    t_stack = best_of(args.repeats, device, lambda: list(resolve("auto", Options())(specs, device)))
    return [{"runs": len(specs), "idiomatic s": t_idiomatic,
             "idiomatic timed on": f"{len(few)} runs, x{len(specs) / len(few):g}",
             "dlbench s": t_stack, "speedup": t_idiomatic / t_stack}]


# ------------------------------------------------------------------ 2. whole process


def whole_process(args: argparse.Namespace, device: torch.device) -> list[dict[str, Any]]:
    env_python = sys.executable
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "grid.yaml"
        config.write_text(yaml.safe_dump(mnist1d_grid(args.runs, args.epochs, device.type)))
        few = Path(tmp) / "few.yaml"
        few.write_text(yaml.safe_dump(mnist1d_grid(args.idiomatic_runs, args.epochs, device.type)))
        # the caller's PYTHONPATH after the repo: packages installed beside the interpreter's (scripts/gpu-check.sh)
        env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
               "PATH": os.environ.get("PATH", "/usr/bin:/bin")}

        def timed(cmd: list[str]) -> float:
            start = time.perf_counter()
            subprocess.run(cmd, cwd=ROOT, env=env, check=True, capture_output=True, timeout=3600)
            return time.perf_counter() - start

        t_dlbench = timed([env_python, "-m", "dlbench", "run", str(config), "--out", str(Path(tmp) / "r"),
                           "--no-plots", "--yes"])
        t_few = timed([env_python, "bench/bench.py", "--idiomatic", str(few), "--device", device.type])
    n = len(specs_of(mnist1d_grid(args.runs, args.epochs, device.type)))
    m = len(specs_of(mnist1d_grid(args.idiomatic_runs, args.epochs, device.type)))
    return [{"runs": n, "dlbench run s": t_dlbench, f"idiomatic s ({m} runs)": t_few,
             "idiomatic s per run": t_few / m, "speedup (per run)": (t_few / m) / (t_dlbench / n)}]


# ------------------------------------------------------------------ 3. throughput against stack size


def repeat(fn: Callable[[], object], times: int) -> None:
    for _ in range(times):
        fn()


def train_steps(stack: engine.Stack, steps: int) -> None:
    """`steps` training steps of the stack (forward, backward, update), evaluation left out."""
    n = len(stack.splits.x_train)
    perms = torch.stack([torch.randperm(n, generator=g) for g in stack.v.order]).to(stack.device)
    for k in range(steps):
        for p in stack.params.values():
            p.grad = None
        position = k % stack.per_epoch
        stack._losses(perms[:, position * stack.bs:(position + 1) * stack.bs]).sum().backward()
        stack.optimizer.step()


def by_stack_size(args: argparse.Namespace, device: torch.device) -> list[dict[str, Any]]:
    rows = []
    runs = 1
    while runs <= args.max_runs:
        specs = specs_of(mnist1d_grid(runs, 1, device.type))
        try:
            stack = engine.Stack(specs, device)
            train_steps(stack, 2)  # warm-up
            t = best_of(args.repeats, device, functools.partial(train_steps, stack, args.steps))
        except torch.OutOfMemoryError:
            rows.append({"runs in the stack": runs, "ms per step": "out of memory"})
            break
        est = memory.estimate(specs[0], device).total(runs)
        rows.append({"runs in the stack": runs, "ms per step": 1e3 * t / args.steps,
                     "run-steps per s": runs * args.steps / t, "estimate": memory.size_text(est)})
        del stack
        if device.type == "cuda":
            torch.cuda.empty_cache()
        runs *= 2
    return rows


# ------------------------------------------------------------------ 4. CIFAR-shaped CNN


def cnn_raw(runs: int, device: str, train_size: int) -> dict[str, Any]:
    return {"name": "cifar_shaped", "data": {"dataset": CIFAR_SHAPED, "train_size": train_size},
            "model": {"kind": "cnn", "hidden": [128], "conv": [{"channels": 32, "padding": 1, "pool": "max"},
                                                                {"channels": 64, "padding": 1, "pool": "max"},
                                                                {"channels": 128, "padding": 1, "pool": "max"}]},
            "optimizer": {"name": "momentum", "lr": 0.01}, "regularization": {"augment": "crop_flip"},
            "train": {"epochs": 1, "batch_size": 128, "seeds": list(range(runs)), "device": device}}


def cifar_cnn(args: argparse.Namespace, device: torch.device) -> list[dict[str, Any]]:
    rows = []
    for runs in args.cnn_runs:
        specs = specs_of(cnn_raw(runs, device.type, args.cnn_train))
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
        try:
            stack = engine.Stack(specs, device)
            train_steps(stack, 1)
            t = best_of(args.repeats, device, functools.partial(train_steps, stack, args.steps))
        except torch.OutOfMemoryError:
            rows.append({"runs": runs, "ms per step": "out of memory"})
            continue
        peak = memory.size_text(torch.cuda.max_memory_allocated(device)) if device.type == "cuda" else "n/a (cpu)"
        rows.append({"runs": runs, "ms per step": 1e3 * t / args.steps, "run-steps per s": runs * args.steps / t,
                     "peak memory": peak,
                     "estimate": memory.size_text(memory.estimate(specs[0], device).total(runs))})
        del stack
    return rows


# ------------------------------------------------------------------ 5. torch.compile, CUDA graphs


def step_variants(args: argparse.Namespace, device: torch.device) -> list[dict[str, Any]]:
    specs = specs_of(mnist1d_grid(args.variant_runs, 1, device.type))
    stack = engine.Stack(specs, device)
    idx = torch.stack([torch.randperm(len(stack.splits.x_train), generator=g)[:stack.bs]
                       for g in stack.v.order]).to(device)

    def plain() -> None:
        for p in stack.params.values():
            p.grad = None
        stack._losses(idx).sum().backward()

    variants: dict[str, Callable[[], Callable[[], None]]] = {"as is": lambda: plain}
    if not args.smoke:
        def compiled() -> Callable[[], None]:
            losses = torch.compile(stack._losses)

            def step() -> None:
                for p in stack.params.values():
                    p.grad = None
                losses(idx).sum().backward()
            return step
        variants["torch.compile"] = compiled
    if device.type == "cuda":
        def graphed() -> Callable[[], None]:
            for p in stack.params.values():  # static gradient buffers the graph accumulates into
                p.grad = torch.zeros_like(p)
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(3):
                    stack._losses(idx).sum().backward()
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                stack._losses(idx).sum().backward()

            def step() -> None:
                for p in stack.params.values():
                    p.grad.zero_()
                graph.replay()
            return step
        variants["CUDA graph"] = graphed
    rows = []
    for name, make in variants.items():
        try:
            fn = make()
            for _ in range(3):
                fn()
            t = best_of(args.repeats, device, functools.partial(repeat, fn, args.steps))
            rows.append({"step (forward + backward)": name, "runs": len(specs), "ms per step": 1e3 * t / args.steps})
        except Exception as e:  # noqa: BLE001 - a variant that cannot run says why in its row
            rows.append({"step (forward + backward)": name, "runs": len(specs),
                         "ms per step": f"failed: {type(e).__name__}: {str(e).splitlines()[0][:80]}"})
    if "torch.compile" not in variants:
        rows.append({"step (forward + backward)": "torch.compile", "runs": len(specs),
                     "ms per step": "not run (--smoke)"})
    if device.type != "cuda":
        rows.append({"step (forward + backward)": "CUDA graph", "runs": len(specs), "ms per step": "needs CUDA"})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--smoke", action="store_true", help="toy sizes: checks that every section runs")
    parser.add_argument("--runs", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--idiomatic-runs", type=int, default=16)
    parser.add_argument("--max-runs", type=int, default=1 << 14)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cnn-runs", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--cnn-train", type=int, default=5000)
    parser.add_argument("--variant-runs", type=int, default=64)
    keys = ["in-process", "whole", "sizes", "cnn", "variants"]
    parser.add_argument("--skip", nargs="*", default=[], choices=keys)
    parser.add_argument("--only", nargs="*", default=keys, choices=keys, help="run these sections (default: all)")
    args = parser.parse_args()
    if args.smoke:
        args.runs, args.epochs, args.idiomatic_runs, args.max_runs = 4, 1, 2, 4
        args.steps, args.repeats, args.cnn_runs, args.cnn_train, args.variant_runs = 2, 1, [2], 256, 4
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("bench/gpu.py: no CUDA GPU here; --device cpu --smoke checks the script")
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    free = memory.size_text(memory.free_bytes(device))
    print(f"device: {where}; torch {torch.__version__}; {free} free" + ("; SMOKE: toy sizes, numbers mean nothing"
                                                                      if args.smoke else ""), flush=True)
    sections = [("in-process", "1. 256 MNIST-1D runs in one stack vs the idiomatic loop (in-process)", in_process),
                ("whole", "2. whole process: dlbench run vs the idiomatic loop", whole_process),
                ("sizes", "3. throughput against stack size (training steps)", by_stack_size),
                ("cnn", "4. CIFAR-shaped CNN stack (random tensors)", cifar_cnn),
                ("variants", "5. the stacked step: as is, torch.compile, CUDA graph", step_variants)]
    for key, title, fn in sections:
        if key in args.skip or key not in args.only:
            continue
        print(f"\n{title}\n\n{markdown(fn(args, device))}", flush=True)


if __name__ == "__main__":
    main()
