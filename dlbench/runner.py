"""One sweep, for `dlbench run` and `dlbench.run` alike: plan, select, launch, store, refresh, outcome.

- `plan`: read, override, validate and expand a config (a file or a mapping), pick the
  launcher; a `--set` the sweep would overwrite is refused, and so is a sweep of more than
  `--max-runs` runs without `--yes` (counted before expanding, so a 10 keys x 10 values
  grid is refused at once); a Ray `--address` must answer as a Ray cluster before Ray starts.
- `dry_run`: what `--dry-run` prints: finished runs, parameters x steps of each run (model
  on the meta device; steps from the data `run` would load) and the bottom line.
- `execute`: train the runs (through the launcher and the caller's progress display) or
  compute a task that trains nothing, store each result as it arrives, refresh the tables,
  draw the figures; the `Outcome` says what happened (the CLI's exit code, the API's
  exception or warning).
- `prepare_data`: every data section loaded once, checked against the training settings.
- `select`: which runs to train, given the finished ones and `--rerun`.
- `experiment_record` / `view`: what all runs into one folder share, and what its
  report and figures read.
"""
from __future__ import annotations

import csv
import dataclasses
import json
import math
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from collections.abc import Callable, Mapping

import torch

from dlbench import plugins, progress, search, tasks
from dlbench.plan import sweep
from dlbench.components import models
from dlbench.components import data
from dlbench.config import vocabulary as vocab
from dlbench.config.keys import pop_path
from dlbench.config.schema import Config
from dlbench.config.vocabulary import Vocabulary
from dlbench.catalog.metrics import METRICS
from dlbench.catalog.status import EVALUATED, PRUNED, STATUSES
from dlbench.errors import ConfigError
from dlbench.execution import launchers, slurm
from dlbench.execution.jobs import read_jobs, refuse_live
from dlbench.execution.launchers import Launcher, Options, planned, resolve
from dlbench.results import live
from dlbench.results.store import Store, atomic_write
from dlbench.training import checkpoint, memory
from dlbench.training.run import check_precision, resolve_device, save, schedule

if TYPE_CHECKING:
    from rich.table import Table

    from dlbench.results.report import Report

FINISHED = STATUSES
RUN_IDS = 2  # the version of run ids; see experiment_record


def check_size(n_runs: int, max_runs: int, yes: bool, name: str) -> None:
    if n_runs > max_runs and not yes:
        raise ConfigError(f"experiment {name!r} has {n_runs:,} runs, more than --max-runs {max_runs:,}; "
                          "pass --yes to go ahead (or raise --max-runs)")


def planned_runs(cfg: Config) -> int:
    """grid points x cases x (random trials x rounds x seeds + confirm runs), without expanding
    (grids that sweep seeds may differ)."""
    points = math.prod(len(values) for values in cfg.grid.values()) * max(1, len(cfg.cases))
    if cfg.random is None:
        return points * len(cfg.train.seeds)
    confirm = 0 if cfg.confirm is None else (cfg.confirm.top + cfg.confirm.defaults) * len(cfg.confirm.seeds)
    return points * (cfg.random.trials * cfg.random.rounds * len(cfg.train.seeds) + confirm)


def load(config: Path | Mapping[str, Any], sets: list[str], max_runs: int, yes: bool = False,
         plugins: list[str] | None = None) -> tuple[Config, list[sweep.RunSpec], dict[str, Any], Vocabulary]:
    """Read, override, validate and expand a config (its plugins and --plugin ones loaded first, into its
    vocabulary); refuse a sweep over --max-runs and a --set that the sweep would overwrite."""
    cfg, raw, vocabulary = vocab.load(config, sets, plugins)
    sweep.refuse_shadowed(raw, sets)
    if cfg.slurm is not None:
        slurm.check_section(cfg.slurm)
    check_size(planned_runs(cfg), max_runs, yes, cfg.name)  # before expanding a huge grid
    specs = unique(sweep.expand(cfg, raw, vocabulary=vocabulary))
    check_size(len(specs), max_runs, yes, cfg.name)
    return cfg, specs, raw, vocabulary


@dataclass(frozen=True)
class Plan:
    """A loaded sweep, the folder it goes to and how its runs are launched."""

    cfg: Config
    specs: list[sweep.RunSpec]
    raw: dict[str, Any]
    store: Store
    launcher: Launcher
    options: Options  # the experiment's vocabulary among them
    executor: str = "auto"

    @property
    def vocabulary(self) -> Vocabulary:
        return self.options.vocabulary


