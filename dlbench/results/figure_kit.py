"""What every figure is drawn with: the folder's view (`Folder`), the one figure registry (`PLOTS`, against
the catalog's plot records), figures, colours, line styles, bands, legends that stay inside, log ticks.

plots.py (the training and task figures) and tuning_figures.py (search figures) both draw with these,
so neither imports the other's helpers.
"""

from __future__ import annotations

import functools
import json
import math
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from collections.abc import Callable, Iterable

import numpy as np
import pandas as pd

from dlbench.catalog import CATALOG, Kind
from dlbench.catalog.metrics import METRICS
from dlbench.results import load as load_mod
from dlbench.results.load import value_text

if TYPE_CHECKING:  # matplotlib loads when a figure is drawn: `run --no-plots` and task tables start without it
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

# keys whose values read on their own in a legend ("sgd", "he_normal"); others show as key=value
_SELF_EXPLAINING = ("case", "name", "scheme", "kind", "activation", "loss", "dataset")
DPI = 90
# configurations a figure tells apart, the best first; the others grey (lines) or left out (bars):
# 40 lines are what ten colours in four line styles keep apart (_styles); 20 bars keep a figure a page high
LINES_DRAWN, BARS_DRAWN = 40, 20


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def label(params: dict[str, Any], keys: list[str]) -> str:
    """A configuration's legend entry: 'sgd lr=0.95', or just the value when one key is swept."""
    present = [k for k in keys if not _missing(params.get(k))]
    if len(keys) == 1:
        return value_text(params.get(keys[0])) if present else "–"
    short = {k: k.rsplit(".", 1)[-1] for k in present}
    parts = [value_text(params[k]) if short[k] in _SELF_EXPLAINING else f"{short[k]}={value_text(params[k])}"
             for k in present]
    return " ".join(parts) or "defaults"


@dataclass
class Folder:
    """What the figures and task tables read: the folder's view.json (written by `dlbench run`:
    name, task, plots, swept points in sweep order, task details) and its files, nothing else,
    so a folder stays readable whatever the code that wrote it."""

    root: Path
    view: dict[str, Any]
    target: float | None = None  # validation accuracy for time-to-target figures (dlbench plot --target)

    @property
    def name(self) -> str:
        return str(self.view.get("name", self.root.name))

    @property
    def task(self) -> str:
        return str(self.view.get("task", "train"))

    @property
    def details(self) -> dict[str, Any]:
        """Task facts for captions and figures (function name and view, samples, near_zero, ...)."""
        return self.view.get("details") or {}

    @functools.cached_property
    def points(self) -> list[dict[str, Any]]:
        """The swept values of each configuration, in sweep order (from the folder's runs
        when an older folder has no view.json)."""
        if "points" in self.view and load_mod.PLUGIN_VERSION not in self.keys:
            return list(self.view["points"])
        runs, _ = load_mod.load_runs(self.root)
        return [] if runs.empty else runs[self.keys].to_dict("records")

    @functools.cached_property
    def keys(self) -> list[str]:
        """The swept keys, and the plugin version when a plugin's source changed between runs."""
        loaded = load_mod.load_runs(self.root)[1]
        if "keys" in self.view:
            return [*self.view["keys"], *(k for k in loaded if k == load_mod.PLUGIN_VERSION)]
        return loaded

    @functools.cached_property
    def order(self) -> list[str]:
        """Configuration labels in sweep order; runs of earlier sweeps into the folder after them."""
        planned = [label(p, self.keys) for p in self.points]
        return list(dict.fromkeys([*planned, *sorted(set(self.runs.get("label", [])))]))

    @functools.cached_property
    def runs(self) -> pd.DataFrame:
        """One row per finished run (load_mod.load_runs) plus its configuration's label."""
        runs, _ = load_mod.load_runs(self.root)
        if runs.empty:
            return runs
        for k in self.keys:
            if k not in runs:
                runs[k] = None
        runs["label"] = [label(r, self.keys) for r in runs[self.keys].to_dict("records")]
        return runs

    def per_run(self, filename: str) -> pd.DataFrame:
        """A CSV of every run folder stacked, with run_id, label and the row's index within its run."""
        frames = []
        for run in self.runs.itertuples():
            path = self.root / "runs" / run.run_id / filename
            if path.is_file() and path.stat().st_size:
                df = pd.read_csv(path)
                if filename == "metrics.csv":  # and the metrics derived from the recorded ones (the gap)
                    df = load_mod.with_derived(df)
                if len(df):  # a failed run's metrics.csv is a header only
                    frames.append(df.assign(run_id=run.run_id, label=run.label, idx=np.arange(len(df))))
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    def summaries(self) -> list[dict[str, Any]]:
        """summary.json of each run in `runs`, in the same order."""
        if self.runs.empty:
            return []
        return [json.loads((self.root / "runs" / r / "summary.json").read_text()) for r in self.runs["run_id"]]

    def drawn(self, limit: int = LINES_DRAWN) -> tuple[list[str], list[str]]:
        """The configurations a figure draws (in sweep order) and those it leaves in grey or out: of a staged
        search its confirm and defaults stages, as the report shows them; past `limit`, the best `limit` by
        the report's ranking (mean final validation accuracy over ok runs; test accuracy without one)."""
        runs = self.runs
        if runs.empty:
            return [], []
        if "stage" in runs and (runs["stage"] == "confirm").any():
            runs = runs[runs["stage"] != "search"]
        labels = [lab for lab in self.order if lab in set(runs["label"])]
        if len(labels) <= limit:
            return labels, []
        ok = runs[runs["status"] == "ok"]
        ranks = METRICS.selection("val_acc")
        column = f"final.{ranks}" if ok.get(f"final.{ranks}", pd.Series(dtype=float)).notna().any() else \
            "final.test_acc"
        means = ok.groupby("label")[column].mean() if column in ok else pd.Series(dtype=float)
        higher = METRICS[column.removeprefix("final.")].higher_is_better
        best = means.dropna().sort_values(ascending=not higher, kind="stable").index[:limit]
        kept = [lab for lab in labels if lab in set(best)] or labels[:limit]
        return kept, [lab for lab in labels if lab not in set(kept)]

    def labels_in(self, df: pd.DataFrame) -> list[str]:
        present = set(df["label"]) if "label" in df else set()
        return [lab for lab in self.order if lab in present]

    def legend_title(self, keys: list[str] | None = None) -> str:
        return textwrap.fill(", ".join(keys if keys is not None else self.keys), 40)


