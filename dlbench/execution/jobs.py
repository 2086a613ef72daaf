"""The jobs record: which scheduler jobs train which stacks of an experiment, and their states.

`results/<name>/jobs.json` lists one `JobRecord` per submitted task (a SLURM array task or
a Ray job trains one stack): its job id, the stack's key (the name of its checkpoint in
`.checkpoints/`), the run ids it trains, when and through which launcher it was
submitted (and, for Ray, to which cluster). The process that submits writes it
(atomically); `dlbench run` reads it to never resubmit a stack that is queued or running
(and to refuse another executor those runs), and `dlbench status` to show the jobs.

States come from the scheduler's own commands. SLURM: `squeue` for the jobs it still
lists, `scontrol show job` for those that left the queue recently; accounting (`sacct`)
is not assumed: many clusters, and the tests' one-node SLURM, run without it. Ray: the
cluster's job server (Ray's Job Submission API). A job the scheduler no longer knows,
or a cluster that does not answer, is `UNKNOWN`; the folder then tells whether its runs finished.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar
from collections.abc import Callable, Generator, Iterable

from dlbench.errors import ConfigError
from dlbench.results.store import Store, atomic_write

JOBS = "jobs.json"
# SLURM job states in which a task still holds its runs (queued, running or about to run again)
LIVE = frozenset({"PENDING", "RUNNING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "CONFIGURING", "COMPLETING",
                  "SUSPENDED", "RESIZING", "SIGNALING", "STAGE_OUT", "STOPPED", "RESV_DEL_HOLD"})
LAUNCHERS = {"slurm": "SLURM", "ray": "Ray"}  # the launchers that submit jobs, as their names are written
RAY_LIVE = frozenset({"PENDING", "RUNNING"})  # a Ray job's live states (its STOPPED is an end: `ray job stop`)
UNKNOWN = "UNKNOWN"
POLL_S, STATES_EVERY_S = 1.0, 10.0  # how often waiting looks for results / asks the scheduler for states
T = TypeVar("T")


@dataclass(frozen=True)
class JobRecord:
    """One submitted task and the stack it trains."""

    job_id: str  # the scheduler's id of the job (SLURM: the array job's id, e.g. "4242")
    array_task: int | None  # the task's index in the array; None: a job of its own
    stack: str  # the stack's key: its checkpoint is .checkpoints/<stack>.pt
    run_ids: tuple[str, ...]
    submitted: str  # when, ISO 8601 (UTC)
    launcher: str  # slurm | ray
    address: str | None = None  # ray: the cluster it was submitted to (--address)
    server: str | None = None  # ray: that cluster's job server (http://HOST:PORT), which tells its state

    @property
    def task_id(self) -> str:
        """The id the scheduler's commands take: `4242_3` for an array task, else the job id."""
        return self.job_id if self.array_task is None else f"{self.job_id}_{self.array_task}"


@dataclass(frozen=True)
class SchedulerState:
    state: str  # SLURM's job state (PENDING, RUNNING, COMPLETED, FAILED, TIMEOUT, ...) or UNKNOWN
    reason: str = ""  # why it waits or ended (Priority, Resources, BeginTime, ...); "" when none
    ended: bool | None = None  # the scheduler said whether the job ended (Ray's); None: from SLURM's state name

    @property
    def live(self) -> bool:
        """Queued, running or requeued: its runs must not be submitted again."""
        return not self.ended if self.ended is not None else self.state in LIVE


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


def wait(pending: dict[str, JobRecord], ended: Callable[[JobRecord], list[T] | None],
         lost: Callable[[JobRecord, SchedulerState], str], what: str, tell: Callable[[str], None]) -> Generator[T]:
    """Wait for the jobs; yield each one's results (`ended`: None while it has none) as it ends. A job
    the scheduler says ended, still without results one look later, was lost: `lost` says so (`tell`,
    the launch's one-line messages). Ctrl-C or a caller that stops early leaves the jobs running (they
    are not ours to stop)."""
    gone: dict[str, int] = {}  # task id -> times the scheduler said it ended without a result
    asked = 0.0
    try:
        while pending:
            for task_id, record in list(pending.items()):
                results = ended(record)
                if results is not None:
                    del pending[task_id]
                    yield from results
            if pending and time.monotonic() - asked >= STATES_EVERY_S:
                asked = time.monotonic()
                for task_id, state in scheduler_states(pending.values()).items():
                    gone[task_id] = 0 if state.live else gone.get(task_id, 0) + 1
                    if gone[task_id] >= 2:  # ended, and still no result after one more look: it was lost
                        tell(lost(pending.pop(task_id), state))
            if pending:
                time.sleep(POLL_S)
    except (KeyboardInterrupt, GeneratorExit):  # Ctrl-C, --fail-fast
        if pending:
            tell(f"{len(pending)} {what} go on without this process ({', '.join(pending)}); run the same sweep "
                 "again to collect them")
        raise


