"""--executor slurm: each stack is one task of a SLURM job array, submitted through submitit.

The launcher is a thin adapter, as Hydra's submitit launcher is: submitit pickles the
task (`SlurmTask` around `launchers.task`, the stack in plain data with the experiment's
vocabulary, plugin sources included, that every launcher's workers receive) into the
experiment folder's `.slurm/`, writes the sbatch script and submits the array,
throttled to `--workers N` tasks at a time (`%N`). Resources come from the config's
`slurm:` section; a task's time limit, where the section gives none, from the stack's
measured cost (`time_limit`). Everything a task reads and writes is in the experiment folder,
which must therefore be on a filesystem the nodes share.

A task writes its own runs' folders as they finish, so `dlbench status` sees them at
once and a later `dlbench run` of the same config finds them done. Its stack
checkpoints into `.checkpoints/` every train.checkpoint_seconds and when SLURM signals
it: SIGUSR2 (slurm.signal_seconds before the time limit) checkpoints at the next step
and requeues the task through submitit (at most slurm.retries times); SIGTERM (a
requeue, scancel, a preemption) checkpoints and exits. A task that starts again
(`SLURM_RESTART_COUNT`), or a resubmitted stack, resumes from its checkpoint.

`jobs.json` records the tasks (`dlbench.execution.jobs`). `dlbench run` never submits
again a stack whose task is queued or running; it waits for them and collects, unless
`--detach`ed. A task whose stack raised reports its runs failed with the error; a task
that ended without a result (killed, timed out) leaves its runs unfinished: the next
`dlbench run` submits them again, from their last checkpoint.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from collections.abc import Generator, Iterator

import torch

from dlbench.plan import sweep
from dlbench.plan.stacks import stack_key
from dlbench.catalog import CATALOG
from dlbench.config.schema import section_default
from dlbench.config.vocabulary import Vocabulary
from dlbench.config.yaml_io import read_config
from dlbench.errors import ConfigError, SchedulerError
from dlbench.execution import jobs as jobs_record
from dlbench.execution import launchers
from dlbench.execution.launchers import EXECUTORS, Job, Options, StartStack, jobs, shares, told
from dlbench.results.store import Store
from dlbench.training import checkpoint, engine
from dlbench.training.run import RunResult, Tell, failed, save, total_steps

if TYPE_CHECKING:
    import submitit

FOLDER = ".slurm"  # submitit's pickled tasks, sbatch scripts, logs and results, inside the experiment folder
MARGIN, SLACK_S = 2.0, 300.0  # a measured cost's time limit: cost x MARGIN + SLACK_S (start-up, data, evaluation)
PROBE_S, PROBE_STEPS = 2.0, 20  # the timing probe trains a stack for at most this long / this many steps
# sbatch options that dlbench or submitit set themselves, or that a slurm: key sets: refused in slurm.sbatch
# (the catalog's record says which, for this check and the editors' JSON Schema)
OWN_OPTIONS = set(CATALOG["executor"].record("slurm").facts["sbatch_own"])
_OPTION = re.compile(CATALOG["executor"].record("slurm").facts["sbatch_option"])


def check_available() -> None:
    """--executor slurm needs submitit and SLURM's sbatch: refused in one line before anything is planned."""
    try:
        import submitit  # noqa: F401
    except ImportError:
        raise ConfigError("--executor slurm needs submitit, which is not installed: pip install 'dlbench[slurm]'"
                          ) from None
    if shutil.which("sbatch") is None:
        raise ConfigError("--executor slurm: sbatch is not on the PATH: run dlbench where SLURM's commands are (a "
                          "login node), or use --executor local / processes / ray")


def check_section(section: Any) -> None:
    """slurm.sbatch options must be ones that submitit passes on and nothing else sets."""
    for name, value in section.sbatch.items():
        option = name.replace("_", "-")
        if not _OPTION.match(name):
            raise ConfigError(f"slurm.sbatch: {name!r} is invalid: an sbatch long option's name (letters, digits, "
                              "'-'), e.g. constraint or exclude")
        if option in OWN_OPTIONS:
            raise ConfigError(f"slurm.sbatch.{name}: is invalid: set by dlbench itself (array, output, signal, ...) "
                              "or by a slurm: key (time, partition, cpus, gpus, mem, account, qos); use that key, "
                              "or --workers N for the array's throttle")
        if isinstance(value, str) and ("\n" in value or not value.strip()):
            raise ConfigError(f"slurm.sbatch.{name}: {value!r} is invalid: one non-empty line")


