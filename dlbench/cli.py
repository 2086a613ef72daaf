"""The `dlbench` command line: thin, it parses arguments and calls the modules."""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Callable, NoReturn, Optional, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from dlbench.config import schema as config_mod
from dlbench import runner as plan
from dlbench.results import report as report_mod
from dlbench import sweep
from dlbench.config.schema import ConfigError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="dlbench: compare how neural networks train. One YAML file in, runs trained, a table out.",
    pretty_exceptions_enable=False,
)
P = ParamSpec("P")
R = TypeVar("R")
# wide enough for a comparison table when stdout is a file or a pipe (rich would use 80)
console = Console(width=None if sys.stdout.isatty() else 200)
err_console = Console(stderr=True)


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class Format(str, Enum):
    table = "table"
    csv = "csv"
    markdown = "markdown"
    json = "json"
    latex = "latex"


class At(str, Enum):
    final = "final"
    best = "best"


Metric = Enum("Metric", {m: m for m in report_mod.METRICS}, type=str)  # type: ignore[misc]


def fail(message: str, code: int = 2) -> NoReturn:
    """Inside a command: one line on stderr, then exit."""
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def user_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Bad input (ConfigError) anywhere under a command -> one line, exit code 2."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except ConfigError as e:
            fail(str(e))

    return wrapper


SetOption = Annotated[
    Optional[list[str]],
    typer.Option("--set", "-s", metavar="KEY=VALUE",
                 help="Override a config value, e.g. --set optimizer.lr=0.01 (YAML-typed; repeatable)."),
]


MaxRunsOption = Annotated[int, typer.Option("--max-runs", min=1,
                                             help="A sweep of more runs than this needs --yes.")]
YesOption = Annotated[bool, typer.Option("--yes", "-y", help="Go ahead with a sweep over --max-runs runs.")]


def _load(config: Path, sets: list[str] | None, max_runs: int = plan.DEFAULT_MAX_RUNS,
          yes: bool = False) -> tuple[config_mod.Config, list[sweep.RunSpec], dict]:
    cfg, raw = config_mod.load(config, sets or [])
    plan.check_size(plan.planned_runs(cfg), max_runs, yes, cfg.name)  # before expanding a huge grid
    specs = plan.unique(sweep.expand(cfg, raw))
    plan.check_size(len(specs), max_runs, yes, cfg.name)
    return cfg, specs, raw


def _prepare_data(specs: list[sweep.RunSpec], device: str) -> None:
    """Load each distinct data section of the sweep once, before any run starts.

    A missing dataset or an impossible split is then one line and exit code 2, not a
    sweep of failed runs; the runs reuse what was loaded (data.prepare caches it).
    """
    from dlbench.components import data

    for cfg in {s.config.data.model_dump_json(): s.config.data for s in specs}.values():
        try:
            data.prepare(cfg, device)
        except data.DataError as e:
            raise ConfigError(str(e)) from None


def _runs_table(specs: list[sweep.RunSpec], costs: list[plan.Cost], finished: dict[str, str]) -> Table:
    keys = sweep.swept_keys(specs)
    table = Table(title=f"{len(specs)} runs")
    for h in ["#", "run id", *keys, "seed", "params", "steps", "state"]:
        table.add_column(h)
    for i, (s, c) in enumerate(zip(specs, costs), 1):
        table.add_row(str(i), s.run_id, *(str(s.params.get(k, "–")) for k in keys), str(s.seed),
                      f"{c.n_params:,}" if c.n_params is not None else "?", f"{c.steps:,}" if c.steps else "?",
                      finished.get(s.run_id, "to train"))
    return table


