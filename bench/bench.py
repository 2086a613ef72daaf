"""Speed of dlbench's default launcher against an idiomatic PyTorch loop, in one process.

    python bench/bench.py [--device cpu|cuda] [--runs 64] [--epochs N]

Workloads: the quickstart grid (configs/quickstart.yaml) and a learning-rate x seed
grid of the MNIST-1D MLP (--runs runs: runs/4 learning rates x 4 seeds). Both
contestants do the same work on the same data: every run trains its epochs with
batches of train.batch_size and evaluates train / val / test loss and accuracy
after every epoch.

  (a) idiomatic: DataLoader(TensorDataset, shuffle=True), one model at a time,
      torch.optim, evaluation through DataLoaders of 1000 samples;
  (b) dlbench: the launcher `dlbench run` uses by default (local stacks).

It also reports the share of dlbench's time spent evaluating against the share of
the FLOPs evaluation is. Whole-process timings (start-up included), the other
launchers and resuming after a kill are bench/whole.py's; `--idiomatic CONFIG`
runs only (a) on a config, for whole.py to time as a process of its own.

FLOPs are the matmul FLOPs of the work done (forward + backward of every training
step, forward of every evaluation), counted with torch.utils.flop_counter on one
step and one evaluation of one run; the peak is this machine's best fp32 matmul
rate, measured here with large square matmuls.
"""

from __future__ import annotations

import argparse
import platform
import time
from typing import Any
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.flop_counter import FlopCounterMode

from dlbench.config import vocabulary
from dlbench.config import schema as config
from dlbench.components import data
from dlbench.components import inits
from dlbench.components import models
from dlbench.plan import sweep
from dlbench.execution.launchers import Options, resolve
from dlbench.training.run import RunResult, resolve_device, schedule
from dlbench.training import engine
from dlbench.training.engine import keep_freed_memory

ROOT = Path(__file__).resolve().parent.parent


def measure_peak(device: torch.device) -> float:
    """Best fp32 GFLOP/s of large square matmuls on this device."""
    best = 0.0
    for n in (1024, 2048, 4096) if device.type == "cpu" else (4096, 8192):
        a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
        a @ b
        reps = 3 if device.type == "cpu" else 20
        for _ in range(3):
            _sync(device)
            t = time.perf_counter()
            for _ in range(reps):
                a @ b
            _sync(device)
            best = max(best, 2 * n ** 3 * reps / (time.perf_counter() - t) / 1e9)
    return best


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def specs_for(path: Path, overrides: list[str]) -> list[sweep.RunSpec]:
    cfg, raw, plugin_vocabulary = vocabulary.load(path, overrides)
    return sweep.expand(cfg, raw, vocabulary=plugin_vocabulary)


