"""The `dlbench` command line: thin, it parses arguments and calls the modules."""

from __future__ import annotations

import contextlib
import functools
import gc
import os
import sys
from enum import Enum, StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, ParamSpec, TypeVar
from collections.abc import Callable, Iterator

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from typer.core import TyperArgument, TyperGroup, TyperOption

from dlbench import __version__
from dlbench.catalog import CATALOG
from dlbench.errors import ConfigError, SchedulerError

from dlbench.results import options as report_options
from dlbench.results.adjust import ADJUSTMENTS
from dlbench.results.store import check_folder

if TYPE_CHECKING:  # the front imports torch, the report scipy: loaded by the commands that need them
    from dlbench import runner
    from dlbench.plan import sweep

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


class Device(StrEnum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


# html: one self-contained page (tables, figures, config, environment)
Format = Enum("Format", {f: f for f in report_options.FORMATS}, type=str)  # type: ignore[misc]


class Rerun(StrEnum):
    failed = "failed"
    all = "all"


DEFAULT_MAX_RUNS = 1000


At = Enum("At", {a: a for a in report_options.AT}, type=str)  # type: ignore[misc]


Adjust = Enum("Adjust", {a: a for a in ADJUSTMENTS}, type=str)  # type: ignore[misc]


def _version(show: bool) -> None:
    if show:
        console.print(f"dlbench {__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def _options(version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                                   help="Print dlbench's version and exit.")] = False) -> None:
    """dlbench: compare how neural networks train. One YAML file in, runs trained, a table out."""


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
    list[str] | None,
    typer.Option("--set", "-s", metavar="KEY=VALUE",
                 help="Override a config value, e.g. --set optimizer.lr=0.01 (YAML-typed; repeatable)."),
]


PluginOption = Annotated[
    list[str] | None,
    typer.Option("--plugin", metavar="PATH", help="A plugin file (or importable module) with your own components; "
                 "repeatable. Configs name theirs in plugins:.", show_default=False)]
MaxRunsOption = Annotated[int, typer.Option("--max-runs", min=1, metavar="N",
                                             help="A sweep of more runs than this needs --yes.")]
YesOption = Annotated[bool, typer.Option("--yes", "-y", help="Go ahead with a sweep over --max-runs runs.")]


def _runs_table(specs: list[sweep.RunSpec], costs: list[runner.Cost], finished: dict[str, str]) -> Table:
    from dlbench.plan import sweep
    from dlbench.results import load as load_mod

    keys = sweep.swept_keys(specs)
    table = Table(title=f"{len(specs)} runs")
    for h in ["#", "run id", *keys, "seed", "params", "steps", "state"]:
        table.add_column(h)
    for i, (s, c) in enumerate(zip(specs, costs), 1):
        table.add_row(str(i), s.run_id, *(load_mod.value_text(s.params.get(k, "–")) for k in keys), str(s.seed),
                      f"{c.n_params:,}" if c.n_params is not None else "?", f"{c.steps:,}" if c.steps else "?",
                      finished.get(s.run_id, "to train"))
    return table


@app.command()
@user_errors
def run(
    config: Annotated[Path, typer.Argument(help="Experiment config (YAML).", show_default=False)],
    sets: SetOption = None,
    device: Annotated[Device | None, typer.Option(help="Where to train; overrides train.device.")] = None,
    out: Annotated[Path, typer.Option(metavar="DIR", help="Results root; runs go to DIR/<name>/.")] = Path("results"),
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the expanded runs and train nothing.")] = False,
    rerun: Annotated[Rerun | None, typer.Option(help="Train again finished runs that failed, or all.")] = None,
    fail_fast: Annotated[bool, typer.Option("--fail-fast", help="Stop at the first failed run.")] = False,
    force_new: Annotated[bool, typer.Option("--force-new", help="Move DIR/<name>/ aside and start afresh.")] = False,
    max_runs: MaxRunsOption = DEFAULT_MAX_RUNS,
    yes: YesOption = False,
    plots: Annotated[bool, typer.Option(help="Draw the experiment's figures (PNG) into the results folder.")] = True,
    executor: Annotated[str, typer.Option(
        metavar="NAME", help="Where stacks of runs train: auto (= local), local (this process), "
             "serial (stacks of one run), processes (a process pool), ray (Ray tasks), "
             "slurm (a SLURM job array; resources from the config's slurm: section).")] = "auto",
    workers: Annotated[int | None, typer.Option(
        min=1, metavar="N", help="Tasks at a time for --executor processes / ray (default: one per CPU) / slurm "
                                 "(the array's throttle, %N).")] = None,
    detach: Annotated[bool, typer.Option(
        "--detach", help="--executor slurm, or ray with --address: submit and return at once; the same command "
                         "again collects.")] = False,
    address: Annotated[str | None, typer.Option(
        metavar="HOST:PORT",
        help="Ray cluster address for --executor ray (default: start a local Ray instance).")] = None,
    plugin: PluginOption = None,
) -> None:
    """Expand CONFIG into runs, train them, save results/<name>/ and print the comparison table.

    Runs already finished in the results folder (ok, diverged or failed) are
    skipped, so re-running a sweep resumes it; Ctrl-C saves what finished and
    exits 130. Exit code: 0 all runs ok or diverged, 1 some run failed,
    2 bad input or a refused folder, 130 interrupted.
    """
    with _collector_paused():  # torch, the schema's models, the sweep: start-up
        from dlbench import progress, runner

        plan = runner.plan(config, sets or [], out=out, device=device and device.value, max_runs=max_runs,
                           yes=yes, executor=executor, workers=workers, address=address, plugins=plugin,
                           detach=detach)
    if dry_run:
        dry = runner.dry_run(plan, force_new=force_new, rerun=rerun and rerun.value)
        console.print(_runs_table(plan.specs, dry.costs, dry.finished))
        console.print(dry.line)
        if dry.stacks:
            console.print(dry.stacks)
        return
    outcome = runner.execute(plan, show=progress.terminal(err_console), force_new=force_new,
                             rerun=rerun and rerun.value, fail_fast=fail_fast, figures=plots, say=_say, warn=_warn)
    if outcome.report is not None:
        from dlbench.results.render import terminal as terminal_mod  # loaded by then: after training, not before

        console.print(terminal_mod.rich_table(outcome.report, f"{plan.cfg.name}: {plan.cfg.description}".strip(": "),
                                            console.width))
    if outcome.task_table is not None:
        console.print(outcome.task_table)
    if outcome.figures:
        console.print(f"figures: {', '.join(str(p) for p in outcome.figures)}")
    console.print(f"results: {outcome.root}")
    if outcome.submitted is not None:
        _say(_submitted(outcome, config, plan))
    if outcome.problem:
        _warn(outcome.problem)
    if outcome.exit_code:
        raise typer.Exit(outcome.exit_code)


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off while the start-up imports and builds some 200k objects that
    live as long as the process (it would traverse them again and again as they load: ~0.3 s of CPU of
    a 1-run sweep), then those objects frozen out of every later collection: once per process, so that
    a process calling main() again and again (a test suite) does not freeze each call's garbage too."""
    gc.disable()
    try:
        yield
    finally:
        if not gc.get_freeze_count():
            gc.freeze()
        gc.enable()


def _submitted(outcome: runner.Outcome, config: Path, plan: runner.Plan) -> str:
    """What --detach did: the tasks submitted now, and how to follow and collect them."""
    tasks = outcome.submitted or ()
    arrays = sorted({t.partition("_")[0] for t in tasks}, key=lambda j: (len(j), j))
    ray = plan.executor == "ray"
    now = ("submitted nothing (every unfinished stack is queued or running)" if not tasks
           else f"submitted {len(tasks)} Ray job{'s' * (len(tasks) != 1)}: {', '.join(tasks)}" if ray
           else f"submitted {len(tasks)} task{'s' * (len(tasks) != 1)} as SLURM job {', '.join(arrays)}")
    again = f"dlbench run {config} --executor {plan.executor}" + (f" --address {plan.options.address}" if ray else "")
    return (f"{now}; {outcome.n_done} of {outcome.n_runs} runs finished. Follow with `dlbench status {outcome.root}`; "
            f"`{again}` again collects (and resubmits what failed or was lost).")


def _say(text: str) -> None:
    console.print(escape(text), soft_wrap=True, highlight=False)


def _warn(text: str) -> None:
    err_console.print(escape(text), soft_wrap=True, highlight=False)


@app.command()
@user_errors
def plot(results_dir: Annotated[Path, typer.Argument(help="An experiment folder, e.g. results/quickstart.",
                                                    show_default=False)],
         names: Annotated[list[str] | None, typer.Argument(
             metavar="NAME", help="Draw only these figures, e.g. curves gap (`dlbench list` names every plot); "
                                  "default: the config's `plots:` list.", show_default=False)] = None,
         target: Annotated[float | None, typer.Option(
             help="Also draw the figures that need a target validation accuracy (0..1): profile.")] = None) -> None:
    """Draw the experiment's figures as PNGs into RESULTS_DIR, from the folder alone: the config's
    `plots:` list (or the NAMEs given)."""
    with _collector_paused():  # a short command: what it loads (matplotlib) stays until it exits
        from dlbench.results import plots as plots_mod

        check_folder(results_dir)
        written = plots_mod.write(plots_mod.load(results_dir, target), names or None)
    if names and len(written) < len(names):
        drawn = {p.stem for p in written}
        missing = next(n for n in names if n not in drawn)
        fail(f"plot {missing}: nothing to draw from {results_dir}: {plots_mod.PLOTS[missing].help}")
    if not written:
        fail(f"{results_dir}: nothing to plot yet (no finished runs)")
    for path in written:
        console.print(str(path))


_DEFAULT_AT, _DEFAULT_ADJUST = At(report_options.default("at")), Adjust(report_options.default("adjust"))


def _report_option(name: str) -> Any:
    """The flag of a report option, its help and metavar from its one definition (ReportOptions)."""
    metavar = report_options.FIELDS[name].metadata["metavar"]
    return typer.Option(report_options.flag(name), help=report_options.help_of(name),
                        **({"metavar": metavar} if metavar else {}))


@app.command()
@user_errors
def report(
    results_dirs: Annotated[list[Path], typer.Argument(
        metavar="RESULTS_DIR", help="An experiment folder, e.g. results/quickstart; "
             "several folders with the same swept keys are compared side by side.", show_default=False)],
    format: Annotated[Format | None, typer.Option(
        "--format", "-f", help="Output format; by default the --output suffix's (.csv -> csv, .md -> markdown, "
                               ".tex -> latex, ...), else table.",
        show_default=False)] = None,
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", metavar="FILE", help="Write to FILE instead of stdout; its suffix names the format: "
                                               ".csv .json .md .tex .txt .html.")] = None,
    at: Annotated[At, _report_option("at")] = _DEFAULT_AT,
    metric: Annotated[str, _report_option("metric")] = report_options.default("metric"),
    baseline: Annotated[list[str] | None, _report_option("baseline")] = None,
    target: Annotated[float | None, _report_option("target")] = None,
    group_by: Annotated[list[str] | None, _report_option("group_by")] = None,
    where: Annotated[list[str] | None, _report_option("where")] = None,
    losses: Annotated[bool, _report_option("losses")] = False,
    calibration: Annotated[bool, _report_option("calibration")] = False,
    adjust: Annotated[Adjust, _report_option("adjust")] = _DEFAULT_ADJUST,
    importance: Annotated[bool, typer.Option(
        "--importance", help="Instead of the statistics: which searched setting mattered, each searched key's "
                             "share of the variance of validation accuracy (fANOVA on a search's first round).")
    ] = False,
) -> None:
    """Statistics over seeds from results folders (reads only the folders): mean ± std, 95% CI,
    Welch's t-test against the best (or a baseline), time to target; table, csv, markdown, json, latex or html."""
    with _collector_paused():  # the report's libraries (pandas): start-up
        from dlbench.results.render import formats as formats_mod
        from dlbench.results import shown as shown_mod

    for d in results_dirs:
        check_folder(d)
    # the statistics options, checked and documented once (dlbench.results.options; the API takes the same)
    options = report_options.ReportOptions(
        at=at.value, metric=metric, baseline=tuple(baseline or ()), target=target,
        group_by=tuple(group_by or ()), where=tuple(where or ()), losses=losses, calibration=calibration,
        adjust=adjust.value)
    if importance:
        _importance(results_dirs, format, output, options)
        return
    fmt = report_options.format_of(output, format.value if format else None)
    task = shown_mod.task_of(results_dirs[0])
    if task != "train" and fmt != "html" and (format or output):  # the task's own table, printed
        fail(f"report {'--format' if format else '--output'}: {results_dirs[0]} holds a task: {task} experiment, "
             "whose report is its own table (printed without options); the statistics options apply to training "
             "sweeps")
    view = shown_mod.shown(results_dirs, options, write=True)
    if fmt == "html":  # the whole page: the tables, the folders' figures, config and environment
        from dlbench.results import html

        _emit(html.page(view.title, view.rich(), results_dirs, options if view.report else None), output)
    elif fmt == "table" and output is None and console.is_terminal:
        for table in view.rich(console.width):
            console.print(table)
    elif fmt == "table":
        _emit(view.text(), output)
    else:  # csv, markdown, json, latex: the report alone
        assert view.report is not None
        _emit(formats_mod.export(view.report, fmt), output)


