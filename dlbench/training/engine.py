"""The training loop: a stack of R >= 1 runs trained together, every parameter with a leading run dimension.

Runs that differ only in values (seed, optimizer and its hyperparameters, clipping,
bias decay, init scheme, lr schedule, dropout probability, L1, input noise, label
smoothing, augmentation, early stopping, diagnostics) share architecture, dataset,
batch schedule and loss, so they train as one stacked model.
Each run's model is built and initialized from its seed; `torch.func.stack_module_state`
stacks them, `functional_call` + `vmap` run the unchanged module code on all runs at
once (batched matmuls underneath) and the stacked update rules of
`dlbench.components.optimizers` apply each run's own optimizer. A stack of one calls
the module directly, without vmap, so any module trains here.

Every run owns its generators, seeded from its seed: one for the batch order, one
for input noise and dropout masks, one for augmentation (off the CPU the last two are
counter-based streams drawn for the whole stack at once, training.streams). A run keeps its own
BatchNorm statistics, early stopping and divergence; a run that finishes leaves the
stack. Same config + seed + stack on CPU gives bit-identical metrics; the same run in
another stack agrees up to float rounding (batched vs single matmuls; README "Speed").

This is the only code that steps an optimizer on a model: evaluation, metric rows,
divergence, early stopping, lr schedules, gradient clipping, label smoothing,
augmentation, batch order, noise, dropout, L1, diagnostics and checkpoints live here once.
"""

from __future__ import annotations

import contextlib
import copy
import ctypes
import functools
import math
import sys
import time
from typing import Any, cast
from collections.abc import Callable, Iterator

import torch
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state, vmap

from dlbench.components import data as data_mod
from dlbench.components import inits
from dlbench.components import losses
from dlbench.components import models
from dlbench.components.augment import AUGMENTATIONS, Draws, Looped
from dlbench.components.optimizers import (StackedOptimizer, clip_grad_norms_, is_weight, set_lr_multipliers,
                                           to_eval_weights, to_train_weights)
from dlbench.components.schedules import StackedSchedule
from dlbench.catalog.metrics import METRICS, SPLITS
from dlbench.results import live as live_progress
from dlbench.plan import pruning
from dlbench.plan.sweep import RunSpec
from dlbench.training import checkpoint, measures, scaling, streams
from dlbench.training.per_run import (AUGMENT_STREAM, NOISE_STREAM, ORDER_STREAM, PerRun,  # noqa: F401 - re-exported
                                      generator, to_device)
from dlbench.training.run import AUTOCAST, Progress, RunResult, check_precision, schedule, summarize

# evaluation forwards: samples per forward (fixed per device, so losses sum alike in any stack) and
# activation elements per forward, which set the runs per forward (a run's numbers are the same at any
# count): on CPU 16 MiB of activations, within the last-level cache (the 64-run grid evaluates in 0.8-0.95x
# the time of 1 << 20, one and two threads), large on GPUs, which want big kernels
EVAL_SAMPLES = {"cpu": 512}
EVAL_SAMPLES_DEFAULT = 8192
EVAL_ELEMENTS = {"cpu": 1 << 22}
EVAL_ELEMENTS_DEFAULT = 1 << 26
# devices whose divergence check reads the losses every step: on a CPU that read costs nothing (its ops have
# run by then) and a diverged run ends with its parameters before the step; elsewhere it would stall the
# device's queue every step, so it is read at evaluations (see Stack.run)
DIVERGENCE_EVERY_STEP = frozenset({"cpu"})
# devices whose dropout masks, input noise and augmentation come from each run's torch.Generator, run by run:
# the numbers of earlier versions, and on a CPU a loop costs no kernel launches. Elsewhere they are drawn for
# the whole stack at once from counter-based streams (training.streams), each run's still its own.
LOOPED_RANDOMNESS = frozenset({"cpu"})


class Unstackable(Exception):
    """The runs' models cannot share one stack (train them in stacks of one)."""


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


