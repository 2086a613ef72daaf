"""Launchers: one interface, `launch(specs, device, on_start, options) -> iterator of RunResult`.

Every launcher ships stacks (runs that can train together, `engine.stacks`) to the
same engine; they differ only in where a stack trains:

- local: the stacks one after another in this process (the default).
- serial: stacks of one, in this process.
- processes: a pool of worker processes; stacks are split so that every worker is busy.
- ray: stacks as Ray tasks (CPU / GPU requests) on a local or remote Ray cluster.

Results are yielded as runs finish, so the caller can store each one at once (that is
what makes an interrupted sweep resumable). A stack that raises is retried as stacks
of one, so a crash fails only the run that causes it; a lost worker or node fails only
the runs it held. The same stack gives bit-identical numbers on every launcher (CPU).
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import os
import warnings
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from typing import Callable, Iterator, Protocol

import torch

from dlbench.components.registry import Registry
from dlbench.config.schema import ConfigError
from dlbench.sweep import RunSpec
from dlbench.training import engine
from dlbench.training.run import Progress, RunResult, failed

StartStack = Callable[[list[RunSpec]], Progress | None]  # called when a stack starts; returns its step callback


@dataclass(frozen=True)
class Options:
    workers: int | None = None  # processes / ray: stacks at a time (default: this machine's / the cluster's CPUs)
    address: str | None = None  # ray: cluster address (default: start a local Ray instance)


class Launcher(Protocol):
    def __call__(self, specs: list[RunSpec], device: torch.device, on_start: StartStack | None = None,
                 options: Options = Options()) -> Iterator[RunResult]: ...


EXECUTORS: Registry[Launcher] = Registry("executor")


def resolve(name: str, options: Options) -> Launcher:
    """The launcher for --executor NAME; `auto` is local."""
    name = "local" if name == "auto" else name
    if name not in EXECUTORS:
        raise ConfigError(f"--executor: {name!r} is invalid; allowed: auto, {', '.join(EXECUTORS.names())}")
    if options.address is not None and name != "ray":
        raise ConfigError(f"--address: {options.address!r} is invalid with --executor {name}; it is for ray")
    if options.workers is not None and name not in ("processes", "ray"):
        raise ConfigError(f"--workers: {options.workers} is invalid with --executor {name}; "
                          "it is for processes and ray")
    return EXECUTORS[name].builder


def train_stack(stack: list[RunSpec], device: torch.device,
                on_start: StartStack | None = None) -> Iterator[RunResult]:
    """One stack through the engine; if it raises, its unfinished runs again as stacks of one."""
    finished: set[str] = set()
    try:
        for result in engine.train(stack, device, on_start(stack) if on_start else None):
            finished.add(result.spec.run_id)
            yield result
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as e:  # noqa: BLE001 - isolation: a crashing run is recorded, not fatal
        if len(stack) == 1:
            yield failed(stack[0], e, device)
            return
        if not isinstance(e, engine.Unstackable):
            warnings.warn(f"stack of {len(stack)} runs stopped ({type(e).__name__}: {e}); "
                          "training its unfinished runs one by one", RuntimeWarning, stacklevel=2)
        for spec in stack:
            if spec.run_id not in finished:
                yield from train_stack([spec], device, on_start)


@EXECUTORS.register("local")
def local(specs: list[RunSpec], device: torch.device, on_start: StartStack | None = None,
          options: Options = Options()) -> Iterator[RunResult]:
    """stacks of compatible runs (differing only in values), one stack after another in this process"""
    for stack in engine.stacks(specs):
        yield from train_stack(stack, device, on_start)


@EXECUTORS.register("serial")
def serial(specs: list[RunSpec], device: torch.device, on_start: StartStack | None = None,
           options: Options = Options()) -> Iterator[RunResult]:
    """stacks of one run, one after another in this process"""
    for spec in specs:
        yield from train_stack([spec], device, on_start)


def shares(specs: list[RunSpec], slots: int) -> list[list[RunSpec]]:
    """Stacks split so that `slots` workers are all busy: no stack larger than an equal share of the runs."""
    return engine.stacks(specs, max_stack=min(engine.MAX_STACK, max(1, math.ceil(len(specs) / slots))))


def _worker(stack: list[RunSpec], device: str, threads: int) -> list[RunResult]:
    """Worker side of processes / ray: one stack with `threads` torch threads."""
    torch.set_num_threads(threads)
    return list(train_stack(stack, torch.device(device)))


@EXECUTORS.register("processes")
def processes(specs: list[RunSpec], device: torch.device, on_start: StartStack | None = None,
              options: Options = Options()) -> Iterator[RunResult]:
    """a pool of worker processes (--workers N, default one per core), each training stacks"""
    if not specs:
        return
    cores = os.cpu_count() or 1
    workers = min(options.workers or cores, len(specs))
    threads = max(1, cores // workers)  # cores split between workers, no oversubscription
    # spawn, not fork: a forked child of a process that has started OpenMP / CUDA threads can hang
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
    try:
        pending: dict[Future[list[RunResult]], list[RunSpec]] = {
            pool.submit(_worker, stack, str(device), threads): stack for stack in shares(specs, workers)}
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                stack = pending.pop(future)
                try:
                    results = future.result()
                except Exception as e:  # noqa: BLE001 - a worker that died (e.g. out of memory) fails its runs
                    results = [failed(spec, e, device) for spec in stack]
                yield from results
    finally:  # also on Ctrl-C or when the caller stops early: drop queued stacks, do not wait for them
        pool.shutdown(wait=False, cancel_futures=True)


@EXECUTORS.register("ray")
def ray_launcher(specs: list[RunSpec], device: torch.device, on_start: StartStack | None = None,
                 options: Options = Options()) -> Iterator[RunResult]:
    """stacks as Ray tasks (--address HOST:PORT for a cluster, --workers N tasks at a time)"""
    try:
        import ray
    except ImportError:
        raise ConfigError("--executor ray needs Ray, which is not installed: pip install 'dlbench[ray]'") from None
    started = not ray.is_initialized()
    if started:  # a local instance unless an address is given; its workers log nothing to our terminal
        extra = {} if options.address else {"include_dashboard": False}
        ray.init(address=options.address, log_to_driver=False, logging_level=logging.WARNING, **extra)
    pending: dict[ray.ObjectRef, list[RunSpec]] = {}
    try:
        cpus = int(ray.cluster_resources().get("CPU", 1))
        slots = max(1, min(options.workers or cpus, cpus))
        threads = max(1, cpus // slots)
        task = ray.remote(_worker).options(num_cpus=threads, num_gpus=1 if device.type == "cuda" else 0)
        pending.update({task.remote(stack, str(device), threads): stack for stack in shares(specs, slots)})
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            stack = pending.pop(done[0])
            try:
                results = ray.get(done[0])
            except Exception as e:  # noqa: BLE001 - a lost task (node died) fails its runs, the sweep goes on
                results = [failed(spec, e, device) for spec in stack]
            yield from results
    finally:
        for ref in pending:  # left when the caller stopped early or on Ctrl-C
            ray.cancel(ref, force=True)
        if started:
            ray.shutdown()


def describe(stack: list[RunSpec]) -> str:
    """A stack for a progress line: its run count and the values that vary inside it."""
    if len(stack) == 1:
        spec = stack[0]
        return ", ".join([*(f"{k}={v}" for k, v in spec.params.items()), f"seed={spec.seed}"])
    varying = []
    for key in dict.fromkeys(k for s in stack for k in s.params):
        values = list(dict.fromkeys(str(s.params.get(key)) for s in stack))
        if len(values) > 1:
            varying.append(f"{key}={'|'.join(values)}" if len(values) <= 3 else f"{key}: {len(values)} values")
    seeds = len({s.seed for s in stack})
    if seeds > 1:
        varying.append(f"{seeds} seeds")
    return f"stack of {len(stack)} runs" + (f" ({', '.join(varying)})" if varying else "")
