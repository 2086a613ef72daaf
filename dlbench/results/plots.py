"""Figures (PNG) drawn from a results folder only, like the report.

`write(res)` reads the folder's view.json (name, task, `plots:` list, swept points in
sweep order, task details; written by `dlbench run`) and writes root/<plot>.png for
each of the plots, or the task's usual ones. Every figure is a plain
`matplotlib.figure.Figure`, never pyplot, so drawing needs no display and leaves no
global state behind. Curves are the mean over seeds with a ± 1 std band, grouped by
configuration (the swept keys) and drawn in sweep order.
"""

from __future__ import annotations

import functools
import math
import io
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from dlbench.errors import ConfigError
from dlbench.results import report
from dlbench.results.load import value_text
from dlbench.catalog import CATALOG
from dlbench.catalog.metrics import METRICS
from dlbench.results import options
from dlbench.catalog.status import OK, TROUBLE
from dlbench.results.store import atomic_write, read_view
from dlbench.results.figure_kit import (
    BARS_DRAWN, DPI, PLOTS, Folder, _band, _colors, _figure, _legend, _log_ticks, label, palette,
)
from dlbench.results import tuning_figures  # noqa: F401 - registers the search figures (sensitivity, profile)
from dlbench.results import search_figures  # noqa: F401 - registers importance and parallel

if TYPE_CHECKING:
    from matplotlib.figure import Figure

_X_LABEL = {"step": "step", "epoch": "epoch", "seconds": "wall time since the first evaluation (s)"}


def _curve_panels(measure: str | None = None) -> list[tuple[str, str, float]]:
    """(column, title, scale) of each curves panel: the metrics whose record asks for one, in their unit as in
    the tables (the one that ranks the default table says so), then the schedule; or a measure's metrics."""
    ranks = METRICS.selection(options.default("metric"))
    chosen = [m for m in METRICS.declared() if (m.curve if measure is None else m.measure == measure)]
    return [*((m.name, m.words + (f" {m.unit}" if m.unit else "") + (" (ranks the table)" if m.name == ranks else ""),
               m.scale) for m in chosen),
            *([("lr_of_peak", "learning rate ÷ its peak (the schedule)", 1.0)] if measure is None else [])]


def _varies_over_steps(metrics: pd.DataFrame, column: str) -> bool:
    return column in metrics and bool((metrics.groupby("run_id")[column].nunique() > 1).any())


def curves(res: Folder, x: str = "step", measure: str | None = None) -> Figure | None:
    metrics = res.per_run("metrics.csv")
    if metrics.empty:
        return None
    # time since the run's first evaluation: loading the data is no part of training
    metrics["seconds"] -= metrics.groupby("run_id")["seconds"].transform("first")
    if _varies_over_steps(metrics, "lr"):  # a schedule: its shape, on one scale for every optimizer's lr
        metrics["lr_of_peak"] = metrics["lr"] / metrics.groupby("run_id")["lr"].transform("max")
    shown = [p for p in _curve_panels(measure) if p[0] in metrics and metrics[p[0]].notna().any()]
    if not shown:  # an older folder, before the engine measured it
        return None
    kept, greyed = res.drawn()
    labels = [lab for lab in res.labels_in(metrics) if lab in set(kept)]
    log_x = x == "epoch" and metrics["epoch"].max() > 50 * max(metrics.loc[metrics["epoch"] > 0, "epoch"].min(), 1e-9)
    if log_x:  # epoch 0 has no place on a log axis: drawn at its edge, it is a flat line to the first evaluation
        metrics = metrics[metrics["epoch"] > 0]
    cols = 2 if len(shown) + 1 <= 4 else 3  # one spare panel for the legend
    rows = math.ceil((len(shown) + 1) / cols)
    fig, axes = _figure(rows, cols, (4.2, 3.0))
    panels = list(axes.flat)
    colors = palette(res.points, res.keys, labels)
    for lab in greyed:  # the others: their mean only, thin and grey, under the configurations told apart
        runs = metrics[metrics["label"] == lab].replace([np.inf, -np.inf], np.nan).groupby("idx")
        for ax, (col, _, scale) in zip(panels, shown):
            ax.plot(runs[x].mean(), scale * runs[col].mean(), color="0.75", lw=0.6, zorder=1)
    for lab in labels:
        runs = metrics[metrics["label"] == lab]
        for ax, (col, _, scale) in zip(panels, shown):
            _band(ax, runs, x, col, colors.colors[lab], lab, colors.styles[lab], scale)
    if greyed:
        panels[0].plot([], [], color="0.75", lw=0.6, label=f"{len(greyed)} more (grey; see the table)")
    for ax, (col, title, _) in zip(panels, shown):
        ax.set(title=title, xlabel=_X_LABEL[x])
        ax.title.set_fontsize("medium")
        ax.grid(alpha=0.3)
        ax.margins(x=0)
        if col in METRICS and METRICS[col].possible == (0.0, math.inf):  # a loss: decades apart
            ax.set_yscale("log")
            _log_ticks(ax, metrics[col])
    if log_x:
        for ax in panels[:len(shown)]:
            ax.set_xscale("log")
    for ax in panels[len(shown) + 1:]:
        fig.delaxes(ax)
    _legend(fig, panels[:len(shown) + 1], res.legend_title(), spare=panels[len(shown)], colors=colors)
    what = "learning curves" if measure is None else METRICS.measured_words(measure)
    fig.suptitle(f"{res.name}: {what} (mean ± std over seeds)")
    return fig


