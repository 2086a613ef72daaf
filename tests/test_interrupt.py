"""Real `python -m dlbench run` processes killed with SIGKILL at random points, interrupted
with SIGINT, and racing another run on the same folder. Few subprocesses (each pays
for a Python + torch start); the kill points are random, the assertions do not depend
on where they land."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dlbench.config.vocabulary import Vocabulary
from dlbench.training import checkpoint
from sweep_util import (  # noqa: F401 - one_thread is a fixture
    ONE_THREAD,
    REPO,
    comparable_summary,
    dlbench,
    hidden_entries,
    metrics_without_time,
    one_thread,
    run_dirs,
    snapshot,
    tiny_config,
    write_config,
)


def start(config: Path, out: Path, *args: str, executor: str = "serial") -> subprocess.Popen[str]:
    env = {**os.environ, **ONE_THREAD, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-m", "dlbench", "run", str(config), "--out", str(out),
                             "--executor", executor, *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def wait_for_runs(proc: subprocess.Popen[str], root: Path, n: int, limit_s: float = 120) -> None:
    """Until `n` run folders exist or the process ended (a limit only against a hung test)."""
    deadline = time.monotonic() + limit_s
    while len(run_dirs(root)) < n and proc.poll() is None:
        assert time.monotonic() < deadline, "sweep made no progress"
        time.sleep(0.005)


def assert_complete_folders(root: Path) -> None:
    """What `report` would read: every visible run folder is whole."""
    for d in run_dirs(root).values():
        assert sorted(p.name for p in d.iterdir()) == ["config.yaml", "metrics.csv", "summary.json"]
        json.loads((d / "summary.json").read_text())


def test_sigkill_at_random_points_then_resume(tmp_path: Path, data_root: Path) -> None:
    grid = {"optimizer.lr": [0.05, 0.1, 0.2, 0.3], "init.scheme": ["he_normal", "xavier_normal"]}
    cfg = tiny_config(data_root, grid=grid, model={"hidden": [32], "dropout": 0.2},
                      regularization={"input_noise": 0.1},
                      train={"steps": 40, "batch_size": 50, "eval_every": 10, "seeds": [0, 1], "device": "cpu",
                             "checkpoint_seconds": 0})  # a checkpoint every step: kills land after one
    config = write_config(tmp_path / "c.yaml", cfg)
    # uninterrupted, in-process
    reference = dlbench("run", config, "--out", tmp_path / "reference", "--executor", "serial")
    assert reference.code == 0, reference.err
    expected = run_dirs(tmp_path / "reference" / "tiny")
    assert len(expected) == 16

    out, root = tmp_path / "results", tmp_path / "results" / "tiny"
    rng = random.Random(5)
    kills = 0
    for _ in range(3):
        before = snapshot(root)
        proc = start(config, out)
        wait_for_runs(proc, root, len(before) + rng.randint(1, 3))
        time.sleep(rng.uniform(0, 0.15))  # somewhere inside the next run, or its save
        proc.kill()
        proc.communicate()
        kills += proc.returncode == -signal.SIGKILL
        assert_complete_folders(root)
        after = snapshot(root)
        assert {r: after[r] for r in before} == before  # finished runs were not trained again
    assert kills >= 1

    before = snapshot(root)
    resumed = dlbench("run", config, "--out", out, "--executor", "serial")
    assert resumed.code == 0, resumed.err
    assert f"{len(before)} of 16 runs already finished" in resumed.out
    final = run_dirs(root)
    assert final.keys() == expected.keys() and hidden_entries(root) == []
    assert {r: snapshot(root)[r] for r in before} == before
    for rid, d in final.items():  # identical to the uninterrupted sweep
        assert metrics_without_time(d) == metrics_without_time(expected[rid])
        assert comparable_summary(d) == comparable_summary(expected[rid])
    run_ids = [line.split(",")[0] for line in (root / "runs.csv").read_text().splitlines()[1:]]
    assert len(run_ids) == 16


def test_sigint_saves_what_finished_and_a_second_run_is_locked_out(tmp_path: Path, data_root: Path) -> None:
    lrs = [round(0.01 * i, 2) for i in range(1, 101)]  # 200 runs: far longer than the test waits
    cfg = tiny_config(data_root, grid={"optimizer.lr": lrs}, train={**tiny_config(data_root)["train"],
                                                                   "seeds": [0, 1], "steps": 20})
    config = write_config(tmp_path / "c.yaml", cfg)
    out, root = tmp_path / "results", tmp_path / "results" / "tiny"
    proc = start(config, out)
    try:
        wait_for_runs(proc, root, 2)
        assert proc.poll() is None
        second = dlbench("run", config, "--out", out)
        assert second.code == 2 and "is being written by another dlbench run" in second.error_line
        report = dlbench("report", root)  # reading while it runs is fine
        assert report.code == 0 and "optimizer.lr" in report.out
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, stderr
    finished = run_dirs(root)
    assert 2 <= len(finished) < 200 and hidden_entries(root) == []
    assert_complete_folders(root)
    assert f"interrupted: {len(finished)} of 200 runs finished and saved" in stderr
    assert "mean ± std over seeds" in stdout  # the table of what finished
    assert len((root / "runs.csv").read_text().splitlines()) == 1 + len(finished)

    # the lock went with the process; resuming a smaller grid of the same experiment reuses what finished
    done_lrs = sorted({json.loads((d / "summary.json").read_text())["params"]["optimizer.lr"]
                       for d in finished.values()})
    subset = write_config(tmp_path / "subset.yaml", {**cfg, "grid": {"optimizer.lr": done_lrs[:1] + [9.99]}})
    resumed = dlbench("run", subset, "--out", out, "--executor", "serial")
    assert resumed.code == 0, resumed.err
    n_done = sum(1 for d in finished.values()
                 if json.loads((d / "summary.json").read_text())["params"]["optimizer.lr"] == done_lrs[0])
    assert f"{n_done} of 4 runs already finished" in resumed.out


def wait_for_checkpoint(proc: subprocess.Popen[str], root: Path, newer_than: float = 0.0,
                        limit_s: float = 120) -> Path | None:
    """The stack's checkpoint once written (after `newer_than`), or None when the process ended first."""
    deadline = time.monotonic() + limit_s
    while proc.poll() is None:
        assert time.monotonic() < deadline, "no checkpoint written"
        found = [p for p in (root / checkpoint.FOLDER).glob("*.pt") if p.stat().st_mtime > newer_than]
        if found:
            return found[0]
        time.sleep(0.005)
    return None


