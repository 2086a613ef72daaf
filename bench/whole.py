"""Whole-process timings: `python -m dlbench run` against an idiomatic script, start-up included.

    python bench/whole.py [--epochs-64 20] [--no-ray]

Every contestant is a fresh `python` process, timed from start to exit (subprocess
wall time), so imports, data loading, result writing and the report count too.

- grid32: MNIST-1D MLP 100-100, Adam, 4 learning rates x 8 seeds, 10 epochs:
  (a) `bench/bench.py --idiomatic` (DataLoader loop, torch.optim, one model at a time)
  against (b) `dlbench run` (default launcher: local stacks).
- grid64: 16 learning rates x 4 seeds (bench.py's grid), the same two, plus the
  launchers: `--executor serial`, `processes --workers 2`, `ray --workers 1`.
- resume: grid64 killed (SIGKILL) at 60 % of its full local time, with
  `train.checkpoint_seconds=2`; the resumed run's time against the full time.
- against (with `--against PATH`, another checkout of dlbench, e.g. the previous release): its
  `dlbench run` of grid64 beside this one's, alternating, twice each, in the same venv.
- drift: the same grid64 runs trained in stacks of one (serial) against the one stack
  (local): the largest relative difference of the final losses, and of accuracies.
"""

from __future__ import annotations

import argparse
import csv
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


def grid(name: str, lrs: list[float], seeds: int, epochs: int) -> dict[str, object]:
    return {"name": name, "data": {"root": str(ROOT / "data")}, "optimizer": {"name": "adam"},
            "model": {"hidden": [100, 100]}, "train": {"epochs": epochs, "seeds": list(range(seeds))},
            "grid": {"optimizer.lr": lrs}}


def timed(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    # cwd outside any checkout: `python -m` puts the cwd first on sys.path, before PYTHONPATH (--against)
    done = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                          cwd=tempfile.gettempdir())
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr[-2000:]}")
    return seconds


def dlbench(config: Path, out: Path, *args: str) -> list[str]:
    return [PYTHON, "-m", "dlbench", "run", str(config), "--out", str(out), "--no-plots", *args]


def final_rows(root: Path) -> dict[str, dict[str, float]]:
    out = {}
    for run in (root / "runs").iterdir():
        with open(run / "metrics.csv") as f:
            rows = list(csv.DictReader(f))
        out[run.name] = {k: float(v) for k, v in rows[-1].items()}
    return out


def drift(a: Path, b: Path) -> tuple[float, float]:
    """(largest relative difference of final train / val / test losses, largest accuracy difference)."""
    ra, rb = final_rows(a), final_rows(b)
    loss = max(abs(ra[r][k] - rb[r][k]) / abs(ra[r][k]) for r in ra for k in ("train_loss", "val_loss", "test_loss"))
    acc = max(abs(ra[r][k] - rb[r][k]) for r in ra for k in ("train_acc", "val_acc", "test_acc"))
    return loss, acc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs-64", type=int, default=20, help="epochs of the 64-run grid")
    parser.add_argument("--no-ray", action="store_true", help="leave out the Ray launcher")
    parser.add_argument("--against", type=Path, default=None, metavar="CHECKOUT",
                        help="also time grid64 with the dlbench of another checkout (e.g. the previous release)")
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    work = Path(tempfile.mkdtemp(prefix="dlbench-bench-"))
    lrs4 = [1e-4, 1e-3, 1e-2, 1e-1]
    lrs16 = [round(10 ** (-4 + 3 * i / 15), 8) for i in range(16)]
    configs = {"grid32": grid("grid32", lrs4, 8, 10), "grid64": grid("grid64", lrs16, 4, args.epochs_64)}
    paths = {}
    for name, cfg in configs.items():
        paths[name] = work / f"{name}.yaml"
        paths[name].write_text(yaml.safe_dump(cfg))
    subprocess.run(dlbench(paths["grid32"], work / "warm", "--dry-run"), env=env, check=True,
                   stdout=subprocess.DEVNULL)  # the dataset downloaded / cached before the clocks start

    print(f"grid64: {args.epochs_64} epochs; speedups: dlbench (local) against idiomatic, the launchers against "
          "serial", flush=True)
    print("| workload | contestant | wall s (whole process) | speedup |\n|---|---|---|---|", flush=True)

    def row(name: str, who: str, seconds: float, speedup: float) -> None:
        print(f"| {name} | {who} | {seconds:.1f} | {speedup:.2f}x |", flush=True)

    for name in ("grid32", "grid64"):
        t_a = timed([PYTHON, str(ROOT / "bench" / "bench.py"), "--idiomatic", str(paths[name])], env)
        row(name, "idiomatic", t_a, 1.0)
        t_local = timed(dlbench(paths[name], work / "local"), env)
        row(name, "dlbench (local)", t_local, t_a / t_local)
    launchers = [("serial", ["--executor", "serial"]), ("processes --workers 2", ["--executor", "processes",
                                                                                "--workers", "2"])]
    if not args.no_ray:
        launchers.append(("ray --workers 1", ["--executor", "ray", "--workers", "1"]))
    times: dict[str, float] = {}
    for label, extra in launchers:
        times[label] = timed(dlbench(paths["grid64"], work / label.split()[0], *extra), env)
        row("grid64", f"dlbench {label}", times[label], times["serial"] / times[label])

    if args.against:
        old_env = {**env, "PYTHONPATH": str(args.against.resolve())}
        old, new = [], []
        for i in range(2):  # alternating, so that the machine's drift touches both alike
            old.append(timed(dlbench(paths["grid64"], work / f"against{i}"), old_env))
            new.append(timed(dlbench(paths["grid64"], work / f"this{i}"), env))
        print(f"against {args.against}: grid64 whole process {min(old):.1f} s there, {min(new):.1f} s here "
              f"(best of 2 each, alternating): {min(old) / min(new):.2f}x")

    # resume after a kill at 60 % of the full time
    proc = subprocess.Popen(dlbench(paths["grid64"], work / "killed", "--set", "train.checkpoint_seconds=2"), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.6 * t_local)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    t_resume = timed(dlbench(paths["grid64"], work / "killed", "--set", "train.checkpoint_seconds=2"), env)

    loss_drift, acc_drift = drift(work / "serial" / "grid64", work / "local" / "grid64")
    print(f"resume: killed at 60% of {t_local:.1f} s, the resumed run took {t_resume:.1f} s "
          f"({100 * t_resume / t_local:.0f}% of the full time; checkpoints every 2 s)")
    print(f"drift, the same 64 runs in stacks of one vs one stack of 64: final losses differ by at most "
          f"{loss_drift:.2g} relative, accuracies by at most {acc_drift:.3g}")


if __name__ == "__main__":
    main()
