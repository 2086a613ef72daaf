"""The progress display: within 80 columns, says what it waits on and what it resumed,
and estimates the time left from measured step times."""

from __future__ import annotations

import io

from rich.console import Console

from dlbench.progress import Eta, TerminalBars


def test_time_left_is_measured_run_steps() -> None:
    eta = Eta(runs=4)
    eta.stack(2)
    eta.steps(0, 100, 2, now=0.0)
    assert eta.seconds_left(0.0) is None  # nothing measured yet: no guess
    eta.steps(50, 100, 2, now=10.0)  # 2 runs x 50 steps in 10 s: 10 run-steps a second
    assert eta.seconds_left(10.0) == (2 * 50 + 2 * 100) / 10  # this stack's rest + 2 runs not started


def test_a_resumed_stack_counts_only_the_steps_trained_now() -> None:
    eta = Eta(runs=3)
    eta.stack(3)
    eta.steps(1152, 2160, 3, now=0.0)  # restored from a checkpoint: its 1152 steps took no time here
    eta.steps(1252, 2160, 3, now=10.0)
    assert eta.seconds_left(10.0) == 3 * (2160 - 1252) / (3 * 100 / 10)


def test_the_bars_fit_80_columns_and_say_what_they_resume() -> None:
    console = Console(file=io.StringIO(), width=80, color_system=None, force_terminal=False)
    label = "stack of 3 runs (optimizer.name=sgd|adam|rmsprop, optimizer.lr: 12 values, init.scheme=he_normal)"
    with TerminalBars("tuning on cpu", 3, console) as bars:
        bars.started(label, 3)
        bars.steps(1152, 2160, 3)
        bars.steps(2160, 2160, 3)
        console.print(bars.progress.get_renderable())  # as drawn while the stack trains
        for _ in range(3):
            bars.finished()
    text = console.file.getvalue()
    assert "3 runs resume from a checkpoint at step 1152 of 2160" in text
    assert max(map(len, text.splitlines())) <= 80
    assert "init.scheme=he_normal" in "".join(text.split())  # the label wraps, it is not cut


def test_a_stack_being_built_says_so() -> None:
    console = Console(file=io.StringIO(), width=80, color_system=None)
    bars = TerminalBars("quickstart on cpu", 2, console)
    bars.started("stack of 2 runs", 2)
    assert "preparing data and models" in bars.progress.tasks[1].description
    bars.steps(0, 100, 2)
    assert "preparing" not in bars.progress.tasks[1].description
