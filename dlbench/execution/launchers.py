"""Launchers: one interface, `launch(specs, device, on_start, options) -> iterator of RunResult`.

Every launcher ships stacks (runs that can train together, `plan.stacks`) to the
same engine; they differ only in where a stack trains:

- local: the stacks one after another in this process (the default).
- serial: stacks of one, in this process.
- processes: a pool of worker processes; stacks are split so that every worker is busy.
- ray: stacks as Ray tasks (CPU / GPU requests) on a local or remote Ray cluster.
- slurm: stacks as the tasks of a SLURM job array, through submitit (`dlbench.execution.slurm`).

The processes and Ray launchers (and SLURM's, `execution.slurm`) hand a worker a `Task`:
one stack in plain data with the experiment's vocabulary (its plugins' records and
sources) and the checkpoint path; `run_task` is the whole worker side.

Results are yielded as runs finish, so the caller can store each one at once (that is
what makes an interrupted sweep resumable). A stack that raises is retried as stacks
of one, so a crash fails only the run that causes it; a lost worker or node fails only
the runs it held. The same stack gives bit-identical numbers on every launcher (CPU).

What a launcher has to tell the user (a stack retrained as stacks of one or split for memory,
a checkpoint set aside) goes to `Options.tell`, once, in one line: `dlbench run` says it on the
console its progress uses. A worker returns what it told with its results (`RunResult.notes`),
and the launcher that collects them tells it then.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import os
import sys
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
import dataclasses
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol
from collections.abc import Callable, Generator, Iterable

import torch

from dlbench.catalog import CATALOG, Kind
from dlbench.config.vocabulary import Vocabulary
from dlbench.errors import ConfigError
from dlbench.execution import ray_jobs
from dlbench.results import live
from dlbench.results.store import Store
from dlbench.plan.stacks import MAX_STACK, parts, stacks
from dlbench.plan.pruning import Pruning
from dlbench.plan.sweep import RunSpec
from dlbench.training import checkpoint, engine, memory
from dlbench.training.run import Progress, RunResult, Tell, failed, resolve_device, save, total_steps

StartStack = Callable[[list[RunSpec]], Progress | None]  # called when a stack starts; returns its step callback


def _stderr(text: str) -> None:
    print(text, file=sys.stderr)


@dataclass(frozen=True)
class Options:
    workers: int | None = None  # processes / ray: stacks at a time (default: this machine's / the cluster's CPUs)
    address: str | None = None  # ray: cluster address (default: start a local Ray instance)
    checkpoints: Path | None = None  # folder of stack checkpoints (results/<name>/.checkpoints); None: none
    detach: bool = False  # slurm, ray with an address: submit the stacks and return (a later run collects)
    progress: Path | None = None  # results/<name>, whose .progress/ shows the runs in training; None: none
    vocabulary: Vocabulary = Vocabulary()  # the experiment's: its checkpoints are read, its workers load it
    tell: Tell = _stderr  # what the launch has to tell the user, one line each (`dlbench run`: its console)


class Launcher(Protocol):
    def __call__(self, specs: list[RunSpec], device: torch.device, on_start: StartStack | None = None,
                 options: Options = Options()) -> Generator[RunResult]: ...


EXECUTORS: Kind[Launcher] = CATALOG["executor"]
DRAIN_S = 0.5  # ray on a cluster: how often the driver writes the progress its tasks sent (one queue call)


def resolve(name: str, options: Options) -> Launcher:
    """The launcher for --executor NAME; `auto` is local."""
    name = "local" if name == "auto" else name
    if name not in EXECUTORS:
        raise ConfigError(f"--executor: {name!r} is invalid; allowed: auto, {', '.join(EXECUTORS.names())}")
    if options.address is not None and name != "ray":
        raise ConfigError(f"--address: {options.address!r} is invalid with --executor {name}; it is for ray")
    if options.workers is not None and name not in ("processes", "ray", "slurm"):
        raise ConfigError(f"--workers: {options.workers} is invalid with --executor {name}; "
                          "it is for processes, ray and slurm")
    if options.detach and name not in ("slurm", "ray"):
        raise ConfigError(f"--detach is invalid with --executor {name}: only --executor slurm, and ray with --address "
                          "HOST:PORT, submit and return (a later `dlbench run` of the same config collects)")
    if options.detach and name == "ray" and options.address in (None, "local"):
        raise ConfigError("--detach with --executor ray needs --address HOST:PORT of a running Ray cluster (a local "
                          "Ray instance ends with this process)")
    return EXECUTORS[name].builder


@dataclass(frozen=True)
class Job:
    """A stack to train: its runs, where it checkpoints, and the state it resumes from (if any).
    A resumed stack holds runs that finished after its checkpoint; only the runs in `wanted` are yielded."""

    stack: list[RunSpec]
    saves: Path | None = None
    resume: dict[str, Any] | None = None
    wanted: frozenset[str] | None = None  # None: every run of the stack
    # results/<name>: its runs' progress files go to .progress/ (results/live.py); or where their records are
    # sent (a Ray task on a cluster that does not see the folder: to the driver, which writes them)
    progress: Path | live.Sink | None = None
    vocabulary: Vocabulary = Vocabulary()  # the experiment's (a checkpoint read back after a split needs it)
    tell: Tell = _stderr  # Options.tell; a worker's collects what it tells into its results' notes


def jobs(specs: list[RunSpec], options: Options, max_stack: int = MAX_STACK, device: torch.device | None = None,
         concurrent: int = 1) -> list[Job]:
    """Unfinished stacks resumed from their checkpoints first, then the other runs in new stacks, split
    where they would not fit in the memory `device` has free (`concurrent` stacks at a time)."""
    out, wanted = [], {s.run_id for s in specs}
    for path, held, state in checkpoint.resumable(options.checkpoints, specs, options.vocabulary, options.tell):
        out.append(Job(held, path, state, frozenset(wanted & {s.run_id for s in held}), options.progress,
                       options.vocabulary, options.tell))
        wanted -= {s.run_id for s in held}
    for stack in new_stacks([s for s in specs if s.run_id in wanted], max_stack, device, concurrent):
        saves = checkpoint.path_for(options.checkpoints, stack) if options.checkpoints else None
        out.append(Job(stack, saves, progress=options.progress, vocabulary=options.vocabulary, tell=options.tell))
    return out


def new_stacks(specs: list[RunSpec], max_stack: int, device: torch.device | None,
               concurrent: int = 1) -> list[list[RunSpec]]:
    """plan.stacks, split further to fit in memory (device None: not)."""
    grouped = stacks(specs, max_stack)
    return grouped if device is None else [p.runs for p in memory.plan(grouped, device, concurrent)]


def planned(executor: str, specs: list[RunSpec], device: torch.device, options: Options) -> list[memory.Planned]:
    """The new stacks --executor EXECUTOR would train, with their memory estimates (for --dry-run): the
    stacks its launcher forms (`jobs`, `shares`), split where the memory would not hold them."""
    name = "local" if executor == "auto" else executor
    if name == "serial":
        return memory.plan(stacks(specs, 1), device)
    workers = None if name == "local" or (name == "slurm" and not options.workers) else \
        options.workers or os.cpu_count() or 1
    concurrent = workers if name == "processes" or (name == "ray" and device.type != "cuda") else 1
    return memory.plan([stack for part, size in parts(specs, workers) for stack in stacks(part, size)], device,
                       concurrent or 1)


def _out_of_memory(e: BaseException) -> bool:
    return isinstance(e, torch.OutOfMemoryError) or (isinstance(e, RuntimeError) and "can't allocate memory" in str(e))


def train_stack(job: Job, device: torch.device, on_start: StartStack | None = None,
                interrupt: checkpoint.Interrupt | None = None) -> Generator[RunResult]:
    """One stack through the engine; if it raises, its unfinished runs again as stacks of one."""
    finished: set[str] = set()
    stack = job.stack
    seconds = stack[0].config.train.checkpoint_seconds
    saves = checkpoint.Checkpoint(job.saves, seconds) if job.saves else None
    writer = live.Writer(job.progress) if job.progress else None
    try:
        for result in engine.train(stack, device, on_start(stack) if on_start else None, saves, job.resume,
                                   interrupt, writer):
            finished.add(result.spec.run_id)
            if job.wanted is None or result.spec.run_id in job.wanted:
                yield result
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as e:  # noqa: BLE001 - isolation: a crashing run is recorded, not fatal
        unfinished = [s for s in stack if s.run_id not in finished and (job.wanted is None or s.run_id in job.wanted)]
        if _out_of_memory(e) and len(stack) > 1:
            yield from _split(job, saves, unfinished, device, on_start, interrupt, e)
            return
        if saves:
            saves.remove()
        if len(stack) == 1:
            for s in unfinished:
                if writer:
                    writer.finished(s.run_id, "failed")
                yield failed(s, e, device)
            return
        if not isinstance(e, engine.Unstackable) and unfinished:
            job.tell(f"a stack of {len(stack)} runs stopped ({type(e).__name__}: {e}); "
                     f"training its {len(unfinished)} unfinished runs one by one")
        for spec in unfinished:
            saves_one = checkpoint.path_for(job.saves.parent, [spec]) if job.saves else None
            yield from train_stack(Job([spec], saves_one, progress=job.progress, vocabulary=job.vocabulary,
                                       tell=job.tell), device, on_start, interrupt)


def _split(job: Job, saves: checkpoint.Checkpoint | None, unfinished: list[RunSpec], device: torch.device,
           on_start: StartStack | None, interrupt: checkpoint.Interrupt | None, error: BaseException
           ) -> Generator[RunResult]:
    """A stack that ran out of memory, as two equal stacks resumed from its last state (its latest
    checkpoint, else the state it resumed from, else the start)."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
    state, held = job.resume, job.stack
    if saves is not None and saves.path.exists():
        loaded = checkpoint.read(saves.path, job.vocabulary, job.tell)
        if loaded is not None:
            held, state = loaded
        saves.remove()
    if state is None:
        held = job.stack
    wanted = {s.run_id for s in unfinished}
    halves = memory.split(held, math.ceil(len(held) / 2))
    step = state["step"] if state is not None else 0
    job.tell(f"a stack of {len(held)} runs ran out of memory ({type(error).__name__}); resuming it as "
             f"{len(halves)} stacks of {len(halves[0])} runs from step {step}")
    for half in halves:
        keep = frozenset(s.run_id for s in half) & wanted
        if keep:
            where = checkpoint.path_for(job.saves.parent, half) if job.saves else None
            yield from train_stack(Job(half, where, state, keep, job.progress, job.vocabulary, job.tell), device,
                                   on_start, interrupt)