def _importance(results_dirs: list[Path], format: Any, output: Path | None,
                options: report_options.ReportOptions) -> None:
    """report --importance: its text per folder; the statistics' options do not apply and are refused."""
    from dlbench.results import plots as plots_mod
    from dlbench.results.search_figures import importance_text

    if output is not None and output.suffix not in ("", ".txt"):
        fail(f"report --output: {output} is invalid with --importance, which writes text: name a .txt file")
    refused = [*map(report_options.flag, options.changed()),
               *([] if format is None or format.value == "table" else ["--format"])]
    if refused:
        fail(f"report {refused[0]}: --importance prints which searched setting mattered, as text; {refused[0]} "
             "applies to the statistics (drop one of them)")
    _emit("\n".join(importance_text(plots_mod.load(d)) for d in results_dirs), output)


def _emit(text: str, output: Path | None) -> None:
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text, encoding="utf-8")
        err_console.print(f"wrote {output}", highlight=False)


@app.command()
@user_errors
def export(
    results_dir: Annotated[Path, typer.Argument(help="An experiment folder, e.g. results/quickstart.",
                                                show_default=False)],
    to: Annotated[str, typer.Option("--to", metavar="tensorboard|mlflow",
                                    help="tensorboard: event folders; mlflow: an MLflow store.", show_default=False)],
    output: Annotated[Path, typer.Option("--output", "-o", metavar="DIR", help="Folder to write into.",
                                         show_default=False)],
) -> None:
    """Export every run of RESULTS_DIR (scalars by step, swept values, status) to TensorBoard or MLflow."""
    from dlbench.results import export as export_mod

    check_folder(results_dir)
    console.print(export_mod.export(results_dir, to, output), soft_wrap=True)


