"""Vectorized execution: compatible runs trained together as one stacked model.

Runs that differ only in values (seed, optimizer and its hyperparameters, init
scheme, dropout probability, L1, input noise, early stopping) share architecture,
dataset, batch schedule and loss, so R of them train as one model whose every
parameter has a leading run dimension. Each run's model is built and initialized
exactly as the serial path builds it; `torch.func.stack_module_state` stacks them,
`functional_call` + `vmap` run the unchanged module code on all runs at once
(batched matmuls underneath), and `StackedOptimizer` applies each run's own
optimizer. Every run keeps its own batch order, dropout masks, input noise (drawn
from its own generator in the serial order), BatchNorm statistics, early stopping
and divergence: a run that finishes leaves the stack, so it neither costs time nor
touches the others.

On CPU a run's numbers match the serial path up to float rounding (batched vs
single matmuls); see the README's Speed section for the measured tolerance.
"""

from __future__ import annotations

import copy
import ctypes
import functools
import json
import math
import sys
import time
from dataclasses import dataclass, field
from typing import Iterator

import torch
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state, vmap

from dlbench.components import data as data_mod
from dlbench.components import inits
from dlbench.components import losses
from dlbench.components import models
from dlbench.components.optimizers import STACKED_OPTIMIZERS, StackedOptimizer
from dlbench.sweep import RunSpec, identity
from dlbench.training.run import EVAL_CHUNK, SPLITS, Progress, RunResult, schedule, summarize

MAX_GROUP = 256  # runs per group; larger sweeps are split into equal groups
# activation elements per evaluation forward: cache-sized on CPU (2x faster than one big
# forward), large on GPUs, which want big kernels
EVAL_ELEMENTS = {"cpu": 1 << 20}
EVAL_ELEMENTS_DEFAULT = 1 << 26
PER_RUN_SECTIONS = ("optimizer", "init", "regularization")  # may differ inside a group (and model.dropout)


class Unvectorizable(Exception):
    """The group's models cannot be stacked; its runs take the serial path."""


@functools.cache
def keep_freed_memory() -> None:
    """Let glibc keep freed large blocks in the heap instead of returning them to the OS.

    By default every allocation above 128 KiB is a fresh mmap and every free gives it back,
    so each step's stacked activations page-fault afresh: ~1000 faults a step, evaluation
    ~2x slower. Process-wide and harmless elsewhere (up to 256 MiB of freed memory is kept).
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc
        return
    m_trim_threshold, m_mmap_threshold = -1, -3
    libc.mallopt(m_mmap_threshold, 32 << 20)  # glibc's maximum
    libc.mallopt(m_trim_threshold, 256 << 20)


def group_key(spec: RunSpec) -> str | None:
    """Runs with equal keys can train as one stack; None: this run trains alone."""
    if spec.config.optimizer.name not in STACKED_OPTIMIZERS or spec.config.diagnostics.enabled():
        return None  # diagnostics hook into train.train(): such runs train one by one
    shared = identity(spec.config, spec.seed)
    for key in ("seed", *PER_RUN_SECTIONS):
        shared.pop(key)
    shared["model"].pop("dropout")
    return json.dumps(shared, sort_keys=True)


def groups(specs: list[RunSpec], max_group: int = MAX_GROUP) -> list[list[RunSpec]]:
    """Split specs into groups of compatible runs (first-appearance order), each at most max_group long."""
    by_key: dict[object, list[RunSpec]] = {}
    for i, spec in enumerate(specs):
        key = group_key(spec)
        by_key.setdefault(i if key is None else key, []).append(spec)
    out = []
    for members in by_key.values():
        n = math.ceil(len(members) / max_group)
        size = math.ceil(len(members) / n)
        out += [members[i:i + size] for i in range(0, len(members), size)]
    return out


class MaskedDropout(nn.Module):
    """Dropout whose mask (already scaled by 1 / (1 - p)) is passed in, one per run, as the buffer `mask`."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mask", torch.ones(()), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return x * self.mask if self.training else x


@dataclass
class _Run:
    spec: RunSpec
    order: torch.Generator  # batch order, as in train.py
    rng: torch.Generator  # input noise and dropout masks: what the global RNG would give the serial run
    metrics: list[dict[str, float]] = field(default_factory=list)
    best: dict[str, float] | None = None
    since_best: int = 0