def _in_this_process(jobs_: list[Job], device: torch.device, on_start: StartStack | None) -> Generator[RunResult]:
    with checkpoint.deferred_interrupt() as interrupt:  # Ctrl-C: the stack in training checkpoints first
        for job in jobs_:
            yield from train_stack(job, device, on_start, interrupt)


@EXECUTORS.register("local")
def local(specs: list[RunSpec], device: torch.device, on_start: StartStack | None = None,
          options: Options = Options()) -> Generator[RunResult]:
    """stacks of compatible runs (differing only in values), one stack after another in this process"""
    yield from _in_this_process(jobs(specs, options, device=device), device, on_start)


@EXECUTORS.register("serial")
def serial(specs: list[RunSpec], device: torch.device, on_start: StartStack | None = None,
           options: Options = Options()) -> Generator[RunResult]:
    """stacks of one run, one after another in this process"""
    yield from _in_this_process(jobs(specs, options, max_stack=1, device=device), device, on_start)


def shares(specs: list[RunSpec], slots: int, options: Options = Options(), device: torch.device | None = None,
           concurrent: int = 1) -> list[Job]:
    """Jobs for `slots` workers: the stacks of plan.stacks.parts (an equal share each, pruning runs whole)."""
    return [job for part, size in parts(specs, slots) for job in jobs(part, options, size, device, concurrent)]


