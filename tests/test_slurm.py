"""SLURM: the jobs record, the scheduler's states, and --executor slurm on a real one-node SLURM.

The real-scheduler tests start SLURM with scripts/slurm-up.sh (Debian's slurm-wlm and
munge, installed by `make system-deps`). They need root, as CI has; elsewhere they skip
and say how to run them. As root, a SLURM that does not come up fails them.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from sweep_util import REPO, dlbench, metrics_without_time, run_dirs, summary, write_config

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
    # a Ray job whose cluster is gone: unknown, said at once (its job server refuses the connection)
    gone = JobRecord("r1", None, "s", ("a",), "t", "ray", "127.0.0.1:1", "http://127.0.0.1:1")
    assert scheduler_states([gone]) == {"r1": SchedulerState("UNKNOWN", "no answer from http://127.0.0.1:1")}


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


# ------------------------------------------------------------------ bad input: one line, exit 2, nothing submitted


def test_refusals_submit_nothing(tiny: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = write_config(tmp_path / "c.yaml", tiny)
    out = tmp_path / "results"
    detached = dlbench("run", config, "--detach", "--out", out)
    assert detached.exit_code == 2
    assert "--detach is invalid with --executor local" in detached.error_line
    bad_key = write_config(tmp_path / "k.yaml", {**tiny, "slurm": {"workers": 4}})
    refused = dlbench("run", bad_key, "--executor", "slurm", "--out", out)
    if shutil.which("sbatch") is not None:  # without sbatch the missing command is said first
        assert refused.exit_code == 2 and "slurm.workers: unknown key" in refused.error_line
    own = write_config(tmp_path / "o.yaml", {**tiny, "slurm": {"sbatch": {"array": "0-9"}}})
    fake_commands(tmp_path / "bin", "", {})
    (tmp_path / "bin" / "sbatch").write_text("#!/bin/sh\necho submitted >> \"$0.called\"\n")
    (tmp_path / "bin" / "sbatch").chmod(stat.S_IRWXU)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    refused = dlbench("run", own, "--executor", "slurm", "--out", out)
    assert refused.exit_code == 2 and "slurm.sbatch.array: is invalid: set by dlbench itself" in refused.error_line
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    missing = dlbench("run", config, "--executor", "slurm", "--out", out)
    assert missing.exit_code == 2 and "sbatch is not on the PATH" in missing.error_line
    assert not (tmp_path / "bin" / "sbatch.called").exists() and not out.exists()


def test_a_refused_submission_is_one_line(tiny: dict[str, Any], tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """sbatch failing (a controller down, a partition gone) is the cluster's state, not the user's input: one
    line saying what sbatch said, exit 1, no traceback, no job recorded."""
    config = write_config(tmp_path / "c.yaml", tiny)
    fake_commands(tmp_path / "bin", "", {})
    (tmp_path / "bin" / "sbatch").write_text("#!/bin/sh\necho 'sbatch: error: Batch job submission failed: Unable "
                                             "to contact slurm controller (connect failure)' >&2\nexit 1\n")
    (tmp_path / "bin" / "sbatch").chmod(stat.S_IRWXU)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    refused = dlbench("run", config, "--executor", "slurm", "--out", tmp_path / "results")
    assert refused.exit_code == 1  # after the progress bar's first line: the sweep had started
    assert refused.err.strip().splitlines()[-1] == (
        "error: --executor slurm: sbatch refused the array of 1 task: sbatch: error: Batch job submission failed: "
        "Unable to contact slurm controller (connect failure); nothing was submitted")
    assert refused.err.count("Unable to contact") == 1  # said once: submitit's own copy of sbatch's stderr held back
    assert "Traceback" not in refused.output and "FailedJobError" not in refused.output
    assert not list((tmp_path / "results").glob("*/jobs.json"))


def test_dry_run_shows_each_tasks_time_limit(tiny: dict[str, Any], tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Probed where nothing ran yet, from earlier runs' step times once some did, as given with slurm.time."""
    config = write_config(tmp_path / "c.yaml", {**tiny, "grid": {"optimizer.lr": [0.01, 0.003]}})
    out = tmp_path / "results"
    fake_commands(tmp_path / "bin", "", {})
    (tmp_path / "bin" / "sbatch").write_text("#!/bin/sh\nexit 1\n")
    (tmp_path / "bin" / "sbatch").chmod(stat.S_IRWXU)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.environ['PATH']}")

    def tasks(*args: str) -> list[str]:
        dry = dlbench("run", config, "--executor", "slurm", "--dry-run", "--out", out, *args)
        assert dry.exit_code == 0, dry.output
        return [line.strip() for line in dry.out.splitlines() if line.strip().startswith("task ")]

    probed = tasks("--workers", "2")
    assert len(probed) == 2 and all(re.fullmatch(r"task \d: 1 runs, time limit \d+ min \(20 steps x [\d.]+ ms "
                                                 r"\(a probe\) x 2 \+ 5 min\)", t) for t in probed), probed
    assert dlbench("run", config, "--out", out, "--no-plots").exit_code == 0
    measured = tasks("--set", "train.seeds=[0, 1]")  # seed 1 to train, seed 0's step times measured
    assert len(measured) == 1 and "task 0: 2 runs, time limit" in measured[0] and "(earlier runs)" in measured[0]
    assert tasks("--set", "train.seeds=[0, 1]", "--set", "slurm.time=30") == [
        "task 0: 2 runs, time limit 30 min (slurm.time)"]
    if not torch.cuda.is_available():  # the nodes resolve train.device: a login node needs no GPU
        assert len(tasks("--set", "train.seeds=[0, 1]", "--set", "train.device=cuda", "--set", "slurm.gpus=1")) == 1
    assert not (out / "tiny" / "jobs.json").exists()