def _run(command: list[str]) -> str | None:
    """A scheduler command's output; None where it is missing or refuses (an id it forgot)."""
    if shutil.which(command[0]) is None:
        return None
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    return done.stdout if done.returncode == 0 else None


def scheduler_states(records: Iterable[JobRecord]) -> dict[str, SchedulerState]:
    """task id -> its state, as its scheduler tells it (SLURM, Ray)."""
    records = list(records)
    return {**_slurm_states([r for r in records if r.launcher == "slurm"]),
            **_ray_states([r for r in records if r.launcher == "ray"])}


def live(records: Iterable[JobRecord]) -> list[JobRecord]:
    """The records whose job is queued or running (their scheduler says so)."""
    records = list(records)
    states = scheduler_states(records)
    return [r for r in records if r.task_id in states and states[r.task_id].live]


def refuse_live(folder: Path, run_ids: Iterable[str], executor: str) -> None:
    """Runs that live jobs of another launcher train must not be trained by `executor` too (twice, racing)."""
    unfinished = set(run_ids) - set(Store(folder).finished())
    held = [r for r in read_jobs(folder) if r.launcher != executor and unfinished & set(r.run_ids)]
    for launcher, name in LAUNCHERS.items():
        busy = live(r for r in held if r.launcher == launcher)
        if busy:
            where = f" --address {busy[0].address}" if launcher == "ray" else ""
            stop = "ray job stop" if launcher == "ray" else "scancel"
            things = "tasks" if launcher == "slurm" else "jobs"  # a SLURM array's tasks, Ray's jobs
            raise ConfigError(f"{folder}: {name} {things} {', '.join(r.task_id for r in busy)} are queued or running "
                              f"with runs of this sweep; collect them with --executor {launcher}{where}, or stop "
                              f"them first ({stop})")


def _slurm_states(records: list[JobRecord]) -> dict[str, SchedulerState]:
    tasks = [r.task_id for r in records]
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


def ray_client(address: str | None, named: str | None = None) -> Any:
    """Ray's job client for a cluster (its GCS HOST:PORT, or its dashboard's http://HOST:PORT; None: the
    cluster this process is connected to, --address auto included); a ConfigError naming the address
    (`named`, else `address`) where the cluster's job server does not answer."""
    try:
        from ray.job_submission import JobSubmissionClient
    except ImportError:
        raise ConfigError("--detach with --executor ray needs Ray's job server client: pip install 'dlbench[ray]'"
                          ) from None
    try:
        return JobSubmissionClient(address)
    except Exception as e:  # noqa: BLE001 - Ray raises many kinds here (connection, version, authentication)
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        hint = ("; set RAY_AUTH_MODE=token (and RAY_AUTH_TOKEN) as for the cluster" if "auth" in first.lower()
                else "; the cluster must run Ray's dashboard (ray start --head with ray[default] installed)")
        raise ConfigError(f"--address {named or address}: Ray's job server does not answer ({first}){hint}") from None


def _ray_states(records: list[JobRecord]) -> dict[str, SchedulerState]:
    out: dict[str, SchedulerState] = {}
    for server in dict.fromkeys(r.server for r in records):
        mine = [r for r in records if r.server == server]
        try:  # the job server's URL, not the cluster's address: a cluster that is gone is said in a second
            client = ray_client(server) if server else None
        except ConfigError:
            client = None
        if client is None:
            out |= {r.task_id: SchedulerState(UNKNOWN, f"no answer from {server}" if server else "") for r in mine}
            continue
        for r in mine:
            try:
                info = client.get_job_info(r.job_id)
            except Exception:  # noqa: BLE001 - a job this cluster does not know (restarted since)
                out[r.task_id] = SchedulerState(UNKNOWN)
                continue
            state = str(getattr(info.status, "value", info.status))
            reason = str(info.error_type or "").lower().replace("_", " ") if state in ("FAILED", "STOPPED") else ""
            out[r.task_id] = SchedulerState(state, reason, ended=state not in RAY_LIVE)
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