def metric_words(column: str, unit: bool = False) -> str:
    """A runs column in words: 'final.val_acc' -> 'final validation accuracy' (and its unit: '... %')."""
    at, _, name = column.rpartition(".")
    if name not in METRICS:
        return column
    m = METRICS[name]
    return " ".join(part for part in (at, m.words, m.unit if unit else "") if part)


PlotFn = Callable[[Folder], "Figure | None"]  # None: nothing to draw (e.g. no finished runs)
PLOTS: Kind[PlotFn] = CATALOG["plot"]


def _figure(rows: int = 1, cols: int = 1, size: tuple[float, float] = (4.5, 3.4), **shared: Any
            ) -> tuple[Figure, np.ndarray]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(size[0] * cols, size[1] * rows), dpi=DPI, layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False, **shared)
    return fig, axes


def _colors(n: int) -> list[Any]:
    from matplotlib import colormaps

    cmap = colormaps["tab10"]  # ten colours that read apart; past ten lines the line style changes (_styles)
    return [cmap(i % cmap.N) for i in range(n)]


def _styles(n: int) -> list[str]:
    """Solid for the first ten lines, then dashed, dotted, dash-dot: with _colors, 40 lines stay apart."""
    return [("-", "--", ":", "-.")[(i // 10) % 4] for i in range(n)]


MANY_LINES = 10  # past this, lines that are values of one number are told apart by a colour scale, not a legend


@dataclass
class Palette:
    """Each line's colour and style. Up to ten lines, or lines that are not values of one number: ten
    colours that read apart, then line styles (_colors, _styles), named in a legend. More lines of one
    numeric key (16 weight stds): a sequential colormap over the value, on a log scale where the values
    span two decades or more, read from a colour bar (`scale`) instead of a legend of 16 entries."""

    colors: dict[str, Any]
    styles: dict[str, str]
    scale: Any = None  # a matplotlib ScalarMappable for the colour bar, or None: a legend


def palette(points: list[dict[str, Any]], keys: list[str], labels: list[str]) -> Palette:
    """The palette of `labels` (label(point, keys) of the sweep's points) as _legend draws its key."""
    values = {label(p, keys): p.get(keys[0]) for p in points} if len(keys) == 1 else {}
    numbers = [float(v) for v in (values.get(lab) for lab in labels)
               if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)]
    if len(labels) <= MANY_LINES or len(numbers) != len(labels):
        return Palette(dict(zip(labels, _colors(len(labels)))), dict(zip(labels, _styles(len(labels)))))
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import ListedColormap, LogNorm, Normalize

    low, high = min(numbers), max(numbers)
    norm = LogNorm(low, high) if low > 0 and high >= 100 * low else Normalize(low, high)
    # viridis without its last tenth: its pale yellow end hardly shows on white
    cmap = ListedColormap(colormaps["viridis"](np.linspace(0.0, 0.9, 256)))
    colors = {lab: cmap(float(norm(v))) for lab, v in zip(labels, numbers)}
    scale = ScalarMappable(norm, cmap)
    return Palette(colors, dict.fromkeys(labels, "-"), scale)


def _band(ax: Axes, runs: pd.DataFrame, x: str, y: str, color: Any, name: str, style: str = "-",
          scale: float = 1.0) -> None:
    """Mean over seeds of y (times `scale`: 100 for accuracies in %) at each evaluation, with a ± 1 std band."""
    g = runs.replace([np.inf, -np.inf], np.nan).groupby("idx")
    xs, mean, std = g[x].mean(), scale * g[y].mean(), scale * g[y].std(ddof=1).fillna(0.0)
    ax.plot(xs, mean, style, color=color, label=name, lw=1.4)
    ax.fill_between(xs, mean - std, mean + std, color=color, alpha=0.18, lw=0)


def _legend_rows(n: int, cols: int) -> float:
    return math.ceil(n / cols) + 1.5  # entries and the title, in lines of small text


def _legend(fig: Figure, axes: Iterable[Axes], title: str, spare: Axes | None = None,
            colors: Palette | None = None) -> None:
    """The legend inside the figure: in a spare panel when there is one, else below the panels in
    as many columns as it needs (the figure is made tall enough by its caller: _legend_height).
    A palette with a colour scale gets a colour bar beside the panels instead (`axes`: all of them)."""
    if colors is not None and colors.scale is not None:
        if spare is not None:
            spare.set_visible(False)
        shown = [ax for ax in axes if ax.get_visible() and ax is not spare]
        fig.colorbar(colors.scale, ax=shown, label=title, shrink=0.9, aspect=30)
        return
    handles, labels = next(iter(axes)).get_legend_handles_labels()
    if not handles:
        return
    if spare is not None:
        spare.axis("off")
        spare.legend(handles, labels, title=title, loc="upper left", fontsize="small", title_fontsize="small",
                     frameon=False, ncols=1 if len(handles) <= 14 else 2)
        return
    fig.legend(handles, labels, title=title, loc="outside lower center", fontsize="small", title_fontsize="small",
               frameon=False, ncols=_legend_cols(labels, fig.get_figwidth()))


def _legend_cols(labels: list[str], width: float) -> int:
    """As many columns as fit the figure's width (inches; small text is about 0.075 in a character)."""
    longest = max((len(lab) for lab in labels), default=1)
    return max(1, min(len(labels), int(width / (0.075 * longest + 0.6))))


def _legend_height(labels: list[str], width: float) -> float:
    """Inches the legend below the panels takes."""
    return 0.2 * _legend_rows(len(labels), _legend_cols(labels, width))


def _log_ticks(ax: Axes, values: pd.Series) -> None:
    """A log axis with enough labelled ticks: within a decade 1..9 x 10^k or round values, within two 1, 2, 5 x 10^k."""
    from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

    finite = values[np.isfinite(values) & (values > 0)]
    if finite.empty:
        return
    decades = math.log10(finite.max() / finite.min()) if finite.min() > 0 else math.inf
    if decades > 2:
        return  # matplotlib labels each decade
    if decades >= 1:
        ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    else:  # 1..9 x 10^k, unless that labels fewer than three (1.2 to 3.4: 2, 3): evenly spaced round values
        low, high = finite.min(), finite.max()
        first = math.floor(math.log10(low))
        labelled = sum(low <= k * 10.0 ** e <= high for e in (first, first + 1) for k in range(1, 10))
        ax.yaxis.set_major_locator(LogLocator(base=10, subs=tuple(range(1, 10))) if labelled >= 3
                                   else MaxNLocator(nbins=5))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.3g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())
