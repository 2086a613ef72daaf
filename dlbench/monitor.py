"""`dlbench status` and `dlbench watch`: where a sweep stands, read from its folder alone.

The folder says everything: finished runs (`runs/`), runs in training (`.progress/`, written
by whatever process trains them: results/live.py), the runs planned (`.progress/sweep.json`)
and, on a cluster, the jobs and their scheduler's states. Nothing here talks to a training
process, so both commands work from any terminal that sees the folder, whichever launcher
trains. `watch` redraws the same view (rich's Live) until nothing runs the sweep any more.
"""

from __future__ import annotations

import datetime
import math
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from rich import box
from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from dlbench.catalog import CATALOG
from dlbench.catalog.status import DIVERGED, FAILED, OK, PRUNED
from dlbench.errors import ConfigError
from dlbench.execution.jobs import LAUNCHERS, UNKNOWN, SchedulerState, read_jobs, scheduler_states
from dlbench.results import live
from dlbench.results.live import RunProgress
from dlbench.results.report import report
from dlbench.results.render.columns import best_lines
from dlbench.results.load import value_text
from dlbench.results.store import Store, check_folder, read_view

REFRESH = 2.0  # seconds between `watch`'s redraws: the writers' own cadence (live.EVERY)
STATUS_ROWS = 20  # runs in training listed by `status`; `watch` lists what the terminal's height allows
SCHEDULER_EVERY = 10.0  # seconds between two questions to the scheduler while watching


@dataclass(frozen=True)
class Job:
    """A scheduler's task of the sweep (a SLURM array task, a Ray job: one stack), as its scheduler reports it."""

    task_id: str
    state: SchedulerState
    runs: int  # the runs it trains
    unfinished: int  # of those, the runs without a folder yet
    launcher: str = "slurm"  # whose: slurm | ray


class Scheduler:
    """The jobs record and the scheduler's states of its tasks, asked at most every `every` seconds
    (squeue / scontrol, or a Ray cluster's job server, for each redraw would load a shared cluster)."""

    def __init__(self, every: float = SCHEDULER_EVERY) -> None:
        self.every, self.asked = every, -math.inf
        self.states: dict[str, SchedulerState] = {}

    def __call__(self, root: Path, finished: set[str]) -> list[Job]:
        records = read_jobs(root)  # a scheduler's tasks: states to ask
        if time.monotonic() - self.asked >= self.every or any(r.task_id not in self.states for r in records):
            self.asked, self.states = time.monotonic(), scheduler_states(records)
        return [Job(r.task_id, self.states.get(r.task_id, SchedulerState(UNKNOWN)), len(r.run_ids),
                    sum(run not in finished for run in r.run_ids), r.launcher) for r in records]


@dataclass(frozen=True)
class Snapshot:
    """What the folder says now."""

    root: Path
    name: str
    keys: list[str]  # the swept keys, in the report's order
    planned: int | None  # runs planned so far (None: the folder records no plan)
    later: int  # at most this many more runs, planned by later rounds of a search
    counts: dict[str, int]  # finished by status: ok, pruned, failed, diverged
    training: list[RunProgress]  # with a live writer, not finished
    stale: list[RunProgress]  # their writer is gone (killed): they resume on the next `dlbench run`
    queued: int | None
    running: bool  # some process still runs the sweep (its `dlbench run`, a worker, a job)
    seconds_left: float | None
    best: list[str] = field(default_factory=list)
    jobs: list[Job] = field(default_factory=list)
    task: str = "train"  # a task that trains nothing (task: function, activations) is computed at once
    others: int = 0  # finished runs of earlier sweeps into the folder that this one does not plan (counted apart)


class Best:
    """The best configuration so far, computed again when the finished runs changed, and then at most
    once per ten times its own cost (the report reads every run: a large folder takes seconds)."""

    def __init__(self) -> None:
        self.seen: frozenset[tuple[str, str]] | None = None
        self.lines: list[str] = []
        self.next = -math.inf  # monotonic time before which it is not computed again

    def __call__(self, root: Path, finished: dict[str, str]) -> list[str]:
        key = frozenset(finished.items())
        if key != self.seen and time.monotonic() >= self.next:
            self.seen, start = key, time.monotonic()
            try:
                self.lines = best_lines(report([root])) if OK in finished.values() else []
            except ConfigError:  # nothing to rank yet
                self.lines = []
            self.next = time.monotonic() + 10 * (time.monotonic() - start)
        return self.lines


