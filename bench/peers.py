"""dlbench against its peers, whole processes: a JAX expert's script and the idiomatic PyTorch loop.

    python bench/peers.py [--repeats 3] [--threads N] [--grids grid32 grid64] [--no-idiomatic]

The grids are bench/whole.py's: the MNIST-1D MLP 100-100 with Adam, grid32 = 4 learning
rates x 8 seeds for 10 epochs, grid64 = 16 learning rates x 4 seeds for 20 epochs. Each
contestant runs the same config as a fresh process, start-up included:

- dlbench: `python -m dlbench run CONFIG --no-plots` (its table printed, run folders written);
- jax: `python bench/jax_peer.py CONFIG` (vmapped Adam over all runs, lax.scan over an
  epoch's batches, jitted evaluation; the same evaluations; needs the `bench-peers` extra);
- idiomatic: `python bench/bench.py --idiomatic CONFIG` (DataLoader, one model at a time, torch.optim).

Every contestant runs `--repeats` times, the contestants taking turns (dlbench, jax,
idiomatic, dlbench, ...) so that a change of the machine's load touches them alike, all
with the same thread count (OMP_NUM_THREADS / MKL_NUM_THREADS for torch, XLA's intra-op
threads for JAX; default: one per core). The table shows the median wall time and the median
CPU time (user + sys; what other load moves least) and dlbench's speedup against each
peer on both (peer / dlbench), beside the targets (>= 1.25x JAX on grid32, >= 1.5x on grid64).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

import yaml

from process_time import timed
from whole import grid

ROOT = Path(__file__).resolve().parent.parent
TARGETS = {"grid32": 1.25, "grid64": 1.5}  # dlbench's speedup against the JAX peer, whole process


def configs(work: Path) -> dict[str, Path]:
    lrs4 = [1e-4, 1e-3, 1e-2, 1e-1]
    lrs16 = [round(10 ** (-4 + 3 * i / 15), 8) for i in range(16)]
    out = {}
    for name, cfg in {"grid32": grid("grid32", lrs4, 8, 10), "grid64": grid("grid64", lrs16, 4, 20)}.items():
        out[name] = work / f"{name}.yaml"
        out[name].write_text(yaml.safe_dump(cfg))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="threads of every contestant")
    parser.add_argument("--grids", nargs="+", default=["grid32", "grid64"], choices=["grid32", "grid64"])
    parser.add_argument("--no-idiomatic", action="store_true", help="leave out the idiomatic loop (the slowest)")
    args = parser.parse_args()
    threads = str(args.threads)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
    work = Path(tempfile.mkdtemp(prefix="dlbench-peers-"))
    paths = configs(work)
    # the dataset generated and cached before any clock starts
    timed([sys.executable, "-m", "dlbench", "run", str(paths["grid32"]), "--out", str(work), "--dry-run"], env)
    contestants = {
        "dlbench": lambda cfg: [sys.executable, "-m", "dlbench", "run", str(cfg), "--out", str(work / "out"),
                                "--no-plots", "--rerun", "all"],
        "jax": lambda cfg: [sys.executable, str(ROOT / "bench" / "jax_peer.py"), str(cfg)],
        "idiomatic": lambda cfg: [sys.executable, str(ROOT / "bench" / "bench.py"), "--idiomatic", str(cfg)],
    }
    if args.no_idiomatic:
        del contestants["idiomatic"]
    print(f"{args.threads} threads per contestant; medians of {args.repeats}, in turns; whole processes", flush=True)
    print("| grid | contestant | wall s | CPU s | dlbench's speedup (wall) | (CPU) | target |\n"
          "|---|---|---|---|---|---|---|", flush=True)
    for name in args.grids:
        times: dict[str, list[tuple[float, float]]] = {who: [] for who in contestants}
        for _ in range(args.repeats):
            for who, argv in contestants.items():
                times[who].append(timed(argv(paths[name]), env))
        wall = {who: statistics.median(w for w, _ in t) for who, t in times.items()}
        cpu = {who: statistics.median(c for _, c in t) for who, t in times.items()}
        for who in contestants:
            target = f">= {TARGETS[name]}x" if who == "jax" else ""
            print(f"| {name} | {who} | {wall[who]:.2f} | {cpu[who]:.2f} | {wall[who] / wall['dlbench']:.2f}x | "
                  f"{cpu[who] / cpu['dlbench']:.2f}x | {target} |", flush=True)
    print(f"load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (above the core count: "
          "other work competed for the CPU)")


if __name__ == "__main__":
    main()
