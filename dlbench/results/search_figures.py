"""What a search found, from its folder: which searched setting mattered (`importance`: a table,
`dlbench report DIR --importance`, and a figure) and every trial at once (`parallel`: parallel
coordinates, one axis per searched key and one for the metric the search ranked on: its runs'
`train.monitor`, validation accuracy by default).

Importance is computed on the first round of each search group only: its points are drawn
without regard to any result, while later rounds crowd where earlier ones did well and pruned
runs stop early, both of which bias the forest that importance is read from. Where the first
round was pruned, every point is measured at the first pruning evaluation, the last one all of
them reached.
"""

from __future__ import annotations

import json
import math
import textwrap
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from collections.abc import Mapping

import numpy as np
import pandas as pd

from dlbench.catalog.status import DIVERGED, EVALUATED, PRUNED
from dlbench.errors import ConfigError
from dlbench.results.figure_kit import DPI, PLOTS, Folder, _colors, _figure
from dlbench.results.load import value_text
from dlbench.search import importance as evaluators
from dlbench.catalog.metrics import METRICS, TRAINING_BEST, Metric
from dlbench.results.load import chosen_on
from dlbench.search.bayes import worst
from dlbench.search.space import Space, space_of

if TYPE_CHECKING:
    from matplotlib.figure import Figure

STAGE_KEYS = ("stage", "round")


def ranked_on(runs: pd.DataFrame) -> Metric:
    """The metric the search ranked its points on: its runs' train.monitor (summary.json's best_on), in its
    direction; validation accuracy where the runs say nothing else (or disagree)."""
    chosen = chosen_on(runs) if len(runs) else set()
    return METRICS[chosen.pop() if len(chosen) == 1 else TRAINING_BEST]


def _cell(value: Any) -> Any:
    """A choice as the runs table holds it (lists as JSON text)."""
    return json.dumps(value) if isinstance(value, (list, dict)) else value


def searched(res: Folder, what: str) -> dict[str, Any]:
    """The folder's searched ranges as declared, or one line saying there are none."""
    space = res.view.get("space") or {}
    if not space:
        raise ConfigError(f"{what}: {res.root} holds no search (its config has no random: section); "
                          "importance and parallel coordinates read a search's trials")
    return dict(space)


def search_runs(res: Folder) -> pd.DataFrame:
    """The search's runs (not its confirm / defaults reruns)."""
    runs = res.runs
    if not runs.empty and "stage" in runs:
        runs = runs[runs["stage"] == "search"]
    return runs


def groups(res: Folder, space: Mapping[str, Any]) -> list[tuple[str | None, dict[str, Any]]]:
    """Each search of the folder (one per case x grid point), in sweep order: its name ('case=adam
    model.hidden=[100]'; None when the folder holds one search) and its values of the keys that tell
    the searches apart."""
    others = [k for k in res.keys if k not in space and k not in STAGE_KEYS]
    if not others:
        return [(None, {})]
    seen: dict[str, dict[str, Any]] = {}
    for p in res.points:
        values = {k: p.get(k) for k in others}
        seen.setdefault(json.dumps(values, sort_keys=True, default=str), values)
    return [(" ".join(f"{k}={value_text(v)}" for k, v in values.items()), values) for values in seen.values()]


def of_group(runs: pd.DataFrame, values: Mapping[str, Any]) -> pd.DataFrame:
    """The runs of one search (lists are JSON text in the runs table)."""
    keep = pd.Series(True, index=runs.index)
    for k, v in values.items():
        keep &= runs[k].isna() if v is None else runs[k] == _cell(v)
    return runs[keep]


# ---------------------------------------------------------------- importance


@dataclass(frozen=True)
class GroupImportance:
    group: str | None  # the search's name ('case=adam'), None when the folder holds one search
    points: int  # distinct first-round points with a measurement
    at: str  # where each point was measured: "the end of training" or "step N"
    result: evaluators.Importance | None  # None: too few points (see `reason`)
    reason: str = ""
    metric: Metric = field(default_factory=lambda: METRICS[TRAINING_BEST])  # what its points' values are


def _first_round(runs: pd.DataFrame, res: Folder, metric: Metric) -> tuple[pd.DataFrame, str]:
    """Round 1's runs with the value importance reads (`_value`: `metric`) and where it was measured."""
    first = runs[runs["round"] == 1] if "round" in runs else runs
    first = first[first["status"].isin([*EVALUATED, DIVERGED])].copy()
    values = first[f"final.{metric.name}"].astype(float)
    at = "the end of training"
    if (first["status"] == PRUNED).any():  # measured where every run of the round has a value
        step = int(first.loc[first["status"].isin(EVALUATED), "steps"].min())
        at = f"step {step} (the first pruning)"
        for i, rid in zip(first.index, first["run_id"]):
            metrics = pd.read_csv(res.root / "runs" / rid / "metrics.csv")
            hit = metrics.loc[metrics["step"] == step, metric.name]
            values[i] = float(hit.iloc[0]) if len(hit) else math.nan
    diverged = worst(metric.name)  # as the samplers are told; a forest needs a finite value (an infinite loss:
    if math.isinf(diverged):  # the worst one measured instead)
        measured = values[first["status"] != DIVERGED].dropna()
        diverged = float(measured.max() if not metric.higher_is_better else measured.min()) if len(measured) else 0.0
    first["_value"] = values.where(first["status"] != DIVERGED, diverged)
    return first[first["_value"].notna()], at


