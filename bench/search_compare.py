"""What does TPE buy here? Search methods on the tuning experiment's space, and the cost of stacks.

    python bench/search_compare.py compare [--reps 10] [--epochs 30] [--methods tpe sobol random]
    python bench/search_compare.py walltime [--trials 64] [--epochs 30]
    python bench/search_compare.py valley [--epochs 30] [--budgets 16 48]

Everything trains into results/search_compare/ (override with --out); every part is a
`dlbench.run` of a config mapping, so a part that is stopped resumes where it was (finished
runs are skipped), and running it again only reads and prints.

compare: configs/tuning.yaml's model, data and space (Adam: lr log-uniform [1e-5, 1], weight
  decay log-uniform [1e-7, 1e-2]; MNIST-1D, MLP 100-100, he_normal; pruned at a third and two
  thirds of training, keeping half), one search per method and repetition (random.seed = the
  repetition), the same budget (3 rounds of 16 points): tpe (Optuna's TPE), sobol and random
  (narrowed to the best quarter each round, as the tuning experiment). The table: the best
  validation accuracy found after each round, mean ± 95 % CI (t) over the repetitions.
walltime: a 64-trial TPE search (4 rounds of 16) trained as dlbench trains it, in stacks,
  against Optuna's own `study.optimize` loop asking one trial at a time and training it as a
  stack of one (the same engine, model, data and epochs; no pruning in either): seconds and ratio.
valley: the "Crowded Valley" protocol (Schmidt et al. 2021) on the same task: five optimizers
  (adam, momentum, nesterov, rmsprop, adagrad) at their defaults, and each tuned with TPE at 16
  trials (4 rounds of 4) and 48 (3 rounds of 16), every best confirmed on 5 fresh seeds: test
  accuracy of the best default against the best tuned optimizer per budget.
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

ROOT = Path(__file__).resolve().parents[1]
SPACE = {"optimizer.lr": {"log_uniform": [1.0e-5, 1.0]}, "optimizer.weight_decay": {"log_uniform": [1.0e-7, 1.0e-2]}}
DEFAULTS = {"adam": {"optimizer.name": "adam", "optimizer.lr": 0.001},  # the tuning experiment's defaults
            "momentum": {"optimizer.name": "momentum", "optimizer.lr": 0.01, "optimizer.momentum": 0.9},
            "nesterov": {"optimizer.name": "nesterov", "optimizer.lr": 0.01, "optimizer.momentum": 0.9},
            "rmsprop": {"optimizer.name": "rmsprop", "optimizer.lr": 0.001},
            "adagrad": {"optimizer.name": "adagrad", "optimizer.lr": 0.01}}


def base(name: str, epochs: int) -> dict[str, Any]:
    """configs/tuning.yaml's task for Adam, training `epochs` epochs (evaluated 5 times, pruned at 1/3 and 2/3)."""
    every = max(1, epochs // 15) if epochs >= 15 else 1
    prune = max(every, round(epochs / 3 / every) * every)
    return {"name": name, "data": {"dataset": "mnist1d", "val_size": 0.2, "root": str(ROOT / "data")},
            "model": {"kind": "mlp", "hidden": [100, 100], "activation": "relu"}, "init": {"scheme": "he_normal"},
            "optimizer": {"name": "adam"},
            "train": {"epochs": epochs, "batch_size": 100, "eval_every": every, "seeds": [0], "device": "cpu"},
            "random": {"trials": 16, "rounds": 3, "seed": 0, "space": SPACE, "prune": {"every": prune, "keep": 0.5}},
            "plots": []}


def search_config(method: str, rep: int, epochs: int) -> dict[str, Any]:
    cfg = base(f"{method}-{rep}-e{epochs}", epochs)
    cfg["random"].update({"method": method, "seed": rep})
    if method not in ("tpe", "gp"):
        cfg["random"]["keep"] = 0.25
    return cfg


def train(cfg: dict[str, Any], out: Path) -> Path:
    import dlbench

    return Path(dlbench.run(cfg, out, progress=False, plots=False).root)


def runs_of(root: Path) -> pd.DataFrame:
    from dlbench.results.load import load_runs

    return load_runs(root)[0]


def best_after_each_round(root: Path, rounds: int) -> list[float]:
    runs = runs_of(root)
    acc = runs["final.val_acc"].where(runs["status"].isin(["ok", "pruned"])).astype(float)
    return [float(acc[runs["round"] <= r].max()) for r in range(1, rounds + 1)]


def interval(values: list[float]) -> str:
    v = np.asarray(values, dtype=float) * 100
    if len(v) < 2:
        return f"{v.mean():.2f}"
    half = stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v))
    return f"{v.mean():.2f} ± {half:.2f}"


