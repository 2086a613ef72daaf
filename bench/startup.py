"""Start-up time of the light commands against a bare `import torch`, on this machine.

    python bench/startup.py [--repeats 5] [--folder results/quickstart] [--against CHECKOUT]

Each command runs in a fresh interpreter, `--repeats` times; the table shows the median
wall time and its ratio to `python -c "import torch"` (targets: --help under 35 %,
report under 60 %). `report` needs a finished results folder: without --folder a tiny
one is trained first (xor data, a few steps). The last row, `run 64 x 1`, is the fixed
cost of a sweep: `dlbench run` of 64 MNIST-1D runs (the 64-run grid's model) for one step
each: imports, data, building the stack, the two evaluations, 64 run folders and the
tables. `--against` times every command with another checkout of dlbench as well (e.g.
the previous release), alternating with this one.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TARGETS = {"--help": 0.35, "report": 0.60}
FIXED = """name: fixed
model: {hidden: [100, 100]}
optimizer: {name: adam}
grid: {optimizer.lr: [0.0001, 0.0003, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 0.00005, 0.0002, 0.0005, 0.002, 0.005,
                      0.02, 0.05, 0.2]}
train: {steps: 1, seeds: [0, 1, 2, 3], device: cpu}
"""
TINY = """name: startup
data: {dataset: xor, samples: 200}
model: {hidden: [8]}
grid: {optimizer.lr: [0.01, 0.1]}
train: {steps: 10, eval_every: 5, batch_size: 50, seeds: [0, 1], device: cpu}
"""


def seconds(argv: list[str], repeats: int, repo: Path = REPO) -> float:
    """Median wall time of `python ARGV` importing dlbench from `repo`."""
    env = {**os.environ, "PYTHONPATH": str(repo), "OMP_NUM_THREADS": "1"}
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        # cwd outside any checkout: `python -m` puts the cwd first on sys.path, before PYTHONPATH
        subprocess.run([sys.executable, *argv], env=env, check=True, capture_output=True, cwd=tempfile.gettempdir())
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--folder", type=Path, help="a finished results folder for `report`")
    parser.add_argument("--against", type=Path, default=None, metavar="CHECKOUT",
                        help="also time each command with the dlbench of another checkout")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.folder.resolve() if args.folder else None
        if folder is None:
            config = Path(tmp) / "startup.yaml"
            config.write_text(TINY)
            seconds(["-m", "dlbench", "run", str(config), "--out", tmp, "--no-plots"], 1)
            folder = Path(tmp) / "startup"
        torch_s = seconds(["-c", "import torch"], args.repeats)
        fixed = Path(tmp) / "fixed.yaml"
        fixed.write_text(FIXED + f"data: {{root: {REPO / 'data'}}}\n")
        seconds(["-m", "dlbench", "run", str(fixed), "--out", tmp, "--no-plots"], 1)  # the dataset cached first
        commands = {"--help": ["--help"], "list": ["list"], "report": ["report", str(folder)],
                    "plot": ["plot", str(folder)],
                    "run 64 x 1": ["run", str(fixed), "--out", str(Path(tmp) / "again"), "--no-plots", "--rerun",
                                   "all"]}
        against = f" {'there s':>8} {'here / there':>13}" if args.against else ""
        print(f"{'command':<12} {'median s':>9} {'/ import torch':>15} {'target':>7}{against}")
        print(f"{'import torch':<12} {torch_s:>9.2f} {1:>15.0%} {'':>7}")
        for name, argv in commands.items():
            s = seconds(["-m", "dlbench", *argv], args.repeats)
            target = f"< {TARGETS[name]:.0%}" if name in TARGETS else ""
            there = ""
            if args.against:
                old = seconds(["-m", "dlbench", *argv], args.repeats, args.against.resolve())
                there = f" {old:>8.2f} {s / old:>13.0%}"
            print(f"{name:<12} {s:>9.2f} {s / torch_s:>15.0%} {target:>7}{there}")


if __name__ == "__main__":
    main()