PLOTS.register("curves")(
    curves)
PLOTS.register("curves_epoch")(functools.partial(curves, x="epoch"))
PLOTS.register("curves_seconds")(
    functools.partial(curves, x="seconds"))
PLOTS.register("calibration")(functools.partial(curves, measure="ece"))


@PLOTS.register("gap")
def gap(res: Folder) -> Figure | None:
    if res.runs.empty:
        return None
    summary = report.aggregate(res.runs, ["label"]).set_index("label")
    kept, left_out = res.drawn(BARS_DRAWN)
    labels = [lab for lab in kept if lab in summary.index]
    fig, axes = _figure(1, 1, (7.5, 0.45 * len(labels) + 1.4))
    ax = axes[0, 0]
    y = np.arange(len(labels))
    top = 0.0
    for offset, split, color in ((-0.2, "train", "tab:blue"), (0.2, "test", "tab:orange")):
        mean = 100 * summary.loc[labels, f"{split}_acc_mean"]
        std = 100 * summary.loc[labels, f"{split}_acc_std"].fillna(0.0)  # one seed: no spread to draw
        ax.barh(y + offset, mean, 0.4, xerr=std, color=color, label=f"{split} accuracy", capsize=2)
        top = max(top, float((mean + std).max(skipna=True)) if mean.notna().any() else 0.0)
    for i, lab in enumerate(labels):
        row = summary.loc[lab]
        if row["n"]:  # ok runs: the gap beside the axes, at its row (the axis stays within accuracy)
            spread = "" if math.isnan(row["gap_std"]) else f" ± {100 * row['gap_std']:.1f}"
            ax.text(1.01, i, f"gap {100 * row['gap_mean']:.1f}{spread}", va="center", fontsize="small",
                    transform=ax.get_yaxis_transform())
        else:
            ax.text(1, i, f"no run finished ok ({_not_ok(row)})", va="center", fontsize="small")
    ax.set_yticks(y, labels)
    ax.invert_yaxis()
    ax.set(xlim=(0, min(100.0, 10 * math.ceil(top / 10 + 0.01)) if top > 0 else 100.0),
           xlabel="accuracy % at the final evaluation (mean ± std over seeds)",
           title=f"{res.name}: train vs test accuracy" + (
               f"\n(the best {len(labels)} of {len(labels) + len(left_out)} configurations by validation accuracy)"
               if left_out else ""))
    fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncols=2, fontsize="small")
    return fig


def _not_ok(row: pd.Series) -> str:
    return ", ".join(f"{row[s]} {s}" for s in TROUBLE if row.get(s))