def plan(config: Path | Mapping[str, Any], sets: list[str], *, out: Path, device: str | None = None,
         max_runs: int = 1000, yes: bool = False, executor: str = "auto", workers: int | None = None,
         address: str | None = None, plugins: list[str] | None = None, detach: bool = False) -> Plan:
    """Load and expand the sweep (`device` overrides train.device), refuse what cannot run."""
    if workers is not None and workers < 1:
        raise ConfigError(f"--workers: {workers} is invalid: at least 1")
    options = Options(workers, address, None, detach)
    resolve(executor, options)  # a bad --executor / --workers / --detach before the config is read
    if executor == "slurm":
        slurm.check_available()
    cfg, specs, raw, vocabulary = load(config, [*sets, *([f"train.device={device}"] if device else [])], max_runs,
                                       yes, plugins)
    if executor == "serial" and cfg.random is not None and cfg.random.prune is not None:
        raise ConfigError("--executor serial: trains stacks of one run, where random.prune (successive halving "
                          "among the runs of a stack) cannot act; use --executor auto, local, processes or ray, "
                          "or leave out random.prune")
    store = Store(Path(out) / cfg.name)  # cfg.name: one plain path component
    options = Options(workers, address, checkpoint.folder(store.root), detach,
                      progress=store.root.resolve(), vocabulary=vocabulary)  # absolute: workers may start elsewhere
    launcher = resolve(executor, options)
    check_address(executor, address)
    return Plan(cfg, specs, raw, store, launcher, options, executor)


def check_address(executor: str, address: str | None, timeout_s: float = 3.0) -> None:
    """--address of a Ray cluster must answer before Ray is started: a wrong one is one line
    within seconds, not minutes of Ray retrying with its warnings on the terminal."""
    if address is None or executor != "ray" or address in ("auto", "local"):  # others: the launcher refuses
        return
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ConfigError(f"--address {address!r} is invalid: expected HOST:PORT (e.g. 10.0.0.5:6379), auto or local")
    problem = _gcs_problem(host, int(port), timeout_s)
    if problem:
        raise ConfigError(f"--address {address}: no Ray cluster answers at {host}:{port} ({problem}); start one "
                          "(ray start --head) or leave out --address for a local Ray instance")


def _gcs_problem(host: str, port: int, timeout_s: float) -> str | None:
    """Ask the address what a Ray driver asks first (its cluster id); None when a Ray GCS answers.
    A bare TCP connect is not enough: proxies and other servers accept connections too."""
    try:
        socket.create_connection((host, port), timeout=timeout_s).close()
    except OSError as e:
        return str(e.strerror or e)
    import grpc  # comes with ray

    with grpc.insecure_channel(f"{host}:{port}") as channel:
        ask = channel.unary_unary("/ray.rpc.NodeInfoGcsService/GetClusterId")
        try:
            ask(b"", timeout=timeout_s)  # an empty GetClusterIdRequest
        except grpc.RpcError as e:  # a GCS answers, if only to refuse (unauthenticated); others do not know it
            if e.code() in (grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.UNAVAILABLE,
                            grpc.StatusCode.DEADLINE_EXCEEDED):
                return f"{e.code().name.lower()}: not a Ray cluster"
    return None


def prepare_data(specs: list[sweep.RunSpec], device: str) -> None:
    """Load each distinct data section of the sweep once, before any run starts.

    A missing dataset or an impossible split is then one line and exit code 2, not a
    sweep of failed runs; the runs reuse what was loaded (data.prepare caches it).
    """
    for optimizer in {s.config.optimizer.model_dump_json(): s.config.optimizer for s in specs}.values():
        plugins.check_optimizer(optimizer)  # a plugin's constructor refuses its settings before training
    for spec in {s.config.model_dump_json(include={"data", "train"}): s for s in specs}.values():
        try:
            splits = data.prepare(spec.config.data, device)
        except data.DataError as e:
            raise ConfigError(str(e)) from None
        for cfg in {s.config.model.model_dump_json(): s.config.model for s in specs
                    if s.config.data == spec.config.data}.values():
            plugins.check_model(cfg, splits.sample_shape, splits.num_classes)  # a plugin's: logits (batch, classes)
        n_train, batch = len(splits.y_train), spec.config.train.batch_size
        if batch != "full" and batch > n_train:
            raise ConfigError(f"train.batch_size: {batch} is invalid: larger than the {n_train:,} training samples "
                              f"of {spec.config.data.dataset}; use at most {n_train:,} or 'full'")


