"""Every learning-rate schedule, step by step against torch.optim.lr_scheduler, with and without warmup."""

from __future__ import annotations

from typing import Any
from collections.abc import Callable

import pytest
import torch
from torch.optim import lr_scheduler

from dlbench.components.schedules import SCHEDULES, StackedSchedule
from sweep_util import reading

from dlbench.config.schema import ConfigError, section, validate

TOTAL, PER_EPOCH, LR = 60, 7, 0.5
Scheduler = Callable[[torch.optim.Optimizer, Any, int], lr_scheduler.LRScheduler]

# name -> (settings to test it with, the torch scheduler over the `steps` after the warmup)
REFERENCES: dict[str, tuple[dict[str, Any], Scheduler]] = {
    "constant": ({}, lambda opt, cfg, steps: lr_scheduler.ConstantLR(opt, factor=1.0)),
    "step": ({"every": 2, "gamma": 0.5},
             lambda opt, cfg, steps: lr_scheduler.StepLR(opt, step_size=cfg.every * PER_EPOCH, gamma=cfg.gamma)),
    "exponential": ({"gamma": 0.8},
                    lambda opt, cfg, steps: lr_scheduler.ExponentialLR(opt, gamma=cfg.gamma ** (1 / PER_EPOCH))),
    "cosine": ({"min_lr": 0.1},
               lambda opt, cfg, steps: lr_scheduler.CosineAnnealingLR(opt, T_max=steps, eta_min=cfg.min_lr * LR)),
    "linear": ({"min_lr": 0.2},
               lambda opt, cfg, steps: lr_scheduler.LinearLR(opt, start_factor=1.0, end_factor=cfg.min_lr,
                                                            total_iters=steps)),
    "one_cycle": ({"peak": 0.25},
                  lambda opt, cfg, steps: lr_scheduler.OneCycleLR(opt, max_lr=LR, total_steps=steps,
                                                                  pct_start=cfg.peak)),
}


def _torch_lrs(cfg: Any, warmup: int) -> list[float]:
    """The lr torch uses for each of TOTAL updates: LinearLR warmup from ~0, then the schedule via SequentialLR."""
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=LR)
    main = REFERENCES[cfg.name][1](opt, cfg, TOTAL - warmup)
    if warmup:
        # LinearLR cannot start at exactly 0; 1e-12 of the lr is 0 to the tolerance below
        ramp = lr_scheduler.LinearLR(opt, start_factor=1e-12, end_factor=1.0, total_iters=warmup)
        main = lr_scheduler.SequentialLR(opt, [ramp, main], milestones=[warmup])
    lrs = []
    for _ in range(TOTAL):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        main.step()
    return lrs


def test_every_schedule_has_a_torch_reference() -> None:
    assert set(REFERENCES) == set(SCHEDULES.names())


# warmup as a step count and as a fraction, for every schedule that reads it (one_cycle rises by itself)
CASES = [(name, warmup) for name in SCHEDULES.names() for warmup in (0, 10, 0.25)
         if warmup == 0 or "warmup" in SCHEDULES.record(name).reads()]


@pytest.mark.parametrize("name, warmup", CASES)
def test_schedule_matches_torch_step_by_step(name: str, warmup: float) -> None:
    cfg = reading("schedule", name=name, warmup=warmup, **REFERENCES[name][0])  # one_cycle reads no warmup
    steps = round(warmup * TOTAL) if warmup < 1 else int(warmup)
    schedule = StackedSchedule([cfg], TOTAL, PER_EPOCH)
    ours = [LR * float(schedule(k)[0]) for k in range(TOTAL)]
    torch.testing.assert_close(ours, _torch_lrs(cfg, steps), rtol=1e-6, atol=1e-9)


def test_runs_of_one_stack_follow_their_own_schedules() -> None:
    configs = [section("schedule", name=name, **REFERENCES[name][0]) for name in SCHEDULES.names()]
    configs.append(section("schedule", name="cosine", warmup=5))
    schedule = StackedSchedule(configs, TOTAL, PER_EPOCH)
    alone = [StackedSchedule([c], TOTAL, PER_EPOCH) for c in configs]
    for k in range(TOTAL):
        assert torch.equal(schedule(k), torch.cat([a(k) for a in alone]))
    schedule.keep([1, 6])
    assert torch.equal(schedule(30), torch.cat([alone[1](30), alone[6](30)]))


def test_warmup_longer_than_the_run_is_refused() -> None:
    with pytest.raises(ValueError, match=r"schedule.warmup: 60 is invalid: 60 warmup steps leave none"):
        StackedSchedule([section("schedule", warmup=60)], TOTAL, PER_EPOCH)


@pytest.mark.parametrize("section, message", [
    ({"name": "cosine", "gamma": 0.5}, "schedule.gamma: 0.5 is invalid: schedule 'cosine' does not read it"),
    ({"name": "step", "min_lr": 0.1}, "schedule.min_lr: 0.1 is invalid: schedule 'step' does not read it"),
    ({"name": "one_cycle", "warmup": 0.1}, "schedule.warmup: 0.1 is invalid: schedule 'one_cycle' does not read it"),
    ({"name": "constant", "peak": 0.3}, "schedule.peak: 0.3 is invalid: schedule 'constant' does not read it"),
    ({"warmup": 2.5},
     "schedule.warmup: 2.5 is invalid: must be int >= 0 | float >= 0 < 1 (linear warmup from 0: a fraction"),
    ({"name": "poly"}, "schedule.name: 'poly' is invalid: unknown schedule"),
])
def test_settings_a_schedule_does_not_read_are_refused(section: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as e:
        validate({"schedule": section})
    assert str(e.value).startswith(message)
