"""Executors: one interface, `launch(specs, device, on_start, options) -> iterator of RunResult`.

Results are yielded as runs finish, so the caller can store each one at once
(that is what makes an interrupted sweep resumable). A run that raises is
yielded as `failed` with its error; the sweep goes on.

- serial: one run after another in this process (the reference).
- vectorized: compatible runs trained together as one stacked model
  (dlbench.vectorized); the others, one by one as serial does.
- processes: a pool of worker processes, each training runs as serial does.
- ray: groups of runs as Ray tasks on a local or remote Ray cluster.

serial, processes and ray run the same `train` code and give bit-identical
numbers for the same seeds; vectorized matches them up to float rounding.
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

from dlbench.config.schema import ConfigError
from dlbench.components.registry import Registry
from dlbench.sweep import RunSpec
from dlbench.training.run import Progress, RunResult, failed, train
from dlbench.training.engine import Unvectorizable, groups, train_group

StartRun = Callable[[RunSpec], Progress | None]  # called when a run starts; returns its step callback


@dataclass(frozen=True)
class Options:
    workers: int | None = None  # processes / ray: tasks at a time (default: this machine's / the cluster's CPUs)
    address: str | None = None  # ray: cluster address (default: start a local Ray instance)


class Executor(Protocol):
    def __call__(self, specs: list[RunSpec], device: torch.device, on_start: StartRun | None = None,
                 options: Options = Options()) -> Iterator[RunResult]: ...


EXECUTORS: Registry[Executor] = Registry("executor")


def resolve(name: str, options: Options) -> Executor:
    """The executor for --executor NAME; `auto` is vectorized (which trains runs it cannot group one by one)."""
    name = "vectorized" if name == "auto" else name
    if name not in EXECUTORS:
        raise ConfigError(f"--executor: {name!r} is invalid; allowed: auto, {', '.join(EXECUTORS.names())}")
    if options.address is not None and name != "ray":
        raise ConfigError(f"--address: {options.address!r} is invalid with --executor {name}; it is for ray")
    if options.workers is not None and name not in ("processes", "ray"):
        raise ConfigError(f"--workers: {options.workers} is invalid with --executor {name}; "
                          "it is for processes and ray")
    return EXECUTORS[name].builder


@EXECUTORS.register("serial")
def serial(specs: list[RunSpec], device: torch.device, on_start: StartRun | None = None,
           options: Options = Options()) -> Iterator[RunResult]:
    """one run after another in this process"""
    for spec in specs:
        progress = on_start(spec) if on_start else None
        try:
            yield train(spec, device, progress)
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as e:  # noqa: BLE001 - isolation: a crashing run is recorded, not fatal
            yield failed(spec, e, device)


@EXECUTORS.register("vectorized")
def vectorized(specs: list[RunSpec], device: torch.device, on_start: StartRun | None = None,
               options: Options = Options()) -> Iterator[RunResult]:
    """compatible runs (differing only in values) trained as one stacked model; the rest one by one"""
    for group in groups(specs):
        if len(group) == 1:
            yield from serial(group, device, on_start)
            continue
        finished: set[str] = set()
        try:
            for result in train_group(group, device, on_start(group[0]) if on_start else None):
                finished.add(result.spec.run_id)
                yield result
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as e:  # noqa: BLE001 - the serial path records each run's own outcome
            if not isinstance(e, Unvectorizable):
                warnings.warn(f"vectorized group of {len(group)} runs stopped ({type(e).__name__}: {e}); "
                              "training its unfinished runs one by one", RuntimeWarning, stacklevel=2)
            yield from serial([s for s in group if s.run_id not in finished], device, on_start)


def _train_chunk(specs: list[RunSpec], device: str, threads: int) -> list[RunResult]:
    """Worker side of processes / ray: train runs one by one with `threads` torch threads."""
    torch.set_num_threads(threads)
    return list(serial(specs, torch.device(device)))


@EXECUTORS.register("processes")
def processes(specs: list[RunSpec], device: torch.device, on_start: StartRun | None = None,
              options: Options = Options()) -> Iterator[RunResult]:
    """a pool of worker processes (--workers N, default one per core), each training runs one by one"""
    if not specs:
        return
    cores = os.cpu_count() or 1
    workers = min(options.workers or cores, len(specs))
    threads = max(1, cores // workers)  # cores split between workers, no oversubscription
    # spawn, not fork: a forked child of a process that has started OpenMP / CUDA threads can hang
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
    try:
        pending: dict[Future[list[RunResult]], RunSpec] = {
            pool.submit(_train_chunk, [spec], str(device), threads): spec for spec in specs}
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                spec = pending.pop(future)
                try:
                    results = future.result()
                except Exception as e:  # noqa: BLE001 - a worker that died (e.g. out of memory) fails its run
                    results = [failed(spec, e, device)]
                yield from results
    finally:  # also on Ctrl-C or when the caller stops early: drop queued runs, do not wait for them
        pool.shutdown(wait=False, cancel_futures=True)


@EXECUTORS.register("ray")
def ray_executor(specs: list[RunSpec], device: torch.device, on_start: StartRun | None = None,
                 options: Options = Options()) -> Iterator[RunResult]:
    """Ray tasks (--address HOST:PORT for a cluster), each a group of runs trained one by one"""
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
        # ~4 tasks per slot: small enough to balance the load, big enough to amortize task overhead
        chunks = groups(specs, max_group=max(1, math.ceil(len(specs) / (4 * slots))))
        threads = max(1, cpus // slots)
        task = ray.remote(_train_chunk).options(num_cpus=threads, num_gpus=1 if device.type == "cuda" else 0)
        pending.update({task.remote(chunk, str(device), threads): chunk for chunk in chunks})
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            chunk = pending.pop(done[0])
            try:
                results = ray.get(done[0])
            except Exception as e:  # noqa: BLE001 - a lost task (node died) fails its runs, the sweep goes on
                results = [failed(spec, e, device) for spec in chunk]
            yield from results
    finally:
        for ref in pending:  # left when the caller stopped early or on Ctrl-C
            ray.cancel(ref, force=True)
        if started:
            ray.shutdown()