def snapshot(root: Path, best: Best | None = None, scheduler: Scheduler | None = None,
             now: float | None = None) -> Snapshot:
    """Read the folder once: finished runs, runs in training, the plan, the jobs."""
    check_folder(root)
    view = read_view(root)
    store = Store(root)
    summaries = store.summaries()
    finished = {s["run_id"]: s["status"] for s in summaries}
    progress = live.read(root, now)
    current = {p.run_id: p for p in progress if p.live}
    for p in current.values():  # finished by the engine, its folder not written yet: finished all the same
        if p.state != live.TRAINING:
            finished[p.run_id] = p.state
    training = [p for p in current.values() if p.training]
    finished = {k: v for k, v in finished.items() if not (k in current and current[k].training)}  # --rerun
    stale = [p for p in progress if not p.live and p.run_id not in finished]
    sweep = live.read_sweep(root)
    planned = None if sweep is None else set(sweep.runs)
    counted = [v for k, v in finished.items() if planned is None or k in planned]  # this sweep's runs
    counts: dict[str, int] = {s: counted.count(s) for s in (OK, PRUNED, FAILED, DIVERGED)}
    queued = None
    if sweep is not None:
        busy = set(finished) | {p.run_id for p in training} | {p.run_id for p in stale}
        queued = sum(r not in busy for r in sweep.runs)
    scheduled = (scheduler or Scheduler())(root, set(finished))
    running = bool(training) or (sweep is not None and sweep.running) or any(j.state.live for j in scheduled)
    steps_done = [int(s["steps"]) for s in summaries if s.get("steps")]
    stored = {s["run_id"] for s in summaries}
    return Snapshot(root, view.get("name", root.name), view.get("keys", []),
                    None if sweep is None else len(sweep.runs), 0 if sweep is None else sweep.later,
                    counts, training, stale, queued, running,
                    seconds_left(training, queued or 0, steps_done) if running else None,
                    (best or Best())(root, {k: v for k, v in finished.items() if k in stored}), scheduled,
                    view.get("task", "train"), len(finished) - len(counted))


def seconds_left(training: list[RunProgress], queued: int, finished_steps: list[int]) -> float | None:
    """From measured step times: the run-steps left (the runs training, and the queued ones at the
    mean length of the runs seen) over the run-steps per second the live stacks train now."""
    timed = [p for p in training if p.step_seconds]
    if not timed:
        return None
    rate = sum(1 / p.step_seconds for p in timed if p.step_seconds)  # each stack: its runs / its step time
    lengths = [p.total for p in training] + finished_steps
    work = sum(p.total - p.step for p in training) + queued * sum(lengths) / len(lengths)
    return work / rate


def _clock(seconds: float | None) -> str:
    return "-:--:--" if seconds is None else str(datetime.timedelta(seconds=round(seconds)))


def _percent(value: float | None) -> str:
    return "–" if value is None or not math.isfinite(value) else f"{100 * value:.1f}"


