"""dlbench: compare how neural networks train; the command line, and this Python API for notebooks.

    import dlbench
    r = dlbench.run("configs/quickstart.yaml", overrides={"train.epochs": 5})
    r                       # in Jupyter: the report table
    r.runs, r.summary, r.metrics, r.table(target=0.8), r.plot("curves")
    dlbench.compare(r, dlbench.load("results/other"))

`import dlbench` stays light: torch and the training code load when `run` is called, and
`load`, `compare` and everything on `Results` read results folders only (no torch).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any
from collections.abc import Mapping

from dlbench.errors import ConfigError

if TYPE_CHECKING:
    from dlbench.results.api import Comparison, Results, compare, load

__version__ = "0.1.0"
__all__ = ["run", "load", "compare", "Results", "Comparison", "ConfigError", "register"]
_RESULTS = ("load", "compare", "Results", "Comparison")  # from dlbench.results.api, imported on first use


def run(config: str | os.PathLike[str] | Mapping[str, Any], out: str | os.PathLike[str] = "results",
        overrides: Mapping[str, Any] | None = None, *, executor: str = "auto", progress: bool = True,
        device: str | None = None, workers: int | None = None, address: str | None = None,
        rerun: str | None = None, fail_fast: bool = False, force_new: bool = False, max_runs: int = 1000,
        plots: bool = True) -> Results:
    """Train a sweep as `dlbench run` does and return its Results (out/<name>/).

    config: a YAML file or a config mapping; overrides: {"optimizer.lr": 0.01} as --set;
    the other arguments are `dlbench run`'s options. Runs already finished in the folder
    are skipped (the sweep resumes). Progress: a notebook bar in Jupyter, terminal bars
    elsewhere, none with progress=False. Raises ConfigError (one line) for bad input, and
    KeyboardInterrupt when interrupted (the finished runs are saved); failed runs are
    kept with their error (status column) and named on stderr.
    """
    from dlbench import progress as progress_mod
    from dlbench import runner
    from dlbench.config.yaml_io import yaml_text
    from dlbench.results.api import Results

    if not isinstance(overrides, (Mapping, type(None))):
        raise ConfigError(f"overrides: {overrides!r} is invalid: expected a dict such as {{'train.epochs': 3}}")
    sets = [f"{key}={yaml_text(value, f'overrides {key}')}" for key, value in (overrides or {}).items()]
    plan = runner.plan(config if isinstance(config, Mapping) else Path(config), sets, out=Path(out), device=device,
                       max_runs=max_runs, executor=executor, workers=workers, address=address)
    outcome = runner.execute(plan, show=progress_mod.auto() if progress else None, force_new=force_new,
                             rerun=rerun, fail_fast=fail_fast, figures=plots, say=print, warn=_warn)
    if outcome.interrupted:
        raise KeyboardInterrupt(outcome.problem)
    if outcome.problem:
        _warn(outcome.problem)
    return Results(outcome.root)


def _warn(text: str) -> None:
    print(text, file=sys.stderr)


def __getattr__(name: str) -> Any:
    if name == "register":  # plugins: `from dlbench import register` (torch-free)
        from dlbench.plugins import register

        return register
    if name in _RESULTS:
        from dlbench.results import api

        return getattr(api, name)
    raise AttributeError(f"module 'dlbench' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_RESULTS, "register"])
