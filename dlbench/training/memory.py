"""Memory-aware stacks: a stack's peak memory, estimated before it is built, against what the device has free.

A stack of R runs holds, per run: parameters, their gradients and the optimizer's state
(fp32, whatever train.precision computes in), the temporaries of an update, and the
activations one training batch keeps for its backward pass (with the dropout masks, the
input batch and its noise); the evaluation forwards add a bounded chunk (as many runs per
forward as the engine's activation budget allows), and the dataset sits on the device once.
A stack that would not fit in FRACTION_OF_FREE of the free memory is split into equal
smaller stacks (`split`). The estimate errs high: activations are counted in fp32 and every
module's output as kept for the backward pass.

Free memory: CUDA: `torch.cuda.mem_get_info` plus what PyTorch's allocator holds unused;
CPU: MemAvailable of /proc/meminfo, capped by a cgroup memory limit and by the address
space limit (`ulimit -v`) where they are lower.
"""

from __future__ import annotations

import functools
import math
import os
import resource
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from collections.abc import Callable

import torch
from torch import Tensor, nn

from dlbench.components import data as data_mod
from dlbench.components import models
from dlbench.components.optimizers import StackedOptimizer
from dlbench.plan.sweep import RunSpec
from dlbench.training import engine


FRACTION_OF_FREE = 0.8  # headroom for the allocator's fragmentation and the estimate's own error
BYTES = 4  # fp32
EVAL_FACTOR = 3  # an evaluation forward holds its input, its output and the logits at once, about


@dataclass(frozen=True)
class Estimate:
    """Peak bytes of a stack: `shared` whatever its size, `per_run` for each run, `evaluation` per run
    evaluated in one forward (at most `eval_runs` of them)."""

    shared: int
    per_run: int
    evaluation: int
    eval_runs: int

    def total(self, runs: int) -> int:
        return self.shared + runs * self.per_run + min(runs, self.eval_runs) * self.evaluation

    def runs_fitting(self, free: int) -> int:
        """The most runs whose stack fits in FRACTION_OF_FREE of `free` bytes (at least 1)."""
        budget = FRACTION_OF_FREE * free
        fit, runs = 1, 1
        while runs <= 1 << 20 and self.total(runs) <= budget:
            fit, runs = runs, runs * 2
        lo, hi = fit, runs  # total(lo) fits (or lo = 1), total(hi) does not
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if self.total(mid) <= budget else (lo, mid)
        return lo


