"""The benchmark scripts still run and print their tables (smoke runs on tiny sizes; no timing is checked)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("args, expect", [
    (["bench/stacks.py", "--sizes", "1", "2"], "| runs in the stack |"),
    (["bench/updates.py", "--runs", "4", "--steps", "2"], "| adam | torch.optim fused (one lr) |"),
])
def test_bench_script_prints_its_table(args: list[str], expect: str, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert expect in done.stdout, done.stdout


def test_the_jax_peer_trains_a_grid(tmp_path: Path, data_root: Path) -> None:
    """bench/jax_peer.py (make bench-peers' JAX contestant) trains a tiny grid of a dlbench config and says how
    well its runs did (jax comes with make install, in the bench-peers extra)."""
    pytest.importorskip("jax", reason="the bench-peers extra (pip install -e '.[bench-peers]') is not installed")
    config = tmp_path / "grid.yaml"
    config.write_text(f"data: {{root: {data_root}}}\nmodel: {{hidden: [16]}}\noptimizer: {{name: adam}}\n"
                      "train: {epochs: 2, seeds: [0, 1]}\ngrid: {optimizer.lr: [0.001, 0.01]}\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "bench/jax_peer.py", str(config)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "1 thread(s): 4 runs x 2 epochs; final test accuracy mean" in done.stderr, done.stderr
    accuracy = float(done.stderr.split("final test accuracy mean ")[1].split()[0])
    assert 0.15 < accuracy <= 1  # trained: above chance (0.1) on MNIST-1D after two epochs
    calibration = float(done.stderr.split("test calibration error mean ")[1].split(";")[0])
    assert 0 < calibration < 1  # measured, as dlbench measures it at every evaluation


def test_the_gpu_check_runs_every_step_and_writes_its_outputs(tmp_path: Path) -> None:
    """scripts/gpu-check.sh --smoke on a CPU: the CUDA tests (skipped here) and every bench/gpu.py section at
    toy sizes, each under the budget, their outputs in $OUT (what a GPU session brings back)."""
    if not shutil.which("bash") or not shutil.which("timeout"):
        pytest.skip("needs bash and coreutils' timeout")
    env = {**os.environ, "OUT": str(tmp_path), "PYTHON": sys.executable, "OMP_NUM_THREADS": "1",
           "CUDA_VISIBLE_DEVICES": ""}  # a GPU machine too runs the smoke: the CUDA tests skip
    done = subprocess.run(["scripts/gpu-check.sh", "--smoke"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bench-gpu.log", "bench-gpu.md", "env.txt", "summary.txt",
                                                          "test-gpu.log"]
    summary = (tmp_path / "summary.txt").read_text().splitlines()
    assert len(summary) == 7 and all(": ok (" in line for line in summary[:-1]), summary
    tables = (tmp_path / "bench-gpu.md").read_text()
    for header in ("| runs | idiomatic s |", "| runs | dlbench run s |", "| runs in the stack | ms per step |",
                   "| runs | ms per step | run-steps per s | peak memory | estimate |",
                   "| step (forward + backward) | runs | ms per step |"):
        assert header in tables, tables
    assert "skipped" in (tmp_path / "test-gpu.log").read_text()  # no GPU here