# ------------------------------------------------------------------ the tasks and their time limits


@dataclass(frozen=True)
class Planned:
    """A task to submit: its stack and its time limit (minutes) with how it was found."""

    job: Job
    minutes: int
    why: str


def _stacks(specs: list[sweep.RunSpec], options: Options) -> list[Job]:
    """One job per stack (resumed from its checkpoint where there is one); with --workers N, stacks of
    at most an equal share, so that N tasks are busy."""
    return launchers.detached(shares(specs, options.workers, options) if options.workers else jobs(specs, options))


def plan(specs: list[sweep.RunSpec], options: Options, folder: Path) -> list[Planned]:
    jobs_ = _stacks(specs, options)
    section = specs[0].config.slurm if specs else None
    given = section.time if section is not None else None
    if given is not None:
        return [Planned(j, given, "slurm.time") for j in jobs_]
    measured, probed = _measured(folder, options.vocabulary), dict[tuple[str, int], tuple[float, str]]()
    return [Planned(j, *time_limit(j.stack, measured, probed)) for j in jobs_]


def _measured(folder: Path, vocabulary: Vocabulary) -> dict[str, float]:
    """Seconds per step of the finished runs in the folder, by stack settings (the slowest)."""
    out: dict[str, float] = {}
    for summary in Store(folder).summaries():
        if summary.get("status") != "ok" or not summary.get("steps") or not summary.get("wall_time"):
            continue
        config = folder / "runs" / summary["run_id"] / "config.yaml"
        try:
            resolved = vocabulary.validate(read_config(config))
            spec = sweep.RunSpec(summary["run_id"], summary["seed"], resolved, plugins=vocabulary.provenance(resolved))
        except Exception:  # noqa: BLE001 - an unreadable run only means no measurement from it
            continue
        key = stack_key(spec)
        out[key] = max(out.get(key, 0.0), summary["wall_time"] / summary["steps"])
    return out


def time_limit(stack: list[sweep.RunSpec], measured: dict[str, float],
               probed: dict[tuple[str, int], tuple[float, str]]) -> tuple[int, str]:
    """(minutes, how): the stack's steps x seconds per step (earlier runs', else a probe of a stack of its
    settings and size, once: `probed`) x MARGIN + SLACK_S."""
    cfg = stack[0].config
    steps = total_steps(cfg)
    key = stack_key(stack[0])
    if key in measured:
        per_step, source = measured[key], "earlier runs"
    else:
        if (key, len(stack)) not in probed:
            try:
                probed[key, len(stack)] = probe(stack), "a probe"
            except Exception as e:  # noqa: BLE001 - the task meets the same error and reports its runs failed
                probed[key, len(stack)] = 0.0, f"the probe raised {type(e).__name__}"
        per_step, source = probed[key, len(stack)]
    seconds = steps * per_step
    minutes = max(1, math.ceil((seconds * MARGIN + SLACK_S) / 60))
    return minutes, f"{steps:,} steps x {per_step * 1000:.3g} ms ({source}) x {MARGIN:g} + {SLACK_S / 60:g} min"


class _Enough(Exception):
    """The probe has timed enough steps."""


def probe(stack: list[sweep.RunSpec]) -> float:
    """Seconds per step of the stack on this machine's CPU, evaluations included: a few steps timed."""
    device = torch.device("cpu")
    stack_ = engine.Stack(stack, device)
    times: list[float] = []
    start = time.perf_counter()

    def after_step(s: engine.Stack) -> None:
        times.append(time.perf_counter())
        if len(times) >= PROBE_STEPS or times[-1] - start >= PROBE_S:
            raise _Enough

    try:
        for _ in stack_.run(None, after_step):
            pass
    except _Enough:
        pass
    if not times:
        return 0.0
    per_step = (times[-1] - times[0]) / (len(times) - 1) if len(times) > 1 else times[0] - start
    first_eval = max(0.0, times[0] - start - per_step)  # the evaluation at step 0
    evals_per_step = 1 / max(1, stack_.eval_interval)
    return per_step + first_eval * evals_per_step


def describe(planned: list[Planned]) -> str:
    """What --dry-run prints for --executor slurm: each task, its runs and its time limit."""
    lines = [f"{len(planned)} SLURM array task{'s' * (len(planned) != 1)} (one per stack):"]
    for i, p in enumerate(planned):
        resumed = " (resumes from its checkpoint)" if p.job.saves and p.job.saves.exists() else ""
        lines.append(f"  task {i}: {len(p.job.stack)} runs{resumed}, time limit {p.minutes} min ({p.why})")
    return "\n".join(lines)