# ------------------------------------------------------------------ on the real scheduler


def wait_for(condition: Any, what: str, timeout_s: float = 240.0, poll_s: float = 0.5) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(poll_s)


def live(folder: Path) -> list[str]:
    records = read_jobs(folder)
    return [task for task, state in scheduler_states(records).items() if state.live]


def same_numbers(a: Path, b: Path) -> None:
    runs_a, runs_b = run_dirs(a), run_dirs(b)
    assert runs_a.keys() == runs_b.keys() and runs_a
    for run_id in runs_a:
        assert metrics_without_time(runs_a[run_id]) == metrics_without_time(runs_b[run_id]), run_id


def test_detached_sweep_finishes_with_the_local_numbers(slurm: None, tiny: dict[str, Any], tmp_path: Path) -> None:
    cfg = {**tiny, "train": {**tiny["train"], "seeds": [0, 1]}, "grid": {"optimizer.lr": [0.01, 0.003]}}
    config = write_config(tmp_path / "c.yaml", cfg)
    assert dlbench("run", config, "--out", tmp_path / "local", "--no-plots").exit_code == 0
    out = tmp_path / "slurm"
    submitted = dlbench("run", config, "--executor", "slurm", "--workers", "2", "--detach", "--out", out, "--no-plots")
    assert submitted.exit_code == 0, submitted.output
    folder = out / "tiny"
    records = read_jobs(folder)
    assert len(records) == 2 and {r.array_task for r in records} == {0, 1}  # two stacks: two array tasks
    script = (folder / ".slurm" / f"{records[0].job_id}_submission.sh").read_text()
    assert "#SBATCH --array=0-1%2" in script  # --workers 2: the array's throttle
    assert f"submitted 2 tasks as SLURM job {records[0].job_id}" in submitted.out
    assert sorted(run for r in records for run in r.run_ids) == sorted(run_dirs(tmp_path / "local" / "tiny"))
    wait_for(lambda: not live(folder), "the array to finish")
    collected = dlbench("run", config, "--executor", "slurm", "--out", out, "--no-plots")
    assert collected.exit_code == 0, collected.output
    assert "4 of 4 runs already finished" in collected.out
    assert read_jobs(folder) == records  # nothing submitted again
    same_numbers(tmp_path / "local" / "tiny", folder)


PLUGIN_SGD = '''
import torch
from dlbench import register

register.optimizer("plugin_sgd", fields={"lr": 0.1, "momentum": 0.0})(torch.optim.SGD)
'''


