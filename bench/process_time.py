"""One process timed from outside: its wall time and its CPU time (user + sys of it and its children, from
wait4), for the whole-process benchmarks (bench/startup.py, bench/peers.py). CPU time is what other load on
the machine moves least: a process waiting for a core is not charged for the wait."""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from pathlib import Path


def timed(argv: list[str], env: dict[str, str], cwd: Path | None = None) -> tuple[float, float]:
    """(wall s, CPU s) of running `argv` to its end; a failure stops the benchmark with its stderr's tail.
    The cwd defaults to one outside any checkout: `python -m` puts the cwd first on sys.path, before PYTHONPATH."""
    with tempfile.TemporaryFile("w+") as err:  # a file, not a pipe: nothing blocks while wait4 waits
        start = time.perf_counter()
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=err,
                                cwd=cwd or tempfile.gettempdir())
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        if status:
            err.seek(0)
            raise SystemExit(f"{' '.join(argv)} failed: {err.read()[-2000:]}")
    return wall, usage.ru_utime + usage.ru_stime