def check_device(specs: list[sweep.RunSpec], device: torch.device) -> None:
    """Refuse settings the device cannot honour (train.precision) before anything trains."""
    for precision in dict.fromkeys(s.config.train.precision for s in specs):
        check_precision(precision, device)


def view(cfg: Config, specs: list[sweep.RunSpec]) -> dict[str, Any]:
    return tasks.view(cfg, specs, sweep.swept_keys(specs))


def compute(cfg: Config, specs: list[sweep.RunSpec], raw: dict[str, Any], store: Store, force_new: bool,
            vocabulary: Vocabulary) -> None:
    """A task that trains nothing (optimizer paths, activation statistics): its CSVs into the folder."""
    compute_task = tasks.TASKS[cfg.task].builder.compute
    assert compute_task is not None
    with store.session(experiment_record(cfg, specs), raw, view(cfg, specs), force_new):
        keep_vocabulary(store.root, vocabulary)
        compute_task(specs, store.root)


@dataclass(frozen=True)
class Outcome:
    root: Path
    n_runs: int
    n_done: int
    n_failed: int
    interrupted: bool
    report: Report | None  # None: nothing finished, or a task that trains nothing
    task_table: Table | None = None  # paths, activations, diagnostics (results.tables)
    figures: tuple[Path, ...] = ()
    submitted: tuple[str, ...] | None = None  # --detach: the scheduler's ids of the tasks submitted now

    @property
    def unfinished(self) -> int:
        """Runs that neither finished nor failed though the launcher returned (a SLURM task killed)."""
        return 0 if self.submitted is not None or self.interrupted else self.n_runs - self.n_done

    @property
    def exit_code(self) -> int:
        return 130 if self.interrupted else 1 if self.n_failed or self.unfinished else 0

    @property
    def problem(self) -> str | None:
        """What went wrong, in one line for the user (None: nothing)."""
        if self.interrupted:
            return (f"interrupted: {self.n_done} of {self.n_runs} runs finished and saved, the others "
                    "checkpointed; run the same sweep again to resume")
        if self.n_failed:
            return (f"{self.n_failed} of {self.n_runs} runs failed (see the status column; "
                    "--rerun failed, or rerun='failed' in Python, trains them again)")
        if self.unfinished:
            return (f"{self.unfinished} of {self.n_runs} runs did not finish (their tasks ended without a result); "
                    "run the same sweep again to resume them from their last checkpoints")
        return None


@dataclass(frozen=True)
class DryRun:
    finished: dict[str, str]  # run id -> status of the runs already in the folder
    costs: list[Cost]
    line: str  # the bottom line: run counts, parameters x steps to train
    stacks: str = ""  # the stacks to train and each one's memory estimate beside the device's free memory


def driver_device(run: Plan) -> torch.device:
    """Where this process trains or checks: train.device here; with --executor slurm the nodes resolve it
    (a login node without a GPU submits CUDA runs), so this process only reads data, on the CPU."""
    return torch.device("cpu") if run.executor == "slurm" else resolve_device(run.cfg.train.device)


def dry_run(run: Plan, *, force_new: bool = False, rerun: str | None = None) -> DryRun:
    """What `execute` would do, checked and estimated on the data it would load; trains nothing."""
    trains = tasks.trains(run.cfg.task)
    dev = driver_device(run) if trains else torch.device("cpu")
    if trains:
        if run.executor != "slurm":
            check_device(run.specs, dev)
        prepare_data(run.specs, "cpu")
    finished = {} if force_new else run.store.finished()
    if not force_new:
        run.store.check(experiment_record(run.cfg, run.specs))
    run_costs = costs(run.specs) if trains else [Cost()] * len(run.specs)  # nothing trains: no cost
    todo = select(run.specs, finished, rerun)
    line = describe(run.specs, todo, run_costs)
    stacks = memory.describe(planned(run.executor, todo, dev, run.options), dev) if trains and todo else ""
    if run.executor == "slurm" and todo:  # the array's tasks and each one's time limit
        stacks = slurm.describe(slurm.plan(todo, run.options, run.store.root))
    later = planned_runs(run.cfg) - len(run.specs) if sweep.staged(run.cfg) else 0
    if later > 0:  # a staged search plans its next rounds from the results of these
        line += f"; up to {later} more runs in later rounds and the confirm stage, planned from these runs' results"
    return DryRun(finished, run_costs, line, stacks)


