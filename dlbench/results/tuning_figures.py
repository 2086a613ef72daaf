"""Figures for tuning comparisons, drawn from the results tables only.

`sensitivity`: how the final validation accuracy depends on each searched
hyperparameter. `profile`: an AlgoPerf-style performance profile, which asks in how
many settings a method reaches the target as fast as the fastest method, or within a
factor τ of it. Both take the runs table (runs.csv, or `report.load_runs`; the
profile after `report.time_to_target` has added the ttt.* columns) and return a
`matplotlib.figure.Figure`.
"""

from __future__ import annotations

import math
import textwrap
from typing import TYPE_CHECKING, Any
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from dlbench.catalog.status import EVALUATED, PRUNED
from dlbench.errors import ConfigError
from dlbench.results.figure_kit import PLOTS, Folder, _colors, _figure, _legend, metric_words
from dlbench.results.load import time_to_target
from dlbench.results.load import value_text as _fmt

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

NOT_OK_MARK = "x"  # a configuration none of whose seeds trained (all diverged or failed)


def _is_log(declared: Mapping[str, Any]) -> bool:
    return "log_uniform" in declared


def _is_choice(declared: Mapping[str, Any]) -> bool:
    return "choice" in declared




def _padded(low: float, high: float, log: bool, margin: float = 0.04) -> tuple[float, float]:
    """Axis limits a little wider than [low, high] (on a log scale for a log axis)."""
    if log:
        a, b = math.log10(low), math.log10(high)
        pad = margin * (b - a) or 0.1
        return 10 ** (a - pad), 10 ** (b + pad)
    pad = margin * (high - low) or 0.5
    return low - pad, high + pad


def _ordered(values: pd.Series, order: Sequence[Any] | None) -> list[Any]:
    """The distinct values, in `order` where given (the sweep's order), the rest as they come."""
    present = list(dict.fromkeys(values))
    first = [v for v in order or [] if v in present]
    return first + [v for v in present if v not in first]


def _point_stats(runs: pd.DataFrame, configuration: list[str], metric: str) -> pd.DataFrame:
    """One row per configuration: its key values, mean / std / count of `metric` over its
    seeds that trained, and `trained`: whether any did (else all diverged or failed). A
    pruned run (stopped early by successive halving) counts with its last accuracy."""
    done = runs["status"].isin(EVALUATED)
    values = runs[metric].where(done).astype(float)
    rows = []
    for key, g in runs.assign(_v=values).groupby(configuration, sort=False, dropna=False):
        v = g["_v"].dropna()
        rows.append({**dict(zip(configuration, key if isinstance(key, tuple) else (key,))),
                     "mean": v.mean() if len(v) else math.nan, "std": v.std(ddof=1) if len(v) > 1 else math.nan,
                     "n": len(v), "pruned": bool((g["status"] == PRUNED).any()),
                     "trained": bool(g["status"].isin(EVALUATED).any())})
    return pd.DataFrame(rows)


def _draw_group(ax: Axes, stats: pd.DataFrame, x: np.ndarray, color: Any, name: str, line: bool) -> None:
    """Mean ± std over seeds: a line with a band along a 1-D sweep, else dots with error bars."""
    trained = stats["trained"].to_numpy()
    mean, std = 100 * stats["mean"].to_numpy(), 100 * stats["std"].fillna(0.0).to_numpy()
    if line:
        order = np.argsort(x[trained], kind="stable")
        xs, ms, ss = x[trained][order], mean[trained][order], std[trained][order]
        ax.plot(xs, ms, "o-", color=color, label=name, lw=1.4, ms=3)
        ax.fill_between(xs, ms - ss, ms + ss, color=color, alpha=0.18, lw=0)
    else:
        full = trained & ~stats["pruned"].to_numpy()
        ax.errorbar(x[full], mean[full], yerr=std[full], fmt="o", color=color, label=name, ms=4, elinewidth=1,
                    capsize=2, alpha=0.85)
        cut = trained & stats["pruned"].to_numpy()
        if cut.any():  # hollow: their accuracy is from before the end of training
            ax.scatter(x[cut], mean[cut], s=22, facecolors="none", edgecolors=color, lw=1)
    if (~trained).any():  # at the bottom of the panel, whatever its y range
        ax.plot(x[~trained], np.full((~trained).sum(), 0.02), NOT_OK_MARK, color=color, ms=6,
                transform=ax.get_xaxis_transform())


