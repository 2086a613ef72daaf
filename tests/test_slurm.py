"""SLURM: the jobs record, the scheduler's states, and --executor slurm on a real one-node SLURM.

The real-scheduler tests start SLURM with scripts/slurm-up.sh (Debian's slurm-wlm and
munge, installed by `make system-deps`). They need root, as CI has; elsewhere they skip
and say how to run them. As root, a SLURM that does not come up fails them.
"""

from __future__ import annotations

import os
import stat
import subprocess
import time
from pathlib import Path

import pytest
from sweep_util import REPO

from dlbench.execution.jobs import JobRecord, SchedulerState, add_jobs, read_jobs, scheduler_states, write_jobs


@pytest.fixture(scope="session")
def slurm() -> None:
    """A one-node SLURM answering on this machine (started once per test session)."""
    if os.geteuid() != 0:
        pytest.skip("the SLURM tests start a one-node SLURM, which needs root: run them as root (as CI does: "
                    "make test installs slurm-wlm and munge with make system-deps, and scripts/slurm-up.sh starts it)")
    done = subprocess.run(["bash", str(REPO / "scripts" / "slurm-up.sh")], capture_output=True, text=True,
                          timeout=120)
    if done.returncode != 0:
        pytest.fail(f"SLURM did not start (scripts/slurm-up.sh): {done.stderr.strip()[-2000:]}")


def record(job: str, task: int | None, *runs: str) -> JobRecord:
    return JobRecord(job, task, f"stack{job}", tuple(runs), "2026-01-01T00:00:00+00:00", "slurm")


def test_jobs_record_round_trip_and_resubmission(tmp_path: Path) -> None:
    assert read_jobs(tmp_path) == []
    first = [record("7", 0, "a", "b"), record("7", 1, "c")]
    write_jobs(tmp_path, first)
    assert read_jobs(tmp_path) == first
    again = [record("9", 0, "c")]  # run c submitted again: the record of task 7_1 is replaced
    assert add_jobs(tmp_path, again) == [first[0], *again]
    assert read_jobs(tmp_path) == [first[0], *again]
    assert [r.task_id for r in read_jobs(tmp_path)] == ["7_0", "9_0"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file left


def fake_commands(folder: Path, squeue: str, scontrol: dict[str, str]) -> None:
    """squeue printing `squeue`, scontrol printing scontrol[task] (or refusing an unknown id)."""
    folder.mkdir()
    (folder / "squeue").write_text(f"#!/bin/sh\nprintf '%s' '{squeue}'\n")
    cases = "".join(f"  {task}) printf '%s' '{line}';;\n" for task, line in scontrol.items())
    (folder / "scontrol").write_text(
        f'#!/bin/sh\ncase "$4" in\n{cases}  *) echo "Invalid job id specified" >&2; exit 1;;\nesac\n')
    for name in ("squeue", "scontrol"):
        (folder / name).chmod(stat.S_IRWXU)


def test_scheduler_states_from_squeue_then_scontrol(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_commands(tmp_path / "bin", "12_0|RUNNING|None\n12_1|PENDING|BeginTime\n99_0|PENDING|Priority\n", {
        "12_2": "JobId=15 ArrayJobId=12 ArrayTaskId=2 JobState=COMPLETED Reason=None",
        "12_3": "JobId=12 ArrayJobId=11 ArrayTaskId=0 JobState=FAILED Reason=NonZeroExitCode",  # another job's
        "13": "JobId=13 JobState=TIMEOUT Reason=TimeLimit"})
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    records = [record("12", i, str(i)) for i in range(5)] + [record("13", None, "x")]
    assert scheduler_states(records) == {
        "12_0": SchedulerState("RUNNING"), "12_1": SchedulerState("PENDING", "BeginTime"),
        "12_2": SchedulerState("COMPLETED"), "12_3": SchedulerState("UNKNOWN"), "12_4": SchedulerState("UNKNOWN"),
        "13": SchedulerState("TIMEOUT", "TimeLimit")}
    assert [s.live for s in scheduler_states(records[:3]).values()] == [True, True, False]


def test_scheduler_states_without_slurm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no squeue, no scontrol: nothing is known, nothing raises
    assert scheduler_states([record("12", 0, "a")]) == {"12_0": SchedulerState("UNKNOWN")}
    assert scheduler_states([JobRecord("r1", None, "s", ("a",), "t", "ray")]) == {}


def test_real_scheduler_states(slurm: None) -> None:
    """An array of two tasks, one at a time: one runs while the other waits for the throttle."""
    done = subprocess.run(["sbatch", "--parsable", "--array=0-1%1", "--output=/dev/null", "--wrap=sleep 30"],
                          capture_output=True, text=True, check=True)
    job = done.stdout.strip().split(";")[0]
    try:
        records = [record(job, 0, "a"), record(job, 1, "b")]
        deadline = time.monotonic() + 30
        states = scheduler_states(records)
        while states[f"{job}_0"].state != "RUNNING" and time.monotonic() < deadline:
            time.sleep(0.5)
            states = scheduler_states(records)
        assert states == {f"{job}_0": SchedulerState("RUNNING"),
                          f"{job}_1": SchedulerState("PENDING", "JobArrayTaskLimit")}
    finally:
        subprocess.run(["scancel", job], check=True)
    deadline = time.monotonic() + 30
    while scheduler_states(records)[f"{job}_0"].live and time.monotonic() < deadline:
        time.sleep(0.5)
    assert scheduler_states(records)[f"{job}_0"].state == "CANCELLED"  # from scontrol, once it left the queue
