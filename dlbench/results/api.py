"""Results for Python and notebooks: a results folder as DataFrames, report tables and figures.

`load(folder)` reads a folder written by `dlbench run` or `dlbench.run` and nothing else,
like `dlbench report` and `dlbench plot` (no torch, no config schema, no training code).
The numbers are the report's: `table()` is the table `dlbench report` prints, with the same
options as keyword arguments, as numbers (the same columns: `render.columns`); `summary` has
every number (`--format csv`); a `Results` shows in Jupyter as the report's table, rendered
by the HTML report's code, so a notebook, the terminal and the page agree.
"""

from __future__ import annotations

import functools
import html
from pathlib import Path
from typing import Any
from collections.abc import Mapping, Sequence

import pandas as pd
from matplotlib.figure import Figure
from rich.table import Table

from dlbench.config.yaml_io import yaml_text
from dlbench.errors import ConfigError, did_you_mean
from dlbench.results import html as html_page
from dlbench.results import plots
from dlbench.results import report as report_mod
from dlbench.results import load as load_mod
from dlbench.results.render import formats as formats_mod
from dlbench.results.render.columns import numbers
from dlbench.results.render import terminal as terminal_mod
from dlbench.results.options import FIELDS, FORMATS, ReportOptions, format_of
from dlbench.results.store import check_folder, metric_columns
from dlbench.results.shown import shown

Conditions = str | Sequence[str] | Mapping[str, Any]  # 'KEY=VALUE', a list of them, or {key: value}


def _conditions(given: Conditions | None, option: str, alternatives: bool) -> list[str]:
    """The CLI's KEY=VALUE strings from what Python gives: {key: value} (with `alternatives`, a
    list value means any of these) or the strings themselves."""
    if given is None:
        return []
    if isinstance(given, str):
        return [given]
    if isinstance(given, Mapping):
        return [f"{key}={yaml_text(one, f'{option} {key}')}" for key, value in given.items()
                for one in (value if alternatives and isinstance(value, list) else [value])]
    if not all(isinstance(item, str) for item in given):
        raise ConfigError(f"{option}: {given!r} is invalid: expected 'KEY=VALUE' strings or a {{key: value}} dict")
    return list(given)


def report_options(given: Mapping[str, Any], call: str) -> ReportOptions:
    """The report's options (ReportOptions: the flags of `dlbench report`) from Python keyword arguments:
    `baseline` / `where` as {key: value} or the CLI's 'KEY=VALUE' strings (in `where`, a list value means
    any of these values), `group_by` a key or a list of keys. An unknown keyword is refused in one line."""
    for name in given:
        if name not in FIELDS:
            raise ConfigError(f"{call}({name}=...): not a report option; allowed: {', '.join(FIELDS)}"
                              f"{did_you_mean(name, list(FIELDS))}")
    values = dict(given)
    for name, alternatives in (("baseline", False), ("where", True)):
        if name in values:
            values[name] = tuple(_conditions(values[name], name, alternatives))
    if "group_by" in values:
        group_by = values["group_by"]
        values["group_by"] = (group_by,) if isinstance(group_by, str) else tuple(group_by or ())
    return ReportOptions(**values)


def _write(text: str, path: str | Path) -> Path:
    out = Path(path)
    out.write_text(text, encoding="utf-8")
    return out


def _plain_frame(table: Table) -> pd.DataFrame:
    """A task's own table (optimizer paths, activation statistics) as the text it shows."""
    header, rows = html_page.cells(table)
    return pd.DataFrame(rows, columns=header)