def _template(run_models: list[nn.Module], dropouts: list[float]) -> nn.Module:
    """A copy of the model (with dropout layers if any run drops out) whose dropout takes masks from outside."""
    template = copy.deepcopy(run_models[max(range(len(dropouts)), key=dropouts.__getitem__)])
    for name, module in list(template.named_modules()):
        if isinstance(module, nn.modules.dropout._DropoutNd):
            if type(module) is not nn.Dropout:
                raise Unvectorizable(f"{type(module).__name__} draws masks the stack cannot reproduce")
            parent, _, child = name.rpartition(".")
            setattr(template.get_submodule(parent), child, MaskedDropout())
    shapes = {k: v.shape for k, v in template.state_dict().items()}
    for m in run_models:
        if {k: v.shape for k, v in m.state_dict().items()} != shapes:
            raise Unvectorizable("runs have different parameter shapes")
    return template


def _probe(template: nn.Module, sample: Tensor) -> tuple[list[tuple[str, tuple[int, ...]]], int]:
    """Dropout inputs (module name, per-sample shape) in call order, and the largest activation per sample."""
    calls: list[tuple[str, tuple[int, ...]]] = []
    widest = [sample[0].numel()]
    hooks = []
    for name, module in template.named_modules():
        if isinstance(module, MaskedDropout):
            hooks.append(module.register_forward_hook(
                lambda m, args, out, name=name: calls.append((name, tuple(args[0].shape[1:])))))
        hooks.append(module.register_forward_hook(lambda m, args, out: widest.append(out[0].numel())))
    template.eval()
    with torch.no_grad():
        template(sample)
    template.train()
    for h in hooks:
        h.remove()
    return calls, max(widest)


