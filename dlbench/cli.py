"""The `dlbench` command line: thin, it parses arguments and calls the modules."""

from __future__ import annotations

import os
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, NoReturn, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from dlbench import config as config_mod
from dlbench import report as report_mod
from dlbench import sweep
from dlbench.config import ConfigError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="dlbench: compare how neural networks train. One YAML file in, runs trained, a table out.",
    pretty_exceptions_enable=False,
)
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


def fail(message: str, code: int = 2) -> NoReturn:
    """Inside a command: one line on stderr, then exit."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


SetOption = Annotated[
    Optional[list[str]],
    typer.Option("--set", "-s", metavar="KEY=VALUE",
                 help="Override a config value, e.g. --set optimizer.lr=0.01 (YAML-typed; repeatable)."),
]


def _load(config: Path, sets: list[str] | None) -> tuple[config_mod.Config, list[sweep.RunSpec], dict]:
    cfg, raw = config_mod.load(config, sets or [])
    return cfg, sweep.expand(cfg, raw), raw


def _runs_table(specs: list[sweep.RunSpec]) -> Table:
    keys = sweep.swept_keys(specs)
    table = Table(title=f"{len(specs)} runs")
    for h in ["#", "run id", *keys, "seed"]:
        table.add_column(h)
    for i, s in enumerate(specs, 1):
        table.add_row(str(i), s.run_id, *(str(s.params.get(k, "–")) for k in keys), str(s.seed))
    return table


@app.command()
def run(
    config: Annotated[Path, typer.Argument(help="Experiment config (YAML).", show_default=False)],
    sets: SetOption = None,
    device: Annotated[Optional[Device], typer.Option(help="Where to train; overrides train.device.")] = None,
    out: Annotated[Path, typer.Option(help="Results root; runs go to OUT/<name>/.")] = Path("results"),
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the expanded runs and train nothing.")] = False,
    executor: Annotated[str, typer.Option(
        help="How runs are trained: auto (= vectorized), serial, vectorized (compatible runs as one stacked "
             "model), processes (a process pool), ray (Ray tasks).")] = "auto",
    workers: Annotated[Optional[int], typer.Option(
        min=1, help="Tasks at a time for --executor processes / ray (default: one per CPU).")] = None,
    address: Annotated[Optional[str], typer.Option(
        help="Ray cluster address for --executor ray (default: start a local Ray instance).")] = None,
) -> None:
    """Expand CONFIG into runs, train them, save results/<name>/ and print the comparison table.

    Runs already finished in the results folder are skipped, so re-running a
    sweep resumes it. Exit code: 0 all runs ok or diverged, 1 some run failed,
    2 bad input.
    """
    from dlbench.executors import Options, resolve
    from dlbench.store import Store
    from dlbench.train import resolve_device

    overrides = list(sets or []) + ([f"train.device={device.value}"] if device else [])
    cfg, specs, raw = _load(config, overrides)
    options = Options(workers, address)
    launch = resolve(executor, options)
    if dry_run:
        console.print(_runs_table(specs))
        return
    dev = resolve_device(cfg.train.device)
    store = Store(out / cfg.name)
    store.begin(raw)
    done = store.finished()
    todo = [s for s in specs if done.get(s.run_id) not in ("ok", "diverged")]
    if len(todo) < len(specs):
        console.print(f"{len(specs) - len(todo)} of {len(specs)} runs already finished in {store.root}; skipping them")

    n_failed = 0
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TimeRemainingColumn()]
    with Progress(*columns, console=err_console, transient=False) as progress:
        overall = progress.add_task(f"{cfg.name} on {dev.type}", total=len(todo))
        current = progress.add_task("run", total=1, visible=False)

        def on_start(spec: sweep.RunSpec):
            label = ", ".join(f"{k}={v}" for k, v in spec.params.items())
            progress.reset(current, total=1, description=f"  {label} seed={spec.seed}"[:70], visible=True)
            return lambda step, total: progress.update(current, completed=step, total=total)

        for result in launch(todo, dev, on_start, options):
            store.save(result)
            if result.status == "failed":
                n_failed += 1
                err_console.print(f"[red]run {result.spec.run_id} failed:[/] {result.summary['error']}",
                                  highlight=False)
            progress.advance(overall)
        progress.update(current, visible=False)

    summary, keys = report_mod.write_tables(store.root)
    console.print(report_mod.rich_table(summary, keys, title=f"{cfg.name}: {cfg.description}".strip(": ")))
    console.print(f"results: {store.root}")
    if n_failed:
        raise typer.Exit(1)


@app.command()
def report(
    results_dir: Annotated[Path, typer.Argument(help="An experiment folder, e.g. results/quickstart.")],
    format: Annotated[Format, typer.Option("--format", "-f", help="Output format.")] = Format.table,
) -> None:
    """Print the comparison table of a results folder (reads only the folder)."""
    if not (results_dir / "runs").is_dir():
        fail(f"{results_dir}: not a results folder (expected {results_dir / 'runs'}/)")
    summary, keys = report_mod.write_tables(results_dir)
    if summary.empty:
        fail(f"{results_dir}: no finished runs yet")
    if format is Format.table:
        console.print(report_mod.rich_table(summary, keys, title=results_dir.name))
    else:
        sys.stdout.write(report_mod.export(summary, keys, format.value))


@app.command()
def validate(config: Annotated[Path, typer.Argument(help="Experiment config (YAML).")], sets: SetOption = None) -> None:
    """Check a config (and its --set overrides) without running it."""
    cfg, specs, _ = _load(config, sets)
    console.print(f"{config}: ok — experiment {cfg.name!r}, {len(specs)} runs")


@app.command("list")
def list_registries() -> None:
    """List the datasets, models, activations, norms, init schemes, optimizers and losses."""
    from dlbench.data import DATASETS
    from dlbench.inits import INITS
    from dlbench.losses import LOSSES
    from dlbench.models import ACTIVATIONS, MODELS, NORMS
    from dlbench.optim import OPTIMIZERS

    for registry in (DATASETS, MODELS, ACTIVATIONS, NORMS, INITS, OPTIMIZERS, LOSSES):
        table = Table(title=f"{registry.kind}s", title_justify="left", show_header=False, box=None)
        table.add_column(style="bold cyan")
        table.add_column()
        for entry in registry:
            extra = ", ".join(f"{k}: {v}" for k, v in entry.info.items() if k != "hyper")
            table.add_row(entry.name, entry.help + (f" [dim]({extra})[/]" if extra else ""))
        console.print(table)
        console.print()


def _exit(message: str, code: int) -> NoReturn:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    sys.exit(code)


def main() -> None:
    try:
        app(standalone_mode=True)
    except ConfigError as e:
        _exit(str(e), 2)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)
    except Exception as e:  # noqa: BLE001 - no tracebacks for users; DLBENCH_DEBUG=1 shows them
        if os.environ.get("DLBENCH_DEBUG"):
            raise
        _exit(f"{type(e).__name__}: {e} (set DLBENCH_DEBUG=1 for the traceback)", 1)