def execute(run: Plan, *, show: progress.Show | None, force_new: bool = False, rerun: str | None = None,
            fail_fast: bool = False, figures: bool = True, say: Callable[[str], None] = print,
            warn: Callable[[str], None] = print) -> Outcome:
    """Train the sweep (or compute a task that trains nothing) into its folder, then the task's
    table and, with `figures`, the figures."""
    check_rerun(rerun)  # before the folder is touched
    # what the launch has to tell (a stack retrained one run at a time, a checkpoint set aside): said by `warn`
    run = dataclasses.replace(run, options=dataclasses.replace(run.options, tell=warn))
    if tasks.trains(run.cfg.task):
        refuse_live(run.store.root, (s.run_id for s in run.specs), run.executor)  # other launchers' live jobs
        dev = driver_device(run)
        if run.executor != "slurm":
            check_device(run.specs, dev)
        prepare_data(run.specs, str(dev))
        launch = progress.launching(run.launcher, run.options, dev, show, f"{run.cfg.name} on {dev.type}")
        before = {r.task_id for r in read_jobs(run.store.root)}
        outcome = train(run.cfg, run.specs, run.raw, run.store, launch, run.options, force_new=force_new,
                        rerun=rerun, fail_fast=fail_fast, say=say, warn=warn, detach=run.options.detach)
        if run.options.detach:
            outcome = dataclasses.replace(outcome, submitted=tuple(
                r.task_id for r in read_jobs(run.store.root) if r.task_id not in before))
        if outcome.report is None:
            return outcome
    else:
        compute(run.cfg, run.specs, run.raw, run.store, force_new, run.vocabulary)
        outcome = Outcome(run.store.root, len(run.specs), len(run.specs), 0, False, None)
    # the report's and figures' libraries (pandas, scipy, matplotlib) load after training, not before it
    from dlbench.results import plots
    from dlbench.results.shown import shown

    # what `dlbench report` shows for the folder (of a staged search: its confirm and defaults stages)
    view = shown([run.store.root], title=f"{run.cfg.name}: {run.cfg.description}".strip(": "))
    folder = plots.load(run.store.root)
    return dataclasses.replace(outcome, report=view.report, task_table=view.tables[0] if view.tables else None,
                               figures=tuple(plots.write(folder)) if figures else ())


def keep_vocabulary(root: Path, vocabulary: Vocabulary) -> None:
    """The experiment's vocabulary in its folder: each plugin's source (and a module plugin's other files)
    as plugins/<hash>-<file> (the hash is in the run ids) and vocabulary.json, what `vocab.from_folder`
    rebuilds it from in any process."""
    for name, text in vocabulary.files().items():
        if not (root / name).exists():
            atomic_write(root / name, text)
    atomic_write(root / vocab.RECORD, json.dumps(vocabulary.record(), indent=2) + "\n")


def train(cfg: Config, specs: list[sweep.RunSpec], raw: dict[str, Any], store: Store, launch: progress.Launch,
          options: Options, *, force_new: bool = False, rerun: str | None = None, fail_fast: bool = False,
          say: Callable[[str], None] = print, warn: Callable[[str], None] = print, detach: bool = False) -> Outcome:
    """Train the runs not finished yet, store each as it finishes, rewrite the tables.
    Ctrl-C keeps what finished (Outcome.interrupted). `detach`: the launcher submits and returns, so a
    search's next stage is planned by a later run, from what then finished."""
    interrupted = False
    with store.session(experiment_record(cfg, specs), raw, view(cfg, specs), force_new) as moved:
        if moved:
            say(f"moved the old results to {moved}")
        keep_vocabulary(store.root, options.vocabulary)
        if sweep.staged(cfg):  # resuming: the stages the finished runs already let us plan
            specs = unique(sweep.expand(cfg, raw, search_outcomes(store), options.vocabulary))
        todo = select(specs, store.finished(), rerun)
        if len(todo) < len(specs):
            say(f"{len(specs) - len(todo)} of {len(specs)} runs already finished in {store.root}; skipping them")
        for line in resuming(todo, options):
            say(line)
        refresh = TableRefresh(store.root)
        trained: set[str] = set()
        sweep_record = planned_sweep(cfg, specs)
        live.write_sweep(store.root, sweep_record)
        try:
            while True:
                for result in launch(todo) if todo else ():
                    trained.add(result.spec.run_id)
                    if not result.stored:
                        save(store, result)
                    if result.status == "failed":
                        warn(f"run {result.spec.run_id} failed: {result.summary['error']}")
                        if fail_fast:
                            raise StopSweep
                    refresh.maybe()
                if not sweep.staged(cfg) or detach:
                    break
                # the next round / the confirm stage, planned from what finished
                specs = unique(sweep.expand(cfg, raw, search_outcomes(store), options.vocabulary))
                todo = [s for s in select(specs, store.finished(), rerun) if s.run_id not in trained]
                if not todo:
                    break
                sweep_record = planned_sweep(cfg, specs)
                live.write_sweep(store.root, sweep_record)
        except StopSweep:
            pass
        except KeyboardInterrupt:  # what finished is saved; the run in flight is dropped
            interrupted = True
        finally:  # `dlbench status` / `watch`: this process runs the sweep no more (its jobs may: detached)
            ended = not interrupted and sys.exc_info()[0] is None
            state = ("detached" if detach else "ended") if ended else "interrupted"  # interrupted: Ctrl-C or a crash
            live.write_sweep(store.root, dataclasses.replace(sweep_record, state=state))
        rep = _write_tables(store.root) if store.finished() else None
    status = store.finished()
    return Outcome(store.root, len(specs), sum(s.run_id in status for s in specs),
                   sum(status.get(s.run_id) == "failed" for s in specs), interrupted, rep)


