"""TASKS: what each `task:` of a config does, in one place instead of if-chains. The catalog's task
records say what a task is (whether it trains, the sections it reads, its figures); this module
registers what it does against them.

- `train`: the sweep's runs are trained (the runner launches them); costs are estimated.
- `function` (optimizer paths on a 2-D function) and `activations` (an untrained net
  fed Gaussian noise) take no data and write no run folders: `compute` writes their
  CSVs into results/<name>/.

`details` are the task facts that the folder's figures and tables show (written into
view.json), so results/ never reads the config or imports the task's code.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from collections.abc import Callable

import numpy as np

from dlbench.catalog import CATALOG, Kind
from dlbench.config.schema import Config
from dlbench.results.store import atomic_write
from dlbench.plan.sweep import RunSpec


@dataclass(frozen=True)
class Task:
    details: Callable[[Config], dict[str, Any]]
    compute: Callable[[list[RunSpec], Path], None] | None = None  # a task that trains (the record says) has none


TASKS: Kind[Task] = CATALOG["task"]


def trains(task: str) -> bool:
    """Whether the task loads data, launches runs and stores run folders (its catalog record's fact)."""
    return bool(TASKS.record(task).facts["trains"])


def _function_details(cfg: Config) -> dict[str, Any]:
    from dlbench.components.functions import FUNCTIONS

    entry = FUNCTIONS[cfg.function.name]
    return {"function": cfg.function.name, "help": entry.help, "view": entry.info["view"],
            "minimum": entry.info["minimum"]}


def _function(specs: list[RunSpec], root: Path) -> None:
    import torch

    from dlbench.components import functions

    paths, summary = functions.run(specs)
    atomic_write(root / "paths.csv", paths.to_csv(index=False))
    atomic_write(root / "summary.csv", summary.to_csv(index=False))
    entry = functions.FUNCTIONS[specs[0].config.function.name]
    (x0, x1), (y0, y1) = entry.info["view"]
    gx, gy = np.meshgrid(np.linspace(x0, x1, 200), np.linspace(y0, y1, 200))
    f = entry.builder(torch.from_numpy(gx), torch.from_numpy(gy)).numpy()
    buf = io.BytesIO()
    np.savez_compressed(buf, x=gx, y=gy, f=f)  # the contour plot's grid: plots need no torch
    atomic_write(root / "contour.npz", buf.getvalue())


def _activations(specs: list[RunSpec], root: Path) -> None:
    from dlbench.training import diagnostics

    layers, histograms = diagnostics.probe(specs)
    atomic_write(root / "layers.csv", layers.to_csv(index=False))
    atomic_write(root / "histograms.csv", histograms.to_csv(index=False))


TASKS.register("train")(Task(details=lambda cfg: {"diagnostics": cfg.diagnostics.enabled(),
                                                   "near_zero": cfg.diagnostics.near_zero}))
TASKS.register("function")(Task(details=_function_details, compute=_function))
TASKS.register("activations")(Task(details=lambda cfg: {"samples": cfg.activations.samples}, compute=_activations))


def view(cfg: Config, specs: list[RunSpec], keys: list[str]) -> dict[str, Any]:
    """What the folder's report, tables and figures need, written as results/<name>/view.json."""
    points = list({json.dumps(s.params, sort_keys=True, default=str): s.params for s in specs}.values())
    return {"name": cfg.name, "description": cfg.description, "task": cfg.task, "plots": cfg.plots,
            "keys": keys, "points": points, "details": TASKS[cfg.task].builder.details(cfg),
            # the searched ranges as declared: figures draw their axes (log where the range is)
            "space": {k: d.model_dump(mode="json", exclude_none=True) for k, d in cfg.random.space.items()}
            if cfg.random else {}}

