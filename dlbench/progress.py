"""Progress of a sweep while it trains: terminal bars (rich) for the CLI and scripts, a
notebook bar (tqdm's ipywidgets bar) in Jupyter, and `launching`, the one place that
knows the launcher's progress callback (a display only hears: a run started, its steps,
a run finished).
"""

from __future__ import annotations

import contextlib
import functools
import warnings
from typing import TYPE_CHECKING, Any, Callable, Iterator, Protocol

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

if TYPE_CHECKING:
    from dlbench.sweep import RunSpec

# the launcher behind a progress display: runs to train -> their results as they finish
Launch = Callable[["list[RunSpec]"], Iterator[Any]]


class Bars(Protocol):
    def __enter__(self) -> Bars: ...

    def __exit__(self, *exc: object) -> None: ...

    def started(self, label: str) -> None:
        """A stack of runs started training."""

    def relabel(self, label: str) -> None:
        """The training stack's label changed (runs finished early)."""

    def steps(self, done: int, total: int) -> None:
        """Its steps so far."""

    def finished(self) -> None:
        """One more run is finished."""


Show = Callable[[str, int], Bars]  # (title, runs to train) -> a display


class TerminalBars:
    """Two rich bars on a console: runs finished, and the steps of the run training now."""

    def __init__(self, title: str, total: int, console: Console) -> None:
        columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   TimeRemainingColumn()]
        self.progress = Progress(*columns, console=console, transient=False)
        self.runs = self.progress.add_task(title, total=total)
        self.run = self.progress.add_task("run", total=1, visible=False)

    def __enter__(self) -> TerminalBars:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.update(self.run, visible=False)
        self.progress.stop()

    def started(self, label: str) -> None:
        self.progress.reset(self.run, total=1, description=f"  {label}"[:70], visible=True)

    def relabel(self, label: str) -> None:
        self.progress.update(self.run, description=f"  {label}"[:70])

    def steps(self, done: int, total: int) -> None:
        self.progress.update(self.run, completed=done, total=total)

    def finished(self) -> None:
        self.progress.advance(self.runs)


class NotebookBars:
    """The same two bars as notebook widgets (tqdm.notebook); the run's bar goes when it is done."""

    def __init__(self, title: str, total: int) -> None:
        from tqdm.notebook import tqdm

        self.runs = tqdm(total=total, desc=title, unit="run")
        self.run = tqdm(total=1, unit="step", leave=False)

    def __enter__(self) -> NotebookBars:
        return self

    def __exit__(self, *exc: object) -> None:
        self.run.close()
        self.runs.close()

    def started(self, label: str) -> None:
        self.run.reset(total=1)
        self.run.set_description(label[:70])

    def relabel(self, label: str) -> None:
        self.run.set_description(label[:70])

    def steps(self, done: int, total: int) -> None:
        if self.run.total != total:
            self.run.reset(total=total)
        self.run.update(done - self.run.n)  # tqdm redraws at most every 0.1 s

    def finished(self) -> None:
        self.runs.update(1)


def terminal(console: Console) -> Show:
    return functools.partial(TerminalBars, console=console)


def auto() -> Show:
    """In Jupyter the notebook bars (with tqdm and ipywidgets installed), elsewhere terminal bars on stderr."""
    if Console().is_jupyter:
        try:
            import ipywidgets  # noqa: F401 - tqdm.notebook draws with it
            import tqdm.notebook  # noqa: F401
        except ImportError:
            warnings.warn("a notebook progress bar needs tqdm and ipywidgets: pip install 'dlbench[notebook]'",
                          stacklevel=3)
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
            bars.started(label)
            shown = [len(stack)]

            def on_step(done: int, total: int, training: int) -> None:
                if training != shown[0]:  # runs that stopped early (diverged, early stopping, pruned)
                    shown[0] = training
                    bars.relabel(f"{label}, {len(stack) - training} finished early")
                bars.steps(done, total)
            return on_step

        with bars or contextlib.nullcontext(), \
                contextlib.closing(launcher(todo, device, on_start if bars else None, options)) as results:
            for result in results:
                if bars:
                    bars.finished()
                yield result

    return launch