class MaskedDropout(nn.Module):
    """Dropout whose mask is passed in, one per run, as the buffer `mask`: scaled by 1 / (1 - p)
    (model.dropout_scaling: inverted), or 0 / 1 with every unit times the run's `scale` = 1 - p at
    evaluation (test: the textbook's layer)."""

    mask: Tensor
    scale: Tensor

    def __init__(self, at_test: bool = False) -> None:
        super().__init__()
        self.at_test = at_test
        self.register_buffer("mask", torch.ones(()), persistent=False)
        self.register_buffer("scale", torch.ones(()), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        if self.training:
            return x * self.mask
        return x * self.scale if self.at_test else x


def _template(run_models: list[nn.Module], dropouts: list[float], at_test: bool = False) -> nn.Module:
    """A copy of the model (with dropout layers if any run drops out) whose dropout takes masks from outside."""
    template = copy.deepcopy(run_models[max(range(len(dropouts)), key=dropouts.__getitem__)])
    for name, module in list(template.named_modules()):
        if type(module) is nn.Dropout:
            parent, _, child = name.rpartition(".")
            setattr(template.get_submodule(parent), child, MaskedDropout(at_test))
        elif isinstance(module, nn.modules.dropout._DropoutNd) and len(run_models) > 1:
            raise Unstackable(f"{type(module).__name__} draws masks the stack does not draw")
    shapes = {k: v.shape for k, v in template.state_dict().items()}
    for m in run_models:
        if {k: v.shape for k, v in m.state_dict().items()} != shapes:
            raise Unstackable("runs have different parameter shapes")
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


def _gather(samples: Tensor, idx: Tensor) -> Tensor:
    """samples[idx] for an index [runs, batch]: index_select of the flattened index, the same copy ~4x faster
    on a CPU than advanced indexing."""
    return samples.index_select(0, idx.flatten()).view(*idx.shape, *samples.shape[1:])


def _first(tensors: dict[str, Tensor]) -> dict[str, Tensor]:
    return {k: v[0] for k, v in tensors.items()}


class Stack:
    """R runs training together; `run()` yields each run's result as it finishes."""

    def __init__(self, specs: list[RunSpec], device: torch.device) -> None:
        self.start = time.perf_counter()
        self.device = device
        if device.type == "cpu":
            keep_freed_memory()
        # runs of one optimizer next to each other: its updates are then in-place ops on a view
        specs = sorted(specs, key=lambda s: s.config.optimizer.name)
        self.run_ids = [s.run_id for s in specs]
        cfg = specs[0].config
        self.splits = data_mod.prepare(cfg.data, device)
        self.loss_fn = losses.LOSSES[cfg.loss].builder
        self.bs, self.per_epoch, self.total = schedule(len(self.splits.x_train), cfg.train)
        self.eval_interval = cfg.train.eval_every * (self.per_epoch if cfg.train.steps is None else 1)
        self.precision = cfg.train.precision  # one per stack: part of the stack key
        check_precision(self.precision, device)

        run_models = []
        for spec in specs:
            with torch.random.fork_rng(devices=[]):  # the init draws from the seed, the caller's RNG is untouched
                torch.manual_seed(spec.seed)
                model = models.build(spec.config.model, self.splits.sample_shape, self.splits.num_classes)
                inits.initialize(model, spec.config.init)
            run_models.append(model.to(device))
        self.v = PerRun.build(specs, self)
        self._cache: dict[Any, Tensor] = {}  # device tensors derived from the runs held, until they change
        self.at_test = cfg.model.settings().get("dropout_scaling") == "test"  # in the stack key: the same for every run
        template = _template(run_models, self.v.dropout, self.at_test)
        self.dropout_calls, self.widest = _probe(template, self.splits.x_train[:1])
        self.n_params = models.count_parameters(run_models[0])
        # a real copy for diagnostics, which look at one run at a time as a plain module
        self.inspected = copy.deepcopy(template) if any(self.v.recorder) else None
        self.template = template.to("meta")
        self.params, self.buffers = stack_module_state(run_models)
        del run_models
        if self.at_test:  # each run's keep probability, applied at evaluation; kept and checkpointed as a buffer
            keep = torch.tensor([1 - s.config.model.dropout for s in specs], device=device)
            self.buffers.update({f"{name}.scale": keep for name, _ in self.dropout_calls})
        self.optimizer = StackedOptimizer(list(self.params.values()), [s.config.optimizer for s in specs])
        self.order = cfg.train.order
        schedules = [s.config.schedule for s in specs]
        self.schedule = StackedSchedule(schedules, self.total, self.per_epoch)
        self.scheduled = any(c.name != "constant" or c.warmup for c in schedules)  # else lr stays optimizer.lr
        self._set_lrs(0)
        self._forwards(len(specs))
        self.step = 0
        self.batch_count = 0

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        """Forwards in train.precision: autocast to bf16 / fp16 (parameters, gradients, optimizer state stay fp32)."""
        dtype = AUTOCAST[self.precision]
        return contextlib.nullcontext() if dtype is None else torch.autocast(self.device.type, dtype=dtype)

    @property
    def runs(self) -> list[RunSpec]:
        """The runs still training, in the stack's order."""
        return self.v.spec

    def _forwards(self, runs: int) -> None:
        """The stack's logits (runs, samples, classes): vmap over the stack, or the plain module for one run."""
        def logits(p: dict[str, Tensor], b: dict[str, Tensor], x: Tensor) -> Tensor:
            return functional_call(self.template, (p, b), (x,))

        if runs > 1:
            self.train_logits = vmap(logits)
            self.eval_logits = vmap(logits, in_dims=(0, 0, None))
        else:
            self.train_logits = lambda p, b, x: logits(_first(p), _first(b), x[0]).unsqueeze(0)
            self.eval_logits = lambda p, b, x: logits(_first(p), _first(b), x).unsqueeze(0)

    def _per_sample_losses(self, logits: Tensor, targets: Tensor, smoothing: Tensor | None = None, *,
                           rows: bool = False) -> Tensor:
        """Per-run, per-sample losses (runs, samples) of stacked logits (runs, samples, classes).

        rows=True hands the loss runs x samples rows of classes: its gradient is then bit for bit
        that of the loss vmapped run by run, so training keeps the numbers of earlier versions.
        Otherwise the logits go in as (runs, classes, samples), the layout in which the class
        reductions run ~10x faster on CPU: evaluation, with its thousands of samples per run."""
        runs, samples, classes = logits.shape
        if rows:
            by_class, targets = logits.reshape(runs * samples, classes), targets.reshape(runs * samples)
            smoothing = None if smoothing is None else smoothing.repeat_interleave(samples)  # one per row
        else:
            by_class = logits.transpose(1, 2)
            smoothing = None if smoothing is None else smoothing.view(-1, 1)  # one per run
        out = (self.loss_fn(by_class, targets) if smoothing is None
               else losses.smoothed_cross_entropy(by_class, targets, smoothing))
        return out.view(runs, samples)

    def _set_lrs(self, k: int) -> None:
        """Each run's lr for update k (0-based) from its schedule; `v.lr` is what the metrics' lr column shows."""
        if self.scheduled:
            self.v.lr = set_lr_multipliers(self.optimizer, self.schedule(k)).tolist()

    # ------------------------------------------------------------------ one step

    def _augmented(self, xb: Tensor) -> Tensor:
        """The batches with each run's augmentation (runs grouped by augmentation): run by run from each run's
        generator (LOOPED_RANDOMNESS), else for a group at once from each run's counter-based stream."""
        for name in sorted(set(self.v.augmentation) - {"none"}):
            rows = [i for i, a in enumerate(self.v.augmentation) if a == name]
            whole = len(rows) == len(self.v)  # the usual case: no copies in and out of the stack's batches
            index = self._rows(tuple(rows))
            draws: Draws
            if self.device.type in LOOPED_RANDOMNESS:
                draws = Looped([self.v.augment[i] for i in rows], self.device)
            else:  # a group's runs have drawn alike since they started: one position for all
                keys = self.v.augment_key if whole else self.v.augment_key[index]
                draws = streams.Counter(keys, self.v.augment_drawn[rows[0]])
            out = AUGMENTATIONS[name].builder(xb if whole else xb[index], draws)
            if isinstance(draws, streams.Counter):
                for i in rows:
                    self.v.augment_drawn[i] = draws.position
            xb = out if whole else xb.index_copy(0, index, out)
        return xb

    def _rows(self, rows: tuple[int, ...]) -> Tensor:
        """Rows as an index on the device, made once per set of runs (a copy to a GPU waits for it)."""
        key = ("rows", rows)
        if key not in self._cache:
            self._cache[key] = to_device(torch.tensor(rows), self.device)
        return self._cache[key]

    def _inputs(self, idx: Tensor) -> Tensor:
        """The runs' batches, augmented, then with each run's input noise drawn from its own generator."""
        xb = self._augmented(_gather(self.splits.x_train, idx))
        if not any(self.v.input_noise):
            return xb
        if self.device.type not in LOOPED_RANDOMNESS:
            return xb + self.v.column("input_noise").view(-1, *[1] * (xb.dim() - 1)) * self._draw(xb.shape[1:], True)
        noise = torch.stack([
            torch.randn(xb.shape[1:], generator=rng, device=self.device) if std > 0
            else torch.zeros(xb.shape[1:], device=self.device)
            for rng, std in zip(self.v.rng, self.v.input_noise)])
        return xb + self.v.column("input_noise").view(-1, *[1] * (xb.dim() - 1)) * noise

    def _masks(self, batch: int) -> dict[str, Tensor]:
        """Each dropout layer's masks: run by run from each run's generator (LOOPED_RANDOMNESS), else for the
        stack at once."""
        masks = {}
        if self.device.type not in LOOPED_RANDOMNESS:
            for name, shape in self.dropout_calls:
                keep = (1 - self.v.column("dropout")).view(-1, *[1] * (len(shape) + 1))
                mask = (self._draw((batch, *shape), False) < keep).float()
                masks[f"{name}.mask"] = mask if self.at_test else mask / keep
            return masks
        for name, shape in self.dropout_calls:
            per_run = []
            for rng, p in zip(self.v.rng, self.v.dropout):
                m = torch.empty((batch, *shape), device=self.device)
                if p == 0:
                    m.fill_(1.0)
                else:
                    m.bernoulli_(1 - p, generator=rng)
                    if not self.at_test:
                        m.div_(1 - p)
                per_run.append(m)
            masks[f"{name}.mask"] = torch.stack(per_run)
        return masks

    def _draw(self, shape: tuple[int, ...], normal: bool) -> Tensor:
        """[runs, *shape] uniforms (or normals) of every run's counter-based stream, at once."""
        position = self.v.drawn[0]  # the runs of a stack draw in step: one position for all
        out = (streams.normal if normal else streams.uniform)(self.v.noise_key, position, tuple(shape))
        used = math.prod(shape) * (2 if normal else 1)
        self.v.drawn = [d + used for d in self.v.drawn]
        return out

    def _l1_penalty(self) -> Tensor:
        """Per run: the sum of |w| over its weights (not biases or norm parameters)."""
        weights = [p for p in self.params.values() if is_weight(p)]
        return torch.stack([p.abs().flatten(1).sum(1) for p in weights]).sum(0)

    @torch.no_grad()
    def _l2_penalty(self) -> Tensor:
        """Per run: 1/2 weight_decay sum ||p||^2 over the tensors its decay acts on (regularization.penalty_in_loss)."""
        weights = sum(p.pow(2).flatten(1).sum(1) for p in self.params.values() if is_weight(p))
        others = sum(p.pow(2).flatten(1).sum(1) for p in self.params.values() if not is_weight(p))
        return 0.5 * self.v.column("penalty") * (weights + self.v.column("decay_biases") * others)

    def _losses(self, idx: Tensor) -> Tensor:
        """Per-run training losses of one batch (with the L1 term where a run has one)."""
        xb = self._inputs(idx)
        logits = self.train_logits(self.params, {**self.buffers, **self._masks(idx.shape[1])}, xb)
        smoothing = self.v.column("label_smoothing") if any(self.v.label_smoothing) else None
        losses_ = self._per_sample_losses(logits, _gather(self.splits.y_train, idx), smoothing, rows=True).mean(1)
        if any(self.v.l1):
            losses_ = losses_ + self.v.column("l1") * self._l1_penalty()
        return losses_

    # ------------------------------------------------------------------ evaluation

    @torch.no_grad()
    def _evaluate(self, rows: list[int]) -> Tensor:
        """Each split's measures (training/measures.py: loss, accuracy, calibration error, ...) of the given
        runs, in eval mode, on the device: float64 [splits x measures, runs], rows train loss, train acc, ...

        Forwards of a fixed number of samples (so a run's loss sums the same way in every
        stack), as many runs per forward as fit the device's activation budget."""
        index = self._index(rows)
        params = {k: v.detach() if index is None else v.detach()[index] for k, v in self.params.items()}
        buffers = self.buffers if index is None else {k: v[index] for k, v in self.buffers.items()}
        width = sum(m.width for _, m in measures.measured())
        sums = torch.zeros(len(SPLITS), len(rows), width, device=self.device, dtype=torch.float64)
        self.template.eval()
        with self._autocast():
            self._evaluate_into(sums, params, buffers, len(rows))
        self.template.train()
        starts, start = {}, 0
        for name, m in measures.measured():
            starts[name], start = start, start + m.width
        values = []
        for _, split, measure in METRICS.measured():  # each from its split's sums (a split without samples: NaN)
            s, m = SPLITS.index(split), measures.MEASURES[measure]
            n, at = len(self.splits.split(split)[1]), starts[measure]
            values.append(m.value(sums[s, :, at:at + m.width], n) if n
                          else torch.full((len(rows),), math.nan, device=self.device, dtype=torch.float64))
        return torch.stack(values)

    def _evaluate_into(self, sums: Tensor, params: dict[str, Tensor], buffers: dict[str, Tensor], runs: int) -> None:
        per_call = EVAL_SAMPLES.get(self.device.type, EVAL_SAMPLES_DEFAULT)
        runs_per_call = max(1, EVAL_ELEMENTS.get(self.device.type, EVAL_ELEMENTS_DEFAULT) // (per_call * self.widest))
        for s, name in enumerate(SPLITS):
            x, y = self.splits.split(name)
            for a in range(0, runs, runs_per_call):
                b = min(a + runs_per_call, runs)
                p, bufs = {k: v[a:b] for k, v in params.items()}, {k: v[a:b] for k, v in buffers.items()}
                for i in range(0, len(x), per_call):
                    xc, yc = x[i:i + per_call], y[i:i + per_call].expand(b - a, -1)
                    logits = self.eval_logits(p, bufs, xc)
                    losses_ = self._per_sample_losses(logits, yc)
                    sums[s, a:b] += torch.cat([m.sums(logits, yc, losses_) for _, m in measures.measured()], 1)

    def _index(self, rows: list[int]) -> Tensor | None:
        """Rows as an index tensor on the device; None when they are all runs in order (no copy needed)."""
        return None if rows == list(range(len(self.v))) else to_device(torch.tensor(rows), self.device)

    def _record(self, rows: list[int]) -> list[int]:
        """Evaluate these runs and append a metrics row to each; returns the step at which each diverged
        (0: it has not). What the rows need comes to the host in one copy."""
        to_eval_weights(self.optimizer)  # schedule-free runs are evaluated at their averaged weights
        try:
            sums = self._evaluate(rows)
            index = self._index(rows)
            batch_loss = (self.v.batch_loss_sum / self.batch_count if self.batch_count
                          else torch.full_like(self.v.batch_loss_sum, math.nan))
            tail = torch.stack([batch_loss, self.v.diverged_at.double()])
            host = torch.cat([sums, tail if index is None else tail[:, index]]).tolist()
            seconds = time.perf_counter() - self.start
            # the catalog's per-split metrics, in the order _evaluate measured them
            measured = METRICS.measured()
            empty = {split for split in SPLITS if not len(self.splits.split(split)[1])}  # no samples: math.nan
            for j, i in enumerate(rows):
                split_metrics = {name: math.nan if split in empty else host[k][j]
                                 for k, (name, split, _) in enumerate(measured)}
                run_batch_loss = host[-2][j] if self.batch_count else math.nan
                self.v.metrics[i].append({"epoch": self.step / self.per_epoch, "step": self.step,
                                          "train_batch_loss": run_batch_loss, **split_metrics, "lr": self.v.lr[i],
                                          "seconds": seconds})
                recorder = self.v.recorder[i]
                if recorder:
                    recorder.record(self._one_run(i), self.step)
            return [int(d) for d in host[-1]]
        finally:
            to_train_weights(self.optimizer)

    def _one_run(self, i: int) -> nn.Module:
        """Run i as a plain module, with the gradient of its last training batch (for diagnostics)."""
        assert self.inspected is not None
        with torch.no_grad():
            for k, t in self.inspected.named_parameters():
                t.copy_(self.params[k][i])
                t.grad = None if self.params[k].grad is None else self.params[k].grad[i].clone()
            for k, b in self.inspected.named_buffers():
                if k in self.buffers:
                    b.copy_(self.buffers[k][i])
        return self.inspected

    # ------------------------------------------------------------------ finishing runs

    def _result(self, i: int, status: str, diverged_step: int | None, stopped_early: bool) -> RunResult:
        v, recorder = self.v, self.v.recorder[i]
        summary = summarize(v.spec[i], v.metrics[i], v.best[i], status=status, diverged_step=diverged_step,
                            stopped_early=stopped_early, step=self.step, per_epoch=self.per_epoch,
                            batch_size=self.bs, wall_time=time.perf_counter() - self.start,
                            n_params=self.n_params, device=self.device)
        if recorder:
            summary["diagnostics"] = recorder.final()
        return RunResult(v.spec[i], status, v.metrics[i], summary, recorder.files() if recorder else {})

    def _keep(self, rows: list[int]) -> None:
        """Continue with these runs only (the others finished), in this order."""
        index = to_device(torch.tensor(rows), self.device)
        kept = {}
        for k, p in self.params.items():
            kept[k] = p.detach()[index].requires_grad_()
            if p.grad is not None:
                kept[k].grad = p.grad[index]
        self.params = kept
        self.buffers = {k: v[index] for k, v in self.buffers.items()}
        self.optimizer.keep(index, list(kept.values()))
        self.schedule.keep(rows)
        self.v.keep(rows)
        self._cache.clear()
        self._forwards(len(rows))

    def _finish(self, done: dict[int, tuple[str, int | None, bool]]) -> Iterator[RunResult]:
        """Yield the results of runs i -> (status, diverged step, stopped early) and drop them."""
        results = [self._result(i, *done[i]) for i in sorted(done)]
        keep = [i for i in range(len(self.v)) if i not in done]
        if keep:
            self._keep(keep)
        else:
            self.v.keep([])
        yield from results

    # ------------------------------------------------------------------ the loop

    def run(self, progress: Progress | None = None,
            after_step: Callable[[Stack], None] | None = None) -> Iterator[RunResult]:
        """Train all runs; yield each result as its run finishes. `after_step` is called between
        steps, where the state is whole (checkpoints).

        The step itself reads nothing back from the device: where divergence is not checked every
        step (DIVERGENCE_EVERY_STEP), the step a run's loss first goes non-finite is kept in a
        device tensor and read at the next evaluation, with the metrics (one copy)."""
        n = len(self.splits.x_train)
        every_step = self.device.type in DIVERGENCE_EVERY_STEP
        if progress:  # where the stack starts (0, or a checkpoint's step): the display's first word
            progress(self.step, self.total, len(self.v))
        if self.step == 0:
            self._record(list(range(len(self.v))))
        while self.step < self.total and self.v:
            position = self.step % self.per_epoch
            if position == 0:  # a new epoch: each run's own order, or the samples as stored (train.order)
                self.v.perms = to_device(torch.stack([self._epoch_order(n, g) for g in self.v.order]), self.device)
            for p in self.params.values():
                p.grad = None
            with self._autocast():
                losses_ = self._losses(self.v.perms[:, position * self.bs:(position + 1) * self.bs])
            self.step += 1
            finite = torch.isfinite(losses_.detach())
            # where the losses are read every step, all finite (the usual step) backpropagates their plain sum,
            # which gives the masked sum's gradients without its kernels
            all_finite = every_step and bool(finite.all())
            scaled = losses_ * self.v.loss_scale if self.precision == "fp16" else losses_
            # a diverged run's gradients stay its own
            (scaled.sum() if all_finite else torch.where(finite, scaled, 0.0).sum()).backward()
            if every_step:
                if not all_finite:  # diverged runs: final row with their parameters before this step
                    bad = (~finite).nonzero().flatten().tolist()
                    self._record(bad)
                    losses_ = losses_[finite]
                    yield from self._finish({i: ("diverged", self.step, False) for i in bad})
                    if not self.v:
                        return
            else:
                first = self.v.diverged_at
                self.v.diverged_at = torch.where(finite | (first > 0), first, self.step)
            reported = losses_.detach() + self._l2_penalty() if any(self.v.penalty_in_loss) else losses_.detach()
            overflow = self._unscale() if self.precision == "fp16" else None
            if any(math.isfinite(c) for c in self.v.clip_norm):
                clip_grad_norms_([p.grad for p in self.params.values() if p.grad is not None],
                                 self.v.column("clip_norm"))
            self._set_lrs(self.step - 1)
            if overflow is not None:
                self._scaled_update(overflow)
            else:
                self.optimizer.step()
            self.v.batch_loss_sum += reported.double()
            self.batch_count += 1
            if self.step % self.eval_interval == 0 or self.step == self.total:
                yield from self._evaluation(progress)
            if after_step and self.v:
                after_step(self)
        yield from self._finish({i: ("ok", None, False) for i in range(len(self.v))})

    def _unscale(self) -> Tensor:
        """fp16: the gradients back to their true scale; returns which runs' gradients overflowed (zeroed;
        their update is skipped in `_scaled_update`)."""
        return scaling.unscale_([p.grad for p in self.params.values() if p.grad is not None], self.v.loss_scale)

    def _optimizer_state(self) -> dict[tuple[str, int], Tensor]:
        """The optimizer's state tensors (stacked: rows are runs), by (name, parameter index)."""
        state = cast("dict[str, list[Tensor | None]]", self.optimizer.state_dict()["state"])
        return {(name, i): t for name, ts in state.items() for i, t in enumerate(ts) if t is not None}

    @torch.no_grad()
    def _scaled_update(self, overflow: Tensor) -> None:
        """fp16: the optimizer step, skipped by the runs whose gradients overflowed, as torch.amp.GradScaler
        skips its model's step: their weights and optimizer state tensors are put back as they were (the
        stacked optimizer steps all runs at once). Each run's loss scale is then adjusted as GradScaler
        adjusts its one scale. What the stack keeps on the host is not put back (that would read `overflow`
        every step): the step count in Adam-like bias corrections and per-run numbers (nadam's momentum
        product, schedule-free's weight sum, a torch.optim plugin's own step count) count the skipped step."""
        state = self._optimizer_state()

        def step() -> list[Tensor]:
            self.optimizer.step()
            return [t for key, t in self._optimizer_state().items() if key not in state]

        scaling.skipping(overflow, [p.detach() for p in self.params.values()] + list(state.values()), step)
        self.v.loss_scale, self.v.good_steps = scaling.update(self.v.loss_scale, self.v.good_steps, overflow)

    def _epoch_order(self, n: int, g: torch.Generator) -> Tensor:
        """One run's sample indices for an epoch (train.order)."""
        if self.order == "sequential":
            return torch.arange(n)
        if self.order == "replacement":  # every batch drawn with replacement, full size (np.random.choice)
            return torch.randint(n, (self.per_epoch * self.bs,), generator=g)
        return torch.randperm(n, generator=g)

    def _evaluation(self, progress: Progress | None) -> Iterator[RunResult]:
        diverged_at = self._record(list(range(len(self.v))))
        self.v.batch_loss_sum.zero_()
        self.batch_count = 0
        done: dict[int, tuple[str, int | None, bool]] = {}
        for j in range(len(self.v)):
            row, best, monitor = self.v.metrics[j][-1], self.v.best[j], self.v.monitor[j]
            if diverged_at[j] or not all(math.isfinite(row[f"train_{m}"]) for m in ("loss", "acc")):
                done[j] = ("diverged", diverged_at[j] or self.step, False)
            elif best is None or monitor.better(row[monitor.name], best[monitor.name]):
                self.v.best[j], self.v.since_best[j] = row, 0
            else:
                self.v.since_best[j] += 1
                patience = self.v.patience[j]
                if patience is not None and self.v.since_best[j] >= patience:
                    done[j] = ("ok", None, True)
        done.update(self._pruned(done))
        if progress:
            progress(self.step, self.total, len(self.v) - len(done))
        if done:
            yield from self._finish(done)

    def _pruned(self, done: dict[int, tuple[str, int | None, bool]]) -> dict[int, tuple[str, int | None, bool]]:
        """The search runs that the pruning plan (random.prune) stops at this evaluation, finished as pruned,
        so they cost no more steps."""
        alive = [j for j in range(len(self.v)) if j not in done]
        unit = 1 if self.v.spec[0].config.train.steps is not None else self.per_epoch  # eval_every's unit
        stop = pruning.pruned([self.v.spec[j].pruning for j in alive], [self.v.monitor[j] for j in alive],
                              [self.v.metrics[j][-1][self.v.monitor[j].name] for j in alive],
                              self.step / unit, self.total / unit)
        return {alive[i]: ("pruned", None, False) for i in stop}

    def progress(self) -> list[dict[str, Any]]:
        """Each run still training, as its progress file records it (results/live.py)."""
        return [{"run_id": spec.run_id, "params": spec.params, "seed": spec.seed, "step": self.step,
                 "total": self.total, "epoch": self.step / self.per_epoch, "metrics": rows[-1] if rows else {}}
                for spec, rows in zip(self.v.spec, self.v.metrics)]

    # ------------------------------------------------------------------ checkpoints

    def state(self) -> dict[str, Any]:
        """The whole training state between two steps (tensors, numbers, strings, lists and dicts only)."""
        return {
            "runs_held": checkpoint.describe_runs(self.runs), "step": self.step,
            "params": {k: v.detach() for k, v in self.params.items()}, "buffers": self.buffers,
            "optimizer": self.optimizer.state_dict(), "batch_count": self.batch_count, **self.v.state(),
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Continue from `state()` of a stack that held these runs, or more (a stack split after it ran
        out of memory resumes in parts); the runs it no longer held finished before."""
        held = [r["run_id"] for r in state["runs_held"]]
        rows = [i for i, run_id in enumerate(held) if run_id in self.run_ids]
        self._keep([self.run_ids.index(held[i]) for i in rows])
        index = torch.tensor(rows)
        self.step, self.batch_count = state["step"], state["batch_count"]
        with torch.no_grad():
            for k, v in state["params"].items():
                self.params[k].copy_(v[index.to(v.device)])
            for k, v in state["buffers"].items():
                self.buffers[k].copy_(v[index.to(v.device)])
        self.v.restore(state, rows)
        self._set_lrs(max(self.step - 1, 0))  # the lr column of the last update
        saved = state["optimizer"]
        self.optimizer.load_state_dict({"steps": saved["steps"], "state": {
            k: [None if t is None else t[index.to(t.device)].to(self.device) for t in v]
            for k, v in saved["state"].items()},
            "scalars": {k: v[index] for k, v in saved.get("scalars", {}).items()}})


def train(specs: list[RunSpec], device: torch.device, progress: Progress | None = None,
          saves: checkpoint.Checkpoint | None = None, resume: dict[str, Any] | None = None,
          interrupt: checkpoint.Interrupt | None = None, live: live_progress.Writer | None = None
          ) -> Iterator[RunResult]:
    """Train compatible runs as one stack; yield each result as its run finishes.

    With `saves`, the stack's state is written every `saves.seconds` and when `interrupt`
    is requested (then KeyboardInterrupt is raised), and the file is removed when the
    stack finishes. `resume`: a state read from such a file (`specs` = the runs it holds).
    With `live`, the runs' progress files are written after the first step (with the first
    evaluation's metrics), then between steps when due (a clock read per step otherwise), and
    say the status of a run that finishes before its stack."""
    stack = Stack(specs, device)
    if resume is not None:
        stack.restore(resume)

    def between_steps(stack: Stack) -> None:
        if interrupt is not None and interrupt.requested:
            if saves is not None:
                saves.save(stack.state())
            if live is not None:  # the step its runs resume from, for `dlbench status`
                live.write(stack.step, stack.progress())
            raise KeyboardInterrupt
        if saves is not None and saves.due():
            saves.save(stack.state())
        if live is not None and live.due():
            live.write(stack.step, stack.progress())

    for result in stack.run(progress, between_steps):
        if live is not None and stack.v:  # finished early; at the stack's end its results follow at once
            live.finished(result.spec.run_id, result.status)
        yield result
    if saves is not None:
        saves.remove()