# ------------------------------------------------------------------ the task, on a node


@dataclass(frozen=True)
class Payload:
    """One array task's work: its stack as every worker receives it (`launchers.task`; the device is
    train.device, resolved on the node), the experiment folder its runs go to, the restarts allowed."""

    work: launchers.Task
    folder: str
    retries: int  # slurm.retries: a task started again more often fails its runs


class SlurmTask:
    """What each array task runs: its stack (`launchers.job_of`, the worker side every launcher shares),
    resumed from its checkpoint where there is one, its runs' folders written as they finish.
    `checkpoint` is submitit's hook: the same task again, which resumes from the stack's checkpoint."""

    def __call__(self, payload: Payload) -> list[RunResult]:
        work = replace(payload.work, folder=payload.folder)
        restarts = int(os.environ.get("SLURM_RESTART_COUNT", "0"))
        if restarts > payload.retries:
            job, store = launchers.job_of(work), Store(Path(payload.folder))
            done = store.finished()  # runs this task finished before it was requeued
            error = RuntimeError(f"the SLURM task was requeued {restarts} times, more than slurm.retries "
                                 f"({payload.retries}); its checkpoint is kept: --rerun failed resumes it")
            results = [failed(s, error) for s in job.stack if s.run_id not in done and
                       (job.wanted is None or s.run_id in job.wanted)]
            for result in results:
                save(store, result)
            return [replace(r, stored=True) for r in results]
        with _signals() as caught:  # from here on, a signal checkpoints the stack (at its first step, at the latest)
            runs = len(work.wanted) if work.wanted is not None else len(work.runs)
            print(f"training {runs} runs (SLURM restart {restarts})", flush=True)
            try:  # resumes from the stack's checkpoint where there is one, writes each run's folder
                return launchers.run_task(work, caught.interrupt, log=True)
            except KeyboardInterrupt:  # signalled: the stack is checkpointed
                caught.after_checkpoint()
                raise

    def checkpoint(self, payload: Payload) -> Any:
        import submitit

        return submitit.helpers.DelayedSubmission(self, payload)


class _Caught:
    """The signal a task got: SIGUSR2 (its time limit is near: requeue through submitit) or SIGTERM (exit)."""

    def __init__(self) -> None:
        self.interrupt = checkpoint.Interrupt()
        self.signum: int | None = None
        self.submitit_handler: Any = None

    def handle(self, signum: int, frame: Any) -> None:
        self.signum = signum
        self.interrupt.requested = True  # the engine checkpoints at the next step, then raises KeyboardInterrupt

    def after_checkpoint(self) -> None:
        print(f"stopped by signal {self.signum}: the stack is checkpointed; it resumes when the task starts again",
              flush=True)
        if self.signum == signal.SIGUSR2 and callable(self.submitit_handler):
            self.submitit_handler(signal.SIGUSR2, None)  # checkpoint() -> requeue -> exit, or the retries are spent
        raise SystemExit(128 + (self.signum or 0))  # no result is written: the task did not finish


@contextmanager
def _signals() -> Iterator[_Caught]:
    caught = _Caught()
    caught.submitit_handler = signal.getsignal(signal.SIGUSR2)
    previous = {s: signal.signal(s, caught.handle) for s in (signal.SIGUSR2, signal.SIGTERM)}
    try:
        yield caught
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


# ------------------------------------------------------------------ the launcher, in the driver


def _executor(folder: Path, section: Any, workers: int | None, minutes: int) -> submitit.SlurmExecutor:
    import submitit

    executor = submitit.SlurmExecutor(folder=folder / FOLDER, max_num_timeout=section.retries,
                                      python=section.python)
    given = {"partition": section.partition, "mem": section.mem, "account": section.account, "qos": section.qos}
    executor.update_parameters(
        time=minutes, cpus_per_task=section.cpus, signal_delay_s=section.signal_seconds,
        job_name=f"dlbench-{folder.name}", setup=list(section.setup), array_parallelism=workers or 256,
        **({"gpus_per_node": section.gpus} if section.gpus else {}), **{k: v for k, v in given.items() if v},
        additional_parameters={k.replace("_", "-"): v for k, v in section.sbatch.items()})
    return executor


def section_of(specs: list[sweep.RunSpec]) -> Any:
    """The sweep's slurm: section (an execution setting: the same in every run), at its defaults if not given."""
    return specs[0].config.slurm or section_default("slurm")


