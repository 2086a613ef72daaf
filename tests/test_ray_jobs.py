"""--executor ray --address HOST:PORT --detach on a real Ray cluster that this module starts (one node,
two CPUs, its job server on; stopped at the end): each stack is a Ray job that outlives the command
that submitted it; the runs of a job the cluster lost are submitted again; `dlbench status` shows the
jobs with Ray's states; the same command again submits nothing for live jobs, another executor
refuses their runs; a run without --detach waits for the jobs, collects them, and the numbers are a
local run's. Without --detach, a remote cluster's runs show their progress in the folder too."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sweep_util import ONE_THREAD, dlbench, metrics_without_time, run_dirs, write_config

from dlbench.execution.jobs import JobRecord, read_jobs, write_jobs
from dlbench.results import live

ray = pytest.importorskip("ray")  # the `ray` extra (make install has it)


# token authentication off, in the head and in every driver that joins it (modes must match: a driver in
# token mode refuses its own actors' calls). Ray turns it on by itself where ~/.ray/auth_token exists, and a
# local `ray.init()` earlier in this process (another test module) sets RAY_AUTH_MODE=token here.
NO_TOKEN = {"RAY_AUTH_MODE": "disabled"}


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`ray start --head --block` in a session of its own (every port its own, so that it meets no other
    Ray instance on the machine); its process group is stopped at the end. Yields its address."""
    gcs, dashboard, agent, agent_grpc, metrics, runtime_env = _free_ports(6)
    log = tmp_path_factory.mktemp("ray") / "head.log"
    # its own temporary folder: Ray's default one would name it the machine's current cluster, which
    # every later `ray.init()` (a local Ray instance) would join; short, for its socket paths
    temp = Path(tempfile.mkdtemp(prefix="dlbench-ray-", dir="/tmp"))
    # the jobs run this interpreter with the same dlbench (PYTHONPATH) and one torch thread
    env = {**os.environ, **ONE_THREAD, **NO_TOKEN, "RAY_USAGE_STATS_ENABLED": "0"}
    command = [sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--block", "--num-cpus", "2",
               "--node-ip-address", "127.0.0.1", f"--port={gcs}", "--include-dashboard=true",
               "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard}", f"--dashboard-agent-listen-port={agent}",
               f"--dashboard-agent-grpc-port={agent_grpc}", f"--metrics-export-port={metrics}",
               f"--runtime-env-agent-port={runtime_env}", f"--temp-dir={temp}", "--disable-usage-stats"]
    with open(log, "w") as out:
        head = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    address = f"127.0.0.1:{gcs}"
    try:
        from ray.job_submission import JobSubmissionClient

        deadline = time.monotonic() + 120
        while True:  # up when its job server answers
            assert head.poll() is None, f"ray start failed: {log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"the Ray head's job server did not answer: {log.read_text()[-3000:]}"
            try:
                JobSubmissionClient(f"http://127.0.0.1:{dashboard}").list_jobs()
                break
            except Exception:  # noqa: BLE001 - not up yet
                time.sleep(1)
        yield address
    finally:
        os.killpg(head.pid, signal.SIGTERM)  # the head and what it started (its reaper kills the rest)
        try:
            head.wait(10)
        except subprocess.TimeoutExpired:
            pass
        try:  # what of its session is left (a GCS server slow to go)
            os.killpg(head.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        head.wait(30)
        shutil.rmtree(temp, ignore_errors=True)


def test_a_detached_sweep_outlives_its_command_and_is_collected(cluster: str, tiny: dict[str, Any],
                                                                tmp_path: Path) -> None:
    from ray.job_submission import JobSubmissionClient

    cfg = {**tiny, "train": {**tiny["train"], "seeds": [0, 1]}, "grid": {"optimizer.lr": [0.01, 0.003]}}
    config = write_config(tmp_path / "c.yaml", cfg)
    assert dlbench("run", config, "--out", tmp_path / "local", "--no-plots").exit_code == 0
    run_ids = tuple(sorted(run_dirs(tmp_path / "local" / "tiny")))
    out, folder = tmp_path / "ray", tmp_path / "ray" / "tiny"
    # a job of an earlier submission that the cluster no longer knows (restarted since): its runs were lost
    forgotten = JobRecord("raysubmit_forgotten", None, "stack", run_ids, "2026-01-01T00:00:00+00:00", "ray", cluster)
    write_jobs(folder, [forgotten])
    client = JobSubmissionClient(cluster)
    # a job that holds both CPUs: ours wait (PENDING) until it is stopped, so that what follows is not a race
    blocker = client.submit_job(entrypoint="sleep 600", entrypoint_num_cpus=2)
    args = ("run", config, "--executor", "ray", "--address", cluster, "--workers", "2", "--out", out, "--no-plots")
    try:
        submitted = dlbench(*args, "--detach")
        assert submitted.exit_code == 0, submitted.output
        records = read_jobs(folder)  # the lost runs submitted again, the forgotten job's record replaced
        assert len(records) == 2 and {r.launcher for r in records} == {"ray"}  # two stacks: two jobs
        assert {r.address for r in records} == {cluster}
        assert f"submitted 2 Ray jobs: {records[0].job_id}, {records[1].job_id}" in submitted.out
        assert tuple(sorted(run for r in records for run in r.run_ids)) == run_ids

        status = dlbench("status", folder)
        assert status.exit_code == 0, status.output
        assert "2 jobs (Ray)" in status.out and status.out.count("PENDING") == 2, status.out

        again = dlbench(*args, "--detach")  # both jobs are queued: nothing is submitted again
        assert "submitted nothing (every unfinished stack is queued or running)" in again.out, again.output
        assert read_jobs(folder) == records
        local = dlbench("run", config, "--out", out, "--no-plots")  # another executor would train them twice
        assert local.exit_code == 2 and f"Ray jobs {records[0].job_id}, {records[1].job_id} are queued or running" \
            in local.error_line
    finally:
        client.stop_job(blocker)

    collected = dlbench(*args)  # waits for the jobs (trains nothing itself), collects, reports
    assert collected.exit_code == 0, collected.output
    assert read_jobs(folder) == records  # nothing submitted again
    runs_a, runs_b = run_dirs(tmp_path / "local" / "tiny"), run_dirs(folder)
    assert runs_a.keys() == runs_b.keys()
    for run_id in runs_a:
        assert metrics_without_time(runs_a[run_id]) == metrics_without_time(runs_b[run_id]), run_id


def test_a_remote_clusters_runs_show_their_progress_in_the_folder(cluster: str, tiny: dict[str, Any],
                                                                  tmp_path: Path) -> None:
    """Without --detach the cluster's nodes need not see the folder: its Ray tasks send their runs'
    progress to the driver, which writes it there, so another process sees the runs training."""
    cfg = {**tiny, "train": {**tiny["train"], "steps": 6000, "eval_every": 2000}}
    config = write_config(tmp_path / "c.yaml", cfg)
    folder = tmp_path / "out" / "tiny"
    log = tmp_path / "run.log"
    with open(log, "w") as out:
        run = subprocess.Popen([sys.executable, "-m", "dlbench", "run", str(config), "--executor", "ray", "--address",
                                cluster, "--out", str(tmp_path / "out"), "--no-plots"],
                               stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **ONE_THREAD, **NO_TOKEN})
    seen: list[live.RunProgress] = []
    while run.poll() is None and not seen:
        seen = [p for p in live.read(folder) if p.training]
        time.sleep(0.05)
    assert run.wait(240) == 0, log.read_text()
    assert seen and 0 < seen[0].step < seen[0].total == 6000, log.read_text()
    assert [p.run_id for p in seen] == list(run_dirs(folder))
    assert live.read(folder) == []  # the run's folder written, its progress file is gone


def test_detach_needs_a_running_cluster(tiny: dict[str, Any], tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.yaml", tiny)
    refused = dlbench("run", config, "--executor", "ray", "--detach", "--out", tmp_path)
    assert refused.exit_code == 2
    assert "--detach with --executor ray needs --address HOST:PORT of a running Ray cluster" in refused.error_line
    assert not (tmp_path / "tiny").exists()