def lr_seed_grid(runs: int, overrides: list[str]) -> list[sweep.RunSpec]:
    """runs/4 log-spaced Adam learning rates x 4 seeds of the default MNIST-1D MLP."""
    n_lr = max(1, runs // 4)
    lrs = [round(10 ** (-4 + 3 * i / max(1, n_lr - 1)), 8) for i in range(n_lr)]
    raw = config.apply_overrides({"name": "lr_seed_grid", "optimizer": {"name": "adam"},
                                  "train": {"epochs": 20, "seeds": [0, 1, 2, 3]},
                                  "grid": {"optimizer.lr": lrs}}, overrides)
    return sweep.expand(config.validate(raw), raw)


# the torch.optim optimizer an idiomatic loop would use for each optimizer the workloads train
TORCH_OPTIMIZERS = {
    "sgd": lambda params, c: torch.optim.SGD(params, lr=c.lr, momentum=c.momentum),
    "momentum": lambda params, c: torch.optim.SGD(params, lr=c.lr, momentum=c.momentum),
    "adagrad": lambda params, c: torch.optim.Adagrad(params, lr=c.lr, eps=c.eps),
    "adam": lambda params, c: torch.optim.Adam(params, lr=c.lr, betas=c.betas, eps=c.eps),
}


def idiomatic(specs: list[sweep.RunSpec], device: torch.device) -> None:
    """The usual way: a DataLoader, one model at a time, torch.optim."""
    for spec in specs:
        cfg = spec.config
        splits = data.prepare(cfg.data, device)
        torch.manual_seed(spec.seed)
        model = inits.initialize(models.build(cfg.model, splits.sample_shape, splits.num_classes), cfg.init)
        model.to(device)
        opt = TORCH_OPTIMIZERS[cfg.optimizer.name](model.parameters(), cfg.optimizer)
        bs, _, _ = schedule(len(splits.x_train), cfg.train)
        train_loader = DataLoader(TensorDataset(splits.x_train, splits.y_train), batch_size=bs, shuffle=True)
        eval_loaders = [DataLoader(TensorDataset(*splits.split(s)), batch_size=1000) for s in ("train", "val", "test")]
        history = []
        for _ in range(cfg.train.epochs):
            model.train()
            for xb, yb in train_loader:
                opt.zero_grad()
                loss = F.cross_entropy(model(xb), yb)
                loss.backward()
                opt.step()
            model.eval()
            with torch.no_grad():
                for loader in eval_loaders:
                    total, correct, n = 0.0, 0, 0
                    for xb, yb in loader:
                        logits = model(xb)
                        total += F.cross_entropy(logits, yb, reduction="sum").item()
                        correct += (logits.argmax(1) == yb).sum().item()
                        n += len(yb)
                    history.append((total / n, correct / n))


def work_flops(results: list[RunResult], device: torch.device) -> tuple[float, float]:
    """Matmul FLOPs of the training steps and of the evaluations these runs did."""
    steps = evals = 0.0
    for r in results:
        cfg = r.spec.config
        splits = data.prepare(cfg.data, device)
        model = models.build(cfg.model, splits.sample_shape, splits.num_classes).to(device)
        bs, _, _ = schedule(len(splits.x_train), cfg.train)
        with FlopCounterMode(display=False) as step:
            F.cross_entropy(model(splits.x_train[:bs]), splits.y_train[:bs]).backward()
        with FlopCounterMode(display=False) as one_eval, torch.no_grad():
            model(torch.cat([splits.split(s)[0] for s in ("train", "val", "test")]))
        steps += r.summary["steps"] * step.get_total_flops()
        evals += len(r.metrics) * one_eval.get_total_flops()
    return steps, evals


class EvaluationClock:
    """Time spent in the engine's evaluation (train / val / test of every run), for its share of the total."""

    def __init__(self) -> None:
        self.seconds = 0.0
        original = engine.Stack._evaluate

        def timed(stack: engine.Stack, rows: list[int]) -> torch.Tensor:
            start = time.perf_counter()
            try:
                return original(stack, rows)
            finally:
                self.seconds += time.perf_counter() - start

        engine.Stack._evaluate = timed  # type: ignore[method-assign,assignment]  # timing wraps the method


def bench(name: str, specs: list[sweep.RunSpec], device: torch.device, peak: float,
          clock: EvaluationClock) -> dict[str, Any]:
    for spec in specs:  # datasets loaded before the clocks start
        data.prepare(spec.config.data, device)
    _sync(device)
    t = time.perf_counter()
    idiomatic(specs, device)
    _sync(device)
    t_a = time.perf_counter() - t
    t = time.perf_counter()
    evaluating = clock.seconds
    results = list(resolve("auto", Options())(specs, device))
    _sync(device)
    t_b = time.perf_counter() - t
    t_eval = clock.seconds - evaluating
    bad = [r.summary.get("error") for r in results if r.status == "failed"]
    if bad:
        raise SystemExit(f"{name}: {len(bad)} runs failed: {bad[0]}")
    step_flops, eval_flops = work_flops(results, device)
    flops = step_flops + eval_flops
    return {"workload": name, "runs": len(specs), "idiomatic s": t_a, "dlbench s": t_b,
            "idiomatic runs/s": len(specs) / t_a, "dlbench runs/s": len(specs) / t_b, "speedup": t_a / t_b,
            "idiomatic GFLOP/s": flops / t_a / 1e9, "dlbench GFLOP/s": flops / t_b / 1e9,
            "dlbench % of peak": 100 * flops / t_b / 1e9 / peak,
            "eval % of time": 100 * t_eval / t_b, "eval % of FLOPs": 100 * eval_flops / flops}


def markdown(rows: list[dict[str, object]]) -> str:
    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for row in rows:
        cells = [f"{v:.3g}" if isinstance(v, float) else str(v) for v in row.values()]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--runs", type=int, default=64, help="size of the learning-rate x seed grid")
    parser.add_argument("--epochs", type=int, default=None, help="override train.epochs (a quicker smoke run)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's, one per core)")
    parser.add_argument("--idiomatic", type=Path, default=None, metavar="CONFIG",
                        help="only train CONFIG's runs with the idiomatic loop (bench/whole.py times this process)")
    args = parser.parse_args()
    device = resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.idiomatic:
        idiomatic(specs_for(args.idiomatic, []), device)
        return
    # the allocator setting dlbench's vectorized executor makes on CPU, for both contestants alike
    keep_freed_memory()
    overrides = [f"data.root={ROOT / 'data'}"] + ([f"train.epochs={args.epochs}"] if args.epochs else [])
    where = (torch.cuda.get_device_name(device) if device.type == "cuda"
             else f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads")
    peak = measure_peak(device)
    print(f"device: {device.type} ({where}); torch {torch.__version__}; "
          f"measured fp32 matmul peak {peak:.1f} GFLOP/s", flush=True)
    clock = EvaluationClock()
    rows = [bench("quickstart", specs_for(ROOT / "configs" / "quickstart.yaml", overrides), device, peak, clock),
            bench(f"lr x seed grid ({args.runs} runs)", lr_seed_grid(args.runs, overrides), device, peak, clock)]
    print(markdown(rows))
    targets = [("quickstart speedup >= 8x", rows[0]["speedup"] >= 8),
               (f"{args.runs}-run grid >= 30% of peak", rows[1]["dlbench % of peak"] >= 30)]
    print("targets: " + "; ".join(f"{t}: {'met' if ok else 'NOT met'}" for t, ok in targets))


if __name__ == "__main__":
    main()