@PLOTS.register("panels")
def panels(res: Folder) -> Figure | None:
    metrics = res.per_run("metrics.csv")
    if metrics.empty or len(res.keys) < 2:
        return None
    first, rest = res.keys[0], res.keys[1:]
    runs = res.runs.set_index("run_id")
    metrics["panel"] = [value_text(v) for v in runs.loc[metrics["run_id"], first]]
    metrics["line"] = [label(r, rest) for r in runs.loc[metrics["run_id"], rest].to_dict("records")]
    panel_values = list(dict.fromkeys(value_text(p.get(first)) for p in res.points))
    lines = list(dict.fromkeys(label(p, rest) for p in res.points))
    cols = math.ceil(math.sqrt(len(panel_values)))
    rows = math.ceil(len(panel_values) / cols)
    fig, axes = _figure(rows, cols, (3.2, 2.6), sharex=True, sharey=True)  # shared: fewer tick labels to draw
    colors = palette(res.points, rest, lines)
    status = res.runs.assign(panel=[value_text(v) for v in res.runs[first]],
                             line=[label(r, rest) for r in res.runs[rest].to_dict("records")])
    for ax, value in zip(axes.flat, panel_values):
        for line in lines:
            sel = metrics[(metrics["panel"] == value) & (metrics["line"] == line)]
            if not sel.empty:
                _band(ax, sel, "step", "train_acc", colors.colors[line], line, colors.styles[line], 100.0)
        runs = status[status["panel"] == value]
        gone = [f"{line}: {', '.join(sorted(set(g['status'])))}" for line, g in runs.groupby("line", sort=False)
                if (g["status"] != OK).all()]
        if gone:
            ax.text(0.03, 0.97, "\n".join(gone), transform=ax.transAxes, va="top", fontsize="small")
        ax.set_title(f"{first} = {value}", fontsize="medium")
        ax.set_ylim(0, 100)
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(panel_values):]:
        ax.set_visible(False)
    for ax in axes.flat[:len(panel_values)]:
        ax.set_xlabel("step")
    for ax in axes[:, 0]:
        ax.set_ylabel("train accuracy %")
    spare = axes.flat[len(panel_values)] if len(panel_values) < axes.size else None
    if spare is not None:
        spare.set_visible(True)
    _legend(fig, list(axes.flat), res.legend_title(rest), spare=spare, colors=colors)
    fig.suptitle(f"{res.name}: train accuracy (mean ± std over seeds)")
    return fig


@PLOTS.register("scatter")
def scatter(res: Folder) -> Figure | None:
    if res.runs.empty:
        return None
    numeric = [k for k in res.keys if pd.api.types.is_numeric_dtype(res.runs[k])]
    if len(numeric) < 2:
        raise ConfigError(f"plots: 'scatter' needs two numeric swept keys; this sweep has {res.keys}")
    kx, ky = numeric[:2]
    ok = res.runs[res.runs["status"] == OK]
    points = ok.groupby("label").agg(x=(kx, "first"), y=(ky, "first"), val=("final.val_acc", "mean"))
    fig, axes = _figure(1, 1, (6.0, 4.6))
    ax = axes[0, 0]
    dots = ax.scatter(points["x"], points["y"], c=100 * points["val"], cmap="viridis", s=45, edgecolors="k",
                      linewidths=0.3)
    best = points["val"].idxmax()
    ax.scatter([points.loc[best, "x"]], [points.loc[best, "y"]], marker="*", s=260, facecolors="none",
               edgecolors="red", label=f"best on validation: {100 * points.loc[best, 'val']:.1f} %")
    for axis in ("x", "y"):
        values = points[axis]
        if values.min() > 0 and values.max() / values.min() > 50:
            getattr(ax, f"set_{axis}scale")("log")
    fig.colorbar(dots, ax=ax, label="validation accuracy % (mean over seeds)")
    ax.set(xlabel=kx, ylabel=ky, title=f"{res.name}: validation accuracy (never test) per trial")
    ax.legend(loc="best", fontsize="small")
    return fig


def _final_hist(res: Folder, kind: str) -> pd.DataFrame:
    hist = res.per_run("histograms.csv")
    if hist.empty:
        return hist
    hist = hist[hist["kind"] == kind]
    last = hist.groupby("run_id")["step"].transform("max")
    return hist[hist["step"] == last]


@PLOTS.register("weights")
def weights(res: Folder) -> Figure | None:
    hist = _final_hist(res, "weight")
    if hist.empty:
        return None
    near = pd.DataFrame([{"label": r.label, "near": (s.get("diagnostics") or {}).get("weight_near_zero")}
                         for r, s in zip(res.runs.itertuples(), res.summaries())]).groupby("label")["near"].mean()
    fig, axes = _figure(1, 1, (7.0, 4.2))
    ax = axes[0, 0]
    labels = res.labels_in(hist)
    for lab, color in zip(labels, _colors(len(labels))):
        h = hist[hist["label"] == lab].groupby("left").agg(right=("right", "first"), count=("count", "sum"))
        frac = h["count"] / h["count"].sum()
        ax.stairs(frac.to_numpy(), np.append(h.index.to_numpy(), h["right"].iloc[-1]), color=color, lw=1.6,
                  label=f"{lab}: {100 * near.get(lab, math.nan):.1f} % near zero")
    threshold = math.log10(res.details["near_zero"])
    ax.axvline(threshold, color="k", ls="--", lw=1)
    ax.text(threshold, ax.get_ylim()[1] * 0.95, f" |w| < {res.details['near_zero']:g}", fontsize="small",
            va="top")
    ax.set(xlabel="log10 |w| (all weight matrices, all seeds; edge bins hold everything beyond)",
           ylabel="fraction of weights", title=f"{res.name}: weights at the final evaluation")
    ax.legend(fontsize="small", title=res.legend_title(), title_fontsize="small")
    return fig