def _write_tables(root: Path) -> Report:
    """runs.csv, summary.csv and the report (results.report, imported here: pandas and scipy load when the
    first run has finished, not before training)."""
    from dlbench.results.report import write_tables

    return write_tables(root)


def planned_sweep(cfg: Config, specs: list[sweep.RunSpec]) -> live.Sweep:
    """The sweep's record for `dlbench status` / `watch`: the runs planned so far, and at most how
    many more a staged search plans from their results."""
    later = planned_runs(cfg) - len(specs) if sweep.staged(cfg) else 0
    return live.Sweep([s.run_id for s in specs], max(0, later))


def resuming(todo: list[sweep.RunSpec], options: Options) -> list[str]:
    """A line per stack checkpoint the runs to train resume from: which runs, from which step of how many."""
    wanted = {s.run_id for s in todo}
    return [launchers.resuming(path, held, state, wanted)
            for path, held, state in checkpoint.resumable(options.checkpoints, todo, options.vocabulary, options.tell)]


class StopSweep(Exception):
    """--fail-fast: a run failed, so no further run or stage starts."""


def search_outcomes(store: Store) -> dict[str, search.Outcome]:
    """run id -> what every finished run tells a staged search, which plans its next round and its
    confirm stage from them: status, final validation metrics (none: it diverged or failed) and, for
    a pruned run, each validation metric at each evaluation (Optuna's samplers weigh it by these)."""
    out = {}
    validation = [m.name for m in METRICS.declared() if m.split == "val"]
    for s in store.summaries():
        evaluated = s["status"] in EVALUATED and s.get("final")
        final = {m: float(s["final"][m]) for m in validation if evaluated and s["final"].get(m) is not None}
        curves: dict[str, search.trials.Curve] = {}
        path = store.run_dir(s["run_id"]) / "metrics.csv"
        if s["status"] == PRUNED and path.is_file():  # (a folder damaged by hand: told as pruned, no curve)
            with open(path, newline="") as f:
                rows = list(csv.DictReader(f))
            curves = {m: tuple((int(row["step"]), float(row[m])) for row in rows) for m in validation if m in rows[0]} \
                if rows else {}
        out[s["run_id"]] = search.Outcome(final, s["status"], curves)
    return out


def unique(specs: list[sweep.RunSpec]) -> list[sweep.RunSpec]:
    """Drop repeated runs (a grid listing a value twice, two grid points resolving to the same
    config): a run id is trained and stored once."""
    first: dict[str, sweep.RunSpec] = {}
    for s in specs:
        first.setdefault(s.run_id, s)
    return list(first.values())


RERUN: dict[str | None, tuple[str, ...]] = {"all": FINISHED, "failed": ("failed",), None: ()}  # statuses trained again


def check_rerun(rerun: str | None) -> None:
    if not isinstance(rerun, (str, type(None))) or rerun not in RERUN:
        raise ConfigError(f"--rerun: {rerun!r} is invalid; allowed: failed, all")


