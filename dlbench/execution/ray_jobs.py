"""--executor ray --address HOST:PORT --detach: each stack one job of Ray's Job Submission API.

A Ray job outlives the process that submitted it (Ray tasks die with their driver), so a
detached sweep goes on when the terminal closes. Each job's entrypoint runs on the
cluster, `python -m dlbench.execution.worker .ray/<stack>.task`: the stack as every
launcher's workers receive it (`launchers.Task`, plugin sources included), pickled into
the experiment folder, which the cluster must therefore see (a shared filesystem, as
for SLURM). The job asks Ray for the stack's CPUs (and a GPU for CUDA runs), so Ray
runs as many at a time as the cluster has room for; it resumes from the stack's
checkpoint, writes its runs' progress and folders as they finish, and at the end
`.ray/<stack>.result.json` (its run ids and what it told, or the error that stopped it).

`jobs.json` records the jobs (`dlbench.execution.jobs`, the record SLURM's tasks use),
with the cluster's address; their states come from the cluster's job server.
"""

from __future__ import annotations

import json
import pickle
import shlex
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from collections.abc import Callable, Generator, Iterable

import torch

from dlbench.execution import jobs
from dlbench.results.store import Store, atomic_write
from dlbench.plan.sweep import RunSpec
from dlbench.training.run import RunResult, failed

FOLDER = ".ray"  # the jobs' tasks and results, inside the experiment folder


@dataclass(frozen=True)
class Submission:
    """A stack to submit as a job: its key (its checkpoint's name), its runs, what the job's entrypoint
    runs (a `launchers.Task`, pickled into the folder) and the resources it asks Ray for."""

    stack: str
    run_ids: tuple[str, ...]
    work: object
    cpus: int
    gpus: int = 0


def task_file(folder: Path, stack: str) -> Path:
    return folder / FOLDER / f"{stack}.task"


def result_file(task: Path) -> Path:
    """Where a job's entrypoint says how it ended: {"runs": [ids]} or {"error": traceback}."""
    return task.with_suffix(".result.json")


def held(folder: Path, specs: Iterable[RunSpec]) -> list[jobs.JobRecord]:
    """The folder's Ray jobs that are queued or running with runs of `specs` (never submitted again)."""
    wanted = {s.run_id for s in specs}
    return jobs.live(r for r in jobs.read_jobs(folder) if r.launcher == "ray" and wanted & set(r.run_ids))


def submit(folder: Path, address: str, stacks: list[Submission]) -> list[jobs.JobRecord]:
    """Submit each stack as a job; record the jobs (also those submitted before one was refused). This
    process is connected to the cluster (`address`, which may be `auto`): its job server is found from there."""
    client = jobs.ray_client(None, address)
    now = datetime.now(UTC).isoformat(timespec="seconds")
    records = []
    try:
        for stack in stacks:
            path = task_file(folder, stack.stack)
            atomic_write(path, pickle.dumps(stack.work))
            result_file(path).unlink(missing_ok=True)  # an earlier job's of the same stack
            entrypoint = f"{shlex.quote(sys.executable)} -m dlbench.execution.worker {shlex.quote(str(path))}"
            job_id = client.submit_job(entrypoint=entrypoint, entrypoint_num_cpus=stack.cpus,
                                       entrypoint_num_gpus=stack.gpus, metadata={"dlbench": folder.name})
            records.append(jobs.JobRecord(job_id, None, stack.stack, stack.run_ids, now, "ray", address,
                                          client.get_address()))
    finally:
        jobs.add_jobs(folder, records)
    return records


def collect(folder: Path, pending: list[jobs.JobRecord], specs: list[RunSpec], device: torch.device,
            tell: Callable[[str], None]) -> Generator[RunResult]:
    """Wait for the jobs; yield their runs' results (read from the folder, where the jobs wrote them)
    as each job ends, and tell what the job told."""
    by_id = {s.run_id: s for s in specs}
    store = Store(folder)

    def ended(record: jobs.JobRecord) -> list[RunResult] | None:
        path = result_file(task_file(folder, record.stack))
        if not path.is_file():
            return None
        said = json.loads(path.read_text(encoding="utf-8"))
        for note in said.get("notes", []):
            tell(note)
        summaries = {s["run_id"]: s for s in store.summaries()}
        if "error" in said:
            error = RuntimeError(f"Ray job {record.job_id} failed: {said['error'].strip().splitlines()[-1]}")
            return [failed(by_id[run], error, device) for run in record.run_ids
                    if run in by_id and run not in summaries]
        return [RunResult(by_id[run], summaries[run]["status"], summary=summaries[run], stored=True)
                for run in said["runs"] if run in by_id and run in summaries]

    def lost(record: jobs.JobRecord, state: jobs.SchedulerState) -> str:
        why = f" ({state.reason})" if state.reason else ""
        return (f"Ray job {record.job_id} ended {state.state}{why} without finishing its runs (its log: ray job "
                f"logs {record.job_id} --address {record.address}); run the same sweep again to submit them again "
                "from their last checkpoint")

    yield from jobs.wait({r.task_id: r for r in pending}, ended, lost, "Ray jobs", tell)