def free_bytes(device: torch.device) -> int:
    """What the device has free for a new stack."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    return _free_ram()


def _free_ram() -> int:
    limits = [_meminfo("MemAvailable") or os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")]
    cgroup = Path("/sys/fs/cgroup")
    try:
        limit = (cgroup / "memory.max").read_text().strip()
        if limit != "max":
            limits.append(int(limit) - int((cgroup / "memory.current").read_text()))
    except (OSError, ValueError):
        pass
    address_space, _ = resource.getrlimit(resource.RLIMIT_AS)
    if address_space != resource.RLIM_INFINITY:  # ulimit -v: what this process may still map
        limits.append(address_space - _status_kb("VmSize") * 1024)
    return max(0, min(limits))


def _meminfo(key: str) -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _status_kb(key: str) -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def estimate(stack: RunSpec | list[RunSpec], device: torch.device) -> Estimate:
    """The peak memory of a stack of these runs (or of runs like this one) on `device`: they share model,
    data and batch size; their optimizers may differ (the one with the most state counts)."""
    specs = stack if isinstance(stack, list) else [stack]
    spec = specs[0]
    cfg = spec.config
    splits = data_mod.prepare(cfg.data, device)
    bs = min(len(splits.x_train), len(splits.x_train) if cfg.train.batch_size == "full" else cfg.train.batch_size)
    n_params, largest, activations, widest, dropped = _model_sizes(spec, splits.sample_shape, splits.num_classes)
    sample = math.prod(splits.sample_shape)
    slots = max(optimizer_slots(s.config.optimizer) for s in specs)
    # parameters, gradients, optimizer state; the update's temporaries (one tensor at a time, a few of
    # them); fp16: the weights and optimizer state kept from before the step (a run that overflows gets them back)
    per_run = (2 + slots + (1 + slots if cfg.train.precision == "fp16" else 0)) * n_params + 3 * largest
    # the batch's kept activations, the backward's two widest gradients, masks, input and noise
    per_run += bs * (activations + 2 * widest + dropped + 2 * sample)
    per_call = engine.EVAL_SAMPLES.get(device.type, engine.EVAL_SAMPLES_DEFAULT)
    eval_runs = max(1, engine.EVAL_ELEMENTS.get(device.type, engine.EVAL_ELEMENTS_DEFAULT) // (per_call * widest))
    dataset = sum(t.numel() * t.element_size() for t in (splits.x_train, splits.y_train, splits.x_val,
                                                         splits.y_val, splits.x_test, splits.y_test))
    return Estimate(shared=dataset, per_run=per_run * BYTES, evaluation=EVAL_FACTOR * per_call * widest * BYTES,
                    eval_runs=eval_runs)


# models up to this many parameters are probed on the CPU (a real forward of one sample, milliseconds);
# larger ones on the meta device, whose first forward imports torch's meta kernels (about 1-4 s, once)
PROBE_ON_CPU = 50_000_000


def _model_sizes(spec: RunSpec, shape: tuple[int, ...], classes: int) -> tuple[int, int, int, int, int]:
    """(parameters, largest parameter tensor, activation elements per sample of all modules, the widest
    activation per sample, dropout inputs per sample), from one forward of the model."""
    with torch.device("meta"):
        model = models.build(spec.config.model, shape, classes)
    params = list(model.parameters())
    n_params = sum(p.numel() for p in params)
    where = "meta"
    if n_params <= PROBE_ON_CPU:
        with torch.random.fork_rng(devices=[]):  # the build's init draws: the caller's RNG is untouched
            model = models.build(spec.config.model, shape, classes)
        where = "cpu"
    sizes: list[int] = []
    dropped: list[int] = []

    def hook(module: nn.Module, args: tuple[Tensor, ...], out: Tensor) -> None:
        if isinstance(out, Tensor):
            sizes.append(out[0].numel())
            if isinstance(module, nn.modules.dropout._DropoutNd):
                dropped.append(out[0].numel())

    leaves = [m for m in model.modules() if not list(m.children())]
    handles = [m.register_forward_hook(hook) for m in leaves]
    model.eval()
    with torch.no_grad():
        model(torch.zeros((1, *shape), device=where))
    for h in handles:
        h.remove()
    return (n_params, max((p.numel() for p in params), default=0), sum(sizes), max([math.prod(shape), *sizes]),
            sum(dropped))


def optimizer_slots(cfg: Any) -> int:
    """State tensors the optimizer keeps per parameter (Adam: 2), counted by stepping it on a tiny stack."""
    return _slots(cfg.model_dump_json(exclude={"lr"}))  # an lr grid: one count


@functools.cache
def _slots(cfg_json: str) -> int:
    import json

    from dlbench.config.schema import section

    weight = torch.zeros(1, 4, 4, requires_grad=True)
    bias = torch.zeros(1, 4, requires_grad=True)
    opt = StackedOptimizer([weight, bias], [section("optimizer", **json.loads(cfg_json))])
    for _ in range(2):
        weight.grad, bias.grad = torch.ones_like(weight), torch.ones_like(bias)
        opt.step()
    state = opt.state_dict()["state"]
    assert isinstance(state, dict)
    return max((sum(v[i] is not None for v in state.values()) for i in range(2)), default=0)


def split(stack: list[RunSpec], fitting: int) -> list[list[RunSpec]]:
    """The stack as equal stacks of at most `fitting` runs."""
    n = math.ceil(len(stack) / max(1, fitting))
    size = math.ceil(len(stack) / n)
    return [stack[i:i + size] for i in range(0, len(stack), size)]


@dataclass(frozen=True)
class Planned:
    """A stack as it will train: its runs, its estimate, and the free memory it was planned against."""

    runs: list[RunSpec]
    bytes: int | None  # None: not estimated (the model cannot be built; its runs will say why)
    free: int

    @property
    def fits(self) -> bool:
        return self.bytes is None or self.bytes <= FRACTION_OF_FREE * self.free


def plan(stacks: list[list[RunSpec]], device: torch.device, concurrent: int = 1,
         free: Callable[[torch.device], int] | None = None) -> list[Planned]:
    """Stacks split so that each fits in the free memory (`free`, default free_bytes) `concurrent` stacks
    at a time share."""
    budget = (free or free_bytes)(device) // max(1, concurrent)
    out = []
    for stack in stacks:
        try:
            est = estimate(stack, device)
        except Exception:  # noqa: BLE001 - a model that cannot be built fails its runs, with the reason, later
            out.append(Planned(stack, None, budget))
            continue
        for part in split(stack, est.runs_fitting(budget)):
            out.append(Planned(part, est.total(len(part)), budget))
    return out


def describe(planned: list[Planned], device: torch.device) -> str:
    """The stacks and their estimates, e.g. '4 stacks x 64 runs, about 1.2 GB each; 31.5 GB free on cpu'."""
    if not planned:
        return "no stacks to train"
    groups: dict[tuple[int, int | None], int] = {}
    for p in planned:
        key = (len(p.runs), p.bytes)
        groups[key] = groups.get(key, 0) + 1
    parts = []
    for (runs, size), count in groups.items():
        each = "not estimated" if size is None else f"about {size_text(size)}" + (" each" if count > 1 else "")
        parts.append(f"{count} stack{'s' if count > 1 else ''} × {runs} run{'s' if runs > 1 else ''}, {each}")
    line = "; ".join(parts) + f"; {size_text(planned[0].free)} free on {device.type}"
    if any(not p.fits for p in planned):
        line += " (a single run does not fit: it will run out of memory)"
    return line


def size_text(n: int) -> str:
    """Bytes as MB or GB (decimal units, as the device tools print them)."""
    return f"{n / 1e9:.1f} GB" if n >= 1e9 else f"{n / 1e6:.0f} MB" if n >= 1e6 else f"{n / 1e6:.1f} MB"