class _Group:
    def __init__(self, specs: list[RunSpec], device: torch.device) -> None:
        self.start = time.perf_counter()
        self.device = device
        if device.type == "cpu":
            keep_freed_memory()
        # runs of one optimizer next to each other: its updates are then in-place ops on a view
        specs = sorted(specs, key=lambda s: s.config.optimizer.name)
        cfg = specs[0].config
        self.splits = data_mod.prepare(cfg.data, device)
        self.loss_fn = losses.LOSSES[cfg.loss].builder
        self.bs, self.per_epoch, self.total = schedule(len(self.splits.x_train), cfg.train)
        self.eval_interval = cfg.train.eval_every * (self.per_epoch if cfg.train.steps is None else 1)

        run_models, self.runs = [], []
        for spec in specs:  # exactly as train.train builds a run, then the RNG state it would train with
            torch.manual_seed(spec.seed)
            model = models.build(spec.config.model, self.splits.sample_shape, self.splits.num_classes)
            inits.initialize(model, spec.config.init)
            if device.type == "cpu":
                rng = torch.Generator().set_state(torch.get_rng_state())
            else:  # the serial run draws device-side randomness from the device generator seeded by manual_seed
                rng = torch.Generator(device).manual_seed(spec.seed)
            run_models.append(model.to(device))
            self.runs.append(_Run(spec, torch.Generator().manual_seed(spec.seed), rng))
        template = _template(run_models, [s.config.model.dropout for s in specs])
        self.dropout_calls, self.widest = _probe(template, self.splits.x_train[:1])
        self.n_params = models.count_parameters(run_models[0])
        self.template = template.to("meta")
        params, self.buffers = stack_module_state(run_models)
        del run_models
        self.params = params
        self.optimizer = StackedOptimizer(list(params.values()), [s.config.optimizer for s in specs])
        self._per_run_values()

        def loss(p: dict[str, Tensor], b: dict[str, Tensor], x: Tensor, y: Tensor) -> Tensor:
            return self.loss_fn(functional_call(self.template, (p, b), (x,)), y)

        def logits(p: dict[str, Tensor], b: dict[str, Tensor], x: Tensor) -> Tensor:
            return functional_call(self.template, (p, b), (x,))

        self.train_losses = vmap(loss)
        self.eval_logits = vmap(logits, in_dims=(0, 0, None))
        self.eval_losses = vmap(self.loss_fn, in_dims=(0, None))

    def _per_run_values(self) -> None:
        regs = [r.spec.config.regularization for r in self.runs]
        self.noise = [reg.input_noise for reg in regs]
        self.l1 = [reg.l1 for reg in regs]
        self.dropout = [r.spec.config.model.dropout for r in self.runs]
        self.noise_col = torch.tensor(self.noise, device=self.device)
        self.l1_col = torch.tensor(self.l1, device=self.device)

    # ------------------------------------------------------------------ one step

    def _inputs(self, idx: Tensor) -> Tensor:
        """The runs' batches, with each run's input noise drawn from its own generator."""
        xb = self.splits.x_train[idx]
        if not any(self.noise):
            return xb
        noise = torch.stack([
            torch.randn(xb.shape[1:], generator=r.rng, device=self.device) if std > 0
            else torch.zeros(xb.shape[1:], device=self.device)
            for r, std in zip(self.runs, self.noise)])
        return xb + self.noise_col.view(-1, *[1] * (xb.dim() - 1)) * noise

    def _masks(self, batch: int) -> dict[str, Tensor]:
        """Each dropout layer's masks, drawn run by run as F.dropout draws them on CPU."""
        masks = {}
        for name, shape in self.dropout_calls:
            per_run = []
            for r, p in zip(self.runs, self.dropout):
                m = torch.empty((batch, *shape), device=self.device)
                per_run.append(m.bernoulli_(1 - p, generator=r.rng).div_(1 - p) if p > 0 else m.fill_(1.0))
            masks[f"{name}.mask"] = torch.stack(per_run)
        return masks

    def _l1_penalty(self) -> Tensor:
        weights = [p for p in self.params.values() if p.dim() > 2]
        return torch.stack([p.abs().flatten(1).sum(1) for p in weights]).sum(0)

    def _losses(self, idx: Tensor) -> Tensor:
        """Per-run training losses of one batch (with the L1 term where a run has one)."""
        xb = self._inputs(idx)  # noise before dropout masks: the serial run's draw order
        losses_ = self.train_losses(self.params, {**self.buffers, **self._masks(idx.shape[1])}, xb,
                                    self.splits.y_train[idx])
        if any(self.l1):
            losses_ = losses_ + self.l1_col * self._l1_penalty()
        return losses_

    # ------------------------------------------------------------------ evaluation

    @torch.no_grad()
    def _evaluate(self, rows: list[int]) -> list[dict[str, float]]:
        """Mean loss and accuracy per split for the given runs, in eval mode (as train.evaluate)."""
        index = torch.tensor(rows, device=self.device)
        params = {k: v.detach()[index] for k, v in self.params.items()}
        buffers = {k: v[index] for k, v in self.buffers.items()}
        budget = EVAL_ELEMENTS.get(self.device.type, EVAL_ELEMENTS_DEFAULT) // self.widest
        per_call = max(64, budget // len(rows))  # samples per forward
        runs_per_call = max(1, budget // per_call)
        out: list[dict[str, float]] = [{} for _ in rows]
        self.template.eval()
        for name in SPLITS:
            x, y = self.splits.split(name)
            loss_sum = torch.zeros(len(rows), device=self.device)
            correct = torch.zeros(len(rows), device=self.device, dtype=torch.long)
            for i in range(0, len(x), EVAL_CHUNK):  # train.evaluate's chunks, so the loss sums the same way
                xc, yc = x[i:i + EVAL_CHUNK], y[i:i + EVAL_CHUNK]
                for a in range(0, len(rows), runs_per_call):
                    b = a + runs_per_call
                    p, bufs = {k: v[a:b] for k, v in params.items()}, {k: v[a:b] for k, v in buffers.items()}
                    logits = torch.cat([self.eval_logits(p, bufs, xc[j:j + per_call])
                                        for j in range(0, len(xc), per_call)], dim=1)
                    loss_sum[a:b] += self.eval_losses(logits, yc) * len(yc)
                    correct[a:b] += (logits.argmax(-1) == yc).sum(-1)
            for row, s, c in zip(out, loss_sum.tolist(), correct.tolist()):
                row[f"{name}_loss"], row[f"{name}_acc"] = (s / len(x), c / len(x)) if len(x) else (math.nan, math.nan)
        self.template.train()
        return out

    def _record(self, rows: list[int], step: int, batch_loss: list[float]) -> None:
        evaluated = self._evaluate(rows)
        seconds = time.perf_counter() - self.start
        for i, split_metrics in zip(rows, evaluated):
            run = self.runs[i]
            run.metrics.append({"epoch": step / self.per_epoch, "step": step, "train_batch_loss": batch_loss[i],
                                **split_metrics, "lr": run.spec.config.optimizer.lr, "seconds": seconds})

    # ------------------------------------------------------------------ finishing runs

    def _result(self, run: _Run, status: str, step: int, diverged_step: int | None, stopped_early: bool) -> RunResult:
        summary = summarize(run.spec, run.metrics, run.best, status=status, diverged_step=diverged_step,
                            stopped_early=stopped_early, step=step, per_epoch=self.per_epoch, batch_size=self.bs,
                            wall_time=time.perf_counter() - self.start, n_params=self.n_params, device=self.device)
        return RunResult(run.spec, status, run.metrics, summary)

    def _keep(self, rows: list[int]) -> None:
        """Continue with these runs only (the others finished)."""
        index = torch.tensor(rows, device=self.device)
        kept = {}
        for k, p in self.params.items():
            kept[k] = p.detach()[index].requires_grad_()
            if p.grad is not None:
                kept[k].grad = p.grad[index]
        self.params = kept
        self.buffers = {k: v[index] for k, v in self.buffers.items()}
        self.optimizer.keep(index, list(kept.values()))
        self.runs = [self.runs[i] for i in rows]
        self._per_run_values()

    # ------------------------------------------------------------------ the loop

    def run(self, progress: Progress | None) -> Iterator[RunResult]:
        """Train all runs; yield each result as its run finishes (the loop of train.train, per run)."""
        x_train = self.splits.x_train
        n = len(x_train)
        batch_loss_sum = torch.zeros(len(self.runs), dtype=torch.float64, device=self.device)
        batch_count = 0

        def mean_batch_loss() -> list[float]:
            return (batch_loss_sum / batch_count).tolist() if batch_count else [math.nan] * len(self.runs)

        def finish(done: dict[int, tuple[str, int | None, bool]], step: int) -> Iterator[RunResult]:
            """Yield the results of runs i -> (status, diverged step, stopped early) and drop them."""
            nonlocal batch_loss_sum, perms
            for i in sorted(done):
                status, diverged_step, stopped_early = done[i]
                yield self._result(self.runs[i], status, step, diverged_step, stopped_early)
            keep = [i for i in range(len(self.runs)) if i not in done]
            if keep:
                batch_loss_sum, perms = batch_loss_sum[keep], perms[keep]
                self._keep(keep)
            else:
                self.runs = []

        perms = torch.empty(0)
        self._record(list(range(len(self.runs))), 0, mean_batch_loss())
        step = 0
        while step < self.total and self.runs:
            perms = torch.stack([torch.randperm(n, generator=r.order) for r in self.runs]).to(self.device)
            for i in range(0, n, self.bs):
                losses_ = self._losses(perms[:, i:i + self.bs])
                step += 1
                finite = torch.isfinite(losses_.detach())
                all_finite = bool(finite.all())
                total_loss = losses_.sum() if all_finite else torch.where(finite, losses_, 0.0).sum()
                total_loss.backward()
                if not all_finite:  # diverged runs: final row with their parameters before this step
                    bad = (~finite).nonzero().flatten().tolist()
                    self._record(bad, step, mean_batch_loss())
                    losses_ = losses_[finite]
                    yield from finish({i: ("diverged", step, False) for i in bad}, step)
                    if not self.runs:
                        return
                self.optimizer.step()
                for p in self.params.values():
                    p.grad = None
                batch_loss_sum += losses_.detach().double()
                batch_count += 1
                if step % self.eval_interval == 0 or step == self.total:
                    rows = list(range(len(self.runs)))
                    self._record(rows, step, mean_batch_loss())
                    batch_loss_sum.zero_()
                    batch_count = 0
                    if progress:
                        progress(step, self.total)
                    done = {}
                    for j, run in enumerate(self.runs):
                        row = run.metrics[-1]
                        if not all(math.isfinite(row[f"train_{m}"]) for m in ("loss", "acc")):
                            done[j] = ("diverged", step, False)
                        elif run.best is None or row["val_acc"] > run.best["val_acc"]:
                            run.best, run.since_best = row, 0
                        else:
                            run.since_best += 1
                            patience = run.spec.config.regularization.early_stopping
                            if patience is not None and run.since_best >= patience:
                                done[j] = ("ok", None, True)
                    if done:
                        yield from finish(done, step)
                        if not self.runs:
                            return
                if step >= self.total:
                    break
        yield from finish({i: ("ok", None, False) for i in range(len(self.runs))}, step)


def train_group(specs: list[RunSpec], device: torch.device, progress: Progress | None = None) -> Iterator[RunResult]:
    """Train compatible runs as one stack; raises Unvectorizable before training if they cannot be stacked."""
    group = _Group(specs, device)
    return group.run(progress)