def select(specs: list[sweep.RunSpec], finished: dict[str, str], rerun: str | None) -> list[sweep.RunSpec]:
    """The runs to train: unfinished ones (a killed run left no folder, so it is unfinished),
    plus finished failed ones with --rerun failed, plus everything with --rerun all."""
    check_rerun(rerun)
    again = RERUN[rerun]
    return [s for s in specs if finished.get(s.run_id) in (None, *again)]


def experiment_record(cfg: Config, specs: list[sweep.RunSpec]) -> dict[str, Any]:
    """The swept keys and the resolved settings every run shares (see Store.check)."""
    swept = sorted({*cfg.grid, *(cfg.random.space if cfg.random else ()),
                    *(key for case in cfg.cases.values() for key in case)})
    fixed = sweep.identity(specs[0].config, specs[0].seed)
    del fixed["seed"]
    # a plugin's source version is in each run's id, not the experiment's: an edited plugin trains its
    # runs again beside the old ones (and a grid over built-ins and plugins has no one version)
    fixed.pop("plugins", None)
    for key in swept:
        pop_path(fixed, key)
    # ids: how run ids are computed; 2 = from the catalog's key roles, every resolved setting included
    return {"ids": RUN_IDS, "swept": swept, "fixed": fixed}


@dataclass(frozen=True)
class Cost:
    n_params: int | None = None
    steps: int | None = None
    error: str | None = None  # the model cannot be built: the run would fail


def _n_params(model_cfg: Any, shape: tuple[int, ...], classes: int) -> int:
    with torch.device("meta"):  # parameters without memory: a 10^12-weight model costs nothing here
        return models.count_parameters(models.build(model_cfg, shape, classes))


def costs(specs: list[sweep.RunSpec]) -> list[Cost]:
    cache: dict[str, Cost] = {}  # runs differing only in seed or optimizer cost the same
    out = []
    for spec in specs:
        key = spec.config.model_dump_json(include={"model", "data", "train"}, exclude={"train": {"seeds"}})
        if key not in cache:
            cache[key] = _cost(spec.config)
        out.append(cache[key])
    return out


def _cost(cfg: Config) -> Cost:
    splits = data.prepare(cfg.data, "cpu")  # what `run` trains on (cached: prepare_data loaded it)
    steps = schedule(len(splits.y_train), cfg.train)[2]
    try:
        return Cost(_n_params(cfg.model, splits.sample_shape, splits.num_classes), steps)
    except Exception as e:  # noqa: BLE001 - any build error is what the run itself would hit
        return Cost(steps=steps, error=f"{type(e).__name__}: {e}".splitlines()[0])


def _approx(n: int) -> str:
    """3 significant digits, also for integers too large for a float (train.steps: 1e400)."""
    digits = str(n)
    return f"{n:.3g}" if len(digits) < 300 else f"{digits[0]}.{digits[1:3]}e+{len(digits) - 1}"


def describe(specs: list[sweep.RunSpec], todo: list[sweep.RunSpec], run_costs: list[Cost]) -> str:
    """The dry-run's bottom line: run counts and parameters x steps of what would train."""
    by_id = {s.run_id: c for s, c in zip(specs, run_costs)}
    todo_costs = [by_id[s.run_id] for s in todo]
    known = [c.n_params * c.steps for c in todo_costs if c.n_params is not None and c.steps is not None]
    line = f"{len(specs)} runs: {len(specs) - len(todo)} finished, {len(todo)} to train"
    if known:
        line += f"; about {_approx(sum(known))} parameters x steps to train"
    if len(known) < len(todo):
        line += f"; {len(todo) - len(known)} runs not estimated"
    broken = [c.error for c in todo_costs if c.error]
    if broken:
        line += f"; {len(broken)} runs would fail to build their model ({broken[0]})"
    return line


class TableRefresh:
    """Rewrite runs.csv / summary.csv now and then during a sweep, so after a kill -9 they lag
    the run folders by a bounded amount (they are always rewritten at the end, and by
    `dlbench report`). Rewriting reads every run, so it is spaced out by its own cost."""

    def __init__(self, root: Path, every_s: float = 30.0) -> None:
        self.root, self.every_s, self.last = root, every_s, time.monotonic()

    def maybe(self) -> None:
        if time.monotonic() - self.last < self.every_s:
            return
        start = time.monotonic()
        _write_tables(self.root)
        self.last = time.monotonic()
        self.every_s = max(self.every_s, 10 * (self.last - start))