def compare(args: argparse.Namespace) -> None:
    table: dict[str, list[list[float]]] = {}
    for method in args.methods:
        for rep in range(args.reps):
            start = time.perf_counter()
            root = train(search_config(method, rep, args.epochs), args.out / "compare")
            table.setdefault(method, []).append(best_after_each_round(root, 3))
            print(f"{method} rep {rep}: {time.perf_counter() - start:.0f} s, best after each round "
                  f"{[round(100 * b, 2) for b in table[method][-1]]}", flush=True)
    print(f"\n{args.reps} repetitions, {args.epochs} epochs; best validation accuracy (%) found after each round, "
          "mean ± 95 % CI (t)\n")
    print("| method | round 1 (16 trials) | round 2 (32) | round 3 (48) |\n|---|---|---|---|")
    for method, reps in table.items():
        print(f"| {method} | " + " | ".join(interval([r[k] for r in reps]) for k in range(3)) + " |")


def walltime(args: argparse.Namespace) -> None:
    import optuna
    import torch

    from dlbench.plan import sweep
    from dlbench.config import schema
    from dlbench.training import engine

    rounds = args.trials // 16
    cfg = base("walltime-stacks", args.epochs)
    cfg["random"] = {"method": "tpe", "trials": 16, "rounds": rounds, "seed": 0, "space": SPACE}
    start = time.perf_counter()
    train(cfg, args.out / f"walltime-{os.getpid()}")
    stacked = time.perf_counter() - start

    one = base("walltime-one", args.epochs)
    del one["random"]
    space = {"optimizer.lr": (1e-5, 1.0), "optimizer.weight_decay": (1e-7, 1e-2)}

    def objective(trial: optuna.Trial) -> float:
        raw = copy.deepcopy(one)
        for key, (low, high) in space.items():
            section, field = key.split(".")
            raw[section][field] = trial.suggest_float(key, low, high, log=True)
        config = schema.validate(raw)
        (result,) = engine.train(sweep.expand(config, raw), torch.device("cpu"))
        return float(result.metrics[-1]["val_acc"]) if result.status == "ok" else 0.0

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=0, multivariate=True))
    start = time.perf_counter()
    study.optimize(objective, n_trials=args.trials)
    serial = time.perf_counter() - start
    print(f"\n{args.trials} TPE trials, {args.epochs} epochs each, {torch.get_num_threads()} torch threads, "
          f"load average (1 min) at the end: {os.getloadavg()[0]:.1f}\n")
    print("| how | seconds | best val acc | vs stacks |\n|---|---|---|---|")
    best = runs_of(args.out / f"walltime-{os.getpid()}" / "walltime-stacks")["final.val_acc"].max()
    print(f"| dlbench: {rounds} rounds of 16 in stacks | {stacked:.0f} | {100 * best:.2f} | 1.00x |")
    print(f"| Optuna study.optimize, one trial at a time | {serial:.0f} | {100 * study.best_value:.2f} | "
          f"{serial / stacked:.2f}x |")


def valley(args: argparse.Namespace) -> None:
    rows = []
    # a small budget in 4 rounds (its first the random start-up), a larger one in 3 rounds of 16
    plans = {str(b): (b // (4 if b <= 16 else 3), 4 if b <= 16 else 3) for b in args.budgets}
    for budget, (trials, rounds) in {"default": (0, 0), **plans}.items():
        cfg = base(f"valley-{budget}-e{args.epochs}", args.epochs)
        cfg["cases"] = DEFAULTS
        cfg["confirm"] = {"top": 1, "seeds": [100, 101, 102, 103, 104]}
        if budget == "default":  # each optimizer as written, on the confirm seeds
            cfg["train"]["seeds"] = cfg.pop("confirm")["seeds"]
            del cfg["random"]
        else:
            cfg["random"].update({"method": "tpe", "trials": trials, "rounds": rounds})
        runs = runs_of(train(cfg, args.out / "valley"))
        done = runs[(runs["status"] == "ok") & ((runs["stage"] == "confirm") if "stage" in runs else True)]
        for case, g in done.groupby("case"):
            rows.append({"budget": budget, "case": case, "test": g["final.test_acc"].astype(float).tolist()})
    print(f"\nCrowded Valley protocol, {args.epochs} epochs: test accuracy (%) on 5 fresh seeds, mean ± 95 % CI\n")
    budgets = ["default", *plans]
    header = ["optimizer", "defaults", *(f"tuned, {b} trials" for b in plans)]
    print("| " + " | ".join(header) + " |\n" + "|---" * len(header) + "|")
    table = {(r["budget"], r["case"]): r["test"] for r in rows}
    for case in DEFAULTS:
        print(f"| {case} | " + " | ".join(interval(table.get((b, case), [math.nan])) for b in budgets) + " |")
    for b in budgets:
        means = {c: float(np.mean(table.get((b, c), [math.nan]))) for c in DEFAULTS}
        best = max(means, key=means.__getitem__)
        print(f"best at {b}: {best} {interval(table[(b, best)])}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=["compare", "walltime", "valley"])
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "search_compare")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--reps", type=int, default=10)
    parser.add_argument("--methods", nargs="+", default=["tpe", "sobol", "random"])
    parser.add_argument("--trials", type=int, default=64, help="walltime: trials of the search")
    parser.add_argument("--budgets", type=int, nargs="*", default=[16, 48],
                        help="valley: trials per tuned optimizer (none: the defaults alone)")
    args = parser.parse_args()
    {"compare": compare, "walltime": walltime, "valley": valley}[args.part](args)


if __name__ == "__main__":
    main()