def _per_layer(res: Folder, column: str, title: str, ylabel: str) -> Figure | None:
    diag = res.per_run("diagnostics.csv")
    if diag.empty or column not in diag:
        return None
    diag = diag.dropna(subset=[column])
    first = diag.groupby("run_id")["step"].transform("min")
    last = diag.groupby("run_id")["step"].transform("max")
    fig, axes = _figure(1, 2)
    labels = res.labels_in(diag)
    colors = _colors(len(labels))
    for ax, (which, at) in zip(axes[0], (("first", first), ("last", last))):
        rows = diag[diag["step"] == at]
        for lab, color in zip(labels, colors):
            mean = rows[rows["label"] == lab].groupby("layer")[column].mean()
            off_axis = " (all 0: off the log axis)" if (mean == 0).all() else ""
            ax.plot(mean.index, mean, "o-", color=color, label=lab + off_axis, ms=3)
        steps = sorted(set(rows["step"]))
        ax.set(title=f"{which} evaluation" + (f" (step {steps[0]})" if len(steps) == 1 else ""),
               xlabel="layer (1 = next to the input)", ylabel=ylabel, yscale="log")
        ax.grid(alpha=0.3)
    _legend(fig, axes[0], res.legend_title())
    fig.suptitle(f"{res.name}: {title} (mean over seeds)")
    return fig


PLOTS.register("gradients")(
    functools.partial(_per_layer, column="grad_norm", title="gradient norm per layer", ylabel="‖∂loss/∂W‖"))
PLOTS.register("activation_std")(
    functools.partial(_per_layer, column="act_std", title="activation std per layer", ylabel="activation std"))


# ---------------------------------------------------------------- the other tasks


@PLOTS.register("paths")
def paths(res: Folder) -> Figure | None:
    path_file, contour_file = res.root / "paths.csv", res.root / "contour.npz"
    if not path_file.is_file() or not contour_file.is_file():
        return None
    table = pd.read_csv(res.root / "summary.csv")
    path_df = pd.read_csv(path_file)
    path_df["label"] = [label(r, res.keys) for r in path_df[res.keys].to_dict("records")]
    with np.load(contour_file) as contour:  # the function on a grid over its view, written by the task
        gx, gy, gz = contour["x"], contour["y"], contour["f"]
    (x0, x1), (y0, y1) = res.details["view"]
    levels = np.geomspace(max(gz.min(), 1e-3), gz.max(), 14)
    n = len(table)
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig, axes = _figure(rows, cols, (4.0, 2.6 if x1 - x0 > 2 * (y1 - y0) else 3.4))
    for ax, (_, row) in zip(axes.flat, table.iterrows()):
        sel = path_df[path_df["label"] == label(row.to_dict(), res.keys)]
        ax.contour(gx, gy, gz, levels=levels, colors="0.6", linewidths=0.6)
        ax.plot(sel["x"], sel["y"], "o-" if len(sel) <= 100 else "-", color="tab:red", ms=2.5, lw=1)
        ax.plot(*res.details["minimum"], "+", color="k", ms=10)
        ax.set(xlim=(x0, x1), ylim=(y0, y1))
        steps = "never" if pd.isna(row["steps_to_threshold"]) else f"{int(row['steps_to_threshold'])} steps"
        ax.set_title(f"{label(row.to_dict(), res.keys)}\nf = {row['final_f']:.2g}; f < {row['threshold']:g}: {steps}",
                     fontsize="small")
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    fig.suptitle(f"{res.name}: {res.details['help']}", fontsize="medium")
    return fig