def sensitivity(runs: pd.DataFrame, keys: Sequence[str], space: Mapping[str, Mapping[str, Any]], *,
                by: str | None = None, order: Sequence[Any] | None = None, metric: str = "final.val_acc",
                title: str = "") -> Figure:
    """One panel per searched hyperparameter: `metric` (validation accuracy at the final
    evaluation by default) of every configuration against its value, on a log axis where
    the range is log-uniform; one colour per value of `by` (an optimizer or a case), in
    `order` (default: as the runs come).

    `keys` are the swept keys (what tells configurations apart), `space` the searched
    ranges in the config's form ({"optimizer.lr": {"log_uniform": [1e-4, 1]}}). Seeds of
    one configuration give its mean ± std: a band when the panel's key is the only thing
    that varies within a colour, error bars otherwise. Configurations where no seed
    trained (diverged or failed) are crosses at the bottom; pruned ones hollow dots.
    """
    configuration = list(dict.fromkeys([*keys, *([by] if by else [])]))
    stats = _point_stats(runs, configuration, metric)
    if stats["trained"].any() and stats["mean"].isna().all():
        raise ValueError(f"no run has a {metric} to draw (data.val_size: 0 leaves no validation set)")
    groups = _ordered(stats[by], order) if by else [None]
    colors = dict(zip(groups, _colors(len(groups))))
    searched = list(space)
    fig, axes = _figure(1, len(searched), (4.2, 3.4) if len(searched) > 1 else (5.6, 3.6), sharey=True)
    for ax, key in zip(axes[0], searched):
        declared = space[key]
        if _is_choice(declared):
            ticks = [_fmt(c) for c in declared["choice"]]
            position = {t: i for i, t in enumerate(ticks)}
            ax.set_xticks(range(len(ticks)), ticks)
            ax.set_xlim(-0.5, len(ticks) - 0.5)
        for i, group in enumerate(groups):
            g = stats if group is None else stats[stats[by] == group]
            if _is_choice(declared):  # side by side within a category
                x = np.array([position.get(_fmt(v), math.nan) for v in g[key]], dtype=float)
                x += 0.5 * (i + 0.5) / len(groups) - 0.25
            else:
                x = g[key].to_numpy(dtype=float)
            # a curve only where this key is all that varies between the colour's configurations
            others = [c for c in configuration if c not in (key, by)]
            line = (not _is_choice(declared) and g[key].is_unique
                    and all(g[c].nunique(dropna=False) <= 1 for c in others))
            _draw_group(ax, g.reset_index(drop=True), x, colors[group], _fmt(group) if group is not None else key,
                        line)
        if _is_log(declared):
            ax.set_xscale("log")
        if not _is_choice(declared):  # the whole declared range: where the search could have gone
            low, high = next(iter(declared.values()))
            ax.set_xlim(*_padded(low, high, log=_is_log(declared)))
        ax.set(title=key, xlabel=key + (" (log scale)" if _is_log(declared) else ""))
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel(metric_words(metric, unit=True))
    handles = [*axes[0, 0].get_legend_handles_labels()[0]]
    from matplotlib.lines import Line2D

    extra = []
    if (~stats["trained"]).any():
        extra.append(Line2D([], [], ls="", marker=NOT_OK_MARK, color="0.3",
                            label="no seed trained (diverged / failed)"))
    if stats["pruned"].any():
        extra.append(Line2D([], [], ls="", marker="o", mfc="none", color="0.3", label="pruned (accuracy when stopped)"))
    items = [*(handles if by else []), *extra]
    if items:  # below the panels: beside them it would run into the title
        fig.legend(items, [h.get_label() for h in items], title=by, loc="outside lower center",
                   ncols=min(len(items), 4), fontsize="small", title_fontsize="small", frameon=False)
    fig.suptitle(title or textwrap.fill(f"sensitivity: {metric_words(metric)} (mean ± std over seeds) per "
                                        "searched hyperparameter", int(16 * fig.get_figwidth())), fontsize="medium")
    return fig


# ---------------------------------------------------------------- performance profile


def performance_ratios(runs: pd.DataFrame, method: str, settings: Sequence[str], configuration: Sequence[str],
                       unit: str = "step", order: Sequence[Any] | None = None) -> pd.DataFrame:
    """τ of every (setting, method): its time to the target over the fastest method's.

    A configuration's time is the median over its seeds of `ttt.<unit>` (a seed that
    never reached the target, diverged or failed counts as never: infinity); a method's
    time in a setting is that of its fastest configuration there (as tuned). Methods
    that never reach, or have no runs in a setting, get τ = inf; so does everyone in a
    setting no method reaches. Rows: settings (first-seen order), columns: methods (in
    `order` where given).
    """
    column = f"ttt.{unit}"
    if column not in runs:
        raise ValueError(f"runs have no {column} column: add it with report.time_to_target")
    settings = list(settings)
    configuration = list(dict.fromkeys([method, *settings, *configuration]))
    times = (runs.assign(_t=runs[column].astype(float).fillna(math.inf))
             .groupby(configuration, sort=False, dropna=False)["_t"].median().reset_index())
    best_config = times.groupby([*settings, method] if settings else [method], sort=False)["_t"].min()
    table = best_config.unstack(method) if settings else best_config.to_frame().T
    table = table.reindex(columns=_ordered(runs[method], order)).fillna(math.inf)
    fastest = table.min(axis=1)
    ratios = table.div(fastest, axis=0)
    ratios[~np.isfinite(fastest)] = math.inf  # inf / inf where no method reaches: never, for all
    ratios.columns.name = method
    return ratios