def test_requeued_task_resumes_from_its_checkpoint(slurm: None, tiny: dict[str, Any], tmp_path: Path) -> None:
    """Signalled before its time limit (SIGUSR2, as sbatch --signal does), the task checkpoints and requeues
    itself; requeued by `scontrol requeue` (SIGTERM), it checkpoints and exits; each time it resumes. The
    signals come as soon as the task says it trains: a signal checkpoints at the next step, whatever the speed.
    The optimizer is a plugin's (a torch.optim.Optimizer, one instance per run): its state resumes too."""
    (tmp_path / "plugin_sgd.py").write_text(PLUGIN_SGD)
    cfg = {**tiny, "plugins": ["plugin_sgd.py"], "optimizer": {"name": "plugin_sgd", "lr": 0.05, "momentum": 0.9},
           "train": {**tiny["train"], "steps": 1000, "eval_every": 250, "seeds": [0, 1]}}
    config = write_config(tmp_path / "c.yaml", cfg)
    out = tmp_path / "slurm"
    assert dlbench("run", config, "--executor", "slurm", "--detach", "--out", out, "--no-plots").exit_code == 0
    folder = out / "tiny"
    (record,) = read_jobs(folder)
    log = folder / ".slurm" / f"{record.task_id}_0_log.out"

    def lines(start: str) -> list[str]:
        return [line for line in (log.read_text() if log.exists() else "").splitlines() if line.startswith(start)]

    def interrupt(training: int, command: list[str]) -> None:
        wait_for(lambda: len(lines("training 2 runs")) == training, "the task to start training", poll_s=0.05)
        subprocess.run(command, check=True)
        wait_for(lambda: scheduler_states([record])[record.task_id] == SchedulerState("PENDING", "BeginTime"),
                 "the requeued task to wait")
        subprocess.run(["scontrol", "update", f"JobId={record.task_id}", "StartTime=now"], check=True)

    interrupt(1, ["scancel", "--signal=USR2", record.task_id])
    interrupt(2, ["scontrol", "requeue", record.task_id])
    wait_for(lambda: not live(folder), "the requeued task to finish")
    text = log.read_text()
    assert "stopped by signal 12: the stack is checkpointed" in text and "Requeued job" in text  # SIGUSR2
    assert "stopped by signal 15: the stack is checkpointed" in text, text  # SIGTERM
    assert lines("training 2 runs") == [f"training 2 runs (SLURM restart {n})" for n in range(3)], text
    steps = [int(line.split("from step ")[1].split()[0]) for line in lines("resuming 2 runs from step")]
    assert len(steps) == 2 and 0 < steps[0] < steps[1] < 1000, text
    again = dlbench("run", config, "--executor", "slurm", "--detach", "--out", out, "--no-plots")
    assert "submitted nothing" in again.out and "2 of 2 runs finished" in again.out
    assert dlbench("run", config, "--out", tmp_path / "local", "--no-plots").exit_code == 0
    same_numbers(tmp_path / "local" / "tiny", folder)  # resumed twice, bit for bit


def test_live_tasks_are_not_trained_again(slurm: None, tiny: dict[str, Any], tmp_path: Path) -> None:
    """While a task is queued, `dlbench run` submits nothing new and another executor refuses its runs."""
    config = write_config(tmp_path / "c.yaml", {**tiny, "slurm": {"sbatch": {"begin": "now+1hour"}}})
    out = tmp_path / "slurm"
    assert dlbench("run", config, "--executor", "slurm", "--detach", "--out", out, "--no-plots").exit_code == 0
    (record,) = read_jobs(out / "tiny")
    try:
        again = dlbench("run", config, "--executor", "slurm", "--detach", "--out", out, "--no-plots")
        assert "submitted nothing (every unfinished stack is queued or running)" in again.out
        assert read_jobs(out / "tiny") == [record]
        local = dlbench("run", config, "--out", out, "--no-plots")
        assert local.exit_code == 2 and f"SLURM tasks {record.task_id} are queued or running" in local.error_line
    finally:
        subprocess.run(["scancel", record.job_id], check=True)


def test_each_task_gets_its_own_time_limit(slurm: None, tiny: dict[str, Any], tmp_path: Path) -> None:
    """Two stacks of different lengths in one array: it is submitted with the longer limit and SLURM's own
    record of the shorter task is lowered to its measured cost, as --dry-run shows it (tasks kept pending)."""
    cfg = {**tiny, "grid": {"train.steps": [20, 200_000]}, "slurm": {"sbatch": {"begin": "now+1hour"}}}
    config = write_config(tmp_path / "c.yaml", cfg)
    out = tmp_path / "slurm"
    dry = dlbench("run", config, "--executor", "slurm", "--dry-run", "--out", out)
    shown = {int(m[2].replace(",", "")): int(m[1]) for m in
             re.finditer(r"task \d: 1 runs, time limit (\d+) min \(([\d,]+) steps x", dry.out)}
    assert shown.keys() == {20, 200_000} and shown[20] == 6 < shown[200_000], dry.output  # 20 steps: the 5 min slack
    assert dlbench("run", config, "--executor", "slurm", "--detach", "--out", out, "--no-plots").exit_code == 0
    records = read_jobs(out / "tiny")
    try:
        assert len({r.job_id for r in records}) == 1 and len(records) == 2  # one array, two tasks
        limits = []
        for record in records:  # as SLURM has them: scontrol show job 4242_0 ... TimeLimit=00:06:00
            job = subprocess.run(["scontrol", "show", "job", "--oneliner", record.task_id],
                                 capture_output=True, text=True, check=True).stdout
            found = re.search(r"TimeLimit=(\d+):(\d+):00", job)
            assert found, job
            limits.append(60 * int(found[1]) + int(found[2]))
        # the long stack's probe ran again at submission: its limit is measured anew, longer all the same
        assert sorted(limits)[0] == 6 < sorted(limits)[1], limits
    finally:
        subprocess.run(["scancel", records[0].job_id], check=True)