@app.command()
@user_errors
def run(
    config: Annotated[Path, typer.Argument(help="Experiment config (YAML).", show_default=False)],
    sets: SetOption = None,
    device: Annotated[Optional[Device], typer.Option(help="Where to train; overrides train.device.")] = None,
    out: Annotated[Path, typer.Option(help="Results root; runs go to OUT/<name>/.")] = Path("results"),
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the expanded runs and train nothing.")] = False,
    rerun: Annotated[Optional[plan.Rerun], typer.Option(help="Train again finished runs that failed, or all.")] = None,
    fail_fast: Annotated[bool, typer.Option("--fail-fast", help="Stop at the first failed run.")] = False,
    force_new: Annotated[bool, typer.Option("--force-new", help="Move OUT/<name>/ aside and start afresh.")] = False,
    max_runs: MaxRunsOption = plan.DEFAULT_MAX_RUNS,
    yes: YesOption = False,
    plots: Annotated[bool, typer.Option(help="Draw the experiment's figures (PNG) into the results folder.")] = True,
    executor: Annotated[str, typer.Option(
        help="Where stacks of runs train: auto (= local), local (this process), serial (stacks of one run), "
             "processes (a process pool), ray (Ray tasks).")] = "auto",
    workers: Annotated[Optional[int], typer.Option(
        min=1, help="Tasks at a time for --executor processes / ray (default: one per CPU).")] = None,
    address: Annotated[Optional[str], typer.Option(
        help="Ray cluster address for --executor ray (default: start a local Ray instance).")] = None,
) -> None:
    """Expand CONFIG into runs, train them, save results/<name>/ and print the comparison table.

    Runs already finished in the results folder (ok, diverged or failed) are
    skipped, so re-running a sweep resumes it; Ctrl-C saves what finished and
    exits 130. Exit code: 0 all runs ok or diverged, 1 some run failed,
    2 bad input or a refused folder, 130 interrupted.
    """
    from dlbench.execution.launchers import Options, describe, resolve
    from dlbench.training import checkpoint
    from dlbench.results.store import Store
    from dlbench.training.run import resolve_device

    overrides = list(sets or []) + ([f"train.device={device.value}"] if device else [])
    cfg, specs, raw = _load(config, overrides, max_runs, yes)
    store = Store(out / cfg.name)  # cfg.name is one plain path component: no ../ escapes
    options = Options(workers, address, checkpoint.folder(store.root))
    launch = resolve(executor, options)
    record = plan.experiment_record(cfg, specs)
    if dry_run:
        finished = {} if force_new else store.finished()
        if not force_new:
            store.check(record)
        # function / activations tasks train nothing: no cost to estimate
        costs = plan.costs(specs) if cfg.task == "train" else [plan.Cost()] * len(specs)
        console.print(_runs_table(specs, costs, finished))
        console.print(plan.describe(specs, plan.select(specs, finished, rerun), costs))
        return
    if cfg.task != "train":  # optimizer paths / activation statistics: no training, no run folders
        from dlbench import tasks

        with store.session(record, raw, force_new):
            tasks.run(cfg, specs, store.root)
        _tables_and_figures(store.root, plots)
        console.print(f"results: {store.root}")
        return
    dev = resolve_device(cfg.train.device)
    _prepare_data(specs, str(dev))

    interrupted = False
    with store.session(record, raw, force_new) as moved:
        if moved:
            console.print(f"moved the old results to {moved}", soft_wrap=True)
        todo = plan.select(specs, store.finished(), rerun)
        if len(todo) < len(specs):
            console.print(f"{len(specs) - len(todo)} of {len(specs)} runs already finished in {store.root}; "
                          "skipping them", soft_wrap=True)
        columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   TimeRemainingColumn()]
        refresh = plan.TableRefresh(store.root)
        try:
            with Progress(*columns, console=err_console, transient=False) as progress:
                overall = progress.add_task(f"{cfg.name} on {dev.type}", total=len(todo))
                current = progress.add_task("run", total=1, visible=False)

                def on_start(stack: list[sweep.RunSpec]):
                    label = f"  {describe(stack)}"[:70]
                    progress.reset(current, total=1, description=label, visible=True)

                    def on_step(step: int, total: int, training: int) -> None:
                        ended = f", {len(stack) - training} finished early" if training < len(stack) else ""
                        progress.update(current, completed=step, total=total, description=f"{label}{ended}")
                    return on_step

                with contextlib.closing(launch(todo, dev, on_start, options)) as results:
                    for result in results:
                        store.save(result)
                        progress.advance(overall)
                        if result.status == "failed":
                            err_console.print(f"[red]run {result.spec.run_id} failed:[/] "
                                              f"{escape(result.summary['error'])}", highlight=False, soft_wrap=True)
                            if fail_fast:
                                break
                        refresh.maybe()
                progress.update(current, visible=False)
        except KeyboardInterrupt:  # what finished is saved; the stack in training left a checkpoint
            interrupted = True
        rep = report_mod.write_tables(store.root) if store.finished() else None

    if rep is not None:
        console.print(report_mod.rich_table(rep, title=f"{cfg.name}: {cfg.description}".strip(": ")))
        _tables_and_figures(store.root, plots)
    console.print(f"results: {store.root}")
    status = store.finished()
    n_done = sum(s.run_id in status for s in specs)
    n_failed = sum(status.get(s.run_id) == "failed" for s in specs)
    if interrupted:
        err_console.print(f"interrupted: {n_done} of {len(specs)} runs finished and saved, the others "
                          "checkpointed; run the same command again to resume", soft_wrap=True)
        raise typer.Exit(130)
    if n_failed:
        err_console.print(f"{n_failed} of {len(specs)} runs failed (see the status column; "
                          "--rerun failed trains them again)", soft_wrap=True)
        raise typer.Exit(1)