@EXECUTORS.register("slurm")
def launch(specs: list[sweep.RunSpec], device: torch.device, on_start: StartStack | None = None,
           options: Options | None = None) -> Generator[RunResult]:
    """stacks as the tasks of a SLURM job array through submitit: the stacks no live task holds are
    submitted; unless detached, waits and yields every result"""
    if not specs or options is None:
        return
    assert options.checkpoints is not None, "the slurm launcher needs the experiment folder"
    folder = options.checkpoints.parent.resolve()
    section = section_of(specs)
    check_section(section)
    wanted = {s.run_id for s in specs}
    live = jobs_record.live(r for r in jobs_record.read_jobs(folder)
                            if r.launcher == "slurm" and wanted & set(r.run_ids))
    held = {run for r in live for run in r.run_ids}
    new = submit(folder, [s for s in specs if s.run_id not in held], section, options)
    if options.detach:
        return
    yield from collect(folder, {**{r.task_id: r for r in live}, **{r.task_id: r for r in new}}, specs, device,
                       options.tell)


def submit(folder: Path, specs: list[sweep.RunSpec], section: Any, options: Options) -> list[jobs_record.JobRecord]:
    """Submit the stacks of `specs` as one job array; record and return its tasks."""
    if not specs:
        return []
    planned = plan(specs, options, folder)
    executor = _executor(folder, section, options.workers, max(p.minutes for p in planned))
    device = specs[0].config.train.device  # auto / cpu / cuda: resolved on the node
    from submitit.core.utils import FailedJobError

    printed = io.StringIO()  # submitit prints a refusing sbatch's stderr itself: said once, below, instead
    try:
        with contextlib.redirect_stderr(printed):
            submitted = executor.map_array(SlurmTask(), [Payload(launchers.task(p.job, device, section.cpus),
                                                                 str(folder), section.retries) for p in planned])
    except FailedJobError as e:  # sbatch said no: its last line says why
        said = [line.strip() for line in str(e).splitlines() if line.strip()] or [repr(e)]
        tasks = f"{len(planned)} task{'s' * (len(planned) != 1)}"
        raise SchedulerError(f"--executor slurm: sbatch refused the array of {tasks}: {said[-1]}; nothing was "
                             "submitted") from None
    sys.stderr.write(printed.getvalue())
    now = datetime.now(UTC).isoformat(timespec="seconds")
    records = []
    for p, job in zip(planned, submitted):
        array, _, index = job.job_id.partition("_")
        records.append(jobs_record.JobRecord(array, int(index) if index else None,
                                             p.job.saves.stem if p.job.saves else "",
                                             tuple(s.run_id for s in p.job.stack
                                                   if p.job.wanted is None or s.run_id in p.job.wanted),
                                             now, "slurm"))
    jobs_record.add_jobs(folder, records)
    longest = max(p.minutes for p in planned)
    for p, record in zip(planned, records):  # an array has one limit: lower it for the tasks that need less
        if p.minutes < longest:
            subprocess.run(["scontrol", "update", f"JobId={record.task_id}", f"TimeLimit={p.minutes}"],
                           capture_output=True, timeout=60)
    return records


def collect(folder: Path, pending: dict[str, jobs_record.JobRecord], specs: list[sweep.RunSpec],
            device: torch.device, tell: Tell) -> Generator[RunResult]:
    """Wait for the tasks; yield their runs' results as each task ends (written by the task already), and
    tell what the task told."""
    import submitit

    by_id = {s.run_id: s for s in specs}

    def ended(record: jobs_record.JobRecord) -> list[RunResult] | None:
        paths = submitit.core.utils.JobPaths(folder / FOLDER, job_id=record.task_id, task_id=0)
        if not paths.result_pickle.exists():
            return None
        outcome, value = submitit.core.utils.pickle_load(paths.result_pickle)
        if outcome == "success":
            return told(list(value), tell)
        error = RuntimeError(f"SLURM task {record.task_id} failed: {str(value).strip().splitlines()[-1]}")
        finished = Store(folder).finished()
        return [replace(result, summary={**result.summary, "traceback": str(value)})
                for result in (failed(by_id[run], error, device) for run in record.run_ids
                               if run in by_id and run not in finished)]

    def lost(record: jobs_record.JobRecord, state: jobs_record.SchedulerState) -> str:
        return (f"SLURM task {record.task_id} ended {state.state} without finishing its runs (log: "
                f"{folder / FOLDER / f'{record.task_id}_0_log.err'}); run the same sweep again to submit them "
                "again from their last checkpoint (scancel stops the others)")

    yield from jobs_record.wait(pending, ended, lost, "SLURM tasks", tell)
