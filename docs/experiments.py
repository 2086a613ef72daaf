"""The tables and figures of docs/experiments.md, produced by running the shipped configs.

`python docs/experiments.py WORKDIR [NAME...]` runs `dlbench run configs/NAME.yaml` in WORKDIR
for each experiment whose results folder is not there yet (all of them: about 15 minutes on 2
CPU cores), redraws its figures with the current code (`dlbench plot`), and writes:

- docs/img/NAME_FIGURE.png: the figures the page shows (re-encoded with 256 colours: smaller),
  and the quickstart's curves that README.md and docs/index.md show;
- docs/outputs/experiments-NAME.md: the report as markdown (`dlbench report --format markdown`),
  shown between `<!-- report: experiments-NAME -->` and `<!-- end report -->`;
- docs/outputs/experiments-NAME.txt: a task's own table (optimizer paths, activations) as a
  100-column terminal prints it, shown in a `<!-- output: experiments-NAME -->` block; and
  experiments-NAME-diagnostics.txt, the diagnostics table `dlbench run` prints after the report;

then fills the page's marked tables (docs/outputs.py `fill`). tests/test_docs.py checks that
the page shows exactly these files; the prose around them quotes their numbers.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import outputs

REPO = outputs.REPO
IMG = REPO / "docs" / "img"
# experiment -> (report arguments after the folder, or None for a task's own table; the figures shown)
EXPERIMENTS: dict[str, tuple[list[str] | None, list[str]]] = {
    "optimizer_paths": (None, ["paths"]),
    "optimizer_paths_rosenbrock": (None, ["paths"]),
    "optimizers": ([], ["curves"]),
    "init_activations": (None, ["histograms"]),
    "init_training": ([], ["curves", "gradients"]),
    "batchnorm": ([], ["panels"]),
    "overfitting": ([], ["gap"]),
    "losses": ([], ["curves"]),
    "batch_size": ([], ["curves_epoch", "curves_seconds"]),
    "random_search": ([], ["scatter"]),
    "l1_sparsity": ([], ["weights"]),
    "xor": ([], ["curves"]),
    "preprocessing": ([], ["curves"]),
    "schedules": (["--losses"], ["curves"]),
    "bias_decay": ([], ["gap"]),
    "optimizers_modern": (["--losses"], ["curves"]),
    "batchnorm_batch_size": ([], ["curves_epoch", "curves_seconds"]),
    "tuning": ([], ["sensitivity"]),  # by default: the confirm and the defaults runs
}
# experiments that record diagnostics: their table as `dlbench run` prints it after the report, 100 columns
# wide (docs/outputs/experiments-NAME-diagnostics.txt, in an output block)
DIAGNOSTICS = ("init_training", "l1_sparsity")
# figures other pages show (README.md, docs/index.md): experiment -> figures, no table
FIGURES_ONLY: dict[str, list[str]] = {"quickstart": ["curves"]}
# the page's name for a figure: docs/img/<experiment>_<figure>.png (optimizer paths: the experiment's name)
SINGLE = {"optimizer_paths", "optimizer_paths_rosenbrock"}


def image(name: str, figure: str) -> Path:
    return IMG / (f"{name}.png" if name in SINGLE else f"{name}_{figure}.png")


def dlbench(args: list[str], cwd: Path) -> str:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "dlbench", *args], cwd=cwd, capture_output=True, text=True, env=env)
    if done.returncode:  # what dlbench said, not only that it failed
        raise SystemExit(f"dlbench {' '.join(args)}: exit {done.returncode}\n{done.stderr[-3000:]}")
    return done.stdout


def diagnostics(folder: Path) -> str:
    """The diagnostics table `dlbench run` prints (results.tables), in a 100-column terminal."""
    import io

    from rich.console import Console

    sys.path.insert(0, str(REPO))
    from dlbench.results import plots, tables

    out = io.StringIO()
    Console(file=out, width=100, color_system=None).print(tables.table(plots.load(folder)))
    return "\n".join(line.rstrip() for line in out.getvalue().splitlines()) + "\n"


def save_image(png: Path, shown: Path) -> None:
    """A figure as a page shows it: re-encoded with 256 colours (smaller)."""
    from PIL import Image

    Image.open(png).convert("RGB").quantize(256).save(shown, optimize=True)


def produce(workdir: Path, name: str) -> None:
    """One experiment's results in workdir (trained if missing), its figures and its table here."""
    report, figures = EXPERIMENTS[name] if name in EXPERIMENTS else (None, FIGURES_ONLY[name])
    folder = f"results/{name}"
    if not (workdir / folder / "view.json").exists():
        dlbench(["run", f"configs/{name}.yaml", "--no-plots"], workdir)
    dlbench(["plot", folder, *figures], workdir)
    for figure in figures:
        save_image(workdir / folder / f"{figure}.png", image(name, figure))
    shown = [str(image(name, f).relative_to(REPO)) for f in figures]
    if name in FIGURES_ONLY:
        print(f"{name}: {', '.join(shown)}")
        return
    if report is None:
        text = outputs.in_terminal(["report", folder], 100, workdir)
        (outputs.OUTPUTS / f"experiments-{name}.txt").write_text(text)
    else:
        text = dlbench(["report", folder, "--format", "markdown", *report], workdir)
        (outputs.OUTPUTS / f"experiments-{name}.md").write_text(text)
    if name in DIAGNOSTICS:
        (outputs.OUTPUTS / f"experiments-{name}-diagnostics.txt").write_text(diagnostics(workdir / folder))
    print(f"{name}: {', '.join(shown)}, table")


if __name__ == "__main__":
    work = Path(sys.argv[1])
    work.mkdir(parents=True, exist_ok=True)
    if not (work / "configs").exists():
        (work / "configs").symlink_to(REPO / "configs")
    for experiment in sys.argv[2:] or [*EXPERIMENTS, *FIGURES_ONLY]:
        produce(work, experiment)
    outputs.fill(REPO / "docs" / "experiments.md")
    shutil.rmtree(REPO / "docs" / "__pycache__", ignore_errors=True)