ResultsDir = Annotated[Path, typer.Argument(help="An experiment folder, e.g. results/quickstart.", show_default=False)]


@app.command()
@user_errors
def status(results_dir: ResultsDir) -> None:
    """Where a sweep stands, read from its folder alone (from any terminal, whichever launcher trains it).

    Runs finished / training / queued / pruned / failed / diverged, the SLURM tasks and their
    states, the runs in training (step, last validation accuracy, step time), the best
    configuration so far and the time left from measured step times."""
    from dlbench import monitor

    monitor.status(results_dir, console)


@app.command()
@user_errors
def watch(results_dir: ResultsDir,
          refresh: Annotated[float, typer.Option(min=0.1, metavar="SECONDS", help="Seconds between redraws.")]
          = 2.0) -> None:
    """What `dlbench status` shows, redrawn until the sweep ends; Ctrl-C stops watching, not the sweep.

    The sweep has ended when nothing trains or runs it any more (its `dlbench run`, a worker, a
    queued or running SLURM task); watch then exits 0, its last view left on the screen."""
    from dlbench import monitor

    try:
        monitor.watch(results_dir, console, refresh)
    except KeyboardInterrupt:  # only the watching ends: exit 0, nothing to say
        pass


@app.command()
@user_errors
def validate(config: Annotated[Path, typer.Argument(help="Experiment config (YAML).")], sets: SetOption = None,
             max_runs: MaxRunsOption = DEFAULT_MAX_RUNS, yes: YesOption = False, plugin: PluginOption = None) -> None:
    """Check a config (and its --set overrides) and that its datasets load, without training."""
    from dlbench import runner
    from dlbench.tasks import trains

    from dlbench.training.run import resolve_device

    from dlbench.plan import sweep

    cfg, specs, _, _ = runner.load(config, sets or [], max_runs, yes, plugin)
    for name in {s.config.train.device for s in specs}:
        resolve_device(name)  # refuses cuda on a machine without it
    if trains(cfg.task):  # the function and activations tasks read no data
        runner.prepare_data(specs, "cpu")
    later = runner.planned_runs(cfg) - len(specs) if sweep.staged(cfg) else 0
    more = f" now, up to {later} more in later rounds and the confirm stage" if later > 0 else ""
    console.print(f"{config}: ok — experiment {cfg.name!r}, {len(specs)} runs{more}")