def _step_time(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    return f"{seconds * 1000:.3g} ms" if seconds < 1 else f"{seconds:.3g} s"


def _headline(s: Snapshot) -> Text:
    if s.running:
        state = "running"
        if s.seconds_left is not None:  # a search's later rounds are not planned yet: not in the estimate
            state += f", {_clock(s.seconds_left)} left" + (" for the runs planned so far" if s.later else "")
    elif s.stale or s.queued:
        state = f"stopped with {len(s.stale) + (s.queued or 0)} runs unfinished (run it again to resume)"
    else:
        state = "finished" if s.queued == 0 else "not running"
    return Text.assemble((s.name, "bold"), f" ({s.root}): {state}")


def _counts(s: Snapshot) -> Table:
    table = Table(box=None, pad_edge=False)
    cells = {"planned": "?" if s.planned is None else str(s.planned) + (f" (+≤{s.later})" if s.later else ""),
             "finished": str(s.counts[OK]), "training": str(len(s.training)),
             "queued": "?" if s.queued is None else str(s.queued)}
    if s.stale:
        cells["stale"] = str(len(s.stale))
    cells |= {status: str(s.counts[status]) for status in (PRUNED, FAILED, DIVERGED)}
    for header in cells:
        table.add_column(header, justify="right")
    table.add_row(*cells.values())
    return table


def _runs(s: Snapshot, limit: int) -> Table | None:
    """The runs in training (then the stale ones): their swept values, step, last validation accuracy
    and the step time of their stack; a column per swept key, as in the report, so it folds to the width.
    A value that every run listed shares goes into the title instead (a search's stage and round)."""
    shown = [*s.training, *s.stale]
    if not shown:
        return None
    shown.sort(key=lambda p: (not p.live, [value_text(p.params.get(k)) for k in s.keys], p.seed))
    shown = shown[:limit]
    values = [{**{k: value_text(v) for k, v in p.params.items()}, "seed": str(p.seed)} for p in shown]
    keys = list(dict.fromkeys([*s.keys, *(k for v in values for k in v), "seed"]))
    shared = {k: values[0].get(k, "–") for k in keys if len(shown) > 1 and len({v.get(k, "–") for v in values}) == 1}
    title = f"{len(s.training)} training" + (f", {len(s.stale)} stale (no live writer)" if s.stale else "")
    if shared:
        title += f" ({', '.join(f'{k}={v}' for k, v in shared.items())})"
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    varying = [k for k in keys if k not in shared]
    for key in varying:
        table.add_column(key.replace(".", ".\n"), overflow="fold")  # optimizer.name over two lines: narrower
    for header in ("step", "val\nacc %", "step\ntime"):
        table.add_column(header, justify="right", no_wrap=True)
    for p, v in zip(shown, values):
        step = f"{p.step}/{p.total}" + ("" if p.live else " stale")
        table.add_row(*(v.get(k, "–") for k in varying), step, _percent(p.metrics.get("val_acc")),
                      _step_time(p.step_seconds))
    hidden = len(s.training) + len(s.stale) - len(shown)
    if hidden:
        table.caption = f"and {hidden} more"
    return table


ORDER = ("RUNNING", "COMPLETING", "PENDING", "REQUEUED")  # tasks listed first, in this order


def _jobs(s: Snapshot, limit: int) -> Table | None:
    """The tasks still queued or running, or whose runs are not all finished (running first); the
    others are counted, and so are those past `limit`, by state."""
    shown = [j for j in s.jobs if j.state.live or j.unfinished]
    if not shown:
        return None
    shown.sort(key=lambda j: ORDER.index(j.state.state) if j.state.state in ORDER else len(ORDER))
    whose = ", ".join(LAUNCHERS[name] for name in sorted({j.launcher for j in shown}))
    table = Table(title=f"{len(shown)} job{'s' * (len(shown) != 1)} ({whose})", title_justify="left",
                  box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("task")
    table.add_column("state", overflow="fold")
    table.add_column("runs left", justify="right")
    for j in shown[:limit]:
        state = j.state.state + (f" ({j.state.reason})" if j.state.reason else "")
        table.add_row(j.task_id, state, f"{j.unfinished}/{j.runs}")
    notes = []
    if len(shown) > limit:
        states = Counter(j.state.state for j in shown[limit:])
        notes.append(f"and {len(shown) - limit} more: " + ", ".join(f"{n} {state}" for state, n in states.items()))
    if len(shown) < len(s.jobs):
        notes.append(f"{len(s.jobs) - len(shown)} ended with all their runs finished")
    table.caption = "; ".join(notes) or None
    return table


def render(s: Snapshot, limit: int = STATUS_ROWS, job_limit: int = STATUS_ROWS) -> RenderableType:
    if not CATALOG["task"].record(s.task).facts["trains"]:
        return Text.assemble((s.name, "bold"), f" ({s.root}): a task: {s.task} experiment; it trains no runs "
                             "(its table: dlbench report)")
    parts: list[RenderableType] = [_headline(s), _counts(s)]
    if s.others:
        parts.append(Text(f"(and {s.others} finished runs of earlier sweeps into this folder, not planned now)"))
    parts += [Text(f"so far, {line}" if s.running else line) for line in s.best]
    parts += [t for t in (_jobs(s, job_limit), _runs(s, limit)) if t is not None]
    return Group(*parts)


def status(root: Path, console: Console) -> Snapshot:
    """`dlbench status`: print the view once."""
    s = snapshot(root)
    console.print(render(s))
    return s


def watch(root: Path, console: Console, refresh: float = REFRESH) -> Snapshot:
    """`dlbench watch`: the same view, redrawn every `refresh` seconds until nothing runs the sweep
    (Ctrl-C: KeyboardInterrupt, for the caller to end quietly)."""
    from rich.live import Live

    best, scheduler = Best(), Scheduler()
    s = snapshot(root, best, scheduler)

    def view_of(s: Snapshot) -> RenderableType:
        """Within the terminal's height: up to 5 tasks, the runs in what is left (a view taller than the
        terminal would be cut by Live)."""
        jobs = min(5, len(s.jobs))
        return render(s, max(3, console.height - 16 - jobs), jobs)

    try:
        with Live(view_of(s), console=console, auto_refresh=False) as view:
            watched = s.running
            while s.running:
                time.sleep(refresh)
                s = snapshot(root, best, scheduler)
                view.update(view_of(s), refresh=True)
            if watched:  # the last view with the best of all the runs (Best may have waited)
                s = snapshot(root, Best(), scheduler)
                view.update(view_of(s), refresh=True)
    finally:
        if not console.is_terminal:  # in a file or a pipe Live leaves its last view without the line's end
            console.line()
    return s