@PLOTS.register("histograms")
def histograms(res: Folder) -> Figure | None:
    from matplotlib.figure import Figure

    hist_file = res.root / "histograms.csv"
    if not hist_file.is_file():
        return None
    hist = pd.read_csv(hist_file)
    layers = pd.read_csv(res.root / "layers.csv")
    for df in (hist, layers):
        df["label"] = [label(r, res.keys) for r in df[res.keys].to_dict("records")] if res.keys else "defaults"
    labels = res.labels_in(hist)
    n_layers = int(hist["layer"].max())
    fig = Figure(figsize=(1.9 * n_layers + 1.6, 1.0 * len(labels) + 0.8), dpi=DPI)
    axes = fig.subplots(len(labels), n_layers, squeeze=False)
    fig.subplots_adjust(left=1.6 / (1.9 * n_layers + 1.6), right=0.99, bottom=0.2 / (1.0 * len(labels) + 0.8),
                        top=1 - 0.55 / (1.0 * len(labels) + 0.8), hspace=0.3, wspace=0.12)
    for r, lab in enumerate(labels):
        for c in range(n_layers):
            ax = axes[r, c]
            h = hist[(hist["label"] == lab) & (hist["layer"] == c + 1)].groupby("left").agg(
                right=("right", "first"), count=("count", "sum"))
            counts, edges = h["count"].to_numpy(), np.append(h.index.to_numpy(), h["right"].iloc[-1])
            ax.stairs(counts, edges, fill=True, color="tab:blue")
            for i in (0, len(counts) - 1):  # the edge bins also count what lies beyond the range: grey
                ax.stairs(counts[i:i + 1], edges[i:i + 2], fill=True, color="0.65")
            stats = layers[(layers["label"] == lab) & (layers["layer"] == c + 1)]
            text = f"std {stats['act_std'].mean():.2g}"
            if stats["act_saturated"].notna().any():
                text += f"\nsaturated {100 * stats['act_saturated'].mean():.0f}%"
            if stats["act_zero"].mean() > 0.01:
                text += f"\nzero {100 * stats['act_zero'].mean():.0f}% (not shown)"
            ax.text(0.97, 0.93, text, transform=ax.transAxes, ha="right", va="top", fontsize=6.5,
                    bbox={"facecolor": "white", "alpha": 0.7, "lw": 0, "pad": 1})
            ax.set_yticks([])
            lo, hi = h.index[0], h["right"].iloc[-1]
            ax.set_xlim(lo, hi)
            # three ticks a panel: the range differs by activation, and dozens of panels must draw fast
            ax.set_xticks([v for v in (lo, 0.0, hi) if lo <= v <= hi])
            ax.tick_params(axis="x", labelsize=6, length=2, pad=1)
            if r == 0:
                ax.set_title(f"layer {c + 1}", fontsize="small")
        axes[r, 0].set_ylabel(lab, fontsize=7, rotation=0, ha="right", va="center")
    fig.suptitle(f"{res.name}: activations of an untrained net on N(0, 1) inputs "
                 "(grey edge bins also hold the values beyond the range)", fontsize="small")
    return fig


# ---------------------------------------------------------------- entry point


def load(root: Path, target: float | None = None) -> Folder:
    """A results folder's view for figures and task tables."""
    return Folder(Path(root), read_view(Path(root)), target)


def _save(fig: Figure, path: Path) -> None:
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=DPI)
    atomic_write(path, png.getvalue())


def write(res: Folder, only: list[str] | None = None) -> list[Path]:
    """Draw the experiment's figures into its folder (or only the named ones); returns the PNGs
    written (none when nothing finished)."""
    written = []
    names = res.view.get("plots") or list(CATALOG["task"].record(res.task).facts["plots"])
    if not res.view.get("plots") and res.view.get("space"):  # a search: which setting mattered, every trial
        names = [*names, "parallel", "importance"]
    if res.target is not None:  # and the figures that need a target
        names = [*names, *(p.name for p in PLOTS if "target" in p.facts["needs"] and p.facts["task"] == res.task)]
    if only:
        unknown = [n for n in only if n not in PLOTS]
        if unknown:
            raise ConfigError(f"plot {unknown[0]}: unknown figure; figures: {', '.join(PLOTS.names())}")
        wrong = [n for n in only if PLOTS.record(n).facts["task"] != res.task]
        if wrong:
            raise ConfigError(f"plot {wrong[0]}: not a figure of a task: {res.task} experiment; its figures: "
                              f"{', '.join(p.name for p in PLOTS if p.facts['task'] == res.task)}")
        names = list(only)
        targetless = [n for n in names if "target" in PLOTS.record(n).facts["needs"] and res.target is None]
        if targetless:  # the record says what a figure needs: asked for here, once, for every such figure
            raise ConfigError(f"plot {targetless[0]}: it needs --target, a validation accuracy to reach "
                              f"(e.g. dlbench plot DIR {targetless[0]} --target 0.6)")
    for name in names:
        fig = PLOTS[name].builder(res)
        if fig is not None:
            path = res.root / f"{name}.png"
            _save(fig, path)
            written.append(path)
    return written