@app.command("list")
@user_errors
def list_registries(
    kind: Annotated[str | None, typer.Argument(help="Only this kind: " + ", ".join([*CATALOG.kinds(), "metric"])
                                                + " (or its plural: metrics).", show_default=False)] = None,
    plugin: PluginOption = None,
) -> None:
    """List every component a config can name, kind by kind: datasets, preprocessing, models, model presets,
    activations, norms, poolings, init schemes, losses, optimizers, schedules, augmentations, tasks, plots, test
    functions (task: function), export targets and executors, with the settings each reads and their defaults;
    then the metrics a report ranks and compares on."""
    from dlbench import plugins
    from dlbench.catalog import CATALOG, SECTIONS, type_text

    plugins.load_entry_points()
    plugins.load(plugin or [])
    kinds = [*CATALOG.kinds(), "metric"]
    plurals = {k + ("es" if k.endswith("s") else "s"): k for k in kinds}
    kind = plurals.get(kind, kind) if kind is not None else None
    if kind is not None and kind not in kinds:
        _exit(f"list: {kind!r} is invalid: allowed kinds: {', '.join(kinds)}", 2)
    chosen_by = {s.chooses: f"{s.name}.{s.key}" for s in SECTIONS.values() if s.chooses}
    for registry in CATALOG:  # the catalog's records: names, summaries, settings, facts; no torch
        if kind is not None and registry.kind != kind:
            continue
        plural = registry.label + ("es" if registry.label.endswith("s") else "s")
        where = f"[dim]{chosen_by[registry.kind]}:[/] " if registry.kind in chosen_by else ""  # the key naming one
        table = Table(title=where + plural, title_justify="left", show_header=False, box=None)
        table.add_column(style="bold cyan", no_wrap=True)
        table.add_column()
        for c in registry:
            lines = [escape(c.summary)]
            for s in c.settings:
                default = "required" if s.required else f"default {s.default!r}"
                lines.append(f"  [green]{escape(s.name)}[/]: {escape(type_text(s.type))}, {escape(default)} "
                             f"[dim]- {escape(s.doc)}[/]")
            facts = "; ".join(f"{k}: {v}" for k, v in c.facts.items() if k not in ("values", "plugin", "sha256"))
            if facts:
                lines.append(f"  [dim]{escape(facts)}[/]")
            if c.source != "built in":  # a plugin's file carries its hash; a built-in dataset says where it comes from
                digest = f" (sha256 {c.facts['sha256'][:12]})" if "sha256" in c.facts else ""
                lines.append(f"  [dim]source: {escape(c.source)}{digest}[/]")
            table.add_row(escape(c.name), "\n".join(lines))
        console.print(table)
        console.print()
    if kind in (None, "metric"):
        console.print(_metrics_table())