def detached(found: list[Job]) -> list[Job]:
    """Jobs for workers that start later and elsewhere (a SLURM array task, a Ray job): absolute paths, and
    no state shipped: the worker reads the stack's checkpoint when it starts (after a requeue too)."""
    return [replace(j, resume=None, saves=j.saves.resolve() if j.saves else None,
                    progress=j.progress.resolve() if isinstance(j.progress, Path) else j.progress) for j in found]


@dataclass(frozen=True)
class Task:
    """One stack for a worker (a process, a Ray task, a SLURM array task), in plain data: the runs as
    `checkpoint.describe_runs` writes them, the experiment's vocabulary (its plugins' records, source
    text included), the checkpoint file and the state to resume from. It unpickles in a fresh
    interpreter that has loaded no plugin: `run_task` loads them before it reads the configs."""

    runs: list[dict[str, Any]]
    vocabulary: Vocabulary
    device: str = "cpu"
    threads: int = 1  # torch threads of the worker
    saves: str | None = None  # the stack's checkpoint file (on a filesystem the worker shares); None: none
    resume: dict[str, Any] | None = None
    wanted: tuple[str, ...] | None = None  # the runs to report (a resumed stack holds finished ones); None: all
    # the experiment folder, whose .progress/ shows the runs in training (or where its records are sent); None: none
    progress: str | live.Sink | None = None
    # the experiment folder the worker writes its runs' folders into as they finish (a filesystem it
    # shares with the caller, which then stores nothing); None: the caller stores the results
    folder: str | None = None