def test_a_stack_interrupted_then_killed_resumes_bit_for_bit(tmp_path: Path, data_root: Path) -> None:
    """One stack of 8 runs (default launcher): Ctrl-C mid-stack leaves a checkpoint, the next run
    resumes from it and is killed with SIGKILL, the third finishes: the metrics of an uninterrupted sweep."""
    cfg = tiny_config(data_root, grid={"optimizer.lr": [0.02, 0.05, 0.1, 0.2]}, model={"hidden": [32], "dropout": 0.2},
                      optimizer={"name": "adam", "lr": 0.01}, regularization={"input_noise": 0.1},
                      train={"steps": 600, "batch_size": 50, "eval_every": 50, "seeds": [0, 1], "device": "cpu",
                             "checkpoint_seconds": 0.05})
    config = write_config(tmp_path / "c.yaml", cfg)
    reference = dlbench("run", config, "--out", tmp_path / "reference")
    assert reference.code == 0, reference.err
    out, root = tmp_path / "results", tmp_path / "results" / "tiny"

    proc = start(config, out, executor="local")
    try:
        assert wait_for_checkpoint(proc, root) is not None, "the stack finished before a checkpoint"
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, stderr
    assert "checkpointed; run the same sweep again to resume" in stderr
    [saved] = list((root / checkpoint.FOLDER).glob("*.pt"))
    held, state = checkpoint.read(saved, Vocabulary(), pytest.fail)
    assert len(held) == 8 and 0 < state["step"] < 600 and run_dirs(root) == {}

    proc = start(config, out, executor="local")
    try:
        wait_for_checkpoint(proc, root, newer_than=saved.stat().st_mtime)
        proc.kill()
        proc.communicate()
    finally:
        proc.kill()

    resumed = dlbench("run", config, "--out", out)
    assert resumed.code == 0, resumed.err
    expected, final = run_dirs(tmp_path / "reference" / "tiny"), run_dirs(root)
    assert final.keys() == expected.keys() and len(final) == 8
    for rid, d in final.items():
        assert metrics_without_time(d) == metrics_without_time(expected[rid])
        assert comparable_summary(d) == comparable_summary(expected[rid])
    assert list((root / checkpoint.FOLDER).iterdir()) == []