def _tables_and_figures(root: Path, figures: bool) -> None:
    """After a run: the task's own table (paths, activations, diagnostics) and the figures."""
    from dlbench.results import plots as plots_mod
    from dlbench import tasks

    res = plots_mod.load(root)
    table = tasks.table(res)
    if table is not None:
        console.print(table)
    if figures:
        written = plots_mod.write(res)
        if written:
            console.print(f"figures: {', '.join(str(p) for p in written)}")


@app.command()
@user_errors
def plot(results_dir: Annotated[Path, typer.Argument(help="An experiment folder, e.g. results/quickstart.")]) -> None:
    """Draw the experiment's figures (the config's `plots:` list) as PNGs into RESULTS_DIR, from the folder alone."""
    from dlbench.results import plots as plots_mod

    written = plots_mod.write(plots_mod.load(results_dir))
    if not written:
        fail(f"{results_dir}: nothing to plot yet (no finished runs)")
    for path in written:
        console.print(str(path))


@app.command()
@user_errors
def report(
    results_dirs: Annotated[list[Path], typer.Argument(
        help="An experiment folder, e.g. results/quickstart; several folders with the same swept keys are "
             "compared side by side.", show_default=False)],
    format: Annotated[Optional[Format], typer.Option(
        "--format", "-f", help="Output format [default: from the --output suffix, else table].",
        show_default=False)] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write to FILE instead of stdout.",
                                                   metavar="FILE")] = None,
    at: Annotated[At, typer.Option(help="Numbers from each run's final or best-validation evaluation.")] = At.final,
    metric: Annotated[Metric, typer.Option(help="Metric the significance tests compare.")] = Metric.val_acc,
    baseline: Annotated[Optional[list[str]], typer.Option(
        metavar="KEY=VALUE", help="Compare with this configuration instead of the best, e.g. "
                                  "optimizer.name=sgd (repeat to pin several keys).")] = None,
    target: Annotated[Optional[float], typer.Option(
        help="Time to reach this validation accuracy (0..1): epoch, step and seconds.")] = None,
    group_by: Annotated[Optional[list[str]], typer.Option(
        "--group-by", metavar="KEY", help="Group by KEY only, pooling everything else (repeatable).")] = None,
    where: Annotated[Optional[list[str]], typer.Option(
        metavar="KEY=VALUE", help="Keep runs with KEY=VALUE (repeatable; one key given twice means either).")] = None,
    losses: Annotated[bool, typer.Option("--losses", help="Show the loss columns too.")] = False,
) -> None:
    """Statistics over seeds from results folders (reads only the folders): mean ± std, 95% CI,
    Welch's t-test against the best (or a baseline), time to target; table, csv, markdown, json or latex."""
    spec = results_dirs[0] / "experiment.yaml"
    if len(results_dirs) == 1 and spec.is_file() and config_mod.read_yaml_file(spec).get("task", "train") != "train":
        from dlbench.results import plots as plots_mod
        from dlbench import tasks

        console.print(tasks.table(plots_mod.load(results_dirs[0])))  # optimizer paths / activation statistics
        return
    for d in results_dirs:
        if not (d / "runs").is_dir():
            fail(f"{d}: not a results folder (expected {d / 'runs'}/)")
        report_mod.write_tables(d)
    rep = report_mod.report(results_dirs, at=at.value, metric=metric.value, baseline=baseline, target=target,
                            group_by=group_by, filters=where, show_losses=losses)
    fmt = format.value if format else report_mod.SUFFIXES.get(output.suffix, "table") if output else "table"
    title = " vs ".join(d.name for d in results_dirs)
    if fmt == "table" and output is None and console.is_terminal:
        console.print(report_mod.rich_table(rep, title))
        return
    text = report_mod.render(rep, title) if fmt == "table" else report_mod.export(rep, fmt)
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text, encoding="utf-8")
        err_console.print(f"wrote {output}", highlight=False)


