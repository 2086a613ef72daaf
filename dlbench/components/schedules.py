"""Learning-rate schedules: the multiplier of optimizer.lr at every step, one per run of a stack.

A run's lr at step k (k = 0 for the first update) is `optimizer.lr * multiplier(k)`.
Every schedule starts with an optional linear warmup from 0 over W steps
(`schedule.warmup`: a fraction < 1 of all steps, or a number of steps); the
schedule proper then runs over the remaining steps. Runs in one stack may use
different schedules, so `StackedSchedule` gives a vector of multipliers per step.

Each schedule's catalog record says which settings it reads and their defaults; the config
refuses a setting the chosen schedule does not read.
The tests check every entry step by step against `torch.optim.lr_scheduler`
(LinearLR for the warmup, SequentialLR into the schedule proper).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any
from collections.abc import Callable

import torch
from torch import Tensor

from dlbench.catalog import CATALOG, Kind



@dataclass(frozen=True)
class Phase:
    """Where a step lies in the schedule proper (after the warmup)."""

    step: int  # steps since the warmup ended
    steps: int  # length of the schedule proper
    per_epoch: int  # steps per epoch (step / exponential count in epochs)


Multiplier = Callable[[Any, Phase], float]
SCHEDULES: Kind[Multiplier] = CATALOG["schedule"]



@SCHEDULES.register("constant")
def constant(cfg: Any, at: Phase) -> float:
    """optimizer.lr throughout (after the warmup, if any)"""
    return 1.0


@SCHEDULES.register("step")
def step(cfg: Any, at: Phase) -> float:
    """multiplied by schedule.gamma every schedule.every epochs (torch StepLR)"""
    return cfg.gamma ** (at.step // (int(cfg.every) * at.per_epoch))


@SCHEDULES.register("exponential")
def exponential(cfg: Any, at: Phase) -> float:
    """multiplied by schedule.gamma per epoch, smoothly at every step (torch ExponentialLR)"""
    return cfg.gamma ** (at.step / at.per_epoch)


@SCHEDULES.register("cosine")
def cosine(cfg: Any, at: Phase) -> float:
    """half a cosine from 1 down to schedule.min_lr at the last step (torch CosineAnnealingLR)"""
    return cfg.min_lr + (1 - cfg.min_lr) * (1 + math.cos(math.pi * at.step / at.steps)) / 2


@SCHEDULES.register("linear")
def linear(cfg: Any, at: Phase) -> float:
    """straight down from 1 to schedule.min_lr at the last step (torch LinearLR)"""
    return 1 + (cfg.min_lr - 1) * at.step / at.steps


ONE_CYCLE_START = 1 / 25  # torch OneCycleLR: starts at max_lr / div_factor (25) ...
ONE_CYCLE_END = ONE_CYCLE_START / 1e4  # ... ends at that / final_div_factor (1e4)


@SCHEDULES.register("one_cycle")
def one_cycle(cfg: Any, at: Phase) -> float:
    """up from lr/25 to lr at schedule.peak (fraction of steps), then down to lr/25e4; cosine both ways (OneCycleLR)"""
    rise_end = float(cfg.peak * at.steps) - 1  # OneCycleLR's phase boundaries, in steps
    last = at.steps - 1
    if at.step <= rise_end:
        start, end, pct = ONE_CYCLE_START, 1.0, at.step / rise_end
    else:
        start, end, pct = 1.0, ONE_CYCLE_END, (at.step - rise_end) / (last - rise_end)
    return end + (start - end) / 2 * (math.cos(math.pi * pct) + 1)


def warmup_steps(cfg: Any, total: int) -> int:
    """schedule.warmup in steps: a fraction (< 1) of all steps, or a count."""
    warmup = cfg.settings().get("warmup", 0.0)  # one_cycle has a rise of its own, and no warmup
    steps = round(warmup * total) if warmup < 1 else int(warmup)
    if steps >= total:
        raise ValueError(f"schedule.warmup: {warmup:g} is invalid: {steps} warmup steps leave none of the "
                         f"run's {total} steps to the schedule")
    return steps


def multiplier(cfg: Any, k: int, total: int, per_epoch: int) -> float:
    """The lr multiplier for update k (0-based) of a run of `total` steps."""
    warm = warmup_steps(cfg, total)
    if k < warm:
        return k / warm
    return SCHEDULES[cfg.name].builder(cfg, Phase(k - warm, total - warm, per_epoch))


class StackedSchedule:
    """Per-run lr multipliers of a stack: `schedule(k)` is a float64 [R] vector for update k."""

    def __init__(self, configs: list[Any], total: int, per_epoch: int) -> None:
        for cfg in configs:
            warmup_steps(cfg, total)  # refuse an impossible warmup before training starts
        self.configs, self.total, self.per_epoch = configs, total, per_epoch

    def __call__(self, k: int) -> Tensor:
        return torch.tensor([multiplier(c, k, self.total, self.per_epoch) for c in self.configs], dtype=torch.float64)

    def keep(self, rows: list[int]) -> None:
        """Continue with these runs only."""
        self.configs = [self.configs[i] for i in rows]
