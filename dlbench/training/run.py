"""One training run: data already on the device, a step loop, evaluation, divergence.

Everything random in a run derives from its seed: the model init and dropout masks
and input noise from `torch.manual_seed(seed)`, the batch order from a separate
generator seeded with the same seed. Same config + same seed on CPU -> identical
metrics.
"""

from __future__ import annotations

import math
import platform
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from dlbench.components import data as data_mod
from dlbench.training import diagnostics
from dlbench.components import inits
from dlbench.components import losses
from dlbench.components import models
from dlbench.components import optim
from dlbench.config.schema import ConfigError
from dlbench.results.store import SPLITS
from dlbench.sweep import RunSpec

EVAL_CHUNK = 8192

Progress = Callable[[int, int], None]  # (steps done, total steps)


@dataclass
class RunResult:
    spec: RunSpec
    status: str  # ok | diverged | failed
    metrics: list[dict[str, float]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)  # more files for the run folder: name -> text


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device: 'cuda' is invalid: CUDA is not available on this machine; use auto or cpu")
    return torch.device(name)


def versions() -> dict[str, str]:
    import numpy

    from dlbench import __version__

    return {"dlbench": __version__, "torch": torch.__version__, "numpy": numpy.__version__,
            "python": platform.python_version()}


@torch.no_grad()
def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn: losses.LossFn) -> tuple[float, float]:
    """Mean loss and accuracy over a whole split, in eval mode."""
    if len(x) == 0:
        return math.nan, math.nan
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), device=x.device)
    correct = torch.zeros((), device=x.device, dtype=torch.long)
    for i in range(0, len(x), EVAL_CHUNK):
        logits = model(x[i:i + EVAL_CHUNK])
        target = y[i:i + EVAL_CHUNK]
        loss_sum += loss_fn(logits, target) * len(target)
        correct += (logits.argmax(-1) == target).sum()
    model.train(was_training)
    return float(loss_sum) / len(x), int(correct) / len(x)


def schedule(n_train: int, cfg_train: Any) -> tuple[int, int, int]:
    """(batch size, steps per epoch, total steps)."""
    bs = n_train if cfg_train.batch_size == "full" else min(cfg_train.batch_size, n_train)
    per_epoch = math.ceil(n_train / bs)
    total = cfg_train.steps if cfg_train.steps is not None else cfg_train.epochs * per_epoch
    return bs, per_epoch, total


def train(spec: RunSpec, device: torch.device, progress: Progress | None = None) -> RunResult:
    cfg = spec.config
    start = time.perf_counter()
    splits = data_mod.prepare(cfg.data, device)
    torch.manual_seed(spec.seed)
    model = models.build(cfg.model, splits.sample_shape, splits.num_classes)
    inits.initialize(model, cfg.init)
    model.to(device)
    optimizer = optim.build(model, cfg.optimizer)
    loss_fn = losses.LOSSES[cfg.loss].builder
    reg = cfg.regularization
    order_gen = torch.Generator().manual_seed(spec.seed)

    x_train, y_train = splits.x_train, splits.y_train
    diag = diagnostics.Recorder(cfg.diagnostics, cfg.model.activation, x_train) if cfg.diagnostics.enabled() else None
    bs, per_epoch, total = schedule(len(x_train), cfg.train)
    eval_interval = cfg.train.eval_every * (per_epoch if cfg.train.steps is None else 1)

    metrics: list[dict[str, float]] = []
    best: dict[str, float] | None = None
    since_best = 0
    status, diverged_step, stopped_early = "ok", None, False
    batch_loss_sum, batch_count = 0.0, 0

    def record(step: int) -> dict[str, float]:
        row: dict[str, float] = {"epoch": step / per_epoch, "step": step,
                                 "train_batch_loss": batch_loss_sum / batch_count if batch_count else math.nan}
        for name in SPLITS:
            row[f"{name}_loss"], row[f"{name}_acc"] = evaluate(model, *splits.split(name), loss_fn)
        row["lr"] = optimizer.param_groups[0]["lr"]
        row["seconds"] = time.perf_counter() - start
        metrics.append(row)
        if diag:
            diag.record(model, step)
        return row

    model.train()
    record(0)
    step = 0
    while step < total and status == "ok" and not stopped_early:
        perm = torch.randperm(len(x_train), generator=order_gen).to(device)
        for i in range(0, len(x_train), bs):
            idx = perm[i:i + bs]
            xb, yb = x_train[idx], y_train[idx]
            if reg.input_noise > 0:
                xb = xb + reg.input_noise * torch.randn_like(xb)
            loss = loss_fn(model(xb), yb)
            if reg.l1 > 0:
                loss = loss + reg.l1 * optim.l1_penalty(model.parameters())
            value = loss.item()
            step += 1
            if not math.isfinite(value):
                status, diverged_step = "diverged", step
                break
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            batch_loss_sum, batch_count = batch_loss_sum + value, batch_count + 1
            if step % eval_interval == 0 or step == total:
                row = record(step)
                batch_loss_sum, batch_count = 0.0, 0
                if progress:
                    progress(step, total)
                if not all(math.isfinite(row[f"train_{m}"]) for m in ("loss", "acc")):
                    status, diverged_step = "diverged", step
                    break
                if best is None or row["val_acc"] > best["val_acc"]:
                    best, since_best = row, 0
                else:
                    since_best += 1
                    if reg.early_stopping is not None and since_best >= reg.early_stopping:
                        stopped_early = True
                        break
            if step >= total:
                break

    if status == "diverged" and metrics[-1]["step"] != step:
        record(step)
    summary = summarize(spec, metrics, best, status=status, diverged_step=diverged_step, stopped_early=stopped_early,
                        step=step, per_epoch=per_epoch, batch_size=bs, wall_time=time.perf_counter() - start,
                        n_params=models.count_parameters(model), device=device)
    if diag:
        summary["diagnostics"] = diag.final()
    return RunResult(spec, status, metrics, summary, diag.files() if diag else {})


def summarize(spec: RunSpec, metrics: list[dict[str, float]], best: dict[str, float] | None, *, status: str,
              diverged_step: int | None, stopped_early: bool, step: int, per_epoch: int, batch_size: int,
              wall_time: float, n_params: int, device: torch.device) -> dict[str, Any]:
    """summary.json of a finished run (shared with the vectorized executor)."""
    final = metrics[-1]
    return {
        "run_id": spec.run_id, "name": spec.name, "seed": spec.seed, "params": spec.params,
        "status": status, "error": None, "diverged_step": diverged_step, "stopped_early": stopped_early,
        "steps": step, "epochs": step / per_epoch, "batch_size": batch_size,
        "final": _with_gap(final), "best": _with_gap(best or final),
        "wall_time": wall_time, "n_params": n_params, "device": _device_name(device), "versions": versions(),
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