@app.command()
@user_errors
def validate(config: Annotated[Path, typer.Argument(help="Experiment config (YAML).")], sets: SetOption = None,
             max_runs: MaxRunsOption = plan.DEFAULT_MAX_RUNS, yes: YesOption = False) -> None:
    """Check a config (and its --set overrides) and that its datasets load, without training."""
    cfg, specs, _ = _load(config, sets, max_runs, yes)
    if cfg.task == "train":  # the function and activations tasks read no data
        _prepare_data(specs, "cpu")
    console.print(f"{config}: ok — experiment {cfg.name!r}, {len(specs)} runs")


@app.command("list")
def list_registries() -> None:
    """List the datasets, models, model presets, activations, norms, poolings, init schemes, optimizers, losses."""
    from dlbench.components.data import DATASETS
    from dlbench.components.functions import FUNCTIONS
    from dlbench.components.inits import INITS
    from dlbench.components.losses import LOSSES
    from dlbench.components.models import ACTIVATIONS, MODELS, NORMS, POOLS, PRESETS
    from dlbench.components.optimizers import OPTIMIZERS
    from dlbench.results.plots import PLOTS

    for registry in (DATASETS, MODELS, PRESETS, ACTIVATIONS, NORMS, POOLS, INITS, OPTIMIZERS, LOSSES, FUNCTIONS,
                     PLOTS):
        table = Table(title=f"{registry.kind}s", title_justify="left", show_header=False, box=None)
        table.add_column(style="bold cyan")
        table.add_column()
        for entry in registry:
            extra = ", ".join(f"{k}: {v}" for k, v in entry.info.items() if k != "hyper")
            table.add_row(entry.name, entry.help + (f" [dim]({extra})[/]" if extra else ""))
        console.print(table)
        console.print()


def _exit(message: str, code: int) -> NoReturn:
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    sys.exit(code)


def main() -> None:
    try:
        app(standalone_mode=True)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)
    except Exception as e:  # noqa: BLE001 - no tracebacks for users; DLBENCH_DEBUG=1 shows them
        if os.environ.get("DLBENCH_DEBUG"):
            raise
        _exit(f"{type(e).__name__}: {e} (set DLBENCH_DEBUG=1 for the traceback)", 1)