def _metrics_table() -> Table:
    """The catalog's metrics: what `dlbench report --metric` takes, with what each is and how it is shown."""
    from dlbench.catalog.metrics import METRICS

    table = Table(title="[dim]report --metric:[/] metrics", title_justify="left", show_header=False, box=None)
    table.add_column(style="bold cyan", no_wrap=True)
    table.add_column()
    for m in METRICS:
        table.add_row(escape(m.name), f"{escape(m.words)} ({escape(m.label)}): {escape(m.doc)}\n"
                                      f"  [dim]{escape(m.facts())}[/]")
    return table


@app.command("schema")
@user_errors
def print_schema(
    plugin: PluginOption = None,
    config: Annotated[Path | None, typer.Option("--config", metavar="FILE", help="A config whose plugins: the "
                                                "schema includes (your own components in your editor).",
                                                show_default=False)] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", metavar="FILE", help="Write to FILE (e.g. "
                                                "schema.json beside your configs) instead of stdout.",
                                                show_default=False)] = None,
) -> None:
    """Print the JSON Schema of a config file (for editors: the YAML language server's $schema modeline)."""
    import json

    from dlbench import plugins
    from dlbench.config.json_schema import json_schema
    from dlbench.config.yaml_io import read_config

    plugins.from_config(read_config(config) if config is not None else {}, config, plugin or [])
    _emit(json.dumps(json_schema(), indent=1) + "\n", output)