def _points(first: pd.DataFrame, space: Space) -> tuple[list[dict[str, Any]], list[float]]:
    """Distinct points (their seeds' mean value) with their values decoded to the space's (lists for choices)."""
    decode = {k: {_cell(c): c for c in r.choices} for k, r in space.items() if r.kind == "choice"}
    points, values = [], []
    for key, g in first.groupby(list(space), sort=False, dropna=False):
        raw = dict(zip(space, key if isinstance(key, tuple) else (key,)))
        points.append({k: decode[k][v] if k in decode else v for k, v in raw.items()})
        values.append(float(g["_value"].mean()))
    return points, values


def importance(res: Folder) -> list[GroupImportance]:
    """Each search group's importance of its searched keys (first round only)."""
    declared = searched(res, "importance")
    space = space_of(declared)
    runs = search_runs(res)
    metric = ranked_on(runs)
    out = []
    for group, keys in groups(res, declared):
        g = runs if runs.empty else of_group(runs, keys)
        if g.empty:
            out.append(GroupImportance(group, 0, "", None, "no finished run of its first round yet", metric))
            continue
        first, at = _first_round(g, res, metric)
        points, values = _points(first, space)
        try:
            out.append(GroupImportance(group, len(points), at, evaluators.importance(space, points, values),
                                       metric=metric))
        except evaluators.TooFew as e:
            out.append(GroupImportance(group, len(points), at, None, f"too few to say: {e}", metric))
    return out


def importance_frame(found: list[GroupImportance]) -> pd.DataFrame:
    """One row per group and key: share (0..1), spread, evaluator, points (NaN share: too few)."""
    rows = []
    for g in found:
        keys = g.result.share if g.result else {"": math.nan}
        for key in keys:
            rows.append({"group": g.group, "key": key, "points": g.points, "at": g.at,
                         "share": g.result.share[key] if g.result else math.nan,
                         "spread": g.result.spread[key] if g.result else math.nan,
                         "evaluator": g.result.evaluator if g.result else "", "note": g.reason})
    return pd.DataFrame(rows)


def caption(found: list[GroupImportance]) -> str:
    evaluator = next((g.result.evaluator for g in found if g.result), "fANOVA")
    at = next((g.at for g in found if g.at), "the end of training")
    metric = found[0].metric if found else METRICS[TRAINING_BEST]
    what = (f"share of the variance of the {metric.words} explained by each key alone (the rest: "
            f"interactions and noise); mean ± std over {evaluators.SEEDS} forest seeds"
            if evaluator == "fANOVA" else "PED-ANOVA importance, normalized to sum to 1")
    return (f"{evaluator}: {what}. First round only (its points are drawn without regard to results; later "
            f"rounds crowd where earlier ones did well and pruned runs stop early, which would bias it); "
            f"measured at {at}; {_diverged_counts(metric)}.")


def _diverged_counts(metric: Metric) -> str:
    value = worst(metric.name)
    if math.isinf(value):
        return f"a diverged point counts as the worst {metric.words} measured"
    unit = f" {metric.unit}" if metric.unit else ""
    return f"a diverged point counts as {metric.words} {value * metric.scale:g}{unit}"


def importance_text(res: Folder) -> str:
    """`dlbench report DIR --importance`: one line per group and key, then the caption."""
    found = importance(res)
    lines = [f"{res.name}: which searched setting mattered"]
    width = max(len(k) for k in res.view["space"])
    for g in found:
        head = f"{g.group}: " if g.group else ""
        if g.result is None:
            lines.append(f"  {head}{g.points} first-round points: {g.reason}")
            continue
        lines.append(f"  {head}{g.points} first-round points")
        for key, share in sorted(g.result.share.items(), key=lambda kv: -kv[1]):
            spread = f" ± {100 * g.result.spread[key]:4.1f}" if g.result.of_variance else ""
            lines.append(f"    {key:<{width}}  {100 * share:5.1f} %{spread}")
    return "\n".join([*lines, *textwrap.wrap(caption(found), 100)]) + "\n"


