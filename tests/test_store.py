"""The results store with many writers: a worker (a SLURM task, on this host or another) writes its
own runs' folders while the process that collects starts a session; recovering after a kill removes
only what dead writers left, never what a live writer is still writing."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from dlbench.results import store as store_mod
from dlbench.results.store import HOST, STALE_S, Store


def _run(store: Store, run_id: str) -> Path:
    return store.save(run_id, {"name": "x"}, [], {"run_id": run_id, "status": "ok"})


def _pids() -> tuple[subprocess.Popen[bytes], int]:
    """A live process (a writer still at work) and the pid of one that has ended."""
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    return live, ended.pid


def test_recover_leaves_live_writers_alone_and_cleans_up_after_dead_ones(tmp_path: Path) -> None:
    store = Store(tmp_path / "exp")
    for run_id in ("aaa", "bbb", "ccc"):
        _run(store, run_id)
    runs = store.runs_dir
    live, dead = _pids()
    try:
        (runs / "bbb").rename(runs / f".bbb.{HOST}.{dead}.old")  # a dead writer's swap, half done: put back
        (runs / "ccc").rename(runs / f".ccc.{HOST}.{live.pid}.old")  # a live writer's swap: its own to finish
        writing = {
            f".ddd.{HOST}.{live.pid}.1a2b3c4d": True,  # this host, its writer alive
            f".eee.{HOST}.{dead}.1a2b3c4d": False,  # this host, its writer gone
            ".fff.other_node.4242.1a2b3c4d": True,  # another host, touched just now
            ".ggg.other_node.4242.1a2b3c4d": False,  # another host, untouched for longer than STALE_S
            ".hhh.123.1a2b3c4d": False,  # a dlbench with one writer left it (no host)
        }
        for name in writing:
            (runs / name).mkdir()
            (runs / name / "metrics.csv").write_text("step\n")
        stale = time.time() - STALE_S - 60
        os.utime(runs / ".ggg.other_node.4242.1a2b3c4d", (stale, stale))

        store.recover()
        left = sorted(p.name for p in runs.iterdir())
        assert left == sorted(["aaa", "bbb", f".ccc.{HOST}.{live.pid}.old",
                               *(name for name, kept in writing.items() if kept)])
        assert store.finished() == {"aaa": "ok", "bbb": "ok"}
    finally:
        live.kill()
        live.wait()
    store.recover()  # its writer is gone now: the swap is undone, the half-written folder removed
    assert sorted(p.name for p in runs.iterdir()) == sorted(["aaa", "bbb", "ccc", ".fff.other_node.4242.1a2b3c4d"])


def test_a_session_leaves_a_workers_run_in_writing_alone(tmp_path: Path) -> None:
    """A worker (here: another process on this host) stops between writing its run folder and renaming it
    into place; a `dlbench run` that starts a session meanwhile keeps it, and the rename then completes."""
    store = Store(tmp_path / "exp")
    worker = subprocess.Popen([sys.executable, "-c", f"""
import sys, time
from pathlib import Path
from dlbench.results import store as s
real = Path.rename
def slow(self, target):
    if self.name.startswith(".run1."):
        print("writing", flush=True)
        time.sleep(3)
    return real(self, target)
Path.rename = slow
s.Store(Path({str(tmp_path / 'exp')!r})).save("run1", {{"name": "x"}}, [], {{"run_id": "run1", "status": "ok"}})
"""], stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(Path(store_mod.__file__).parents[2])})
    assert worker.stdout is not None and worker.stdout.readline().strip() == b"writing"
    with store.session({"ids": 2, "swept": [], "fixed": {}}, {"name": "exp"}, {}):
        assert [p.name.split(".")[1] for p in store.runs_dir.iterdir()] == ["run1"]  # still hidden, kept
    assert worker.wait(timeout=60) == 0
    assert store.finished() == {"run1": "ok"}


def test_process_workers_write_their_own_runs_folders(tmp_path: Path, data_root: Path) -> None:
    """With an experiment folder, each worker process stores its runs as they finish (a killed caller loses
    none of them) and says so; the caller stores nothing twice."""
    import torch

    from dlbench.plan import sweep
    from dlbench.config import schema
    from dlbench.execution.launchers import EXECUTORS, Options
    from sweep_util import run_dirs, summary, tiny_config

    raw = tiny_config(data_root, grid={"optimizer.lr": [0.05, 0.1]})
    specs = sweep.expand(schema.validate(raw), raw)
    folder = tmp_path / "tiny"
    results = list(EXECUTORS["processes"].builder(specs, torch.device("cpu"), None,
                                                  Options(workers=2, progress=folder)))
    assert sorted(r.spec.run_id for r in results) == sorted(run_dirs(folder)) == sorted(s.run_id for s in specs)
    assert all(r.stored for r in results)
    assert {summary(d)["status"] for d in run_dirs(folder).values()} == {"ok"}
