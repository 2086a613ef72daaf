"""Progress of a sweep while it trains: terminal bars (rich) for the CLI and scripts, a
notebook bar (tqdm's ipywidgets bar) in Jupyter, and `launching`, the one place that
knows the launcher's progress callback (a display only hears: a run started, its steps,
a run finished).
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import sys
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Protocol

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn
from rich.table import Column

if TYPE_CHECKING:
    from dlbench.plan.sweep import RunSpec

# the launcher behind a progress display: runs to train -> their results as they finish
Launch = Callable[["list[RunSpec]"], Iterator[Any]]


class Bars(Protocol):
    def __enter__(self) -> Bars: ...

    def __exit__(self, *exc: object) -> None: ...

    def started(self, label: str, runs: int) -> None:
        """A stack of `runs` runs started: it is being built, then trains."""

    def relabel(self, label: str) -> None:
        """The training stack's label changed (runs finished early)."""

    def steps(self, done: int, total: int, training: int) -> None:
        """Its steps so far (the first report: where it starts), `training` runs still training."""

    def finished(self) -> None:
        """One more run is finished."""


Show = Callable[[str, int], Bars]  # (title, runs to train) -> a display


class Eta:
    """The sweep's time left, from measured step times: the work is run-steps (a stack of
    12 runs at step 100 has done 1200), timed from the first step reported this session, so
    a resumed stack's earlier steps do not count as fast ones; the runs not started yet are
    costed at the mean steps per run seen so far. No window, no smoothing: it moves only as
    the measured rate does."""

    def __init__(self, runs: int) -> None:
        self.runs = runs
        self.started_runs = 0
        self.steps_seen: list[int] = []  # each started run's total steps
        self.finished_work = 0.0  # run-steps of stacks done this session
        self.stack_runs = 0
        self.stack_first = self.stack_done = self.stack_total = 0
        self.t0: float | None = None

    def stack(self, runs: int) -> None:
        self.finished_work += self.stack_runs * (self.stack_done - self.stack_first)
        self.stack_runs, self.started_runs = runs, self.started_runs + runs
        self.stack_first = self.stack_done = self.stack_total = 0

    def steps(self, done: int, total: int, training: int, now: float) -> None:
        if self.stack_total == 0:  # the stack's first report: where it starts (0, or a checkpoint's step)
            self.stack_first = done
            self.steps_seen += [total] * self.stack_runs
        self.stack_done, self.stack_total, self.stack_runs = done, total, training
        if self.t0 is None:
            self.t0 = now

    def seconds_left(self, now: float) -> float | None:
        done = self.finished_work + self.stack_runs * (self.stack_done - self.stack_first)
        if self.t0 is None or done <= 0 or now <= self.t0:
            return None
        mean_steps = sum(self.steps_seen) / len(self.steps_seen) if self.steps_seen else 0
        left = self.stack_runs * (self.stack_total - self.stack_done) + (self.runs - self.started_runs) * mean_steps
        return left / (done / (now - self.t0))


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "-:--:--"
    return str(datetime.timedelta(seconds=round(seconds)))


# what every display says, in the same words, while a stack is built (which runs resume from which
# checkpoint step is said once, before training: `launchers.resuming`, printed by the runner)
def preparing(label: str) -> str:
    return f"{label}: preparing data and models..."


class TerminalBars:
    """Two rich bars on a console, within its width: the sweep (runs finished, time left from
    measured step times) and the stack training now (its label wraps, it is never cut)."""

    def __init__(self, title: str, total: int, console: Console) -> None:
        label = TextColumn("{task.description}", table_column=Column(overflow="fold", no_wrap=False, ratio=1))
        columns = [label, BarColumn(bar_width=16), TextColumn("{task.fields[count]}"),
                   TextColumn("{task.fields[clock]}")]
        self.console = console
        self.progress = Progress(*columns, console=console, transient=False)
        self.total = total
        self.finished_runs = 0
        self.eta = Eta(total)
        self.runs = self.progress.add_task(title, total=total, count=f"0/{total} runs", clock="")
        self.run = self.progress.add_task("run", total=1, visible=False, count="", clock="")
        self.label = ""
        self.stack_size = 0
        self.first: tuple[int, float] | None = None  # the stack's first (step, time) reported

    def __enter__(self) -> TerminalBars:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.update(self.run, visible=False)
        self.progress.stop()

    def started(self, label: str, runs: int = 1) -> None:
        self.label, self.stack_size, self.first = label, runs, None
        self.eta.stack(runs)
        self.progress.reset(self.run, total=1, description=f"  {preparing(label)}",
                            visible=True, count="", clock="")

    def relabel(self, label: str) -> None:
        self.label = label
        self.progress.update(self.run, description=f"  {label}")

    def steps(self, done: int, total: int, training: int | None = None) -> None:
        now = time.monotonic()
        if self.first is None:  # the stack's first report is where it starts: 0, or a checkpoint's step
            self.first = (done, now)
        self.eta.steps(done, total, self.stack_size if training is None else training, now)
        first_done, t0 = self.first
        stack_left = (total - done) * (now - t0) / (done - first_done) if done > first_done else None
        self.progress.update(self.run, completed=done, total=total, description=f"  {self.label}",
                             count=f"{done}/{total} steps", clock=f"{_clock(stack_left)} left")
        self.progress.update(self.runs, clock=f"{_clock(self.eta.seconds_left(now))} left")

    def finished(self) -> None:
        self.finished_runs += 1
        self.progress.update(self.runs, advance=1, count=f"{self.finished_runs}/{self.total} runs")