BROKEN = '''
import torch
from dlbench import register


@register.optimizer("broken", fields={"lr": 0.1})
class Broken(torch.optim.Optimizer):
    def __init__(self, params, lr):
        super().__init__(params, {"lr": lr})

    def step(self, closure=None):
        raise RuntimeError("this optimizer is broken")
'''


def test_failing_stack_is_reported_failed(slurm: None, tiny: dict[str, Any], tmp_path: Path) -> None:
    """The plugin's source travels with the task; its runs fail there, with the error, and are said to."""
    (tmp_path / "broken.py").write_text(BROKEN)
    config = write_config(tmp_path / "c.yaml", {**tiny, "plugins": ["broken.py"], "optimizer": {"name": "broken"}})
    done = dlbench("run", config, "--executor", "slurm", "--out", tmp_path, "--no-plots")
    assert done.exit_code == 1, done.output
    (run,) = run_dirs(tmp_path / "tiny").values()
    assert summary(run)["status"] == "failed"
    assert summary(run)["error"] == "RuntimeError: this optimizer is broken"
    assert f"run {run.name} failed: RuntimeError: this optimizer is broken" in done.err


def test_a_lost_task_is_said_and_submitted_again(slurm: None, tiny: dict[str, Any], tmp_path: Path) -> None:
    """A task that ends without a result (here its set-up line fails) leaves its runs unfinished; the
    same sweep run again submits them again (slurm: is an execution setting: the runs are the same)."""
    lost = write_config(tmp_path / "lost.yaml", {**tiny, "slurm": {"setup": ["exit 3"]}})
    first = dlbench("run", lost, "--executor", "slurm", "--out", tmp_path, "--no-plots")
    assert first.exit_code == 1, first.output
    (record,) = read_jobs(tmp_path / "tiny")
    said = f"SLURM task {record.task_id} ended FAILED without finishing its runs"
    assert first.err.count(said) == 1 and "Warning" not in first.output, first.err
    assert "1 of 1 runs did not finish (their tasks ended without a result)" in first.err
    assert run_dirs(tmp_path / "tiny") == {}
    config = write_config(tmp_path / "c.yaml", tiny)
    again = dlbench("run", config, "--executor", "slurm", "--out", tmp_path, "--no-plots")
    assert again.exit_code == 0, again.output
    (resubmitted,) = read_jobs(tmp_path / "tiny")
    assert resubmitted.job_id != record.job_id and resubmitted.run_ids == record.run_ids
    assert [summary(d)["status"] for d in run_dirs(tmp_path / "tiny").values()] == ["ok"]


def test_a_task_started_more_often_than_its_retries_fails_its_runs(tiny: dict[str, Any], tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The array task itself, in this process, as SLURM starts it for the third time with slurm.retries 1."""
    from dlbench import runner
    from dlbench.execution import launchers, slurm as slurm_mod

    plan = runner.plan(write_config(tmp_path / "c.yaml", {**tiny, "slurm": {"retries": 1}}), [], out=tmp_path)
    (job,) = slurm_mod._stacks(plan.specs, plan.options)
    payload = slurm_mod.Payload(launchers.task(job, "cpu"), str(plan.store.root), retries=1)
    monkeypatch.setenv("SLURM_RESTART_COUNT", "2")
    (result,) = slurm_mod.SlurmTask()(payload)
    assert result.status == "failed" and result.stored
    assert summary(run_dirs(plan.store.root)[result.spec.run_id])["error"] == (
        "RuntimeError: the SLURM task was requeued 2 times, more than slurm.retries (1); its checkpoint is kept: "
        "--rerun failed resumes it")