def task(job: Job, device: torch.device | str, threads: int = 1, folder: Path | None = None) -> Task:
    """A job as the task a worker receives (`folder`: where it stores its runs itself)."""
    pruned = [s.pruning for s in job.stack]
    runs = [{**r, "pruning": dataclasses.asdict(p) if p else None}
            for r, p in zip(checkpoint.describe_runs(job.stack), pruned)]
    return Task(runs, job.vocabulary, str(device), threads, str(job.saves) if job.saves else None, job.resume,
                tuple(sorted(job.wanted)) if job.wanted is not None else None,
                str(job.progress) if isinstance(job.progress, Path) else job.progress, str(folder) if folder else None)


def run_task(work: Task, interrupt: checkpoint.Interrupt | None = None, log: bool = False) -> list[RunResult]:
    """The worker side of every launcher that trains elsewhere: load the experiment's plugins, read the
    stack's configs with its vocabulary, train the stack with `threads` torch threads, write each run's
    folder as it finishes (where `folder` is given: a killed caller loses none), return its results with
    what it told (`log`: printed too, into a detached worker's log). A task sent without a state to
    resume (a SLURM array task, a Ray job: they may start again later) reads its stack's checkpoint
    here, so that it resumes from the latest one, and says so in its log."""
    store = Store(Path(work.folder)) if work.folder else None
    notes: list[str] = []

    def tell(text: str) -> None:
        if log:
            print(text, flush=True)
        notes.append(text)

    job = replace(job_of(work), tell=tell)
    if job.resume is None and job.saves is not None and job.saves.exists():
        loaded = checkpoint.read(job.saves, job.vocabulary, job.tell)
        if loaded is not None:
            held, state = loaded  # runs that finished before the checkpoint are not in it: not trained again
            print(resuming(job.saves, held, state, job.wanted or {s.run_id for s in job.stack}), flush=True)
            job = replace(job, stack=held, resume=state)
    results: list[RunResult] = []
    for result in train_stack(job, resolve_device(work.device), interrupt=interrupt):
        if store is not None:
            save(store, result)
            result = replace(result, stored=True)
        results.append(replace(result, notes=tuple(notes)))
        notes.clear()
    return results


def told(results: list[RunResult], tell: Tell) -> list[RunResult]:
    """A worker's results, what it told while training them said now (`RunResult.notes`)."""
    for result in results:
        for note in result.notes:
            tell(note)
    return results