class NotebookBars:
    """The same two bars as notebook widgets (tqdm.notebook), in the terminal's words: the
    stack's label, "preparing data and models..." until its first step, a bar that starts at a
    resumed stack's checkpoint step, and the sweep's time left from measured step times (Eta; tqdm's own
    estimate would count a resumed stack's restored steps as done in no time). The run's bar
    goes when it is done."""

    LABEL = 90  # characters of a stack's label the widget shows; longer ones end in "…"

    def __init__(self, title: str, total: int) -> None:
        from tqdm.notebook import tqdm

        self.eta = Eta(total)
        self.stack_size = 0
        self.label = ""
        self.first: int | None = None  # the stack's first step reported
        self.drawn = 0.0  # when the sweep's time left was last drawn
        self.runs = tqdm(total=total, desc=title, unit="run",
                         bar_format="{desc}: {n_fmt}/{total_fmt} runs {bar}{postfix}")  # postfix: ", 0:01:02 left"
        self.runs.set_postfix_str(f"{_clock(None)} left")
        self.run = tqdm(total=1, unit="step", leave=False)

    def __enter__(self) -> NotebookBars:
        return self

    def __exit__(self, *exc: object) -> None:
        self.run.close()
        self.runs.close()

    def _describe(self, text: str) -> None:
        self.run.set_description_str(text if len(text) <= self.LABEL else text[:self.LABEL - 1] + "…")

    def started(self, label: str, runs: int = 1) -> None:
        self.label, self.stack_size, self.first = label, runs, None
        self.eta.stack(runs)
        self.run.initial = 0
        self.run.reset(total=1)
        self._describe(preparing(label))

    def relabel(self, label: str) -> None:
        self.label = label
        self._describe(label)

    def steps(self, done: int, total: int, training: int | None = None) -> None:
        now = time.monotonic()
        if self.first is None:  # the stack's first report: where it starts (0, or a checkpoint's step)
            self.first = done
            self.run.reset(total=total)
            self._describe(self.label)
            if done > 0:  # resumed from a checkpoint: the bar starts there, its rate counts the steps trained now
                self.run.initial = self.run.n = self.run.last_print_n = done
                self.run.refresh()
        else:
            self.run.update(done - self.run.n)  # tqdm redraws at most every 0.1 s
        self.eta.steps(done, total, self.stack_size if training is None else training, now)
        # a widget update is a message to the browser: the time left is redrawn once a second
        self.runs.set_postfix_str(f"{_clock(self.eta.seconds_left(now))} left", refresh=now - self.drawn >= 1)
        self.drawn = now if now - self.drawn >= 1 else self.drawn

    def finished(self) -> None:
        self.runs.update(1)


def terminal(console: Console) -> Show:
    return functools.partial(TerminalBars, console=console)


@functools.cache  # said once in a notebook's session, not at every dlbench.run
def _no_notebook_bars() -> None:
    print("terminal progress bars here: a notebook progress bar needs tqdm and ipywidgets "
          "(pip install 'dlbench[notebook]')", file=sys.stderr)


def auto() -> Show:
    """In Jupyter the notebook bars (with tqdm and ipywidgets installed), elsewhere terminal bars on stderr."""
    if Console().is_jupyter:
        try:
            import ipywidgets  # noqa: F401 - tqdm.notebook draws with it
            import tqdm.notebook  # noqa: F401
        except ImportError:
            _no_notebook_bars()
        else:
            return NotebookBars
    return terminal(Console(stderr=True, force_jupyter=False))


def launching(launcher: Callable[..., Iterator[Any]], options: Any, device: Any, show: Show | None,
              title: str) -> Launch:
    """The launcher's call with a progress display (None: none): runs to train -> results as they finish."""

    from dlbench.execution.launchers import describe

    def launch(todo: list[RunSpec]) -> Iterator[Any]:
        bars = show(title, len(todo)) if show else None

        def on_start(stack: list[RunSpec]) -> Callable[[int, int, int], None]:
            """A stack starts: name it (its run count and the values varying inside it)."""
            assert bars is not None
            label = describe(stack)
            bars.started(label, len(stack))
            shown = [len(stack)]

            def on_step(done: int, total: int, training: int) -> None:
                if training != shown[0]:  # runs that stopped early (diverged, early stopping, pruned)
                    shown[0] = training
                    bars.relabel(f"{label}, {len(stack) - training} finished early")
                bars.steps(done, total, training)
            return on_step

        results = launcher(todo, device, on_start if bars else None, options)
        with bars or contextlib.nullcontext():
            try:
                for result in results:
                    if bars:
                        bars.finished()
                    yield result
            finally:  # stopped early (Ctrl-C, --fail-fast): the launcher's generator cleans up now
                close = getattr(results, "close", None)
                if close is not None:
                    close()

    return launch