class Results:
    """One results folder: `runs`, `summary` and `metrics` as DataFrames, `table(...)` (the
    report), `plot(name)` (a matplotlib Figure). Read from the folder when first asked."""

    def __init__(self, folder: str | Path) -> None:
        self.root = Path(folder)
        check_folder(self.root)
        self._folder = plots.load(self.root)  # view.json and the run folders: what figures and task tables read

    @property
    def name(self) -> str:
        return self._folder.name

    @property
    def task(self) -> str:
        return self._folder.task

    @functools.cached_property
    def _runs_and_keys(self) -> tuple[pd.DataFrame, list[str]]:
        return load_mod.load_runs(self.root)

    @property
    def keys(self) -> list[str]:
        """The swept keys (the columns that name a configuration)."""
        return list(self._runs_and_keys[1])

    @property
    def runs(self) -> pd.DataFrame:
        """One row per finished run: swept values, seed, status, final.* / best.* metrics, the
        resolved config as config.* columns (runs.csv)."""
        return self._runs_and_keys[0].copy()

    @functools.cached_property
    def _summary(self) -> pd.DataFrame:
        if self.task != "train":  # optimizer paths: final values per configuration; activations: none
            file = self.root / "summary.csv"
            return pd.read_csv(file) if file.is_file() else pd.DataFrame()
        runs, keys = self._runs_and_keys
        return pd.DataFrame() if runs.empty else report_mod.build(runs, keys).summary

    @property
    def summary(self) -> pd.DataFrame:
        """One row per configuration, best validation accuracy first: run counts, and n, mean,
        std and 95% CI of every metric over the ok runs at the final evaluation (summary.csv;
        a task that trains nothing: its summary.csv, if it writes one)."""
        return self._summary.copy()

    @functools.cached_property
    def _metrics(self) -> pd.DataFrame:
        ids = ["run_id", *self.keys, "seed", "status"]
        stacked = self._folder.per_run("metrics.csv")
        if stacked.empty:
            return pd.DataFrame(columns=[*ids, *metric_columns()])
        return self._runs_and_keys[0][ids].merge(stacked.drop(columns=["label", "idx"]), on="run_id")

    @property
    def metrics(self) -> pd.DataFrame:
        """Every evaluation of every run (long format, from each run's metrics.csv): one row per
        run x evaluation, with the run's id, swept values, seed and status as columns."""
        return self._metrics.copy()

    def table(self, **options: Any) -> pd.DataFrame:
        """The report's table as numbers (the columns `dlbench report` prints with these options, each
        statistic as its mean, std and 95% interval, in the metric's stored unit: accuracies as fractions;
        the comparison as delta, p_value, p_adjusted, verdict): one row per configuration, ranked on the
        validation split of `metric`, compared with the best (or `baseline`). Every number: `summary`.

        options: those of `dlbench report` (dlbench.results.options.ReportOptions): at, metric,
        baseline, target, group_by, where, losses, calibration, adjust. baseline / where: {"optimizer.name": "sgd"}
        or the CLI's "optimizer.name=sgd" strings; in `where`, a list value means any of these values;
        adjust: "holm" (p_adjusted, and the verdicts from it) or "none". A task that trains nothing
        (optimizer paths, activations) has its own table, which takes no options."""
        chosen = self._options(options, "table")
        if self.task != "train":
            return _plain_frame(self._shown()[0])
        return numbers(report_mod.report([self.root], chosen))

    def text(self, format: str = "table", **options: Any) -> str:
        """The report as `dlbench report --format FORMAT` writes it (table, csv, markdown, json, latex or
        html: the whole page), with the report's options as keyword arguments (see `table`)."""
        chosen = self._options(options, "text")
        if self.task != "train" and format not in ("table", "html"):
            raise ConfigError(f"text(format={format!r}): {self.root} holds a task: {self.task} experiment, "
                              "whose report is its own table (as table or html)")
        if format not in FORMATS:
            raise ConfigError(f"text(format={format!r}): invalid; allowed: {', '.join(FORMATS)}")
        view = shown([self.root], chosen, self._title())
        if format == "html":
            return html_page.page(view.title, view.rich(), [self.root], chosen if view.report else None)
        if format == "table" or view.report is None:
            return view.text()
        return formats_mod.export(view.report, format)

    def save(self, path: str | Path, format: str | None = None, **options: Any) -> Path:
        """`dlbench report FOLDER --output PATH`: the report written to `path`, in `format` or its suffix's."""
        return _write(self.text(format_of(Path(path), format), **options), path)

    def _options(self, given: Mapping[str, Any], call: str) -> ReportOptions:
        chosen = report_options(given, call)
        if self.task != "train" and chosen.changed():
            raise ConfigError(f"{call}({chosen.changed()[0]}=...): {self.root} holds a task: {self.task} experiment, "
                              "whose report is its own table (given without options)")
        return chosen

    def _title(self) -> str:
        return f"{self.name}: {self._folder.view.get('description') or ''}".strip(": ")

    def plot(self, name: str) -> Figure:
        """One of the folder's figures (a `plots:` name, see `dlbench list`) as a matplotlib Figure."""
        mine = [p.name for p in plots.PLOTS if p.facts["task"] == self.task]
        if name not in mine:
            raise ConfigError(f"plot: {name!r} is invalid for a task: {self.task} folder; allowed: "
                              f"{', '.join(mine)}{did_you_mean(str(name), mine)}")
        figure = plots.PLOTS[name].builder(self._folder)
        if figure is None:
            raise ConfigError(f"plot {name!r}: nothing to draw in {self.root} (no finished runs, or the "
                              "diagnostics it needs were not recorded)")
        return figure

    def importance(self) -> pd.DataFrame:
        """Which searched setting mattered (`dlbench report DIR --importance`): one row per search group
        and searched key, `share` of the variance of validation accuracy (fANOVA on the first round), its
        `spread` (std over forest seeds), `points`, `evaluator`; a NaN share where the round is too small."""
        from dlbench.results import search_figures

        return search_figures.importance_frame(search_figures.importance(self._folder))

    def _shown(self) -> list[Table]:
        """The tables a Results shows: those `dlbench report` prints for the folder."""
        return shown([self.root], title=self._title()).rich()

    def _finished(self) -> bool:
        return self.task != "train" or not self._runs_and_keys[0].empty

    def _repr_html_(self) -> str:
        if not self._finished():
            return f"<p>{html.escape(str(self.root))}: no finished runs yet</p>"
        return "\n".join(map(html_page.table_html, self._shown()))

    def __str__(self) -> str:
        if not self._finished():
            return f"{self.root}: no finished runs yet"
        return shown([self.root], title=self._title()).text()

    def __repr__(self) -> str:
        if self.task != "train":
            return f"<Results {self.root}: task {self.task}>"
        runs = self._runs_and_keys[0]
        status = ", ".join(f"{n} {s}" for s, n in runs["status"].value_counts().items()) if len(runs) else "none"
        return f"<Results {self.root}: {len(runs)} runs ({status}); swept: {', '.join(self.keys) or 'nothing'}>"


