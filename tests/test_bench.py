"""The benchmark scripts still run and print their tables (smoke runs on tiny sizes; no timing is checked)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("args, expect", [
    (["bench/stacks.py", "--sizes", "1", "2"], "| runs in the stack |"),
    (["bench/updates.py", "--runs", "4", "--steps", "2"], "| adam | torch.optim fused (one lr) |"),
    # every section at toy sizes on the CPU (the GPU numbers need a GPU: docs/gpu.md)
    (["bench/gpu.py", "--device", "cpu", "--smoke"], "| runs in the stack | ms per step | run-steps per s |"),
])
def test_bench_script_prints_its_table(args: list[str], expect: str, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert expect in done.stdout, done.stdout
