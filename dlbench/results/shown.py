"""What a results folder shows, decided once for every task: a training sweep its report (statistics over
seeds; of a staged search, its confirm and defaults stages) and, when it recorded diagnostics, their table;
a task that trains nothing (optimizer paths, activation statistics) its own table, which takes no options.
`dlbench run`, `dlbench report`, the Python API and the HTML page all call `shown`, so the table a sweep
ends with is the table `dlbench report` prints for its folder.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from rich.table import Table

from dlbench.errors import ConfigError
from dlbench.results import report as report_mod
from dlbench.results.render import terminal as terminal_mod
from dlbench.results.figure_kit import Folder
from dlbench.results.options import ReportOptions, flag
from dlbench.results.report import Report
from dlbench.results.store import read_view
from dlbench.results.tables import table as task_table


@dataclass
class Shown:
    title: str
    report: Report | None  # the statistics of a training sweep (None: a task that trains nothing)
    tables: list[Table] = field(default_factory=list)  # after the report: the task's own table, or the diagnostics

    def rich(self, width: int | None = None) -> list[Table]:
        """Every table, the report's fitted to `width` columns (None: as wide as it needs)."""
        first = [terminal_mod.rich_table(self.report, self.title, width)] if self.report is not None else []
        return [*first, *self.tables]

    def text(self) -> str:
        """Every table as plain text, as wide as it needs."""
        return "".join(terminal_mod.plain_text(t) for t in self.rich())


def task_of(root: Path) -> str:
    return str(read_view(root).get("task", "train"))


def shown(roots: list[Path], options: ReportOptions = ReportOptions(), title: str | None = None, *,
          write: bool = False) -> Shown:
    """What the folders show, computed with `options` (refused, in one line, for a task that trains nothing);
    `write`: runs.csv and summary.csv are rewritten from the run folders first (`dlbench run` and `report`)."""
    task = task_of(roots[0])
    title = title if title is not None else " vs ".join(r.name for r in roots)
    if task != "train":
        refused = [flag(name) for name in options.changed()]
        if refused or len(roots) > 1:
            raise ConfigError(f"report {refused[0] if refused else 'several folders'}: {roots[0]} holds a task: "
                              f"{task} experiment, whose report is its own table (printed without options); the "
                              "statistics options apply to training sweeps")
        table = task_table(Folder(roots[0], read_view(roots[0])))
        assert table is not None, f"task {task} has no table"  # every task but train has one (results/tables.py)
        return Shown(title, None, [table])
    if write:
        for root in roots:
            report_mod.write_tables(root)
    rep = report_mod.report(roots, options)
    # the diagnostics a sweep recorded, after its report (one folder: a comparison has no such table)
    diagnostics = task_table(Folder(roots[0], read_view(roots[0]))) if len(roots) == 1 else None
    return Shown(title, rep, [diagnostics] if diagnostics is not None else [])
