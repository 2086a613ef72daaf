"""`dlbench status` / `watch` read a sweep from its folder while another process trains it:
progress files written by the workers (whole to any reader), the runs in training, then
finished; watch ends by itself; a stale file is shown as such; bad folders are refused."""

from __future__ import annotations

import _thread
import io
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from dlbench import monitor
from dlbench.results import live
from dlbench.execution.jobs import JobRecord, write_jobs
from dlbench.results.store import Store, progress_file
from sweep_util import ONE_THREAD, REPO, dlbench, one_thread, tiny_config, write_config  # noqa: F401 - fixture
from test_slurm import fake_commands, slurm  # noqa: F401 - slurm: the one-node SLURM (a fixture)

ENV = {**os.environ, **ONE_THREAD, "PYTHONPATH": str(REPO)}


def start(*args: Any) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "dlbench", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=ENV)


def until(condition: Any, proc: subprocess.Popen[str], limit_s: float = 120) -> Any:
    """Poll `condition()` until it returns something true (a limit only against a hung test)."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        assert proc.poll() is None, f"the sweep ended first: {proc.communicate()}"
        time.sleep(0.05)
    raise AssertionError("nothing happened")


def test_a_sweep_trained_by_worker_processes_is_watched_from_another_process(tmp_path: Path,
                                                                              data_root: Path) -> None:
    cfg = tiny_config(data_root, grid={"optimizer.lr": [0.05, 0.1]},
                      train={"steps": 800, "batch_size": 50, "eval_every": 200, "seeds": [0, 1], "device": "cpu"})
    out, root = tmp_path / "results", tmp_path / "results" / "tiny"
    sweep = start("run", write_config(tmp_path / "c.yaml", cfg), "--out", out, "--executor", "processes",
                  "--workers", "2")

    def training() -> list[live.RunProgress]:
        if not (root / "experiment.yaml").is_file():
            return []
        s = monitor.snapshot(root)
        return [p for p in s.training if p.step > 0 and "val_acc" in p.metrics] if s.running else []

    seen = until(training, sweep)
    assert {p.pid for p in seen}.isdisjoint({os.getpid(), sweep.pid})  # written by the workers
    assert all(0 < p.step <= p.total == 800 and p.host for p in seen)
    shown = dlbench("status", root)
    assert shown.code == 0 and "training" in shown.out and "running" in shown.out
    watched = dlbench("watch", root, "--refresh", "0.2")  # returns by itself once the sweep has ended
    assert watched.code == 0 and not watched.err, watched.err
    assert watched.out.splitlines()[0].endswith(": finished")  # its last view stays: the sweep done
    assert sweep.wait(timeout=60) == 0, sweep.communicate()

    s = monitor.snapshot(root)
    assert not s.running and s.planned == 4 and s.counts["ok"] == 4 and s.queued == 0 and not s.training
    assert not list(live.folder(root).glob("*[!p].json"))  # no run's progress file is left (sweep.json is)
    assert s.best and "optimizer.lr=" in s.best[0]
    final = dlbench("status", root)
    assert final.code == 0 and final.out.splitlines()[0].endswith(": finished")


def test_progress_files_are_whole_to_a_reader_while_rewritten(tmp_path: Path) -> None:
    writer = live.Writer(tmp_path, every=0)
    big = {"note": "x" * 200_000}  # a file written in several pieces: a plain write would be seen half done
    stop = threading.Event()

    def write() -> None:
        step = 0
        while not stop.is_set():
            step += 1
            writer.write(step, [{"run_id": "r1", "params": big, "seed": 0, "step": step, "total": 10**9,
                                 "epoch": 0.0, "metrics": {"val_acc": 0.5}}])

    thread = threading.Thread(target=write)
    thread.start()
    reads = 0
    try:
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            path = progress_file(tmp_path, "r1")
            if path.exists():
                record = json.loads(path.read_text())  # never a JSONDecodeError
                assert record["params"] == big and record["state"] == "training"
                reads += 1
    finally:
        stop.set()
        thread.join()
    assert reads > 10
    assert [p.name for p in live.folder(tmp_path).iterdir()] == ["r1.json"]  # no temporary file left


def test_a_file_whose_writer_is_gone_is_shown_stale_and_kept(tmp_path: Path, data_root: Path) -> None:
    cfg = tiny_config(data_root)
    assert dlbench("run", write_config(tmp_path / "c.yaml", cfg), "--out", tmp_path).code == 0
    root = tmp_path / "tiny"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    writer = live.Writer(root)
    writer.pid = dead.pid  # as if that process had written it, then been killed
    writer.write(5, [{"run_id": "abc", "params": {}, "seed": 3, "step": 5, "total": 12, "epoch": 1.0,
                      "metrics": {"val_acc": 0.25}}])
    s = monitor.snapshot(root)
    assert [p.run_id for p in s.stale] == ["abc"] and not s.training and not s.running
    assert "stale" in dlbench("status", root).out
    assert progress_file(root, "abc").is_file()  # readers never delete
    Store(root).save("abc", {}, [], {"run_id": "abc", "status": "ok"})
    assert not progress_file(root, "abc").exists()  # its folder written: gone


@pytest.mark.parametrize("command", ["status", "watch"])
@pytest.mark.parametrize("folder", ["missing", "empty", "file", "root"])
def test_a_folder_that_is_not_an_experiment_is_refused(tmp_path: Path, command: str, folder: str) -> None:
    path = tmp_path / folder
    if folder == "empty":
        path.mkdir()
    elif folder == "file":
        path.write_text("x")
    elif folder == "root":  # results/, holding experiments: they are named
        for name in ("a", "b"):
            (path / name).mkdir(parents=True)
            (path / name / "experiment.yaml").write_text("name: x\n")
    result = dlbench(command, path)
    assert result.code == 2 and str(path) in result.error_line and not result.out
    if folder == "root":
        assert "holds 2 experiments: a, b; name one" in result.error_line


def test_watch_ends_quietly_on_ctrl_c(tmp_path: Path, data_root: Path) -> None:
    assert dlbench("run", write_config(tmp_path / "c.yaml", tiny_config(data_root)), "--out", tmp_path).code == 0
    root = tmp_path / "tiny"
    live.write_sweep(root, live.Sweep(["abc"]))  # a sweep this (live) process runs: watch would wait on
    ctrl_c = threading.Timer(1.0, _thread.interrupt_main)  # Ctrl-C, in this thread, while it watches
    ctrl_c.start()
    watched = dlbench("watch", root, "--refresh", "0.1")
    ctrl_c.join()
    assert watched.code == 0 and watched.err == "", watched.err
    assert watched.out.startswith(f"tiny ({root}): running")  # its last view stays on the screen


def test_the_tasks_of_a_submitted_sweep_are_shown_with_their_scheduler_states(
        tmp_path: Path, data_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """squeue / scontrol mocked: the tasks still queued or running are listed (running first), past the
    limit counted by state; the sweep runs while one of them does."""
    assert dlbench("run", write_config(tmp_path / "c.yaml", tiny_config(data_root)), "--out", tmp_path).code == 0
    root = tmp_path / "tiny"
    done = next(iter(Store(root).finished()))
    write_jobs(root, [JobRecord("7", i, f"s{i}", (f"r{i}",) if i else (done,), "t", "slurm") for i in range(4)])
    fake_commands(tmp_path / "bin", "7_2|PENDING|Priority\n7_3|PENDING|JobArrayTaskLimit\n7_1|RUNNING|None\n",
                  {"7_0": "JobId=9 ArrayJobId=7 ArrayTaskId=0 JobState=COMPLETED Reason=None"})
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    s = monitor.snapshot(root)
    assert s.running and [(j.task_id, j.state.state, j.unfinished) for j in s.jobs] == [
        ("7_0", "COMPLETED", 0), ("7_1", "RUNNING", 1), ("7_2", "PENDING", 1), ("7_3", "PENDING", 1)]
    shown = dlbench("status", root).out
    assert "3 jobs (SLURM)" in shown and "PENDING (Priority)" in shown and "1 ended with all their runs" in shown
    assert shown.index("7_1") < shown.index("7_2")  # running first
    console = Console(width=80, record=True, file=io.StringIO())
    console.print(monitor.render(s, job_limit=1))
    limited = console.export_text()
    assert "7_1" in limited and "7_2" not in limited and "and 2 more: 2 PENDING" in limited  # counted by state


@pytest.mark.usefixtures("slurm")
def test_a_detached_slurm_sweep_is_watched_through_its_jobs(tmp_path: Path, data_root: Path) -> None:
    """On the real one-node SLURM: two stacks as an array throttled to one task at a time; status shows
    the task that trains (its runs' progress, written on the node) and the one that waits; watch ends
    when the array is done."""
    cfg = tiny_config(data_root, grid={"model.hidden": [[16], [24]]},
                      train={"steps": 600, "batch_size": 50, "eval_every": 200, "seeds": [0, 1], "device": "cpu"})
    out, root = tmp_path / "results", tmp_path / "results" / "tiny"
    submitted = dlbench("run", write_config(tmp_path / "c.yaml", cfg), "--executor", "slurm", "--workers", "1",
                        "--detach", "--out", out, "--no-plots")
    assert submitted.code == 0, submitted.output
    scheduler = monitor.Scheduler(every=0.5)

    def one_trains_one_waits() -> monitor.Snapshot | None:
        s = monitor.snapshot(root, scheduler=scheduler)
        states = sorted((j.state.state, j.state.reason) for j in s.jobs)
        return s if s.training and states == [("PENDING", "JobArrayTaskLimit"), ("RUNNING", "")] else None

    deadline = time.monotonic() + 240
    seen = one_trains_one_waits()
    while seen is None:
        assert time.monotonic() < deadline, monitor.snapshot(root)
        time.sleep(0.2)
        seen = one_trains_one_waits()
    assert seen.running and seen.planned == 4 and len(seen.training) == 2 and seen.queued == 2
    assert {p.pid for p in seen.training}.isdisjoint({os.getpid()})  # written by the SLURM task
    watched = dlbench("watch", root, "--refresh", "0.5")  # returns once no task is queued or running
    assert watched.code == 0 and watched.out.splitlines()[0].endswith(": finished"), watched.output
    s = monitor.snapshot(root)
    assert s.counts["ok"] == 4 and not s.running and not any(j.state.live for j in s.jobs)
