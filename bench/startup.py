"""Start-up time of the light commands and of a sweep against a bare `import torch`, on this machine.

    python bench/startup.py [--repeats 5] [--folder results/quickstart] [--against CHECKOUT]

Each command runs in a fresh interpreter, `--repeats` times, the commands taking turns
(so that a change of the machine's load touches them alike); the table shows the median
wall time, its ratio to `python -c "import torch"` (targets: --help under 35 %, report
under 60 %), what it takes beyond that import, and the same for the process's CPU time
(user + sys, from wait4: less moved by other load than wall time). `report` needs a finished
results folder: without --folder a tiny one is trained first (xor data, a few steps).
`run 1 x 1` is a sweep of one MNIST-1D run (MLP 100-100) for one epoch, the whole
process with its table printed, with `--no-plots` (target: within 0.5 s of `import torch`)
and with its figures (within 1.2 s). `run 64 x 1` is the fixed cost of a 64-run sweep:
64 runs for one step each: imports, data, building the stack, the two evaluations, 64 run
folders and the tables. `--against` times every command with another checkout of dlbench
as well (e.g. the previous release), in the same turns.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

from process_time import timed

REPO = Path(__file__).resolve().parents[1]
TARGETS = {"--help": 0.35, "report": 0.60}  # of import torch's time
BEYOND = {"run 1 x 1 --no-plots": 0.5, "run 1 x 1": 1.2}  # seconds beyond import torch's time
FIXED = """name: fixed
model: {hidden: [100, 100]}
optimizer: {name: adam}
grid: {optimizer.lr: [0.0001, 0.0003, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 0.00005, 0.0002, 0.0005, 0.002, 0.005,
                      0.02, 0.05, 0.2]}
train: {steps: 1, seeds: [0, 1, 2, 3], device: cpu}
"""
ONE = """name: one
model: {hidden: [100, 100]}
optimizer: {name: adam}
train: {epochs: 1, seeds: [0], device: cpu}
"""
TINY = """name: startup
data: {dataset: xor, samples: 200}
model: {hidden: [8]}
grid: {optimizer.lr: [0.01, 0.1]}
train: {steps: 10, eval_every: 5, batch_size: 50, seeds: [0, 1], device: cpu}
"""


def once(argv: list[str], repo: Path = REPO) -> tuple[float, float]:
    """(wall s, CPU s) of `python ARGV` importing dlbench from `repo`."""
    return timed([sys.executable, *argv], {**os.environ, "PYTHONPATH": str(repo), "OMP_NUM_THREADS": "1"})


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
            once(["-m", "dlbench", "run", str(config), "--out", tmp, "--no-plots"])
            folder = Path(tmp) / "startup"
        data = f"data: {{root: {REPO / 'data'}}}\n"
        fixed, one = Path(tmp) / "fixed.yaml", Path(tmp) / "one.yaml"
        fixed.write_text(FIXED + data)
        one.write_text(ONE + data)
        once(["-m", "dlbench", "run", str(fixed), "--out", tmp, "--no-plots"])  # the dataset cached first
        again = ["--out", str(Path(tmp) / "again"), "--rerun", "all"]
        commands = {"import torch": ["-c", "import torch"], "--help": ["-m", "dlbench", "--help"],
                    "list": ["-m", "dlbench", "list"], "report": ["-m", "dlbench", "report", str(folder)],
                    "plot": ["-m", "dlbench", "plot", str(folder)],
                    "run 1 x 1 --no-plots": ["-m", "dlbench", "run", str(one), *again, "--no-plots"],
                    "run 1 x 1": ["-m", "dlbench", "run", str(one), *again],
                    "run 64 x 1": ["-m", "dlbench", "run", str(fixed), *again, "--no-plots"]}
        repos = {"here": REPO, **({"there": args.against.resolve()} if args.against else {})}
        times: dict[tuple[str, str], list[tuple[float, float]]] = {}
        for _ in range(args.repeats):  # in turns: every command once, then again
            for name, argv in commands.items():
                for where, repo in repos.items():
                    if where == "here" or name != "import torch":
                        times.setdefault((name, where), []).append(once(argv, repo))

        def median(name: str, where: str = "here") -> tuple[float, float]:
            runs = times[(name, where)]
            return statistics.median(w for w, _ in runs), statistics.median(c for _, c in runs)

        torch_wall, torch_cpu = median("import torch")
        against = f" {'there s':>8} {'here / there':>13}" if args.against else ""
        print(f"{'command':<20} {'median s':>9} {'/ import torch':>15} {'beyond it s':>12} {'CPU s':>6} "
              f"{'beyond it':>10} {'target':>9}{against}")
        for name in commands:
            wall, cpu = median(name)
            target = (f"< {TARGETS[name]:.0%}" if name in TARGETS else f"< +{BEYOND[name]:.1f} s" if name in BEYOND
                      else "")
            there = ""
            if args.against and name != "import torch":
                old = median(name, "there")[0]
                there = f" {old:>8.2f} {wall / old:>13.0%}"
            print(f"{name:<20} {wall:>9.2f} {wall / torch_wall:>15.0%} {wall - torch_wall:>+12.2f} {cpu:>6.2f} "
                  f"{cpu - torch_cpu:>+10.2f} {target:>9}{there}")
        print(f"load average at the end: {os.getloadavg()[0]:.1f} (2-core machine: above 2, other work competed)")


if __name__ == "__main__":
    main()