def _caption_figure(width: float, height: float, caption_lines: int) -> tuple[Figure, Any, Any]:
    """A figure with one panel and a caption below it, in rows of its own (nothing overlaps)."""
    from matplotlib.figure import Figure

    text_height = 0.16 * caption_lines + 0.1
    fig = Figure(figsize=(width, height + text_height), dpi=DPI, layout="constrained")
    ax, note = fig.subplots(2, 1, height_ratios=[height, text_height])
    note.axis("off")
    return fig, ax, note


@PLOTS.register("importance")
def importance_plot(res: Folder) -> Figure | None:
    found = importance(res)
    if not any(g.points for g in found):
        return None
    keys = list(res.view["space"])
    reasons = {g.reason for g in found if g.result is None}
    if len(reasons) == 1 and len(found) > 1 and all(g.result is None for g in found):  # said once for all
        notes = [f"every search: {reasons.pop()}"]
    else:
        notes = [f"{g.group or 'the search'}: {g.reason}" for g in found if g.result is None]
    text = textwrap.wrap(" ".join([caption(found), *(n + "." for n in notes)]), 120)
    fig, ax, note = _caption_figure(7.2, 1.3 + 0.42 * len(keys) * max(1, len(found)), len(text))
    height = 0.8 / len(found)
    for i, (g, color) in enumerate(zip(found, _colors(len(found)))):
        if g.result is None:
            continue
        y = np.arange(len(keys)) + (i - (len(found) - 1) / 2) * height
        share = np.array([100 * g.result.share[k] for k in keys])
        spread = np.array([100 * g.result.spread[k] for k in keys])
        name = f"{g.group} ({g.points} points)" if g.group else f"{g.points} points"
        ax.barh(y, share, height * 0.9, xerr=spread if g.result.of_variance else None, color=color, label=name,
                capsize=2, error_kw={"elinewidth": 1})
    ax.set_yticks(range(len(keys)), keys)
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    evaluator = next((g.result.evaluator for g in found if g.result), "fANOVA")
    ax.set_xlabel(f"share of the variance of {found[0].metric.words}, % ({evaluator}, first round)"
                  if evaluator == "fANOVA" else "importance, % (PED-ANOVA, first round)")
    ax.grid(axis="x", alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="small", loc="lower right")
    ax.set_title(f"{res.name}: which searched setting mattered", fontsize="medium")
    if not any(g.result for g in found):  # nothing measured: the reason where the bars would be
        ax.text(0.5, 0.5, textwrap.fill(notes[0], 70), ha="center", va="center", transform=ax.transAxes,
                fontsize="small", color="0.3")
    from matplotlib.transforms import blended_transform_factory

    # from the figure's left edge, not the panel's: the caption is as wide as the figure
    note.text(0.01, 1, "\n".join(text), fontsize="x-small", va="top", color="0.3",
              transform=blended_transform_factory(fig.transFigure, note.transAxes))
    return fig


# ---------------------------------------------------------------- parallel coordinates


def _scaled(values: pd.Series, declared: Mapping[str, Any]) -> np.ndarray:
    """A searched key's values on its axis, 0 at the bottom of the declared range and 1 at the top
    (log10 for a log range, the choice's index for a choice)."""
    (kind, bounds), = declared.items()
    if kind == "choice":
        index = {_cell(c): i for i, c in enumerate(bounds)}
        return np.array([index.get(v, math.nan) for v in values], dtype=float) / max(1, len(bounds) - 1)
    v, low, high = values.to_numpy(dtype=float), float(bounds[0]), float(bounds[1])
    if kind == "log_uniform":
        v, low, high = np.log10(v), math.log10(low), math.log10(high)
    return (v - low) / (high - low) if high > low else np.full(len(v), 0.5)


def _ticks(declared: Mapping[str, Any]) -> list[tuple[float, str]]:
    (kind, bounds), = declared.items()
    if kind == "choice":
        return [(i / max(1, len(bounds) - 1), value_text(c)) for i, c in enumerate(bounds)]
    low, high = float(bounds[0]), float(bounds[1])
    if kind == "log_uniform":
        a, b = math.log10(low), math.log10(high)
        decades = list(range(math.ceil(a - 1e-9), math.floor(b + 1e-9) + 1))
        step = max(1, math.ceil(len(decades) / 6))
        return [((d - a) / (b - a) if b > a else 0.5, f"1e{d}") for d in decades[::step]]
    values = np.linspace(low, high, 5)
    if kind == "int_uniform":
        values = np.unique(np.round(values))
    return [((v - low) / (high - low) if high > low else 0.5, value_text(float(v) if kind == "uniform" else int(v)))
            for v in values]