class Comparison:
    """Several results folders side by side, as `dlbench report A B` (same swept keys; each
    configuration compared with itself in the first folder)."""

    def __init__(self, folders: Sequence[Results | str | Path], options: ReportOptions) -> None:
        if len(folders) < 2:
            raise ConfigError(f"compare: {len(folders)} folder given; compare two or more")
        self.roots = [f.root if isinstance(f, Results) else Path(f) for f in folders]
        for root in self.roots:
            check_folder(root)
        self.options = options
        self._rep = report_mod.report(self.roots, options)  # bad options are refused here, not when shown

    def table(self) -> pd.DataFrame:
        """The comparison's table as numbers (the columns `dlbench report A B` prints; see Results.table)."""
        return numbers(self._rep)

    def text(self, format: str = "table") -> str:
        """The comparison as `dlbench report A B --format FORMAT` writes it (html: the whole page)."""
        return formats_mod.text(self._rep, self._title(), format, self.roots)

    def save(self, path: str | Path, format: str | None = None) -> Path:
        """`dlbench report A B --output PATH`: written to `path`, in `format` or its suffix's."""
        return _write(self.text(format_of(Path(path), format)), path)

    def _title(self) -> str:
        return " vs ".join(r.name for r in self.roots)

    def _shown(self) -> Table:
        return terminal_mod.rich_table(self._rep, self._title())

    def _repr_html_(self) -> str:
        return html_page.table_html(self._shown())

    def __str__(self) -> str:
        return terminal_mod.plain_text(self._shown())

    def __repr__(self) -> str:
        return f"<Comparison {' vs '.join(map(str, self.roots))}>"


def load(folder: str | Path) -> Results:
    """A results folder (results/<name>) as Results."""
    return Results(folder)


def compare(*folders: Results | str | Path, **options: Any) -> Comparison:
    """Two or more results folders (or Results) side by side, as `dlbench report A B`, with every option
    of `dlbench report` as a keyword argument (at, metric, baseline, target, group_by, where, losses, calibration,
    adjust: see `Results.table`)."""
    return Comparison(folders, report_options(options, "compare"))
