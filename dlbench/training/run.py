"""What a training run produces and the pieces around the engine: its result record,
summary.json, the batch schedule, the device, a failed run.

The loop itself is `dlbench.training.engine` (one loop for stacks of any size).
"""

from __future__ import annotations

import math
import platform
import traceback
from dataclasses import dataclass, field
from typing import Any
from collections.abc import Callable

import torch

from dlbench.components import data
from dlbench.config.schema import ConfigError
from dlbench.results.store import Store
from dlbench.plan.sweep import RunSpec


Progress = Callable[[int, int, int], None]  # (steps done, total steps, runs still training)
# what training has to tell the user (a stack retrained as stacks of one, a checkpoint set aside): one
# line in dlbench's words, said by the caller on the console its progress uses (never a Python warning)
Tell = Callable[[str], None]


@dataclass
class RunResult:
    spec: RunSpec
    status: str  # ok | diverged | failed
    metrics: list[dict[str, float]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)  # more files for the run folder: name -> text
    stored: bool = False  # its folder is written already (by the worker that trained it: a SLURM task)
    notes: tuple[str, ...] = ()  # what a worker told while training it (`Tell`), for the caller to say


def save(store: Store, result: RunResult) -> None:
    """Write a finished run's folder, with where its plugin components came from (the report names
    them from the folder alone)."""
    source = result.spec.plugins
    store.save(result.spec.run_id, result.spec.config.model_dump(mode="json"), result.metrics,
               {**result.summary, "plugins": source} if source else result.summary, result.files)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device: 'cuda' is invalid: CUDA is not available on this machine; use auto or cpu")
    return torch.device(name)


# train.precision -> the dtype autocast computes in (fp32: no autocast)
AUTOCAST = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def check_precision(precision: str, device: torch.device) -> None:
    """Refuse a train.precision the device cannot honour (before anything trains)."""
    if precision == "fp16" and device.type != "cuda":
        raise ConfigError(f"train.precision: 'fp16' is invalid on {device.type}: float16 training with loss "
                          "scaling runs on CUDA GPUs; use fp32 or bf16 here")
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ConfigError(f"train.precision: 'bf16' is invalid on {torch.cuda.get_device_name(device)}: it has no "
                          "bfloat16 support; use fp16 or fp32")


def versions() -> dict[str, str]:
    import numpy

    from dlbench import __version__

    return {"dlbench": __version__, "torch": torch.__version__, "numpy": numpy.__version__,
            "python": platform.python_version()}


def schedule(n_train: int, cfg_train: Any) -> tuple[int, int, int]:
    """(batch size, steps per epoch, total steps)."""
    bs = n_train if cfg_train.batch_size == "full" else min(cfg_train.batch_size, n_train)
    per_epoch = math.ceil(n_train / bs)
    total = cfg_train.steps if cfg_train.steps is not None else cfg_train.epochs * per_epoch
    return bs, per_epoch, total


def total_steps(cfg: Any) -> int:
    """The steps a run of this config trains (unless it stops early), from its data's size (cached)."""
    return schedule(len(data.prepare(cfg.data, "cpu").y_train), cfg.train)[2]


def summarize(spec: RunSpec, metrics: list[dict[str, float]], best: dict[str, float] | None, *, status: str,
              diverged_step: int | None, stopped_early: bool, step: int, per_epoch: int, batch_size: int,
              wall_time: float, n_params: int, device: torch.device) -> dict[str, Any]:
    """summary.json of a finished run."""
    final = metrics[-1]
    return {
        "run_id": spec.run_id, "name": spec.name, "seed": spec.seed, "params": spec.params,
        "status": status, "error": None, "diverged_step": diverged_step, "stopped_early": stopped_early,
        "steps": step, "epochs": step / per_epoch, "batch_size": batch_size,
        "final": _with_gap(final), "best": _with_gap(best or final), "best_on": spec.config.train.monitor,
        "wall_time": wall_time, "n_params": n_params, "device": _device_name(device),
        "precision": spec.config.train.precision, "versions": versions(),
    }


def _with_gap(row: dict[str, float]) -> dict[str, float]:
    return {**row, "gap": row["train_acc"] - row["test_acc"]}


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def failed(spec: RunSpec, error: BaseException, device: torch.device | None = None) -> RunResult:
    """A run that raised: recorded, not fatal to the sweep."""
    message = f"{type(error).__name__}: {error}".splitlines()[0]
    summary = {
        "run_id": spec.run_id, "name": spec.name, "seed": spec.seed, "params": spec.params,
        "status": "failed", "error": message, "traceback": traceback.format_exception(error),
        "device": _device_name(device) if device is not None else None, "versions": versions(),
    }
    return RunResult(spec, "failed", [], summary)
