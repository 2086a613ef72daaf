"""The progress display: within 80 columns, says what it waits on, starts a resumed stack's bar at its
checkpoint's step (the line that says which runs resume is the runner's, printed once: test_plugins),
and estimates the time left from measured step times."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from dlbench.progress import Eta, NotebookBars, TerminalBars


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


def test_the_bars_fit_80_columns_and_start_a_resumed_stack_at_its_step() -> None:
    console = Console(file=io.StringIO(), width=80, color_system=None, force_terminal=False)
    label = "stack of 3 runs (optimizer.name=sgd|adam|rmsprop, optimizer.lr: 12 values, init.scheme=he_normal)"
    with TerminalBars("tuning on cpu", 3, console) as bars:
        bars.started(label, 3)
        bars.steps(1152, 2160, 3)
        console.print(bars.progress.get_renderable())  # as drawn while the stack trains
        bars.steps(2160, 2160, 3)
        for _ in range(3):
            bars.finished()
    text = console.file.getvalue()
    assert "1152/2160 steps" in text and "resum" not in text  # the runner said which runs resume, once
    assert max(map(len, text.splitlines())) <= 80
    assert "init.scheme=he_normal" in "".join(text.split())  # the label wraps, it is not cut


def test_a_stack_being_built_says_so() -> None:
    console = Console(file=io.StringIO(), width=80, color_system=None)
    bars = TerminalBars("quickstart on cpu", 2, console)
    bars.started("stack of 2 runs", 2)
    assert "preparing data and models" in bars.progress.tasks[1].description
    bars.steps(0, 100, 2)
    assert "preparing" not in bars.progress.tasks[1].description


def test_the_notebook_bars_say_the_same(capsys: pytest.CaptureFixture[str]) -> None:
    now = [0.0]  # tqdm's clock, set by the test
    bars = NotebookBars("tuning on cpu", 3)
    bars.run._time = lambda: now[0]  # type: ignore[attr-defined]  # tqdm reads its clock through it
    label = "stack of 3 runs (optimizer.name=sgd|adam|rmsprop)"
    with bars:
        bars.started(label, 3)
        assert str(bars.run).startswith(f"{label}: preparing data and models...")
        bars.steps(1152, 2160, 3)
        assert "resum" not in capsys.readouterr().out  # the runner said which runs resume, once
        assert str(bars.run).startswith(f"{label}: ") and "preparing" not in str(bars.run)
        now[0] = 10.0
        bars.steps(1252, 2160, 3)
        # the rate is the 100 steps trained here in 10 s, not the restored 1252
        assert "1252/2160" in str(bars.run) and "10.00step/s" in str(bars.run)
        assert str(bars.runs).startswith("tuning on cpu: 0/3 runs") and str(bars.runs).endswith(" left")
        for _ in range(3):
            bars.finished()
        assert str(bars.runs).startswith("tuning on cpu: 3/3 runs")


def test_a_notebook_without_its_bars_is_told_once_in_one_line(monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    import sys

    import rich.console

    from dlbench import progress

    monkeypatch.setattr(rich.console, "_is_jupyter", lambda: True)
    monkeypatch.setitem(sys.modules, "ipywidgets", None)  # not installed: importing it raises ImportError
    progress._no_notebook_bars.cache_clear()
    shows = [progress.auto(), progress.auto()]  # two dlbench.run calls in one notebook
    assert all(show is not NotebookBars for show in shows)
    assert capsys.readouterr().err == ("terminal progress bars here: a notebook progress bar needs tqdm and "
                                       "ipywidgets (pip install 'dlbench[notebook]')\n")
