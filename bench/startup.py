"""Start-up time of the light commands against a bare `import torch`, on this machine.

    python bench/startup.py [--repeats 5] [--folder results/quickstart]

Each command runs in a fresh interpreter, `--repeats` times; the table shows the median
wall time and its ratio to `python -c "import torch"` (targets: --help under 35 %,
report under 60 %). `report` needs a finished results folder: without --folder a tiny
one is trained first (xor data, a few steps).
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
TINY = """name: startup
data: {dataset: xor, samples: 200}
model: {hidden: [8]}
grid: {optimizer.lr: [0.01, 0.1]}
train: {steps: 10, eval_every: 5, batch_size: 50, seeds: [0, 1], device: cpu}
"""


def seconds(argv: list[str], repeats: int) -> float:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([sys.executable, *argv], env=env, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--folder", type=Path, help="a finished results folder for `report`")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.folder
        if folder is None:
            config = Path(tmp) / "startup.yaml"
            config.write_text(TINY)
            seconds(["-m", "dlbench", "run", str(config), "--out", tmp, "--no-plots"], 1)
            folder = Path(tmp) / "startup"
        torch_s = seconds(["-c", "import torch"], args.repeats)
        commands = {"--help": ["--help"], "list": ["list"], "report": ["report", str(folder)],
                    "plot": ["plot", str(folder)]}
        print(f"{'command':<12} {'median s':>9} {'/ import torch':>15} {'target':>7}")
        print(f"{'import torch':<12} {torch_s:>9.2f} {1:>15.0%} {'':>7}")
        for name, argv in commands.items():
            s = seconds(["-m", "dlbench", *argv], args.repeats)
            target = f"< {TARGETS[name]:.0%}" if name in TARGETS else ""
            print(f"{name:<12} {s:>9.2f} {s / torch_s:>15.0%} {target:>7}")


if __name__ == "__main__":
    main()