def profile(runs: pd.DataFrame, method: str, settings: Sequence[str], configuration: Sequence[str], *,
            unit: str = "step", order: Sequence[Any] | None = None, tau_max: float = 4.0, target: float | None = None,
            title: str = "") -> Figure:
    """For each method, the fraction of settings where it reaches the target within τ times
    the fastest method's time, for τ from 1 to `tau_max` (a step curve; see performance_ratios)."""
    ratios = performance_ratios(runs, method, settings, configuration, unit, order)
    n = len(ratios)
    fig, axes = _figure(1, 1, (6.4, 4.0))
    ax = axes[0, 0]
    styles = ["-", "--", ":", "-."]
    for i, (name, color) in enumerate(zip(ratios.columns, _colors(len(ratios.columns)))):
        r = np.sort(ratios[name].to_numpy(dtype=float))
        taus = np.concatenate([[1.0], r[(r > 1) & (r <= tau_max)], [tau_max]])
        fraction = np.searchsorted(r, taus, side="right") / n
        never = "" if np.isfinite(r).any() else " (never reaches)"
        ax.step(taus, fraction, where="post", color=color, ls=styles[i % len(styles)], lw=1.8,
                label=f"{_fmt(name)}{never}")
    reach = f"val acc ≥ {target:g}" if target is not None else "the target"
    ax.set(xlim=(1, tau_max), ylim=(-0.03, 1.03), xlabel=f"τ ({unit}s to {reach} ÷ the fastest method's)",
           ylabel=f"fraction of the {n} setting{'s' * (n != 1)}")
    ax.grid(alpha=0.3)
    _legend(fig, [ax], method)
    where = f" ({', '.join(settings)})" if settings else ""
    ax.set_title(title or f"performance profile: {len(ratios.columns)} methods over {n} setting{'s' * (n != 1)}{where}",
                 fontsize="medium")
    return fig


STAGE_KEYS = ("stage", "round")  # a staged search's labels, not hyperparameters


@PLOTS.register("sensitivity")
def sensitivity_plot(res: Folder) -> Figure | None:
    space = res.view.get("space") or {}
    if not space:
        raise ConfigError("plots: 'sensitivity' draws a random: search; this sweep has no random: section")
    runs = res.runs
    if runs.empty:
        return None
    if "stage" in runs:  # confirm / defaults reruns are not points of the search
        runs = runs[runs["stage"] == "search"]
    keys = [k for k in res.keys if k not in STAGE_KEYS]
    others = [k for k in keys if k not in space]
    by = "case" if "case" in others else (others[0] if others else None)
    order = list(dict.fromkeys(p.get(by) for p in res.points)) if by else None
    return sensitivity(runs, keys, space, by=by, order=order,
                       title=f"{res.name}: validation accuracy over the searched values")


def profile_settings(runs: pd.DataFrame, method: str, keys: Sequence[str]) -> list[str]:
    """The keys the methods are compared across. A key that moves with the method (a section
    grid, `optimizer: [{name: sgd, lr: 0.1}, ...]`: one lr per optimizer) is part of the method
    as written, not a setting: each of its values would be a case only one method has."""
    return [k for k in keys if k != method
            and runs.groupby(method, dropna=False)[k].nunique(dropna=False).max() > 1]


@PLOTS.register("profile")
def profile_plot(res: Folder) -> Figure | None:
    if res.target is None:
        raise ConfigError("plot 'profile': needs a target validation accuracy; use: dlbench plot DIR --target 0.6")
    runs = res.runs
    if runs.empty:
        return None
    if "stage" in runs:  # each case as tuned by its search
        runs = runs[runs["stage"] == "search"]
    keys = [k for k in res.keys if k not in STAGE_KEYS]
    if not keys:
        raise ConfigError("plot 'profile': compares methods (cases or a swept key); this sweep sweeps nothing")
    method = "case" if "case" in keys else keys[0]
    space = res.view.get("space") or {}
    settings = profile_settings(runs, method, [k for k in keys if k not in space])
    order = list(dict.fromkeys(p.get(method) for p in res.points))
    return profile(time_to_target(res.root, runs, res.target), method, settings, keys, order=order,
                   target=res.target, title=f"{res.name}: performance profile (validation accuracy {res.target:g})")
