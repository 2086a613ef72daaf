"""The plugin targets: a torch.optim plugin optimizer on the 64-run grid against the same rule
built in, and `validate` start-up with one plugin file against none.

    python bench/plugins.py [--steps 200] [--repeats 3] [--device cpu|cuda] [--only grid|startup]

The grid is the 64-run grid (MNIST-1D MLP 100-100, batch 100, 16 learning rates x 4 seeds),
trained as one stack for --steps steps with the built-in `adam` and with `torch.optim.Adam`
registered as a plugin (one instance per run over its rows); the table shows the median
wall time of `dlbench run` (in-process, after a warm-up) and the ratio (target: within 2x).
Start-up: median wall time of `dlbench validate` in a fresh interpreter, with and without
`--plugin` (target: within 0.3 s).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
LRS = [0.0001, 0.0003, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 0.00005, 0.0002, 0.0005, 0.002, 0.005, 0.02, 0.05, 0.2]
PLUGIN = "import torch\nfrom dlbench import register\n\nregister.optimizer('torch_adam')(torch.optim.Adam)\n"


def grid(name: str, optimizer: str, steps: int, device: str) -> dict[str, object]:
    return {"name": name, "model": {"hidden": [100, 100]}, "optimizer": {"name": optimizer},
            "grid": {"optimizer.lr": LRS}, "train": {"steps": steps, "eval_every": steps, "seeds": [0, 1, 2, 3],
                                                      "device": device, "checkpoint_seconds": None}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--only", choices=("grid", "startup"), help="Measure one target only.")
    args = parser.parse_args()
    import dlbench
    from dlbench import plugins

    with tempfile.TemporaryDirectory() as tmp:
        plugin = Path(tmp) / "torch_adam.py"
        plugin.write_text(PLUGIN)
        if args.only != "startup":
            _grid(plugins, dlbench, plugin, tmp, args)
        if args.only != "grid":
            _startup(plugin, tmp, args.repeats)


def _grid(plugins: Any, dlbench: Any, plugin: Path, tmp: str, args: argparse.Namespace) -> None:
    plugins.load([str(plugin)])
    times: dict[str, list[float]] = {"adam": [], "torch_adam": []}
    for repeat in range(args.repeats + 1):  # the first round warms up (data, imports)
        for name in times:
            start = time.perf_counter()
            dlbench.run(grid(f"{name}{repeat}", name, args.steps, args.device), out=Path(tmp) / "out",
                        progress=False, plots=False)
            if repeat:
                times[name].append(time.perf_counter() - start)
    built_in, plugged = (statistics.median(times[n]) for n in ("adam", "torch_adam"))
    print(f"64-run grid, {args.steps} steps, {args.device}: built-in adam {built_in:.2f} s, torch.optim.Adam "
          f"plugin {plugged:.2f} s: {plugged / built_in:.2f}x (target <= 2x)")


def _startup(plugin: Path, tmp: str, repeats: int) -> None:
    config = Path(tmp) / "c.yaml"
    config.write_text("name: startup\ndata: {dataset: xor, samples: 200}\nmodel: {hidden: [8]}\n"
                      "train: {steps: 10, device: cpu}\n")
    start_up: dict[str, list[float]] = {"none": [], "one plugin": []}
    for _ in range(repeats):
        for label, extra in (("none", []), ("one plugin", ["--plugin", str(plugin)])):
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", "dlbench", "validate", str(config), *extra], check=True,
                           capture_output=True, cwd=REPO)
            start_up[label].append(time.perf_counter() - start)
    none, one = (statistics.median(v) for v in start_up.values())
    print(f"validate start-up: {none:.2f} s without plugins, {one:.2f} s with one: +{one - none:.2f} s "
          "(target <= 0.3 s)")


if __name__ == "__main__":
    main()
