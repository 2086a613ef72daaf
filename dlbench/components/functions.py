"""`task: function`: the real optimizers on a 2-D test function instead of a network.

The "model" is one parameter, the point (x, y), as a stack of one run; each step
evaluates f at the point, backpropagates and applies the same stacked update rule a
training run steps with, so the paths show exactly the update rules the benchmark uses.
Nothing here is random: `train.seeds` is ignored.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any
from collections.abc import Callable

import pandas as pd
import torch

from dlbench.components.optimizers import StackedOptimizer
from dlbench.catalog import CATALOG, Kind

if TYPE_CHECKING:
    from dlbench.plan.sweep import RunSpec

Function = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
FUNCTIONS: Kind[Function] = CATALOG["function"]


# start: the usual starting point; view: (x range, y range) of the contour plot; minimum value is 0 for all
@FUNCTIONS.register("elliptic")
def elliptic(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """f = x^2 / 20 + y^2: a bowl 20x flatter along x than y (Saito, Deep Learning from Scratch, ch. 6)"""
    return x**2 / 20 + y**2


@FUNCTIONS.register("rosenbrock")
def rosenbrock(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """f = (1 - x)^2 + 100 (y - x^2)^2: a narrow curved valley, minimum 0 at (1, 1)"""
    return (1 - x) ** 2 + 100 * (y - x**2) ** 2


def descend(fn: Function, start: tuple[float, float], opt: Any, steps: int) -> pd.DataFrame:
    """The optimizer's path: one row per step (0 = start) with x, y and f(x, y); stops if f diverges."""
    point = torch.tensor([start], dtype=torch.float64, requires_grad=True)  # a stack of one run, float64
    optimizer = StackedOptimizer([point], [opt])
    rows = []
    for step in range(steps + 1):
        value = fn(*point[0])
        rows.append({"step": step, "x": point[0, 0].item(), "y": point[0, 1].item(), "f": value.item()})
        if step == steps or not math.isfinite(value.item()):
            break
        point.grad = None
        value.backward()
        optimizer.step()
    return pd.DataFrame(rows)


def run(specs: list[RunSpec]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(paths: one row per configuration and step, summary: one row per configuration)."""
    seed = specs[0].seed  # the paths are deterministic: one per configuration, not per seed
    paths, summary = [], []
    for spec in (s for s in specs if s.seed == seed):
        cfg = spec.config.function
        entry = FUNCTIONS[cfg.name]
        start = cfg.start
        path = descend(entry.builder, start, spec.config.optimizer, cfg.steps)
        below = path.index[path["f"] < cfg.threshold]
        paths.append(path.assign(**spec.params))
        summary.append({**spec.params, "function": cfg.name, "final_x": path["x"].iloc[-1],
                        "final_y": path["y"].iloc[-1], "final_f": path["f"].iloc[-1],
                        "steps_to_threshold": int(path["step"][below[0]]) if len(below) else None,
                        "threshold": cfg.threshold, "steps": int(path["step"].iloc[-1]),
                        "diverged": not math.isfinite(path["f"].iloc[-1])})
    return pd.concat(paths, ignore_index=True), pd.DataFrame(summary)