def _exit(message: str, code: int) -> NoReturn:
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    sys.exit(code)


def command() -> TyperGroup:
    """The click command behind `dlbench`, its help in the user's words: arguments as CONFIG
    and RESULTS_DIR... (not {config} <path>), flags without a value placeholder (--dry-run,
    not --dry-run <bool>)."""
    cmd = typer.main.get_command(app)
    assert isinstance(cmd, TyperGroup)
    for sub in [cmd, *cmd.commands.values()]:
        for param in sub.params:
            if isinstance(param, TyperArgument):
                name = (param.metavar or param.name or "").upper() + ("..." if param.nargs != 1 else "")
                param.metavar = name
                usage = name if param.required else f"[{name}]"
                # Typer's display hooks, replaced per parameter (methods, to the checker)
                param._usage_display_name = lambda usage=usage: usage  # type: ignore[method-assign,misc]
                param.display_type_rich = lambda ctx: None  # type: ignore[method-assign]
            elif isinstance(param, TyperOption) and param.is_flag:
                param.display_type_rich = lambda ctx: None  # type: ignore[method-assign]
        sub.get_help_option = functools.partial(_help_option, sub.get_help_option)  # type: ignore[method-assign]
    return cmd


def _help_option(make: Callable[[Any], Any], ctx: Any) -> Any:
    """--help, shown as the flag it is (click makes it per context)."""
    option = make(ctx)
    if option is not None:
        option.display_type_rich = lambda ctx: None
    return option


# OpenMP threads (torch's, MKL's) that find no work spin this many rounds (~20 us) before they sleep, instead
# of libgomp's default 300,000 (milliseconds): between two of a step's kernels they still spin, but on a busy
# machine a spinning thread no longer holds a core that the thread it waits for needs (a 64-run stack with 2
# threads at a load of 4: 15-30 s instead of 4.5-5 s). Read when torch loads, so set before; a user's
# OMP_WAIT_POLICY or GOMP_SPINCOUNT is kept.
OPENMP_SPIN = "1000"


def main() -> None:
    if "OMP_WAIT_POLICY" not in os.environ:
        os.environ.setdefault("GOMP_SPINCOUNT", OPENMP_SPIN)
    try:
        command()(standalone_mode=True)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)
    except SchedulerError as e:
        _exit(str(e), 1)
    except Exception as e:
        if os.environ.get("DLBENCH_DEBUG"):
            raise
        _exit(f"{type(e).__name__}: {e} (set DLBENCH_DEBUG=1 for the traceback)", 1)