def job_of(work: Task) -> Job:
    """A task back as the job it was made from, in a worker: the experiment's plugins loaded first (the
    stack's configs name their components), then the configs read with its vocabulary; `threads` set."""
    vocabulary = work.vocabulary.install()
    stack = [dataclasses.replace(spec, pruning=Pruning(**r["pruning"]) if r.get("pruning") else None)
             for spec, r in zip(checkpoint.runs(work.runs, vocabulary), work.runs)]
    torch.set_num_threads(work.threads)
    return Job(stack, Path(work.saves) if work.saves else None, work.resume,
               frozenset(work.wanted) if work.wanted is not None else None,
               Path(work.progress) if isinstance(work.progress, str) else work.progress, vocabulary)


def _wanted(job: Job) -> list[RunSpec]:
    return [s for s in job.stack if job.wanted is None or s.run_id in job.wanted]


@EXECUTORS.register("processes")
def processes(specs: list[RunSpec], device: torch.device, on_start: StartStack | None = None,
              options: Options = Options()) -> Generator[RunResult]:
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
            pool.submit(run_task, task(job, device, threads, options.progress)): _wanted(job)
            for job in shares(specs, workers, options, device, concurrent=workers)}
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                stack = pending.pop(future)
                try:
                    results = future.result()
                except Exception as e:  # noqa: BLE001 - a worker that died (e.g. out of memory) fails its runs
                    results = [failed(spec, e, device) for spec in stack]
                yield from told(results, options.tell)
    finally:  # also on Ctrl-C or when the caller stops early: drop queued stacks, do not wait for them
        pool.shutdown(wait=False, cancel_futures=True)


@EXECUTORS.register("ray")
def ray_launcher(specs: list[RunSpec], device: torch.device, on_start: StartStack | None = None,
                 options: Options = Options()) -> Generator[RunResult]:
    """stacks as Ray tasks (--address HOST:PORT for a cluster, --workers N tasks at a time); with --detach,
    as Ray jobs that outlive this process"""
    try:
        import ray
    except ImportError:
        raise ConfigError("--executor ray needs Ray, which is not installed: pip install 'dlbench[ray]'") from None
    folder = options.progress  # the experiment folder (None: a bare launch, no folder)
    live = ray_jobs.held(folder, specs) if folder is not None else []  # a detached submission's, still running
    rest = [s for s in specs if s.run_id not in {run for r in live for run in r.run_ids}]
    if rest:
        yield from _ray(ray, rest, device, options)
    if live and not options.detach:
        yield from ray_jobs.collect(folder or Path(), live, specs, device, options.tell)


def _ray(ray: Any, specs: list[RunSpec], device: torch.device, options: Options) -> Generator[RunResult]:
    started = not ray.is_initialized()
    if started:  # a local instance unless an address is given; its workers log nothing to our terminal
        extra: dict[str, Any] = {} if options.address else {"include_dashboard": False}
        ray.init(address=options.address, log_to_driver=False, logging_level=logging.WARNING, **extra)
    pending: dict[ray.ObjectRef, list[RunSpec]] = {}
    sink: _RemoteProgress | None = None
    try:
        cpus = int(ray.cluster_resources().get("CPU", 1))
        slots = max(1, min(options.workers or cpus, cpus))
        threads = max(1, cpus // slots)
        gpus = 1 if device.type == "cuda" else 0
        if options.detach:  # jobs, on a cluster that sees the folder: checkpoints, progress, runs written there
            assert options.address is not None and options.progress is not None
            ray_jobs.submit(options.progress, options.address, [
                ray_jobs.Submission(j.saves.stem if j.saves else "", tuple(s.run_id for s in _wanted(j)),
                                    task(j, device, threads, options.progress), threads, gpus)
                for j in detached(shares(specs, slots, options, None, concurrent=1 if gpus else slots))])
            return
        remote = ray.remote(run_task).options(num_cpus=threads, num_gpus=gpus)
        # a remote cluster's nodes do not see this machine's results folder: no checkpoints there, and the
        # runs' progress records come here through a queue, to be written into the folder
        local_options = options if options.address is None else replace(options, checkpoints=None, progress=None)
        sink = _RemoteProgress.start() if options.address is not None and options.progress is not None else None
        for job in shares(specs, slots, local_options, None if options.address else device,
                          concurrent=1 if gpus else slots):
            work = task(job, device, threads, local_options.progress)
            pending[remote.remote(work if sink is None else replace(work, progress=sink))] = _wanted(job)
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1, timeout=None if sink is None else DRAIN_S)
            if sink is not None and options.progress is not None:
                sink.drain(options.progress)  # before the results: a stored run's progress file is gone
            if not done:
                continue
            stack = pending.pop(done[0])
            try:
                results = ray.get(done[0])
            except Exception as e:  # noqa: BLE001 - a lost task (node died) fails its runs, the sweep goes on
                results = [failed(spec, e, device) for spec in stack]
            yield from told(results, options.tell)
    finally:
        for ref in pending:  # left when the caller stopped early or on Ctrl-C
            ray.cancel(ref, force=True)
        if sink is not None:
            sink.stop()
        if started:
            ray.shutdown()


