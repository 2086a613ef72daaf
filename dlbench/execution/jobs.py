"""The jobs record: which scheduler jobs train which stacks of an experiment, and their states.

`results/<name>/jobs.json` lists one `JobRecord` per submitted task (a SLURM array task
trains one stack): its job id, the stack's key (the name of its checkpoint in
`.checkpoints/`), the run ids it trains, when and through which launcher it was
submitted. The process that submits writes it (atomically); `dlbench run` reads it to
never resubmit a stack that is queued or running, and `dlbench status` to show the jobs.

States come from the scheduler's own commands: `squeue` for the jobs it still lists,
`scontrol show job` for those that left the queue recently. Accounting (`sacct`) is not
assumed: many clusters, and the tests' one-node SLURM, run without it. A job the
scheduler no longer knows is `UNKNOWN`; the folder then tells whether its runs finished.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from collections.abc import Iterable

from dlbench.results.store import atomic_write

JOBS = "jobs.json"
# SLURM job states in which a task still holds its runs (queued, running or about to run again)
LIVE = frozenset({"PENDING", "RUNNING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "CONFIGURING", "COMPLETING",
                  "SUSPENDED", "RESIZING", "SIGNALING", "STAGE_OUT", "STOPPED", "RESV_DEL_HOLD"})
UNKNOWN = "UNKNOWN"


@dataclass(frozen=True)
class JobRecord:
    """One submitted task and the stack it trains."""

    job_id: str  # the scheduler's id of the job (SLURM: the array job's id, e.g. "4242")
    array_task: int | None  # the task's index in the array; None: a job of its own
    stack: str  # the stack's key: its checkpoint is .checkpoints/<stack>.pt
    run_ids: tuple[str, ...]
    submitted: str  # when, ISO 8601 (UTC)
    launcher: str  # slurm | ray

    @property
    def task_id(self) -> str:
        """The id the scheduler's commands take: `4242_3` for an array task, else the job id."""
        return self.job_id if self.array_task is None else f"{self.job_id}_{self.array_task}"


@dataclass(frozen=True)
class SchedulerState:
    state: str  # SLURM's job state (PENDING, RUNNING, COMPLETED, FAILED, TIMEOUT, ...) or UNKNOWN
    reason: str = ""  # why it waits or ended (Priority, Resources, BeginTime, ...); "" when none

    @property
    def live(self) -> bool:
        """Queued, running or requeued: its runs must not be submitted again."""
        return self.state in LIVE


def read_jobs(folder: Path) -> list[JobRecord]:
    """The jobs record of an experiment folder; [] where there is none."""
    path = Path(folder) / JOBS
    if not path.is_file():
        return []
    entries = json.loads(path.read_text(encoding="utf-8"))
    return [JobRecord(**{**e, "run_ids": tuple(e["run_ids"])}) for e in entries]


def write_jobs(folder: Path, records: Iterable[JobRecord]) -> None:
    """Write the whole record atomically (a reader sees the old one or the new one)."""
    atomic_write(Path(folder) / JOBS, json.dumps([asdict(r) for r in records], indent=1) + "\n")


def add_jobs(folder: Path, new: list[JobRecord]) -> list[JobRecord]:
    """Record newly submitted tasks; a record whose runs are submitted again is replaced."""
    resubmitted = {run for r in new for run in r.run_ids}
    kept = [r for r in read_jobs(folder) if not resubmitted & set(r.run_ids)]
    write_jobs(folder, [*kept, *new])
    return [*kept, *new]


def _run(command: list[str]) -> str | None:
    """A scheduler command's output; None where it is missing or refuses (an id it forgot)."""
    if shutil.which(command[0]) is None:
        return None
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    return done.stdout if done.returncode == 0 else None


def scheduler_states(records: Iterable[JobRecord]) -> dict[str, SchedulerState]:
    """task id -> its state, for the SLURM records (others are left out)."""
    tasks = [r.task_id for r in records if r.launcher == "slurm"]
    if not tasks:
        return {}
    out: dict[str, SchedulerState] = {}
    # -r: one line per array task, also while pending (else squeue folds them into 4242_[3-9])
    listed = _run(["squeue", "--noheader", "--array", "--format=%i|%T|%r"]) or ""
    for line in listed.splitlines():
        task, _, rest = line.strip().partition("|")
        state, _, reason = rest.partition("|")
        if task in tasks:
            out[task] = SchedulerState(state, "" if reason == "None" else reason)
    for task in tasks:
        if task not in out:  # left the queue: the controller remembers it for a while (MinJobAge)
            out[task] = _scontrol_state(task)
    return out


def _scontrol_state(task: str) -> SchedulerState:
    shown = _run(["scontrol", "show", "job", "--oneliner", task])
    if not shown:
        return SchedulerState(UNKNOWN)
    fields = dict(item.split("=", 1) for item in shown.split() if "=" in item)
    job, _, index = task.partition("_")
    if (fields.get("ArrayJobId"), fields.get("ArrayTaskId")) != (job, index) and fields.get("JobId") != task:
        return SchedulerState(UNKNOWN)  # another job's record (an array task's own JobId can look like ours)
    reason = fields.get("Reason", "")
    return SchedulerState(fields.get("JobState", UNKNOWN), "" if reason == "None" else reason)
