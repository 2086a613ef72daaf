"""Progress of a sweep in its folder, while it trains: the one place that knows the format,
for the process that trains (writer) and for `dlbench status` / `watch` (reader).

    results/<name>/.progress/<run id>.json   a running run: step, epoch, last evaluation, step time
    results/<name>/.progress/sweep.json      the sweep being run: its planned run ids, who runs it

Hidden, beside `runs/`, so that "a run folder exists" still means "finished". Whatever
process trains a stack (this one, a worker process, a Ray or SLURM task) writes its runs'
files (a Ray task on a cluster that does not see the folder sends its records to the driver,
which writes them: `Sink`, `put`), each whole or absent to a reader (temporary file + rename), at most every `EVERY`
seconds of wall time (longer where writing a stack's files costs more than 2 % of it). A
run's file takes its status (ok, diverged, pruned) once the engine is done with it, and is
removed when its run folder is written (`Store.save`; the path is `store.progress_file`).
A file whose writer is gone (killed) stays: readers show it as stale and never delete it;
the next process that trains the run overwrites it.

Liveness is read from the file alone: its writer's host and process id (alive, on this
host) and how long ago it was written (any host). No reader ever talks to a writer.
"""

from __future__ import annotations

import json
import math
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from collections.abc import Callable

from dlbench.results.store import PROGRESS, _json_safe, atomic_write, progress_file

SWEEP = "sweep.json"
FORMAT = "dlbench progress 1"
EVERY = 2.0  # seconds between a stack's writes, at least
COST_SHARE = 0.02  # writing may take at most this share of the training time
# a file not rewritten for this long (and for 10 of its steps) has no live writer, whatever its host
STALE_SECONDS = 120.0
TRAINING = "training"  # a run's state until the engine finishes it; then its status (ok, diverged, ...)


# where a writer's records go instead of files: a Ray task on a cluster that does not see the folder
# sends them to the process that launched it, which writes them (`put`)
Sink = Callable[[dict[str, Any]], None]


def folder(root: Path) -> Path:
    return Path(root) / PROGRESS


def _host() -> str:
    return socket.gethostname()


class Writer:
    """The progress files of one stack's runs, written by the process that trains it.

    `write(step, runs)` with each run's plain record (run_id, params, seed, step, total,
    epoch, metrics: its last evaluation's row); the writer adds the measured seconds per
    step, its host, process id and the time. Call `due()` first: it is what keeps the
    cost down (one clock read)."""

    def __init__(self, root: Path | Sink, every: float = EVERY) -> None:
        self.root, self.base, self.every = root, every, every
        self.last = -math.inf  # monotonic time of the last write
        self.mark: tuple[int, float] | None = None  # (step, monotonic time) the step time is measured from
        self.step_seconds: float | None = None
        self.records: dict[str, dict[str, Any]] = {}
        self.pid, self.host = os.getpid(), _host()

    def due(self) -> bool:
        return time.monotonic() - self.last >= self.every

    def write(self, step: int, runs: list[dict[str, Any]]) -> None:
        start = time.monotonic()
        if self.mark is None or step < self.mark[0]:
            self.mark = (step, start)
        elif step > self.mark[0]:  # evaluations included: what a step costs this stack, all told
            self.step_seconds = (start - self.mark[1]) / (step - self.mark[0])
        for run in runs:
            self._put({**run, "state": TRAINING, "stack_runs": len(runs)})
        self.last = time.monotonic()
        self.every = max(self.base, (self.last - start) / COST_SHARE)  # a slow disk: written less often

    def finished(self, run_id: str, status: str) -> None:
        """The engine is done with the run before its stack (its folder is written by whoever collects
        it, which may be when the stack ends: a worker process returns its stack's results together)."""
        record = self.records.pop(run_id, None)
        if record is not None:
            self._put({**record, "state": status})

    def _put(self, record: dict[str, Any]) -> None:
        record = {"format": FORMAT, **record, "step_seconds": self.step_seconds, "pid": self.pid,
                  "host": self.host, "updated": time.time()}
        if record["state"] == TRAINING:
            self.records[record["run_id"]] = record
        if callable(self.root):
            self.root(record)
        else:
            put(self.root, record)


def put(root: Path, record: dict[str, Any]) -> None:
    """A run's progress record into the folder (by its writer, or by the process a remote writer sent it to)."""
    atomic_write(progress_file(root, record["run_id"]), json.dumps(_json_safe(record), default=str), sync=False)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        return True
    return True


def writer_alive(pid: int, host: str, updated: float, patience: float = STALE_SECONDS, now: float | None = None
                 ) -> bool:
    """Whether the process that wrote a file may still be writing it: on this host, its process
    exists; on any host, it wrote within `patience` seconds."""
    now = time.time() if now is None else now
    if now - updated > patience:
        return False
    return host != _host() or _pid_alive(pid)


@dataclass(frozen=True)
class RunProgress:
    """One run's progress file, as read (`live`: its writer is still there)."""

    run_id: str
    params: dict[str, Any]
    seed: int
    step: int
    total: int
    epoch: float
    metrics: dict[str, float | None]  # the last evaluation's row ({} before the first)
    step_seconds: float | None
    state: str  # training, or the status the engine finished it with (its folder is being written)
    stack_runs: int
    pid: int
    host: str
    updated: float
    live: bool

    @property
    def training(self) -> bool:
        return self.live and self.state == TRAINING


def read(root: Path, now: float | None = None) -> list[RunProgress]:
    """Every readable progress file of the folder, in run id order (a file being replaced is
    read whole: old or new; an unreadable one is skipped)."""
    where = folder(root)
    if not where.is_dir():
        return []
    out = []
    for path in sorted(where.glob("[!.]*.json")):
        if path.name == SWEEP:
            continue
        try:
            r = json.loads(path.read_text(encoding="utf-8"))
            if r.get("format") != FORMAT:
                continue
            patience = max(STALE_SECONDS, 10 * (r["step_seconds"] or 0.0))
            out.append(RunProgress(
                r["run_id"], r.get("params", {}), r.get("seed", 0), r["step"], r["total"], r["epoch"],
                r.get("metrics") or {}, r["step_seconds"], r["state"], r.get("stack_runs", 1), r["pid"], r["host"],
                r["updated"], writer_alive(r["pid"], r["host"], r["updated"], patience, now)))
        except (OSError, ValueError, KeyError, TypeError):  # removed meanwhile, or not ours
            continue
    return out


@dataclass(frozen=True)
class Sweep:
    """The sweep a `dlbench run` is running in the folder: the runs it plans, and who runs it."""

    runs: list[str]  # the run ids planned so far (finished ones included)
    later: int = 0  # at most this many more runs, planned by later rounds of a search
    pid: int = field(default_factory=os.getpid)
    host: str = field(default_factory=_host)
    started: float = field(default_factory=time.time)
    state: str = "running"  # running | ended | interrupted | detached (submitted: its jobs run it)

    @property
    def running(self) -> bool:
        """Its process is still running it (where this host can tell; elsewhere: as recorded)."""
        return self.state == "running" and (self.host != _host() or _pid_alive(self.pid))


def write_sweep(root: Path, sweep: Sweep) -> None:
    atomic_write(folder(root) / SWEEP, json.dumps({"format": FORMAT, **sweep.__dict__}), sync=False)


def read_sweep(root: Path) -> Sweep | None:
    try:
        r = json.loads((folder(root) / SWEEP).read_text(encoding="utf-8"))
        if r.pop("format", None) != FORMAT:
            return None
        return Sweep(**r)
    except (OSError, ValueError, TypeError):
        return None