class _RemoteProgress:
    """A remote Ray task's progress writer sends its records to a queue (a Ray actor that needs no CPU);
    the driver drains it and writes them into the folder. Progress is for watching: a record that
    cannot be sent (the driver is gone) is dropped, never a reason for training to fail."""

    def __init__(self, queue: Any) -> None:
        self.queue, self.broken = queue, False

    @classmethod
    def start(cls) -> _RemoteProgress:
        from ray.util.queue import Queue

        return cls(Queue(actor_options={"num_cpus": 0}))

    def __call__(self, record: dict[str, Any]) -> None:
        if self.broken:
            return
        try:
            self.queue.put(record, timeout=10)
        except Exception:  # noqa: BLE001 - see the class: progress is never fatal
            self.broken = True

    def drain(self, root: Path) -> None:
        if self.broken:
            return
        try:
            waiting = self.queue.qsize()
            records = self.queue.get_nowait_batch(waiting) if waiting else []
        except Exception:  # noqa: BLE001 - the queue is gone (its actor died): no more progress, training goes on
            self.broken = True
            return
        for record in records:
            live.put(root, record)

    def stop(self) -> None:
        try:
            self.queue.shutdown()
        except Exception:  # noqa: BLE001 - already gone
            pass


def resuming(path: Path, held: list[RunSpec], state: dict[str, Any], wanted: Iterable[str]) -> str:
    """The one line that says a stack resumes from its checkpoint: which runs (of those to train), from
    which step of how many (the runner prints it before training; a SLURM task into its log)."""
    ids = sorted(set(wanted) & {s.run_id for s in held})
    shown = ", ".join(ids[:6]) + (f" and {len(ids) - 6} more" if len(ids) > 6 else "")
    return (f"resuming {len(ids)} run{'s' * (len(ids) != 1)} from step {state['step']} of "
            f"{total_steps(held[0].config)} (checkpoint {path.name}): {shown}")


def _short(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)  # a searched lr: 0.004114, not 17 digits


def describe(stack: list[RunSpec]) -> str:
    """A stack for a progress line: its run count and the values that vary inside it."""
    if len(stack) == 1:
        spec = stack[0]
        return ", ".join([*(f"{k}={_short(v)}" for k, v in spec.params.items()), f"seed={spec.seed}"])
    varying = []
    for key in dict.fromkeys(k for s in stack for k in s.params):
        values = list(dict.fromkeys(_short(s.params.get(key)) for s in stack))
        if len(values) > 1:
            varying.append(f"{key}={'|'.join(values)}" if len(values) <= 3 else f"{key}: {len(values)} values")
    seeds = len({s.seed for s in stack})
    if seeds > 1:
        varying.append(f"{seeds} seeds")
    return f"stack of {len(stack)} runs" + (f" ({', '.join(varying)})" if varying else "")