def _parallel_panel(ax: Any, runs: pd.DataFrame, space: Mapping[str, Any], norm: Any, cmap: Any,
                    metric: Metric) -> None:
    keys = list(space)
    done = runs["status"].isin(EVALUATED).to_numpy()
    acc = runs[f"final.{metric.name}"].astype(float).to_numpy()
    ys = [_scaled(runs[k], space[k]) for k in keys]
    metric_y = np.where(done, (acc - norm.vmin) / max(norm.vmax - norm.vmin, 1e-12), -0.06)
    table = np.column_stack([*ys, metric_y])
    x = np.arange(len(keys) + 1)
    pruned = (runs["status"] == PRUNED).to_numpy()
    for j, key in enumerate(keys):  # a choice's lines fanned out a little around its value, so they stay apart
        if "choice" in space[key]:
            table[:, j] += (np.arange(len(table)) % 9 - 4) * 0.006
    good = acc if metric.higher_is_better else -acc
    order = np.argsort(np.where(done, good, -np.inf), kind="stable")  # the best drawn last: on top
    best = order[-1] if done.any() else None
    rank = np.empty(len(order))
    rank[order] = np.linspace(0, 1, len(order)) if len(order) else []
    for i in order:  # the worse a trial, the fainter: at 100+ trials the good region still reads
        if not done[i]:
            ax.plot(x, table[i], color="0.55", lw=0.7, ls=":", alpha=0.5)
        elif pruned[i]:
            ax.plot(x, table[i], color=cmap(norm(acc[i])), lw=0.7, alpha=0.15 + 0.25 * rank[i])
        else:
            ax.plot(x, table[i], color=cmap(norm(acc[i])), lw=2.6 if i == best else 1.0,
                    alpha=1.0 if i == best else 0.3 + 0.6 * rank[i])
    box = {"boxstyle": "square,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.8}  # readable over the lines
    for j, key in enumerate(keys):
        ax.axvline(j, color="0.25", lw=0.8)
        for y, label in _ticks(space[key]):
            ax.text(j - 0.03, y, label, ha="right", va="center", fontsize=6.5, color="0.2", bbox=box)
    ax.axvline(len(keys), color="0.25", lw=0.8)
    from matplotlib.ticker import MaxNLocator

    scale = metric.scale
    for v in MaxNLocator(5).tick_values(scale * norm.vmin, scale * norm.vmax):
        if norm.vmin <= v / scale <= norm.vmax:
            ax.text(len(keys) + 0.03, (v / scale - norm.vmin) / max(norm.vmax - norm.vmin, 1e-12), f"{v:g}",
                    ha="left", va="center", fontsize=6.5, color="0.2", bbox=box)
    ax.set_xticks(x, [*keys, metric.label], fontsize="small")
    ax.set_yticks([])
    ax.set_xlim(-0.45, len(keys) + 0.35)
    ax.set_ylim(-0.1, 1.04)
    for side in ("left", "right", "top"):
        ax.spines[side].set_visible(False)


@PLOTS.register("parallel")
def parallel_plot(res: Folder) -> Figure | None:
    space = searched(res, "parallel")
    runs = search_runs(res)
    if runs.empty:
        return None
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import ListedColormap, Normalize

    order = groups(res, space)
    metric = ranked_on(runs)
    acc = runs.loc[runs["status"].isin(EVALUATED), f"final.{metric.name}"].astype(float)
    acc = acc[np.isfinite(acc)]
    low, high = (float(acc.min()), float(acc.max())) if len(acc) else (0.0, 1.0)
    norm = Normalize(low, high if high > low else low + 1e-3)
    shades = np.linspace(0.0, 0.9, 256)  # no pale yellow on white; the better, the brighter, in either direction
    cmap = ListedColormap(colormaps["viridis"](shades if metric.higher_is_better else shades[::-1]))
    fig, axes = _figure(len(order), 1, (max(7.6, 1.9 * (len(space) + 1)), 3.4))
    for ax, (group, values) in zip(axes[:, 0], order):
        g = of_group(runs, values)
        _parallel_panel(ax, g.reset_index(drop=True), space, norm, cmap, metric)
        pruned = int((g["status"] == PRUNED).sum())
        lost = int((~g["status"].isin(EVALUATED)).sum())
        counts = (f"{len(g)} trials: {len(g) - pruned - lost} to the end, {pruned} pruned (faint), {lost} diverged "
                  "or failed (dotted); the best thick, on top")
        ax.set_title(textwrap.fill(f"{group}: {counts}" if group else counts, int(13 * fig.get_figwidth())),
                     fontsize="small")
    shown = (lambda v, _: f"{metric.scale * v:.0f} {metric.unit}") if metric.unit else (lambda v, _: f"{v:.3g}")
    fig.colorbar(ScalarMappable(norm, cmap), ax=list(axes[:, 0]), label=f"final {metric.words}",
                 shrink=0.9, aspect=30, format=shown)
    fig.suptitle(f"{res.name}: every search trial, one line each; axes span the declared ranges (log where the "
                 "range is)", fontsize="medium")
    return fig
